"""State sync: a stored state snapshot offered in chunks, and the checks a joining node makes before it trusts one.

A node that joins late does not need to replay every block since genesis. A peer offers its newest stored
snapshot as a :class:`SnapshotOffer`: the height ``h`` after which it was taken, its size, and the BLAKE2b-256 hash
of each chunk (``CHUNK_BYTES`` of the snapshot's encoding, the last one shorter). The joiner

1. fetches blocks ``h`` and ``h + 1`` with their commits and checks both commits against the genesis validators
   (:func:`verify_anchor`): block ``h + 1`` names block ``h`` as its parent and its header's ``state_root`` fixes
   the state after ``h``, as CometBFT's state sync checks an app hash against a light client's trusted header;
2. fetches the chunks, from any peer offering the same snapshot, checking each against the offer's hash
   (:func:`check_chunk`), so a peer sending a bad chunk is caught at that chunk;
3. decodes the whole and recomputes its root from scratch (:func:`restore`): only a state whose root equals the
   committed one is used, so an offer whose hash list itself lies is caught here, and the joiner tries another.

Nothing here trusts the peer: every value the joiner keeps is checked against signatures of more than 2/3 of the
validators. Pure, like the rest of the ledger; the network side is ``bootstrap.sync.snapshots``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ledger.block import Block, BlockHeader, Commit
from ledger.crypto import blake2b256
from ledger.encoding import pack, unpack
from ledger.errors import DecodeError
from ledger.lightclient import Rejected, header_problem
from ledger.state import MAX_STATE_BYTES, State, decode_state, state_root
from ledger.types import AccountId, Height

CHUNK_BYTES = 1 << 20
# No offer may claim more than a snapshot ``decode_state`` accepts: a liar's self-consistent chunks are caught only
# by the root, after all of them arrived, so this bounds what one can make a joiner download and hold.
MAX_CHUNKS = MAX_STATE_BYTES // CHUNK_BYTES
MAX_OFFER_BYTES = 64 + MAX_CHUNKS * 34


class SnapshotRejected(Rejected):
    """A snapshot, chunk or anchor that does not check out; ``check`` names the link (anchor, chunk, decode,
    height, state_root)."""

    what = "snapshot"


@dataclass(frozen=True)
class SnapshotOffer:
    """A stored snapshot a peer can serve: taken after block ``height``, ``size`` bytes, one hash per chunk."""

    height: Height
    size: int
    chunk_hashes: tuple[bytes, ...]

    def encode(self) -> bytes:
        return pack([1, self.height, self.size, list(self.chunk_hashes)])

    @property
    def digest(self) -> bytes:
        """What names this offer: peers offering the same snapshot give the same digest."""
        return blake2b256(self.encode())

    @classmethod
    def decode(cls, data: bytes) -> SnapshotOffer:
        """An untrusted offer; :class:`DecodeError` for anything malformed or out of bounds."""
        obj = unpack(data, max_size=MAX_OFFER_BYTES, field="snapshot_offer")
        if not (isinstance(obj, list) and len(obj) == 4 and obj[0] == 1):
            raise DecodeError("snapshot_offer", "expected [1, height, size, [chunk hashes]]")
        _, height, size, hashes = obj
        if type(height) is not int or height < 1 or type(size) is not int or not 0 < size <= MAX_STATE_BYTES:
            raise DecodeError("snapshot_offer", f"height and size must be positive integers, size at most "
                                                f"{MAX_STATE_BYTES}")
        if not isinstance(hashes, list) or not 0 < len(hashes) <= MAX_CHUNKS:
            raise DecodeError("snapshot_offer.chunk_hashes", f"expected 1..{MAX_CHUNKS} hashes")
        if len(hashes) != -(-size // CHUNK_BYTES):
            raise DecodeError("snapshot_offer.chunk_hashes", f"{len(hashes)} hashes for {size} bytes")
        if not all(type(h) is bytes and len(h) == 32 for h in hashes):
            raise DecodeError("snapshot_offer.chunk_hashes", "expected 32-byte hashes")
        return cls(height, size, tuple(hashes))


def offer_for(height: Height, data: bytes) -> tuple[SnapshotOffer, list[bytes]]:
    """The offer for snapshot bytes ``data`` taken after ``height``, and its chunks."""
    chunks = [data[i:i + CHUNK_BYTES] for i in range(0, len(data), CHUNK_BYTES)]
    return SnapshotOffer(height, len(data), tuple(blake2b256(c) for c in chunks)), chunks


def check_chunk(offer: SnapshotOffer, index: int, data: bytes) -> None:
    """Raise :class:`SnapshotRejected` unless ``data`` is chunk ``index`` of ``offer``."""
    if not 0 <= index < len(offer.chunk_hashes):
        raise SnapshotRejected("chunk", f"index {index} outside 0..{len(offer.chunk_hashes) - 1}")
    expected = min(CHUNK_BYTES, offer.size - index * CHUNK_BYTES)
    if len(data) != expected:
        raise SnapshotRejected("chunk", f"chunk {index} has {len(data)} bytes, expected {expected}")
    if blake2b256(data) != offer.chunk_hashes[index]:
        raise SnapshotRejected("chunk", f"chunk {index} does not match its hash")


def verify_anchor(offer: SnapshotOffer, block: Block, commit: Commit, next_header: BlockHeader, next_commit: Commit,
                  *, chain_id: str, validators: Sequence[AccountId]) -> bytes:
    """Check blocks ``h`` and ``h + 1`` (the latter by its header) with their commits against the trusted
    validators; returns the state root after ``h`` that a snapshot must reproduce."""
    h = offer.height
    if block.height != h or next_header.height != h + 1:
        raise SnapshotRejected("anchor", f"blocks {block.height} and {next_header.height}, expected {h} and {h + 1}")
    for header, signed in ((block.header, commit), (next_header, next_commit)):
        problem = header_problem(header, signed, chain_id=chain_id, validators=validators)
        if problem is not None:
            raise SnapshotRejected("anchor", f"block {header.height}: {problem[1]}")
    if next_header.prev_hash != block.hash():
        raise SnapshotRejected("anchor", f"block {h + 1} does not follow block {h}")
    return next_header.state_root


def restore(offer: SnapshotOffer, chunks: Sequence[bytes], root: bytes) -> State:
    """The state the checked ``chunks`` encode, if its root (recomputed from scratch) is ``root``."""
    if len(chunks) != len(offer.chunk_hashes):
        raise SnapshotRejected("chunk", f"{len(chunks)} chunks, the offer has {len(offer.chunk_hashes)}")
    for i, c in enumerate(chunks):
        check_chunk(offer, i, c)
    try:
        state = decode_state(b"".join(chunks))
    except DecodeError as exc:
        raise SnapshotRejected("decode", str(exc)) from None
    if state.height != offer.height:
        raise SnapshotRejected("height", f"the snapshot is of height {state.height}, offered as {offer.height}")
    if state_root(state) != root:  # the first root of a decoded state builds its tree from every record
        raise SnapshotRejected("state_root", "the snapshot's root differs from the one the commit fixes")
    return state
