"""A pool worker process whose parent goes away exits at once, with status 0 and nothing on stderr."""

from __future__ import annotations

import signal
import subprocess

import pytest

from compute.dataset import synthetic
from compute.pool import HEADER, JobRequest, PoolConfig, encode_run, worker_command, worker_env
from compute.spec import make_spec

DATA = synthetic("blobs", 40, 2, seed=1, n_classes=2)
SPEC = make_spec("kmeans", {"k": 2, "seed": 1}, DATA.digest)


def started_worker() -> subprocess.Popen[bytes]:
    """A worker without preloads (fast to start), past its ready frame."""
    proc = subprocess.Popen(worker_command(PoolConfig(preload=())), stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=worker_env())
    assert proc.stdout is not None
    header = proc.stdout.read(HEADER.size)
    assert len(header) == HEADER.size, proc.stderr.read() if proc.stderr else b""
    assert b"ready" in proc.stdout.read(HEADER.unpack(header)[0])
    return proc


def finish(proc: subprocess.Popen[bytes]) -> tuple[int, str]:
    try:
        _, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise AssertionError("the worker did not exit after its parent went away") from None
    return proc.returncode, err.decode(errors="replace")


def test_a_reply_to_a_parent_that_stopped_reading_ends_the_worker_quietly() -> None:
    proc = started_worker()
    assert proc.stdout is not None and proc.stdin is not None
    proc.stdout.close()  # the parent is gone: nobody reads the worker's replies any more
    # No dataset bytes: the worker answers "dataset_missing" at once, and that write hits the broken pipe.
    proc.stdin.write(encode_run(1, JobRequest(SPEC, DATA), include_data=False))
    proc.stdin.flush()
    rc, err = finish(proc)
    assert (rc, err) == (0, "")


def test_stdin_at_eof_ends_the_worker_quietly() -> None:
    proc = started_worker()
    rc, err = finish(proc)  # communicate() closes stdin
    assert (rc, err) == (0, "")


@pytest.mark.skipif(not hasattr(signal, "SIGINT"), reason="needs POSIX signals")
def test_ctrl_c_reaching_the_worker_ends_it_quietly() -> None:
    proc = started_worker()
    proc.send_signal(signal.SIGINT)  # the terminal sends it to the node's whole process group
    rc, err = finish(proc)
    assert (rc, err) == (0, "")
