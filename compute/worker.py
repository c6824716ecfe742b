"""A pool worker process: ``python -m compute.worker``; reads run frames on stdin, writes results on stdout.

It keeps datasets it was sent in a bounded cache (by digest), caps its address space per job with
``RLIMIT_AS`` (its idle footprint plus the job's ``memory_mb``), and turns every job-level error into a failure
reply; only a crash or the parent's kill ends it. When the parent goes away (stdin at EOF, a broken pipe on
stdout, or the terminal's Ctrl-C reaching the whole process group) it exits quietly with status 0.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import sys
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, BinaryIO

from compute.canonical import JobResult
from compute.dataset import Dataset, decode_dataset
from compute.errors import BackendUnavailable, DatasetError, ExecutionError, ResultError, SpecError, error_code
from compute.executor import default_backend, execute
from compute.pool import DATASET_MISSING, HEADER, encode_frame
from compute.spec import JobSpec

try:
    import resource
except ImportError:  # not on POSIX: no per-job memory cap
    resource = None  # type: ignore[assignment]

_MIB = 1 << 20


def _address_space_now() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")


@contextmanager
def memory_cap(memory_mb: int) -> Iterator[None]:
    """Lower the soft RLIMIT_AS to the current footprint plus ``memory_mb`` for the block, then restore it."""
    if resource is None or not os.path.exists("/proc/self/statm"):
        yield
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    cap = _address_space_now() + memory_mb * _MIB
    if hard != resource.RLIM_INFINITY:
        cap = min(cap, hard)
    resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


class DatasetCache:
    """Datasets by digest, least recently used evicted beyond ``max_bytes``."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict[bytes, Dataset] = OrderedDict()

    def get(self, digest: bytes) -> Dataset | None:
        ds = self._items.get(digest)
        if ds is not None:
            self._items.move_to_end(digest)
        return ds

    def put(self, ds: Dataset) -> None:
        self._items[ds.digest] = ds
        self._items.move_to_end(ds.digest)
        while len(self._items) > 1 and sum(d.nbytes for d in self._items.values()) > self.max_bytes:
            self._items.popitem(last=False)


def _failure(job_id: Any, kind: str, message: str, field: str | None = None,
             code: int = 0) -> dict[str, Any]:
    return {"op": "result", "id": job_id, "ok": False, "kind": kind, "message": message, "field": field,
            "code": code}


_LOADED: set[str] = set()


def load(library: str) -> None:
    """Import ``library`` (``sklearn`` or ``torch``) once per process, with what its first run would otherwise
    load inside the run's time limit: PyTorch's deterministic mode, whose first use imports torch's compiler stack
    (~2 s). Never raises: a run that cannot load its backend reports that itself."""
    if library in _LOADED:
        return
    _LOADED.add(library)
    with contextlib.suppress(Exception):
        if library == "torch":
            import torch

            torch.use_deterministic_algorithms(torch.are_deterministic_algorithms_enabled())
        elif library == "sklearn":
            import sklearn.cluster
            import sklearn.decomposition
            import sklearn.linear_model  # noqa: F401


def handle_run(message: dict[str, Any], cache: DatasetCache, begin: Callable[[], None] | None = None
               ) -> dict[str, Any]:
    """Run one job request and build the reply; never raises for job-level problems. Once the spec is read and
    its backend's libraries are loaded, ``begin`` says so (the run's time limit starts there)."""
    job_id = message.get("id")
    try:
        spec = JobSpec.decode(message["spec"])
        named = message.get("backend")
        backend = default_backend(spec) if named is None else named  # as ``execute`` resolves it
        if isinstance(backend, str):
            load("torch" if backend.startswith("torch") else backend)
        if begin is not None:
            begin()
        with memory_cap(int(message["memory_mb"])):
            ds = cache.get(message["digest"])
            if ds is None:
                if message.get("data") is None:
                    return _failure(job_id, DATASET_MISSING, "dataset not cached; resend with data")
                ds = decode_dataset(message["data"], expected_digest=message["digest"])
                cache.put(ds)
            result: JobResult = execute(spec, ds, named, int(message.get("threads", 1)))
            encoded = result.encode()
        return {"op": "result", "id": job_id, "ok": True, "result": encoded}
    except MemoryError as exc:
        return _failure(job_id, "memory", f"memory limit of {message.get('memory_mb')} MB exceeded: {exc!r}")
    except SpecError as exc:
        return _failure(job_id, "spec", exc.reason, exc.field, error_code(exc))
    except DatasetError as exc:
        return _failure(job_id, "dataset", exc.reason, code=error_code(exc))
    except ResultError as exc:  # a non-finite or overflowing summary: every run of this spec on this data
        return _failure(job_id, "result", str(exc), code=error_code(exc))
    except BackendUnavailable as exc:  # this machine's trouble, not the job's: no code, never claimed
        return _failure(job_id, "backend", str(exc))
    except ExecutionError as exc:
        # Only a failure the code table names (it happens on every honest run) carries a code to claim.
        code = error_code(exc)
        return _failure(job_id, "execution", str(exc), code=0 if code == 300 else code)
    except RuntimeError as exc:
        # PyTorch reports allocation failure as a RuntimeError.
        text = str(exc)
        kind = "memory" if "allocate" in text or "out of memory" in text else "execution"
        return _failure(job_id, kind, text)
    except Exception as exc:
        return _failure(job_id, "execution", f"{type(exc).__name__}: {exc}")


def _read_exact(stream: BinaryIO, n: int) -> bytes | None:
    chunks = []
    while n:
        chunk = stream.read(n)
        if not chunk:
            return None
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def _begin(out: BinaryIO, job_id: Any) -> None:
    """Tell the parent the run starts now: loading a library the first time is this process's cost, not the
    job's (the pool gives the warm-up its own allowance)."""
    out.write(encode_frame({"op": "begin", "id": job_id}))
    out.flush()


def serve(inp: BinaryIO, out: BinaryIO, cache: DatasetCache) -> None:
    """Answer frames until the parent closes our stdin; a write to a parent that is gone raises
    ``BrokenPipeError`` (``main`` turns it into a quiet exit)."""
    import msgpack

    out.write(encode_frame({"op": "ready", "pid": os.getpid()}))
    out.flush()
    while (header := _read_exact(inp, HEADER.size)) is not None:
        body = _read_exact(inp, HEADER.unpack(header)[0])
        if body is None:
            return
        message = msgpack.unpackb(body, raw=False)
        if message.get("op") == "run":
            reply = handle_run(message, cache, functools.partial(_begin, out, message.get("id")))
        else:
            reply = _failure(message.get("id"), "protocol", f"unknown op {message.get('op')!r}")
        out.write(encode_frame(reply))
        out.flush()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--preload", default="")
    parser.add_argument("--cache-mb", type=int, default=1024)
    args = parser.parse_args(argv)
    # The protocol owns fd 1; anything a library prints goes to stderr instead.
    protocol_out = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    try:
        for name in filter(None, args.preload.split(",")):
            load(name)
        serve(sys.stdin.buffer, protocol_out, DatasetCache(args.cache_mb * _MIB))
    except (BrokenPipeError, KeyboardInterrupt):
        pass  # the parent is gone (or shutting down with us): nobody to answer, nothing worth a traceback
    finally:
        # Closing flushes; a reply still buffered for a vanished parent must not fail again at exit.
        with contextlib.suppress(OSError):
            protocol_out.close()


if __name__ == "__main__":
    main()
