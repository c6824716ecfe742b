"""Issue 13: checks nobody can see coming and nobody can copy.

The check after the commitments (a referee when the two claims differ, an auditor on a share of the jobs whose
claims match) is drawn from the hash of the block that holds the last commitment; the checker commits blind (it
sees fingerprints, never values); an auditor whose claim differs from the pair's draws an appeal panel that commits
blind too, and the panel's majority decides who is slashed: an honest auditor catches a pair that agreed on a
false result, and a lying auditor (or a panel member that sides with the wrong claim) loses its own stake.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from ledger.crypto import blake2b256
from ledger.errors import BadCommitment, NotParticipant, WrongJobState
from ledger.jobs import CAUGHT_PERCENT, audit_permille_for
from ledger.params import Params
from ledger.state import Job
from ledger.tx import CommitResult, compute_fingerprint
from tests.ledger.factories import account, assert_rejected
from tests.ledger.test_jobs import Net

TRUE, FALSE, OTHER = [10, 20, 30], [66, 66, 66], [1, 1, 1]
SEVEN = {f"w{i}": {} for i in range(1, 8)}
STAKE = 5_000


def _net(audit: int = 1000, **params: int) -> Net:
    return Net(workers=dict(SEVEN), params={"audit_permille": audit, "appeal_panel": 3, **params})


def _to_checked(net: Net, pair_claim: list[int], **kw: int) -> bytes:
    """A job whose worker and verifier commit ``pair_claim`` (the same claim), and the block that draws its check."""
    job_id = net.assigned(bids={"w1": 400}, reward=1_000, verification_fee=200, **kw)
    net.commit_both(job_id, pair_claim, pair_claim)
    return job_id


def _reveal_all(net: Net, job_id: bytes, claims: dict[bytes, list[int]]) -> list:
    job = net.job(job_id)
    assert job.status == "revealing"
    return net.chain.block(*(net.by_account[a].reveal(job_id, claims[a]) for a in job.participants()))


def _stake(net: Net, account: bytes) -> int:
    return net.state.workers[account].stake


def test_the_auditor_is_drawn_after_the_commitments_and_commits_blind() -> None:
    net = _net()
    job_id = _to_checked(net, TRUE)
    job = net.job(job_id)
    assert (job.status, job.check) == ("auditing", "audit")
    auditor = job.referee
    assert auditor not in (job.worker, job.verifier, None)
    # Nothing is revealed before the auditor has committed, so it has nothing to copy.
    assert not job.reveals
    assert_rejected(net.state, net.role(job_id, "worker").reveal(job_id, TRUE), net.chain.ctx(), WrongJobState)
    net.chain.block(net.by_account[auditor].commit(job_id, TRUE))
    assert job.status == "revealing"  # the same fingerprint as the pair's: no panel
    events = _reveal_all(net, job_id, {a: TRUE for a in job.participants()})
    assert (job.status, job.verdict, job.result_summary) == ("verified", "audited", TRUE)
    paid = {e.fields["to"]: e.fields["amount"] for e in events if e.kind == "paid"}
    assert paid == {job.worker: 400, job.verifier: 100, auditor: 100}
    net.check_invariants()


def test_who_audits_is_fixed_by_the_block_after_the_commitments_not_before() -> None:
    """Two chains identical up to the commitments, differing only in the hash of the block that holds them, draw
    different auditors (and audit or not): nobody could know at commit time."""
    outcomes = set()
    for i in range(12):
        net = _net(audit=300)
        job_id = net.assigned(bids={"w1": 400}, reward=1_000, verification_fee=200)
        before = net.job(job_id)
        assert before.referee is None and before.check == ""
        w, v = net.role(job_id, "worker"), net.role(job_id, "verifier")
        net.chain.block(w.commit(job_id, TRUE), v.commit(job_id, TRUE))
        net.chain.block(seed=blake2b256(b"the commit block's hash %d" % i))
        job = net.job(job_id)
        outcomes.add((job.check, job.referee))
    assert ("", None) in outcomes and len(outcomes) >= 3


def test_a_pair_that_agreed_on_a_false_result_is_slashed_together_when_the_panel_backs_the_auditor() -> None:
    net = _net()
    job_id = _to_checked(net, FALSE)
    job = net.job(job_id)
    pair, auditor = (job.worker, job.verifier), job.referee
    net.chain.block(net.by_account[auditor].commit(job_id, TRUE))
    assert (job.status, job.panel) == ("auditing", [])  # the panel is drawn from the next block's seed
    net.chain.block()
    assert job.check == "audit" and len(job.panel) == 3
    assert not set(job.panel) & {*pair, auditor}
    net.chain.block(*(net.by_account[m].commit(job_id, TRUE) for m in job.panel))
    claims = {a: TRUE for a in job.participants()} | {a: FALSE for a in pair}
    events = _reveal_all(net, job_id, claims)
    assert (job.status, job.verdict, job.result_summary) == ("verified", "pair_faulty", TRUE)
    for a in pair:
        assert _stake(net, a) == STAKE * 9 // 10 and net.state.workers[a].reputation == 400
    assert _stake(net, auditor) == STAKE
    paid = {e.fields["to"]: e.fields["amount"] for e in events if e.kind == "paid"}
    assert paid[auditor] == 400 and sum(paid[m] for m in job.panel) == 200
    assert not set(paid) & set(pair)
    net.check_invariants()


def test_a_lying_auditor_loses_its_stake_and_the_honest_pair_is_paid() -> None:
    net = _net()
    job_id = _to_checked(net, TRUE)
    job = net.job(job_id)
    auditor = job.referee
    net.chain.block(net.by_account[auditor].commit(job_id, FALSE))
    net.chain.block()
    panel = list(job.panel)
    # One panel member is lazy and copies the auditor's side blind (it cannot see values: it guesses).
    net.chain.block(*(net.by_account[m].commit(job_id, FALSE if m == panel[0] else TRUE) for m in panel))
    claims = {a: TRUE for a in job.participants()} | {auditor: FALSE, panel[0]: FALSE}
    _reveal_all(net, job_id, claims)
    assert (job.status, job.verdict, job.result_summary) == ("verified", "auditor_faulty", TRUE)
    assert _stake(net, auditor) == STAKE * 9 // 10 and _stake(net, panel[0]) == STAKE * 9 // 10
    for a in (job.worker, job.verifier, *panel[1:]):
        assert _stake(net, a) == STAKE
    net.check_invariants()


def test_a_split_panel_decides_nothing_and_nobody_is_slashed() -> None:
    net = _net(appeal_panel=2)
    job_id = _to_checked(net, TRUE)
    job = net.job(job_id)
    net.chain.block(net.by_account[job.referee].commit(job_id, FALSE))
    net.chain.block()
    a, b = job.panel
    net.chain.block(net.by_account[a].commit(job_id, TRUE), net.by_account[b].commit(job_id, FALSE))
    _reveal_all(net, job_id, {x: TRUE for x in job.participants()} | {job.referee: FALSE, b: FALSE})
    assert (job.status, job.verdict, job.escrow) == ("failed", "no_majority", 0)
    assert all(w.stake == STAKE for w in net.state.workers.values())
    net.check_invariants()


def test_a_panel_member_that_does_not_commit_is_penalised_and_the_rest_decide() -> None:
    net = _net()
    job_id = _to_checked(net, FALSE, commit_window=2)
    job = net.job(job_id)
    net.chain.block(net.by_account[job.referee].commit(job_id, TRUE))
    net.chain.block()
    stalled, *rest = job.panel
    net.chain.block(*(net.by_account[m].commit(job_id, TRUE) for m in rest))
    net.chain.block()  # the panel's commit deadline
    assert job.status == "revealing" and job.panel == rest and stalled in job.excluded
    assert _stake(net, stalled) == STAKE * 98 // 100
    _reveal_all(net, job_id, {x: TRUE for x in job.participants()} | {job.worker: FALSE, job.verifier: FALSE})
    assert job.verdict == "pair_faulty"
    net.check_invariants()


def test_a_reveal_must_match_its_fingerprint() -> None:
    """A fingerprint copied from the other party (to look like agreement) cannot be opened with another claim."""
    net = _net(audit=0)
    job_id = net.assigned(bids={"w1": 400})
    w, v = net.role(job_id, "worker"), net.role(job_id, "verifier")
    honest = v.commit(job_id, OTHER, nonce=99)  # only its commitment is used
    lying = CommitResult(job_id, honest.payload.commitment, compute_fingerprint(job_id, TRUE))
    net.chain.block(w.commit(job_id, TRUE), v.sign(lying))
    net.chain.block()
    assert net.job(job_id).status == "revealing"  # the fingerprints matched, so no referee was drawn
    assert_rejected(net.state, v.reveal(job_id, OTHER), net.chain.ctx(), BadCommitment, account=v.account)


def test_only_the_drawn_checker_commits_during_a_check() -> None:
    net = _net()
    job_id = _to_checked(net, TRUE)
    job = net.job(job_id)
    outsider = next(n for n in net.w.values() if n.account not in job.participants())
    assert_rejected(net.state, outsider.commit(job_id, TRUE), net.chain.ctx(), NotParticipant,
                    role="referee or auditor")


def test_an_auditor_that_stalls_leaves_the_agreeing_pair_settled_and_is_penalised() -> None:
    net = _net()
    job_id = _to_checked(net, TRUE, reveal_window=2)
    job = net.job(job_id)
    auditor = job.referee
    net.chain.block(net.by_account[auditor].commit(job_id, TRUE))
    net.chain.block(*net.reveal_txs(job_id, TRUE, TRUE))
    net.chain.block()
    assert (job.status, job.verdict) == ("verified", "agreed")
    assert _stake(net, auditor) == STAKE * 98 // 100
    net.check_invariants()


@given(price=st.integers(0, 10**9), fee=st.integers(0, 10**9), stakes=st.tuples(st.integers(0, 10**12),
                                                                               st.integers(0, 10**12)),
       base=st.integers(1, 1000), slash=st.integers(0, 1000))
def test_the_audit_rate_makes_faking_cost_more_than_it_saves(price: int, fee: int, stakes: tuple[int, int],
                                                             base: int, slash: int) -> None:
    """``p · κ · (pay + S_w + S_v) ≥ pay`` for every job short of always auditing: a pair that fakes saves at most
    the pay (the runs it skips cost no more than honest workers are paid for them) and, caught with chance at
    least ``p·κ``, loses the pay and both slashes."""
    state = Net(workers={"w1": {"stake": stakes[0]}, "w2": {"stake": stakes[1]}},
                params={"audit_permille": base, "slash_permille": slash, "min_stake": 0}).state
    job = Job(worker=account("w1"), verifier=account("w2"), price=price, verification_fee=fee)
    p = audit_permille_for(state, job)
    pay, at_risk = price + fee, sum(s * slash // 1000 for s in stakes)
    assert base <= p <= 1000
    assert p == 1000 or p * CAUGHT_PERCENT * (pay + at_risk) >= 1000 * 100 * pay


def test_audits_off_means_no_audits() -> None:
    state = Net(params={"audit_permille": 0}).state
    assert audit_permille_for(state, Job(worker=next(iter(state.workers)), price=10, verification_fee=1)) == 0
    assert Params().audit_permille > 0  # real chains audit


def test_keys_of_one_operator_never_fill_two_roles_of_a_job() -> None:
    """A node holding several keys (its own and wallets it registered with ``operator`` = its account) is never
    drawn twice on one job, so it cannot run a job once and commit the one result twice. Without the rule the
    node's three extra keys would be drawn verifier or auditor on about a third of these jobs."""
    from tests.ledger.factories import Wallet

    net = _net(audit=1000)
    node = net.w["w1"]  # always the worker below (the only bidder)
    extra = [Wallet(f"x{i}") for i in range(3)]
    net.by_account.update({x.account: x for x in extra})
    net.chain.block(*(net.alice.transfer(x.account, 20_000) for x in extra))
    net.chain.block(*(x.register_worker(operator=node.account) for x in extra))
    ours = {node.account, *(x.account for x in extra)}
    for _ in range(15):
        job_id = _to_checked(net, TRUE)
        job = net.job(job_id)
        assert len(ours & {job.worker, job.verifier, job.referee}) == 1, "two keys of one node on one job"
        net.chain.block(net.by_account[job.referee].commit(job_id, TRUE))
        _reveal_all(net, job_id, {a: TRUE for a in job.participants()})
        assert job.status == "verified"
    assert net.state.workers[extra[0].account].operator == node.account
    net.check_invariants()


