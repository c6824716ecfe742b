"""Issue 13: a client pays only for a result it can get.

An accepted result first waits in ``confirming``: a party that backed it, other than its author, fetches the
artifact it names and recomputes the summary from it, then posts ``confirm_artifact``. Only that confirmation
pays anyone; with none by ``confirm_window`` the job fails and the client gets its escrow back, nobody slashed.
When a checker drawn after the commitments backed the claim, only checkers confirm, so a pair of one owner
cannot confirm its own artifact on a job that drew an auditor.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger.errors import DeadlinePassed, InvalidField, InvalidGenesis, NotParticipant, WrongJobState
from ledger.jobs import max_job_lifetime
from ledger.params import Params
from ledger.state import Job
from ledger.verdict import ERROR
from tests.ledger.factories import account, assert_rejected, ctx
from tests.ledger.test_jobs import Net

TRUE, FALSE = [10, 20, 30], [66, 66, 66]
SEVEN = {f"w{i}": {} for i in range(1, 8)}
STAKE = 5_000


def _net(window: int = 3, **params: int) -> Net:
    return Net(workers=dict(SEVEN), params={"confirm_window": window, **params})


def _agreed(net: Net, claim: list[int] = TRUE) -> bytes:
    job_id = net.assigned(bids={"w1": 400}, reward=1_000, verification_fee=200)
    net.commit_both(job_id, claim, claim)
    net.reveal_both(job_id, claim, claim)
    return job_id


def _checked(net: Net, worker: list[int], verifier: list[int], checker: list[int], status: str) -> tuple[Job, bytes]:
    """A job whose worker and verifier commit these claims, drawing a checker (``status`` says which) that
    commits ``checker``; then all three reveal. The job and its checker."""
    job_id = net.assigned(bids={"w1": 400}, reward=1_000, verification_fee=200)
    net.commit_both(job_id, worker, verifier)
    job = net.job(job_id)
    referee = job.referee
    assert job.status == status
    net.chain.block(net.by_account[referee].commit(job_id, checker))
    claims = {job.worker: worker, job.verifier: verifier, referee: checker}
    net.chain.block(*(net.by_account[a].reveal(job_id, claims[a]) for a in job.participants()))
    return job, referee


def _paid(events: list) -> dict[bytes, int]:
    return {e.fields["to"]: e.fields["amount"] for e in events if e.kind == "paid"}


def _standing(net: Net) -> dict[bytes, tuple[int, int]]:
    return {a: (w.stake, w.reputation) for a, w in net.state.workers.items()}


def test_an_accepted_result_pays_nobody_until_the_verifier_confirms_its_artifact() -> None:
    net = _net()
    job_id = _agreed(net)
    job = net.job(job_id)
    worker, verifier = job.worker, job.verifier
    assert job.status == "confirming" and job.escrow == 1_200
    assert job.confirmers == [verifier] and job.result_artifact == net.by_account[worker].artifact_of(job_id)
    assert job.result_summary == TRUE and job.payout == {worker: 400, verifier: 200}
    before = _standing(net)
    net.check_invariants()
    events = net.chain.block(net.by_account[verifier].confirm(job_id, job.result_artifact))
    assert (job.status, job.verdict) == ("verified", "agreed")
    assert _paid(events) == {worker: 400, verifier: 200}
    assert net.state.balance(account("alice")) == 100_000 - 1_200 - 1 + 600  # the unspent reward comes back
    for a in (worker, verifier):  # the reputation reward comes with the pay, not before
        assert net.state.workers[a].reputation == before[a][1] + net.state.params.reputation_reward
        assert net.state.workers[a].active_jobs == 0
    assert (job.confirmers, job.payout, job.winners) == ([], {}, [])
    assert [s for s, _ in job.history][-2:] == ["confirming", "verified"]
    net.check_invariants()


def test_an_artifact_nobody_confirms_fails_the_job_refunded_and_nobody_is_slashed() -> None:
    net = _net(window=3)
    job_id = _agreed(net)
    job = net.job(job_id)
    before = _standing(net)
    balance = net.state.balance(account("alice"))
    deadline = job.deadline
    while net.state.height < deadline:
        net.chain.block()
    assert (job.status, job.verdict) == ("failed", "artifact_unconfirmed")
    assert net.state.balance(account("alice")) == balance + 1_200 and job.escrow == 0
    assert _standing(net) == before  # nobody slashed, nobody's reputation moved
    assert all(w.active_jobs == 0 for w in net.state.workers.values())
    net.check_invariants()


def test_only_a_confirmer_may_confirm_and_only_the_accepted_artifact_in_time() -> None:
    net = _net(window=2)
    job_id = _agreed(net)
    job = net.job(job_id)
    worker, verifier = net.by_account[job.worker], net.by_account[job.verifier]
    c = net.chain.ctx()
    # The author cannot vouch for its own artifact, nor can a stranger or the client.
    assert_rejected(net.state, worker.confirm(job_id, job.result_artifact), c, NotParticipant)
    assert_rejected(net.state, net.w["w7"].confirm(job_id, job.result_artifact), c, NotParticipant)
    # A confirmation names the artifact the ledger recorded: another digest is refused, not taken for it.
    assert_rejected(net.state, verifier.confirm(job_id, verifier.artifact_of(job_id)), c, InvalidField)
    while net.state.height < job.deadline:
        net.chain.block()
    assert job.status == "failed"
    assert_rejected(net.state, verifier.confirm(job_id, job.result_artifact), net.chain.ctx(), WrongJobState)


def test_a_confirmation_after_the_deadline_is_refused() -> None:
    net = _net(window=2)
    job_id = _agreed(net)
    job = net.job(job_id)
    late = ctx(job.deadline + 1)
    assert_rejected(net.state, net.role(job_id, "verifier").confirm(job_id, job.result_artifact), late,
                    DeadlinePassed)


def test_on_an_audited_job_only_the_auditor_confirms_so_a_pair_cannot_vouch_for_itself() -> None:
    net = _net(window=3, audit_permille=1000, appeal_panel=3)
    job, auditor = _checked(net, TRUE, TRUE, TRUE, "auditing")
    job_id = job.job_id
    assert job.status == "confirming" and job.confirmers == [auditor]
    assert_rejected(net.state, net.role(job_id, "verifier").confirm(job_id, job.result_artifact), net.chain.ctx(),
                    NotParticipant)
    events = net.chain.block(net.by_account[auditor].confirm(job_id, job.result_artifact))
    assert (job.status, job.verdict) == ("verified", "audited")
    assert _paid(events) == {job.worker: 400, job.verifier: 100, auditor: 100}
    net.check_invariants()


def test_when_the_worker_loses_the_artifact_confirmed_is_the_winning_checkers_own() -> None:
    """A dispute decided two to one (no panel): the referee's claim wins, so its artifact is the result and the
    verifier that agreed with it confirms; the worker is slashed at the verdict, before any confirmation."""
    net = _net(window=3)
    job, referee = _checked(net, FALSE, TRUE, TRUE, "disputed")
    job_id = job.job_id
    assert job.status == "confirming" and job.verdict == "worker_faulty"
    assert net.state.workers[job.worker].stake < STAKE  # the false claim is punished whatever happens next
    assert job.result_artifact == net.by_account[referee].artifact_of(job_id)
    assert job.confirmers == [job.verifier]
    events = net.chain.block(net.role(job_id, "verifier").confirm(job_id, job.result_artifact))
    assert job.status == "verified" and _paid(events) == {referee: 400, job.verifier: 200}
    net.check_invariants()


def test_an_agreed_error_has_no_artifact_and_ends_at_its_verdict() -> None:
    net = _net(window=3)
    job_id = net.assigned(bids={"w1": 400}, reward=1_000, verification_fee=200)
    w, v = net.role(job_id, "worker"), net.role(job_id, "verifier")
    net.chain.block(w.commit(job_id, [3], ERROR), v.commit(job_id, [3], ERROR))
    net.chain.block()
    net.chain.block(w.reveal(job_id, [3], ERROR), v.reveal(job_id, [3], ERROR))
    assert (net.job(job_id).status, net.job(job_id).verdict) == ("failed", "spec_error")


def test_a_job_round_trips_through_its_encoding_while_confirming() -> None:
    net = _net()
    job = net.job(_agreed(net))
    back = Job.from_list(job.to_list())
    assert back.to_list() == job.to_list() and back.payout == job.payout and back.confirmers == job.confirmers


@given(window=st.integers(1, 40), confirm_at=st.one_of(st.none(), st.integers(0, 45)))
def test_with_any_window_the_job_ends_within_its_lifetime_and_no_token_is_lost(window: int,
                                                                               confirm_at: int | None) -> None:
    """Whenever (if ever) the confirmation comes, the job ends by ``max_job_lifetime``, paid in full exactly when
    it was confirmed in time, refunded in full otherwise."""
    net = _net(window=window)
    job_id = _agreed(net)
    job = net.job(job_id)
    start = net.state.height
    verifier = net.role(job_id, "verifier")
    while not job.is_terminal:
        txs = []
        if confirm_at is not None and net.state.height + 1 == start + 1 + confirm_at:
            txs = [verifier.confirm(job_id, job.result_artifact)]
        if txs and net.state.height + 1 > job.deadline:
            assert_rejected(net.state, txs[0], net.chain.ctx(), DeadlinePassed)
            txs = []
        net.chain.block(*txs)
    assert net.state.height <= job.submitted_at + max_job_lifetime(net.state, job)
    in_time = confirm_at is not None and confirm_at < window
    assert job.status == ("verified" if in_time else "failed")
    assert net.state.balance(account("alice")) == 100_000 - 1_200 - 1 + (600 if in_time else 1_200)
    net.check_invariants()


def test_the_window_is_a_genesis_parameter_bounded_like_the_others() -> None:
    Params(confirm_window=0).validate()
    with pytest.raises(InvalidGenesis, match="confirm_window"):
        Params(confirm_window=Params().max_window + 1).validate()


def test_an_unconfirmed_dispute_refunds_the_client_and_the_outvoted_party_stays_slashed() -> None:
    # The slash follows the vote on the summaries, which the artifact's availability does not change; only the pay
    # waits for the confirmation. So a withheld artifact refunds the client without undoing the slash.
    net = _net(window=3)
    job, referee = _checked(net, TRUE, FALSE, TRUE, "disputed")
    assert (job.status, job.verdict, job.confirmers) == ("confirming", "verifier_faulty", [referee])
    loser = net.state.workers[job.verifier]
    slashed = (loser.stake, loser.reputation)
    assert loser.stake < STAKE
    balance = net.state.balance(account("alice"))
    while net.state.height < job.deadline:
        net.chain.block()
    assert (job.status, job.verdict) == ("failed", "artifact_unconfirmed")
    assert net.state.balance(account("alice")) == balance + 1_200 and job.escrow == 0
    assert (net.state.workers[job.verifier].stake, net.state.workers[job.verifier].reputation) == slashed
    assert all(w.active_jobs == 0 for w in net.state.workers.values())
    net.check_invariants()
