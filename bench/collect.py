"""Write BENCHMARKS.md: the goals table (kept here) followed by every result file under bench/results/.

Each result file is written by its own benchmark and starts with the command that produced it and the machine.
Run ``.venv/bin/python -m bench.collect`` after re-running a benchmark.
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
SUMMARY = ROOT / "bench" / "summary.md"


def collect() -> str:
    """BENCHMARKS.md's text: the summary, then each result file demoted one heading level."""
    parts = [SUMMARY.read_text().rstrip() + "\n"]
    for path in sorted(RESULTS.glob("*.md")):
        body = path.read_text().rstrip()
        lines = ["#" + line if line.startswith("#") else line for line in body.splitlines()]
        parts.append(f"\n<!-- from bench/results/{path.name} -->\n" + "\n".join(lines) + "\n")
    return "".join(parts)


def main() -> None:
    (ROOT / "BENCHMARKS.md").write_text(collect())
    print(f"wrote {ROOT / 'BENCHMARKS.md'}")


if __name__ == "__main__":
    main()
