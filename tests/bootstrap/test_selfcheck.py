"""The self-check command wires the ledger's agreement rule into compute's cross-backend run."""

from bootstrap.selfcheck import main


def test_selfcheck_command_passes_here(capsys):
    assert main(["--rows", "300", "--only", "pca"]) == 0
    out = capsys.readouterr().out
    assert "| pca |" in out and "0 problem(s)" in out
