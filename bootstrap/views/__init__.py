"""The node's read models: what the API, the dashboard and the CLI show of the chain, the network, jobs and
accounts (:class:`Views`), and how a job reads to a person (its timeline, what it waits for, what each party
revealed and what its verdict means)."""

from bootstrap.views.index import CursorError, JobIndex
from bootstrap.views.jobs import (
    OUTCOME_WORDS,
    VERDICT_WORDS,
    assigned_at_submission,
    reveal_outcomes,
    status_waiting_for,
    timeline,
    verdict_words,
    why_waiting,
)
from bootstrap.views.views import DISPLAY_ID_CACHE, Views

__all__ = [
    "DISPLAY_ID_CACHE", "OUTCOME_WORDS", "VERDICT_WORDS", "CursorError", "JobIndex", "Views",
    "assigned_at_submission", "reveal_outcomes", "status_waiting_for", "timeline", "verdict_words", "why_waiting",
]
