"""Runnable benchmarks: ``.venv/bin/python -m bench.<name>``; each prints a markdown table of medians."""