def _disputed(net: Net, worker_claim: list[int], verifier_claim: list[int]) -> bytes:
    job_id = net.assigned(bids={"w1": 400}, reward=1_000, verification_fee=200)
    net.commit_both(job_id, worker_claim, verifier_claim)
    assert (net.job(job_id).status, net.job(job_id).check) == ("disputed", "dispute")
    return job_id


def test_a_referee_of_the_cheats_owner_cannot_slash_the_honest_verifier() -> None:
    """The worker fakes; the referee drawn is the same owner's key and backs the fake, knowing it out of band (it
    could not copy it: nothing was revealed). The panel drawn after the referee's commitment decides: the fake
    needs 3 of the 4 checkers, so worker and referee are slashed and the honest verifier is paid."""
    net = _net()
    job_id = _disputed(net, FALSE, TRUE)
    job = net.job(job_id)
    referee = job.referee
    net.chain.block(net.by_account[referee].commit(job_id, FALSE))  # backs its owner's fake
    assert job.status == "disputed" and not job.panel
    net.chain.block()
    assert len(job.panel) == 3 and not set(job.panel) & {job.worker, job.verifier, referee}
    net.chain.block(*(net.by_account[m].commit(job_id, TRUE) for m in job.panel))
    claims = {a: TRUE for a in job.participants()} | {job.worker: FALSE, referee: FALSE}
    events = _reveal_all(net, job_id, claims)
    assert (job.status, job.verdict, job.result_summary) == ("verified", "worker_faulty", TRUE)
    assert _stake(net, job.worker) == STAKE * 9 // 10 and _stake(net, referee) == STAKE * 9 // 10
    assert _stake(net, job.verifier) == STAKE and net.state.workers[job.verifier].reputation > 500
    paid = {e.fields["to"]: e.fields["amount"] for e in events if e.kind == "paid"}
    assert job.worker not in paid and referee not in paid
    assert paid[job.panel[0]] == 400  # ran in the worker's place
    assert sum(paid.get(a, 0) for a in (job.verifier, *job.panel[1:])) == 200
    net.check_invariants()


