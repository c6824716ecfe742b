"""A content-addressed blob store on disk: job specs, datasets and result artifacts named by BLAKE2b-256.

Files live at ``<root>/<hex[:2]>/<hex>`` and are written atomically (temp file, fsync, rename), so a crash never
leaves a half blob under a valid name. ``get`` re-checks nothing on the hot path (the name was the digest when
it was written); ``verify`` rechecks a blob when asked. The node serves this store to peers chunk by chunk through
``Host.set_blob_reader(store.read_chunk)``: one chunk request reads one chunk from disk, off the event loop.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from bootstrap.errors import BlobTooLarge, NodeError
from p2pnet import blob_digest

DIGEST_LEN = 32


TMP_GRACE_S = 3600.0  # a temp file this old is what a crash mid-write left behind


@dataclass
class SweepReport:
    """What one :meth:`BlobStore.sweep` did."""

    kept: int = 0
    kept_bytes: int = 0
    removed: int = 0
    removed_bytes: int = 0
    over_quota_removed: int = 0
    temp_removed: int = 0


class BlobStore:
    """Blobs by digest under ``root``; ``max_bytes`` bounds any single blob."""

    def __init__(self, root: Path, *, max_bytes: int = 256 * 1024 * 1024) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max_bytes

    def _path(self, digest: bytes) -> Path:
        if not isinstance(digest, bytes) or len(digest) != DIGEST_LEN:
            raise NodeError(f"a blob digest is {DIGEST_LEN} bytes, got {digest!r:.40}")
        h = digest.hex()
        return self.root / h[:2] / h

    def put(self, data: bytes, digest: bytes | None = None) -> bytes:
        """Store ``data`` (idempotent) and return its digest. ``digest``: this node's own hash of these very
        bytes, computed already (a dataset's digest is the hash of its encoding; a fetched blob was checked), so
        a blob of hundreds of megabytes is not hashed a second time."""
        if len(data) > self.max_bytes:
            raise BlobTooLarge(len(data), self.max_bytes)
        if digest is None:
            digest = blob_digest(data)
        path = self._path(digest)
        if path.exists():
            return digest
        path.parent.mkdir(parents=True, exist_ok=True)
        # per thread too: two uploads of one blob on worker threads must not write into one temp file
        tmp = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        return digest

    def put_expected(self, data: bytes, digest: bytes) -> None:
        """Store bytes fetched from a peer under the digest they were asked by; a mismatch is refused."""
        actual = blob_digest(data)
        if actual != digest:
            raise NodeError(f"blob digest mismatch: asked {digest.hex()[:16]}, got {actual.hex()[:16]}")
        self.put(data, actual)

    def get(self, digest: bytes) -> bytes | None:
        """The blob, or None if this store does not have it (also None for a malformed digest: peers ask this)."""
        try:
            return self._path(digest).read_bytes()
        except (FileNotFoundError, NodeError):
            return None

    def read_chunk(self, digest: bytes, offset: int, length: int) -> tuple[int, bytes] | None:
        """``(size, up to length bytes at offset)`` of a stored blob, reading only that range; None if this store
        does not have it (or the digest is malformed). Blocking: the host calls it on a worker thread."""
        try:
            path = self._path(digest)
            with open(path, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                if not 0 <= offset <= size:
                    return size, b""
                return size, os.pread(f.fileno(), max(0, length), offset)
        except (FileNotFoundError, NodeError):
            return None

    def has(self, digest: bytes) -> bool:
        try:
            return self._path(digest).exists()
        except NodeError:
            return False

    def size(self, digest: bytes) -> int | None:
        try:
            return self._path(digest).stat().st_size
        except (FileNotFoundError, NodeError):
            return None

    def verify(self, digest: bytes) -> bool:
        """Whether the stored bytes still hash to their name (False if missing)."""
        data = self.get(digest)
        return data is not None and blob_digest(data) == digest

    def digests(self) -> list[bytes]:
        """Every stored digest (sorted); for tests and diagnostics."""
        out = []
        for sub in self.root.iterdir():
            if sub.is_dir():
                out += [bytes.fromhex(p.name) for p in sub.iterdir() if len(p.name) == 2 * DIGEST_LEN]
        return sorted(out)

    def sweep(self, live: set[bytes], *, older_than_s: float, max_total_bytes: int = 0,
              now: float | None = None) -> SweepReport:
        """Collect what no live job needs: every blob not in ``live`` unused for ``older_than_s`` seconds (its
        mtime: when it was written, or last marked live), then, if the store still holds more than
        ``max_total_bytes`` (0: no quota), the least recently used blobs not in ``live`` until it fits; and temp
        files a crash left. ``live`` blobs are marked used now. Blocking (a directory walk): run it on a thread.
        ``older_than_s <= 0`` keeps every blob (an archive node), the quota aside."""
        now = time.time() if now is None else now
        report = SweepReport()
        idle: list[tuple[float, int, Path]] = []
        for sub in self.root.iterdir():
            if not sub.is_dir():
                continue
            for path in sub.iterdir():
                try:
                    st = path.stat()
                except FileNotFoundError:
                    continue
                if len(path.name) != 2 * DIGEST_LEN:
                    if path.name.endswith(".tmp") and now - st.st_mtime > TMP_GRACE_S:
                        path.unlink(missing_ok=True)
                        report.temp_removed += 1
                    continue
                try:
                    digest = bytes.fromhex(path.name)
                except ValueError:
                    continue
                if digest in live:
                    os.utime(path, (now, now))
                elif older_than_s > 0 and now - st.st_mtime > older_than_s:
                    path.unlink(missing_ok=True)
                    report.removed += 1
                    report.removed_bytes += st.st_size
                    continue
                else:
                    idle.append((st.st_mtime, st.st_size, path))
                report.kept += 1
                report.kept_bytes += st.st_size
        if max_total_bytes > 0 and report.kept_bytes > max_total_bytes:
            for _mtime, size, path in sorted(idle, key=lambda t: t[0]):
                if report.kept_bytes <= max_total_bytes:
                    break
                path.unlink(missing_ok=True)
                report.kept -= 1
                report.kept_bytes -= size
                report.removed += 1
                report.removed_bytes += size
                report.over_quota_removed += 1
        return report
