"""``python -m bootstrap.selfcheck``: every model on every backend here, compared with the ledger's rule.

Wires :func:`ledger.verdict.summaries_agree` into :func:`compute.selfcheck.run_selfcheck` (compute may not import
the ledger). Exits non-zero on any disagreement, failed certificate or error: the one command for a GPU check.
"""

from __future__ import annotations

import argparse
import sys
import time

from compute.selfcheck import run_selfcheck
from ledger.verdict import summaries_agree


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=4000, help="samples per synthetic dataset")
    parser.add_argument("--only", default="", help="run only jobs whose name starts with this")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    problems = run_selfcheck(summaries_agree, args.rows, only=args.only)
    print(f"\n{problems} problem(s) in {time.perf_counter() - start:.1f} s")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
