"""What an owner of several worker keys earns by cheating, against playing honestly, on the real ledger rules.

N honest workers and m keys of one owner (equal stakes, so its share of the live worker stake is s = m/(N+m))
serve jobs assigned from standing offers. Every job runs through ``ledger.rules`` over a genesis state, one block
at a time: submit (assigned at once), commitments, the check drawn from the hash of the block holding them
(a referee when the claims differ, an auditor with chance ``ledger.jobs.audit_permille_for``), blind commitments
of the checkers (and of an appeal panel), reveals, verdict. Nothing is shortcut: the owner's keys post real
signed txs, and everything it earns or loses is read from the state.

The owner plays one strategy on every job (its keys know each other and what each committed):

* ``honest`` — runs every job it holds a role in (the baseline);
* ``always`` — never runs anything: a worker key commits a made-up result; a checker key backs its own worker's
  made-up result, or makes up another on someone else's job;
* ``collude`` — fakes only when its keys hold both worker and verifier (public at assignment); then it backs the
  fake as auditor or panel member too; otherwise it runs the job honestly;
* ``copy`` — ``collude``, and as a checker on others' jobs it copies the worker's commitment and fingerprint
  instead of running (all it can see before reveals: a referee cannot copy a value);
* ``undercut`` — ``collude`` with an offer priced just below the honest workers' band, so its keys are the
  worker on (nearly) every job.

A run costs its runner ``RUN_COST`` tokens (the work); faking costs nothing. The owner's profit is its keys'
balance and stake at the end minus at the start, minus ``RUN_COST`` per run. False results accepted are verified
jobs whose result is not the true one; "punished" counts those after which one of the owner's keys that was paid
for it lost stake (caught on that job's appeal or on a later one).

Run: ``.venv/bin/python -m bench.collusion [--jobs 10000] [--points all|quick]``; writes
bench/results/collusion.md.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.append(str(Path(__file__).resolve().parent.parent))

from bench.machine import machine_line
from ledger.crypto import blake2b256
from ledger.jobs import audit_permille_for, committers
from ledger.state import ASSIGNED, CHECKING_STATUSES, TERMINAL_STATUSES, State
from ledger.tx import CommitResult
from tests.ledger.factories import Chain, Wallet, make_state

RESULTS = Path(__file__).resolve().parent / "results" / "collusion.md"
AUDIT_PERMILLE = 100
STRATEGIES = ("honest", "always", "collude", "copy", "undercut")
"""The owner's strategies (``honest_undercut``, undercutting but honest, is the baseline ``undercut`` is weighed
against)."""
REWARD, FEE, PRICE, RUN_COST = 1_000, 200, 400, 100
STAKE = 100_000
"""Stake per key: the slash for a wrong result (10%) is 10,000 against a job's pay of 600, so the chain's
audit rate (10%) is what prices cheating (``audit_permille_for``); a smaller stake is audited more often."""
EARLY = 1_000
"""Jobs over which the share of pairs is measured, before caught keys lose stake and reputation (and so roles)."""
IN_FLIGHT = 25
"""Jobs submitted per block while the run lasts (each lives ~5 blocks)."""


def true_claim(job_id: bytes) -> list[int]:
    return list(blake2b256(b"true" + job_id)[:6])


def fake_claim(job_id: bytes, tag: bytes = b"") -> list[int]:
    return [1_000 + b for b in blake2b256(b"fake" + tag + job_id)[:6]]


@dataclass
class Point:
    """One simulated run: its setting (honest keys, the owner's keys, its strategy, jobs) and what came of it."""

    n_honest: int
    m_owner: int
    strategy: str
    jobs: int
    false_accepted: int = 0
    false_punished: int = 0
    owner_profit: int = 0
    owner_runs: int = 0
    owner_slashed: int = 0
    honest_slashed: int = 0
    pair_early: int = 0  # jobs among the first EARLY whose worker and verifier were both the owner's
    fakes_audited: int = 0  # jobs the owner's pair faked that drew an auditor
    fakes_caught: int = 0  # of those, the pair was slashed
    honest_stake_lost: int = 0
    audited: int = 0
    appealed: int = 0
    verdicts: dict[str, int] = field(default_factory=dict)
    elapsed_s: float = 0.0

    @property
    def share(self) -> float:
        return self.m_owner / (self.n_honest + self.m_owner)


def simulate(n_honest: int, m_owner: int, strategy: str, jobs: int) -> Point:
    """One run of ``jobs`` jobs; see the module docstring."""
    start = time.perf_counter()
    honest = [f"h{i}" for i in range(n_honest)]
    owner = [f"a{i}" for i in range(m_owner)]
    names = honest + owner
    state = make_state(balances={"client": 10**15}, workers={n: {"stake": STAKE, "capacity": 1_000} for n in names},
                       params={"audit_permille": AUDIT_PERMILLE, "appeal_panel": 3})
    chain = Chain(state)
    client = Wallet("client")
    wallets = {n: Wallet(n) for n in names}
    by_account = {w.account: w for w in wallets.values()}
    mine = {wallets[n].account for n in owner}
    worth0 = sum(state.balance(a) + state.workers[a].stake for a in mine)
    point = Point(n_honest, m_owner, strategy, jobs)
    claims: dict[tuple[bytes, bytes], list[int]] = {}
    pending: list[bytes] = []
    order: dict[bytes, int] = {}
    false_jobs: list[tuple[int, set[bytes]]] = []  # (end height, owner keys paid) per accepted false result
    slashed_at: dict[bytes, list[int]] = {a: [] for a in mine}
    band_low = PRICE * 1000 // (1000 + state.params.offer_band_permille) - 2
    until = 0
    submitted = 0
    while submitted < jobs or pending:
        txs = []
        if until - state.height < 10:
            until = state.height + state.params.max_window
            for n in names:
                price = band_low if (strategy in ("undercut", "honest_undercut") and n in owner) else PRICE
                txs.append(wallets[n].offer(price, until))
        for _ in range(min(IN_FLIGHT, jobs - submitted)):
            stx = client.submit_job(reward=REWARD, verification_fee=FEE, assign="offers", bid_window=1)
            txs.append(stx)
            pending.append(stx.tx_id)
            order[stx.tx_id] = submitted
            submitted += 1
        for job_id in pending:
            job = state.jobs.get(job_id)
            if job is None or job.is_terminal:
                continue
            txs += _actions(state, job, strategy, mine, by_account, claims, point)
        events = chain.block(*txs)
        for e in events:
            if e.kind == "slashed" and e.fields.get("worker") in mine:
                slashed_at[e.fields["worker"]].append(state.height)
            elif e.kind == "slashed":
                point.honest_slashed += 1
                point.honest_stake_lost += e.fields["amount"]
        still = []
        for job_id in pending:
            job = state.jobs[job_id]
            if not job.is_terminal:
                still.append(job_id)
                continue
            _tally(state, job, mine, point, false_jobs, order.pop(job_id))
        pending = still
    for end, paid in false_jobs:
        if any(h >= end for a in paid for h in slashed_at[a]):
            point.false_punished += 1
    worth1 = sum(state.balance(a) + state.workers[a].stake for a in mine)
    point.owner_slashed = sum(len(v) for v in slashed_at.values())
    point.owner_profit = worth1 - worth0 - RUN_COST * point.owner_runs
    point.elapsed_s = time.perf_counter() - start
    return point


def _actions(state: State, job, strategy: str, mine: set[bytes], by_account: dict[bytes, Wallet],
             claims: dict[tuple[bytes, bytes], list[int]], point: Point) -> list:
    """The commits and reveals due on ``job`` this block, each party playing its side."""
    out = []
    committing = job.status in (ASSIGNED, *CHECKING_STATUSES)
    for acct in committers(job):  # who commits or reveals in this phase, by the ledger's own rule
        w = by_account[acct]
        if committing and acct not in job.commits:
            claim = _choose(state, job, acct, strategy, mine, point)
            if claim is None:  # copies the worker's commitment: nothing it could ever open
                src = job.worker
                if src in job.commits:
                    out.append(w.sign(CommitResult(job.job_id, job.commits[src], job.fingerprints[src])))
                continue
            claims[(job.job_id, acct)] = claim
            out.append(w.commit(job.job_id, claim))
        elif not committing and acct not in job.reveals and (job.job_id, acct) in claims:
            out.append(w.reveal(job.job_id, claims[(job.job_id, acct)]))
    return out


def _choose(state: State, job, acct: bytes, strategy: str, mine: set[bytes], point: Point) -> list[int] | None:
    """The claim ``acct`` commits to (``None``: copy a commitment), and whether it ran the job (the cost)."""
    truth = true_claim(job.job_id)
    if acct not in mine or strategy in ("honest", "honest_undercut"):
        if acct in mine:
            point.owner_runs += 1
        return truth
    pair_is_mine = job.worker in mine and job.verifier in mine
    if strategy == "always":
        return fake_claim(job.job_id) if job.worker in mine else fake_claim(job.job_id, acct)
    if pair_is_mine:  # collude, copy, undercut: fake when both roles are the owner's, and back it as checker
        return fake_claim(job.job_id)
    if strategy == "copy" and acct not in (job.worker, job.verifier):
        return None
    point.owner_runs += 1
    return truth


def _tally(state: State, job, mine: set[bytes], point: Point, false_jobs: list[tuple[int, set[bytes]]],
           index: int) -> None:
    point.verdicts[job.verdict] = point.verdicts.get(job.verdict, 0) + 1
    pair = job.worker in mine and job.verifier in mine
    point.pair_early += pair and index < EARLY
    worker_claim = job.reveals.get(job.worker)
    if pair and job.check == "audit" and worker_claim is not None and worker_claim[0] != true_claim(job.job_id):
        point.fakes_audited += 1
        point.fakes_caught += job.verdict == "pair_faulty"
    point.audited += job.check == "audit"
    point.appealed += bool(job.panel)
    if job.status == "verified" and job.result_summary != true_claim(job.job_id):
        point.false_accepted += 1
        paid = {a for a in (job.worker, job.verifier, job.referee, *job.panel) if a in mine}
        false_jobs.append((state.height, paid))
    assert job.status in TERMINAL_STATUSES


def hypergeom_at_least(total: int, marked: int, drawn: int, at_least: int) -> float:
    """P(at least ``at_least`` of ``drawn`` keys drawn without replacement from ``total`` are among ``marked``)."""
    from math import comb

    if drawn > total:
        return 0.0
    return sum(comb(marked, i) * comb(total - marked, drawn - i) for i in range(at_least, drawn + 1)
               if i <= marked and drawn - i <= total - marked) / comb(total, drawn)


def formula(n: int, m: int, strategy: str, audit: float) -> dict[str, float]:
    """What docs/VERIFICATION.md predicts for an owner of m of n + m equal keys, per job, before any key is caught:
    the chance its keys hold both roles, the chance an audited fake is caught (the auditor is not its key and the
    panel of 3 has no majority of its keys), and its gain per job from faking against running honestly."""
    total = n + m
    worker = 1.0 if strategy == "undercut" else m / total
    pair = worker * (m - 1) / (total - 1)
    auditor_mine = max(0, m - 2) / (total - 2)
    panel_flip = hypergeom_at_least(total - 3, max(0, m - 3), 3, 2)
    caught = (1 - auditor_mine) * (1 - panel_flip)
    pay = (PRICE * 1000 // 1100 - 2 if strategy == "undercut" else PRICE) + FEE
    gain = pair * (2 * RUN_COST - audit * caught * (2 * STAKE // 10 + pay))
    return {"pair": pair, "caught": caught, "gain": gain}


def _row(p: Point, honest_profit: int) -> str:
    verdicts = ", ".join(f"{k} {v}" for k, v in sorted(p.verdicts.items(), key=lambda kv: -kv[1])[:4])
    better = "—" if p.strategy.startswith("honest") else ("**yes**" if p.owner_profit > honest_profit else "no")
    return (f"| {p.n_honest} | {p.m_owner} | {p.share:.2f} | {p.strategy} | {p.jobs:,} | {p.false_accepted} | "
            f"{p.false_punished} | {p.owner_slashed} | {p.honest_slashed} | {p.owner_profit:,} | {honest_profit:,} | "
            f"{better} | "
            f"{p.audited} / {p.appealed} | {verdicts} |")


POINTS = {
    "quick": [(10, 1), (10, 3)],
    "all": [(10, 1), (10, 3), (10, 5), (30, 3), (30, 10), (100, 10), (100, 33)],
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=10_000)
    ap.add_argument("--points", choices=sorted(POINTS), default="all")
    ap.add_argument("--strategies", default=",".join(STRATEGIES))
    args = ap.parse_args()
    strategies = args.strategies.split(",")
    rows = []
    versus = []
    worse = tried = 0
    for n, m in POINTS[args.points]:
        baselines = {}
        for base in ("honest", "honest_undercut"):
            baselines[base] = b = simulate(n, m, base, args.jobs)
            print(f"N={n} m={m} {base}: profit {b.owner_profit:,} ({b.elapsed_s:.0f} s)", flush=True)
            rows.append(_row(b, b.owner_profit))
        for strategy in strategies:
            if strategy == "honest":
                continue
            # Undercutting is price competition, not cheating: it is weighed against the same prices played honestly.
            baseline = baselines["honest_undercut" if strategy == "undercut" else "honest"]
            p = simulate(n, m, strategy, args.jobs)
            tried += 1
            worse += p.owner_profit > baseline.owner_profit
            if strategy in ("collude", "undercut"):
                f = formula(n, m, strategy, AUDIT_PERMILLE / 1000)
                caught = f"{p.fakes_caught / p.fakes_audited:.2f} ({p.fakes_audited})" if p.fakes_audited else "—"
                versus.append(f"| {n} | {m} | {p.share:.2f} | {strategy} | {f['pair']:.3f} | "
                              f"{p.pair_early / min(EARLY, args.jobs):.3f} | {f['caught']:.2f} | {caught} | "
                              f"{f['gain']:+.1f} | {(p.owner_profit - baseline.owner_profit) / p.jobs:+.1f} |")
            print(f"N={n} m={m} {strategy}: profit {p.owner_profit:,}, false accepted {p.false_accepted}, "
                  f"punished {p.false_punished} ({p.elapsed_s:.0f} s)", flush=True)
            rows.append(_row(p, baseline.owner_profit))
    state = make_state(workers={"w": {"stake": STAKE}, "v": {"stake": STAKE}}, params={"audit_permille": 100})
    from ledger.state import Job
    worker, verifier = list(state.workers)[:2]
    p_job = audit_permille_for(state, Job(worker=worker, verifier=verifier, price=PRICE, verification_fee=FEE))
    lines = [
        "# Collusion against the real ledger rules (issue 13)",
        "",
        f"Command: `.venv/bin/python -m bench.collusion --jobs {args.jobs} --points {args.points}`. "
        f"{machine_line()}.",
        "",
        f"Each job: reward {REWARD}, verification fee {FEE}, offers at {PRICE} (undercut: just below the band), a "
        f"run costs its runner {RUN_COST}; every key stakes {STAKE:,} (a wrong result is slashed 10%: "
        f"{STAKE // 10:,}). Audit chance per job {p_job / 10:.1f}% (`audit_permille_for`), appeal panel of 3. "
        "Honest keys slashed: slashes of keys that followed the protocol (a panel majority of the owner's keys "
        "outvoted them).",
        "",
        "| N honest | m owner keys | share s | strategy | jobs | false results accepted | of them punished | "
        "owner keys slashed | honest keys slashed | owner profit | honest profit (same N, m) | cheating pays? | "
        "audited / appeal panels | top verdicts |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        *rows,
        "",
        f"Cheating paid more than the same keys playing honestly at {worse} of {tried} points.",
        "",
        "## The formula beside the simulation (docs/VERIFICATION.md)",
        "",
        f"Both roles the owner's: the formula's chance, and the share measured over the first {EARLY:,} jobs "
        "(before caught keys lose stake, reputation and so roles). An audited fake caught: the formula's "
        "(1 − a)(1 − f), and caught / audited fakes measured. Gain per job from faking: the formula's "
        "q·(2c − p·(1 − a)(1 − f)·(2S + pay)) at the start, and (profit − honest profit) / jobs measured over "
        "the whole run (more negative: caught keys earn less for the rest of it).",
        "",
        "| N | m | s | strategy | both roles (formula) | both roles (measured) | audited fake caught (formula) | "
        "caught (measured, audited fakes) | gain per job (formula) | gain per job (measured) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        *versus,
    ]
    RESULTS.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