def test_without_a_free_panel_a_dispute_is_decided_two_to_one() -> None:
    net = Net(workers={f"w{i}": {} for i in range(1, 4)}, params={"appeal_panel": 3})
    job_id = _disputed(net, FALSE, TRUE)
    job = net.job(job_id)
    net.chain.block(net.by_account[job.referee].commit(job_id, TRUE))
    events = net.chain.block()  # the panel draw finds nobody free
    assert [e.fields["check"] for e in events if e.kind == "check_unavailable"] == ["appeal"]
    _reveal_all(net, job_id, {a: TRUE for a in job.participants()} | {job.worker: FALSE})
    assert (job.status, job.verdict) == ("verified", "worker_faulty")
    net.check_invariants()


def test_a_panel_member_within_tolerance_of_either_agreeing_claim_is_not_punished() -> None:
    """Tolerance is not transitive: the pair claims [0], the auditor [1] (within 1 of it, so both stand), and an
    honest panel member [2], within 1 of the auditor but not of the pair. Nobody is slashed."""
    net = _net(appeal_panel=1)
    job_id = net.assigned(bids={"w1": 400}, reward=1_000, verification_fee=200, tolerance_abs=1)
    net.commit_both(job_id, [0], [0])
    job = net.job(job_id)
    net.chain.block(net.by_account[job.referee].commit(job_id, [1]))
    net.chain.block()
    [member] = job.panel
    net.chain.block(net.by_account[member].commit(job_id, [2]))
    _reveal_all(net, job_id, {job.worker: [0], job.verifier: [0], job.referee: [1], member: [2]})
    assert (job.status, job.verdict, job.result_summary) == ("verified", "audited", [0])
    assert all(w.stake == STAKE for w in net.state.workers.values())
    net.check_invariants()
