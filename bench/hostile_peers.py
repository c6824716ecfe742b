"""The hostile-peer suite as a longer run: the attacks of ``tests/e2e/test_hostile_peers.py`` (issue 17, cases 5–9)
against validator 0 of a real 4-validator devnet, the counted ones ``--scale`` times as many and the whole sequence
``--rounds`` times, with the chain's height, the validators' links to each other and the victim's memory, open
files and disk watched throughout (the test's own ``run_attacks``, so the run and the test cannot drift apart).

    .venv/bin/python -m bench.hostile_peers [--scale 4] [--rounds 3]

Per round: 120 strangers taking connection slots for 6 s (the victim allows 64 inbound), PRUNEs carrying
3·scale × 50 × 64 fake peer records, one tx message replayed 3,000·scale times, 5,000·scale validly signed
unfunded txs, and 2,000·scale whole-chain sync requests from one peer. Writes bench/results/hostile_peers.md.
Goals (the issue's): no node exits, no gap over 3 s between committed blocks, the validators stay linked, memory
and disk bounded, the misbehaving attackers disconnected.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

from bench.machine import machine_line
from tests.e2e.netkit import running_devnet
from tests.e2e.test_hostile_peers import MAX_GAP_S, STRANGERS, run_attacks

RESULTS = Path(__file__).resolve().parent / "results" / "hostile_peers.md"


def report(got: dict[str, Any], args: argparse.Namespace) -> str:
    s = args.scale
    lines = [
        "# hostile_peers: the hostile-peer suite against a 4-validator devnet, longer",
        "",
        f"Command: `.venv/bin/python -m bench.hostile_peers --scale {s} --rounds {args.rounds}`",
        "",
        machine_line() + "; the attackers run in the benchmark's process, on the same cores as the four nodes.",
        "",
        f"Each round against validator 0: {STRANGERS} strangers holding connection slots for 6 s; PRUNEs with "
        f"{3 * s} × 50 × 64 fake peer records; one tx message replayed {3000 * s:,} times; {5000 * s:,} validly "
        f"signed unfunded txs; {2000 * s:,} whole-chain sync requests from one peer. *Strangers connected* counts "
        "the dials that completed a handshake (the victim then prunes to its limits; a stranger it pruned is backed "
        "off on the next round).",
        "",
        "| round | strangers connected | duplicate sender cut off | sync requests served | refused | sync flooder "
        "cut off |",
        "| ---: | ---: | --- | ---: | ---: | --- |",
    ]
    for i, r in enumerate(got["rounds"], 1):
        served, refused, cut = r["sync"]
        lines.append(f"| {i} | {r['slots']} | {'yes' if r['duplicates'][1] else 'no'} | {served:,} | {refused:,} | "
                     f"{'yes' if cut else 'no'} |")
    gap, at = got["worst_gap"]
    unlinked = [u for u in got["unlinked"] if u]
    lines += [
        "",
        "| measure | goal | result |",
        "| --- | --- | --- |",
        f"| nodes that exited | none | {got['exited'] or 'none'} |",
        f"| largest gap between committed blocks while attacked | ≤ {MAX_GAP_S:g} s | {gap:.2f} s (before height "
        f"{at}); {got['blocks']} blocks in {got['seconds']:.0f} s |",
        f"| validator links missing, checked after each slot attack and each round | none | "
        f"{unlinked or 'none'} |",
        f"| victim's peak RSS | bounded (the test: < 1.5 GB) | {got['rss_kib'] / 1024:,.0f} MiB |",
        f"| victim's peak open files | bounded (the test: < 512) | {got['fds']} |",
        f"| victim's disk growth | bounded (the test: < 64 MiB) | {got['disk_growth'] / 2**20:.1f} MiB |",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", type=int, default=4, help="times the test's counts for each counted attack")
    ap.add_argument("--rounds", type=int, default=3, help="times the whole sequence runs")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-hostile-") as tmp:
        d = Path(tmp) / "devnet"
        with running_devnet(d, 4, validators=4) as nodes:
            got = run_attacks(d, nodes, scale=args.scale, rounds=args.rounds)
    text = report(got, args)
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
