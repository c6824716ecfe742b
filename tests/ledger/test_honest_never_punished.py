"""Property (issue 14): a worker that follows the protocol never loses stake or reputation, whatever a client
sends and whatever the other parties of its jobs do, over the real ledger rules.

Each example is a run of jobs. The client picks the job's kind: a well-posed spec (every honest run gives the
same summary, which is the compute side's guarantee, tested by the hard corpus), a spec that fails
deterministically, data nobody serves, data served to some workers only, or a run that exceeds its own limits on
some machines; and any tolerance. Honest workers claim what they saw. Adversarial workers are lazy (claim
"unavailable" without trying), lie (a random result of their own), claim a false error, or stall. Each
adversary acts alone: two keys agreeing on the same false claim (one owner's, or two lazy cheats guessing the
same popular error code) is issue 13's collusion case, not modelled here; against an honest majority of a job's
three parties such a claim is slashed, so guessing loses ``slash_permille`` of stake for a trouble share.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger.state import TERMINAL_STATUSES, total_supply
from ledger.verdict import ERROR, OVER_LIMIT, RESULT, UNAVAILABLE
from tests.ledger.factories import Chain, Wallet, make_state

WORKERS = [f"w{i}" for i in range(6)]
BEHAVIOURS = ("honest", "lazy", "liar", "false_error", "stall")
KINDS = ("ok", "error", "unserved", "partly_served", "over_limit_somewhere")

job_st = st.fixed_dictionaries({
    "kind": st.sampled_from(KINDS),
    "tolerance": st.integers(0, 5),
    "blocked": st.sets(st.sampled_from(WORKERS), max_size=4),  # who cannot fetch / who runs over its limit
    "bids": st.sets(st.sampled_from(WORKERS), min_size=1, max_size=6),
})


def _claim(name: str, behaviour: str, job: dict, index: int) -> tuple[list[int], int] | None:
    """What ``name`` reveals on job number ``index`` (None: it stalls)."""
    if behaviour == "stall":
        return None
    if behaviour == "lazy":
        return [], UNAVAILABLE
    if behaviour == "liar":
        return [10_000 + 97 * index + WORKERS.index(name) * 1_000_003], RESULT
    if behaviour == "false_error":
        return [500 + WORKERS.index(name)], ERROR
    kind = job["kind"]
    if kind == "unserved" or (kind == "partly_served" and name in job["blocked"]):
        return [], UNAVAILABLE
    if kind == "over_limit_somewhere" and name in job["blocked"]:
        return [], OVER_LIMIT
    if kind == "error":
        return [3], ERROR
    return [1_000 + index, -7, 42], RESULT


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(behaviours=st.lists(st.sampled_from(BEHAVIOURS), min_size=6, max_size=6), jobs=st.lists(job_st, min_size=1,
                                                                                                 max_size=6),
       audit=st.sampled_from([0, 500]), confirm=st.sampled_from([0, 3]))
def test_an_honest_worker_never_loses_stake_or_reputation(behaviours: list[str], jobs: list[dict], audit: int,
                                                          confirm: int) -> None:
    """Also with audits (an auditor drawn on half the jobs, and an appeal panel when its claim differs), and with
    the artifact's confirmation, which a stalling confirmer withholds (the honest author is then not paid, but it
    loses neither stake nor reputation)."""
    behaviour = dict(zip(WORKERS, behaviours, strict=True))
    state = make_state(balances={"client": 10**9}, workers={n: {} for n in WORKERS},
                       params={"audit_permille": audit, "appeal_panel": 3 if audit else 0, "confirm_window": confirm})
    chain = Chain(state)
    client = Wallet("client")
    wallets = {n: Wallet(n) for n in WORKERS}
    by_account = {w.account: w for w in wallets.values()}
    honest = [wallets[n].account for n in WORKERS if behaviour[n] == "honest"]
    supply = total_supply(state)
    for index, job in enumerate(jobs):
        before = {a: (state.workers[a].stake, state.workers[a].reputation) for a in honest}
        stx = client.submit_job(tolerance_abs=job["tolerance"], bid_window=1)
        chain.block(stx)
        job_id = stx.tx_id
        chain.block(*(wallets[n].bid(job_id, 100 + WORKERS.index(n)) for n in sorted(job["bids"])))
        claims: dict[bytes, tuple[list[int], int] | None] = {}
        for _ in range(200):
            j = state.jobs[job_id]
            if j.status in TERMINAL_STATUSES:
                break
            txs = []
            if j.status == "confirming":
                txs = [by_account[a].confirm(job_id, j.result_artifact) for a in j.confirmers[:1]
                       if behaviour[by_account[a].name] != "stall"]
            for account in j.participants():
                w = by_account[account]
                if account not in claims:
                    claims[account] = _claim(w.name, behaviour[w.name], job, index)
                claim = claims[account]
                if claim is None or account in j.reveals:
                    continue
                if account not in j.commits and j.status in ("assigned", "disputed", "auditing"):
                    txs.append(w.commit(job_id, claim[0], claim[1]))
                elif account in j.commits and j.status == "revealing":
                    txs.append(w.reveal(job_id, claim[0], claim[1]))
            chain.block(*txs)
        assert state.jobs[job_id].status in TERMINAL_STATUSES
        for a in honest:
            stake, rep = state.workers[a].stake, state.workers[a].reputation
            verdict = state.jobs[job_id].verdict
            assert stake >= before[a][0], f"honest {by_account[a].name} lost stake on {job} ({verdict})"
            assert rep >= before[a][1], f"honest {by_account[a].name} lost reputation on {job}"
    assert total_supply(state) == supply
