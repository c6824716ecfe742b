"""The node's read models: what the API, the dashboard and the CLI show of the chain, the network, jobs and
accounts (:class:`Views`), and how a job reads to a person (its timeline, what it waits for)."""

from bootstrap.views.jobs import assigned_at_submission, status_waiting_for, timeline, why_waiting
from bootstrap.views.views import DISPLAY_ID_CACHE, Views

__all__ = [
    "DISPLAY_ID_CACHE", "Views", "assigned_at_submission", "status_waiting_for", "timeline", "why_waiting"
]
