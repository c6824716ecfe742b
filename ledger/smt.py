"""An authenticated key-value commitment for the ledger state: a compact binary sparse Merkle tree.

Why this file is long: the bucket layout (records, slots, where a bucket splits) is read by ``prove`` and written by
two builders, the update path and the bulk build, which must leave byte-identical storage (the tests compare them);
apart, one of them could drift from the others.

Keys are 32 bytes and place a leaf by their bits, most significant bit of byte 0 first; values are 32-byte value
hashes. A subtree holding no key hashes to 32 zero bytes, a subtree holding exactly one key is that key's leaf
``H(0x00 || key || value_hash)`` (sitting as shallow as it can), and any other subtree is
``H(0x01 || left || right)``, with ``H`` = BLAKE2b-256. The root is a function of the key set only. The byte-level
rules, the proof format and a verification algorithm are in docs/STATE_TREE.md; :func:`root_of` is the
definition written as code.

Representation (why it is small): nodes are not Python objects. Records live in *buckets*, sorted bytearrays of
fixed 96-byte records ``key | value_hash | slot``; a bucket holds every key under one prefix (at most
``bucket_max`` of them). Sorted keys give the tree's shape for free: each binary node (two non-empty children) is
the lowest common ancestor of two neighbouring keys, so the ``slot`` of record ``i`` holds the hash of the binary
node between records ``i - 1`` and ``i``. One-child nodes are never stored; they are re-hashed on the way up. Above
the buckets a small binary trie of ``_Branch`` objects (about one per 18 records) holds each prefix's hash, so a
bucket that no change touches is never read.

A tree built from nothing (``StateTree(items)``, :meth:`StateTree.from_sorted`, an ``update`` of the empty tree:
a restored snapshot, a genesis state) takes a bulk path: one pass over the sorted records hashes every node once,
straight into the slots, and the buckets are then cut from the records. Same storage and root as the update
path, in about half its time: 9.1 s against 16.7 s CPU for 1M random records on the shared 2-core machine, most of
it the ~2.5 hashes per record that any build needs (no per-record dirty bookkeeping, no node hashed twice).

Costs (bench/results/state_tree.md: Python 3.11, random keys, CPU time on a shared 2-core machine):
  * memory: 118 bytes per record at 1M records (the 96-byte record, bytearray slack, one bucket and one
    branch per ~18 records), by a walk of the objects; so about 1.2 GB at 10M (104 with ``bucket_max`` 64).
    An update holds its sorted batch (~270 bytes per record of it) until it returns;
  * hashes: an update of k keys hashes only the nodes on the k paths, each shared node once per batch, and never
    an untouched subtree: 1.1-1.4 x log2 n for one key (24 at 1M), about ``log2(n / k) + 3.5`` per key for a
    batch of k (12 per key for 5,000 at 1M);
  * time: 0.05-0.13 ms for a batch of one record from 1k to 1M records; 46-88 µs per record (runs differ on the
    shared machine) for a batch of 5,000 at 1M, where re-hashing today's sorted section costs ~4 s;
  * a proof is about ``log2 n`` siblings, 34 bytes each on the wire (2 for an empty one): ~690 bytes at 1M.

Pure: no I/O, no floats. Keys should be uniformly spread (hash them first): the depth, hence the cost, of a key is
the length of its longest prefix shared with another key, at most 256.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ledger.crypto import blake2b256
from ledger.encoding import pack, unpack
from ledger.errors import DecodeError

KEY_LEN = 32
HASH_LEN = 32
KEY_BITS = 256
ZERO = bytes(HASH_LEN)  # the hash of an empty subtree
LEAF = b"\x00"
NODE = b"\x01"

PROOF_VERSION = 1
# [1, [256 siblings of 34 bytes], [key, value]] packs to 8,778 bytes; nothing longer can be a proof.
MAX_PROOF_BYTES = 8_778

_REC = 96  # one record: key (0..32) | value_hash (32..64) | slot (64..96)
_SLOT = 64
# 24, not 64: a batch of 5,000 at 1M records rehashes in ~0.8 of the time (fewer levels walked inside each bucket,
# where a level costs a bisection, more levels of branches, where it costs one hash) for ~14 more bytes per record.
DEFAULT_BUCKET_MAX = 24
_MIN_BUCKET_MAX = 8


def _leaf_hash(key: bytes, value_hash: bytes) -> bytes:
    return blake2b256(LEAF + key + value_hash)


def _check_key(key: object) -> bytes:
    if type(key) is not bytes or len(key) != KEY_LEN:
        raise ValueError(f"a state tree key is {KEY_LEN} bytes, got {key!r:.80}")
    return key


def _check_value(value: object) -> bytes:
    if type(value) is not bytes or len(value) != HASH_LEN:
        raise ValueError(f"a state tree value hash is {HASH_LEN} bytes, got {value!r:.80}")
    return value


# ---- the definition -------------------------------------------------------------------------------------------
def root_of(items: Mapping[bytes, bytes] | Iterable[tuple[bytes, bytes]]) -> bytes:
    """The root of the tree holding ``items`` (key -> value_hash), computed from scratch by the definition.

    Slow (every level of every path, one-child nodes included) and independent of :class:`StateTree`'s storage:
    the reference the tree is tested against.
    """
    pairs = sorted(items.items() if isinstance(items, Mapping) else items)
    for i, (key, value) in enumerate(pairs):
        _check_key(key)
        _check_value(value)
        if i and pairs[i - 1][0] == key:
            raise ValueError(f"key {key.hex()} appears twice")
    return _subtree_root(pairs, 0, len(pairs), 0)


def _subtree_root(pairs: list[tuple[bytes, bytes]], lo: int, hi: int, depth: int) -> bytes:
    if hi == lo:
        return ZERO
    if hi - lo == 1:
        return _leaf_hash(*pairs[lo])
    byte, mask = depth >> 3, 0x80 >> (depth & 7)
    mid = lo
    while mid < hi and not pairs[mid][0][byte] & mask:
        mid += 1
    return blake2b256(NODE + _subtree_root(pairs, lo, mid, depth + 1) + _subtree_root(pairs, mid, hi, depth + 1))


# ---- storage --------------------------------------------------------------------------------------------------
class _Bucket:
    """Every key under one prefix, as sorted 96-byte records; ``hash`` is the prefix's subtree hash."""

    __slots__ = ("buf", "count", "hash")

    def __init__(self, buf: bytearray, count: int, hash_: bytes) -> None:
        self.buf = buf
        self.count = count
        self.hash = hash_


class _Branch:
    """A prefix split in two by its next bit; always holds more keys than a bucket is merged at (so >= 3)."""

    __slots__ = ("c0", "c1", "count", "hash")

    def __init__(self, c0: _Node, c1: _Node, count: int, hash_: bytes) -> None:
        self.c0 = c0
        self.c1 = c1
        self.count = count
        self.hash = hash_


_Node = _Bucket | _Branch


def _find(buf: bytearray, key: bytes, lo: int, hi: int) -> int:
    """The first record index in ``[lo, hi)`` whose key is >= ``key``."""
    while lo < hi:
        mid = (lo + hi) >> 1
        o = mid * _REC
        if buf[o : o + KEY_LEN] < key:
            lo = mid + 1
        else:
            hi = mid
    return lo


def _range_hash(buf: bytearray, lo: int, hi: int, depth: int, dirty: list[int], dlo: int, dhi: int) -> bytes:
    """The hash at ``depth`` of records ``[lo, hi)``, which share their first ``depth`` bits.

    ``dirty[dlo:dhi]`` (sorted ints) are the keys changed under this prefix since the slots were last written: a
    binary node whose prefix holds none of them has a valid slot and is read, not recomputed; the others are
    recomputed and their slots rewritten. One-child nodes are hashed on the way up (they have no slot).
    """
    if hi - lo <= 1:
        if hi == lo:
            return ZERO
        o = lo * _REC
        return blake2b256(LEAF + buf[o : o + _SLOT])
    if dlo == dhi:
        return _clean_hash(buf, lo, hi, depth)
    first, split_depth = _split(buf, lo, hi)
    # the first record has the bit clear and the last has it set: the right half starts in [lo + 1, hi - 1]
    a = _first_with_bit(buf, lo + 1, hi - 1, split_depth)
    slot = a * _REC + _SLOT
    shift = KEY_BITS - split_depth
    base = (first >> shift) << shift
    dlo = bisect_left(dirty, base, dlo, dhi)
    dhi = bisect_left(dirty, base + (1 << shift), dlo, dhi)
    if dlo < dhi:
        dmid = bisect_left(dirty, base + (1 << (shift - 1)), dlo, dhi)
        below = split_depth + 1
        h = blake2b256(NODE + _range_hash(buf, lo, a, below, dirty, dlo, dmid)
                       + _range_hash(buf, a, hi, below, dirty, dmid, dhi))
        buf[slot : slot + HASH_LEN] = h
    else:
        h = bytes(buf[slot : slot + HASH_LEN])
    return _lift(h, first, split_depth, depth)


def _clean_hash(buf: bytearray, lo: int, hi: int, depth: int) -> bytes:
    """:func:`_range_hash` for records no change touched: the binary node's slot and the one-child levels above."""
    if hi - lo == 1:
        o = lo * _REC
        return blake2b256(LEAF + buf[o : o + _SLOT])
    first, split_depth = _split(buf, lo, hi)
    slot = _first_with_bit(buf, lo + 1, hi - 1, split_depth) * _REC + _SLOT  # the right half (see _range_hash)
    return _lift(bytes(buf[slot : slot + HASH_LEN]), first, split_depth, depth)


def _split(buf: bytearray, lo: int, hi: int) -> tuple[int, int]:
    """For records ``[lo, hi)`` (two or more): the first key as an int and the depth of their binary node (where
    the first and last keys part)."""
    o = lo * _REC
    first = int.from_bytes(buf[o : o + KEY_LEN], "big")
    o = (hi - 1) * _REC
    return first, KEY_BITS - (first ^ int.from_bytes(buf[o : o + KEY_LEN], "big")).bit_length()


def _first_with_bit(buf: bytearray, a: int, b: int, bit: int) -> int:
    """The first record in ``[a, b)`` whose key has ``bit`` set (``b`` if none), for records sorted by key that
    share every bit above it."""
    byte, mask = bit >> 3, 0x80 >> (bit & 7)
    while a < b:
        mid = (a + b) >> 1
        if buf[mid * _REC + byte] & mask:
            b = mid
        else:
            a = mid + 1
    return a


def _lift(h: bytes, key: int, from_depth: int, to_depth: int) -> bytes:
    """``h``, the hash of a node at ``from_depth`` on ``key``'s path, hashed up through the one-child levels to
    ``to_depth`` (the other child of each is empty)."""
    for d in range(from_depth - 1, to_depth - 1, -1):
        h = blake2b256(NODE + ZERO + h) if (key >> (255 - d)) & 1 else blake2b256(NODE + h + ZERO)
    return h


def _fill_slots(pairs: Sequence[bytes], buf: bytearray) -> None:
    """Write the hash of every binary node of the tree over ``pairs`` (sorted ``key || value_hash``, at least one)
    into its slot in ``buf`` (their records), hashing each node of the tree once; ``ValueError`` unless the keys
    strictly increase.

    The keys go by in order; the binary node between neighbours ``i - 1`` and ``i`` sits at the depth where they
    part, and the nodes form a Cartesian tree on those depths. A stack holds the nodes still waiting for their
    right child (their depths increase up the stack): a new boundary shallower than the top closes the top, whose
    right child is the subtree just finished. Each closed node lifts both children through the one-child levels
    between them and itself (a leaf is never lifted: it sits as shallow as it can).
    """
    h_ = blake2b256
    leaf_tag, node_tag = LEAF, NODE
    n = len(pairs)
    # pending: (node depth, left child's top depth, its hash, one of its keys as an int, the node's slot offset);
    # a child's top is its binary node's depth, KEY_BITS for a leaf (never lifted)
    stack: list[tuple[int, int, bytes, int, int]] = []
    pair = pairs[0]
    prev = int.from_bytes(pair[:KEY_LEN], "big")
    cur_d, cur_h, cur_k = KEY_BITS, h_(leaf_tag + pair), prev
    for i in range(1, n + 1):
        if i < n:
            pair = pairs[i]
            k = int.from_bytes(pair[:KEY_LEN], "big")
            if k <= prev:
                raise ValueError(f"sorted pairs: key {pair[:KEY_LEN].hex()} does not follow {prev:064x}")
            d = KEY_BITS - (prev ^ k).bit_length()
        else:
            d = -1  # past the last key: close every pending node
        while stack and stack[-1][0] > d:
            b, ld, lh, lk, slot = stack.pop()
            if b + 1 < ld < KEY_BITS:
                lh = _lift(lh, lk, ld, b + 1)
            if b + 1 < cur_d < KEY_BITS:
                cur_h = _lift(cur_h, cur_k, cur_d, b + 1)
            cur_h = h_(node_tag + lh + cur_h)
            buf[slot : slot + HASH_LEN] = cur_h
            cur_d, cur_k = b, lk
        if i == n:
            return
        stack.append((d, cur_d, cur_h, cur_k, i * _REC + _SLOT))
        cur_d, cur_h, cur_k = KEY_BITS, h_(leaf_tag + pair), k
        prev = k


class StateTree:
    """key (32 bytes) -> value_hash (32 bytes), with a root that commits to all of it and proofs for any key.

    ``update`` applies a batch of writes and deletes and returns the new root; ``prove`` gives a membership or
    non-membership :class:`Proof` that :func:`verify_proof` checks against a root alone.
    ``bucket_max`` trades memory for speed (records per bucket before it splits); the root does not depend on it.
    """

    __slots__ = ("_merge_at", "_root", "_split_above")

    def __init__(self, items: Mapping[bytes, bytes] | None = None, *, bucket_max: int = DEFAULT_BUCKET_MAX) -> None:
        if type(bucket_max) is not int or bucket_max < _MIN_BUCKET_MAX:
            raise ValueError(f"bucket_max must be an int >= {_MIN_BUCKET_MAX}, got {bucket_max!r}")
        self._split_above = bucket_max
        self._merge_at = bucket_max // 2  # >= 4, so a branch holds >= 5 keys and is never a compressed leaf
        self._root: _Node = _Bucket(bytearray(), 0, ZERO)
        if items:
            self.update(items)

    @classmethod
    def from_sorted(cls, pairs: Sequence[bytes], *, bucket_max: int = DEFAULT_BUCKET_MAX) -> StateTree:
        """The tree holding ``pairs``, each the 64 bytes ``key || value_hash``, given in strictly increasing key
        order (``ValueError`` otherwise): the bulk build that :meth:`update` of an empty tree also takes.

        One pass over the sorted keys hashes each node once (every binary node's hash goes straight into its slot);
        the buckets and branches are then cut from the sorted records as :meth:`update` would cut them.
        """
        tree = cls(bucket_max=bucket_max)
        for pair in pairs:
            if type(pair) is not bytes or len(pair) != KEY_LEN + HASH_LEN:
                raise ValueError(f"a sorted pair is {KEY_LEN + HASH_LEN} bytes (key, value hash), got {pair!r:.80}")
        if pairs:
            tree._root = tree._build(pairs)
        return tree

    @property
    def root(self) -> bytes:
        """The 32-byte root; 32 zero bytes for the empty tree."""
        return self._root.hash

    def __len__(self) -> int:
        return self._root.count

    def get(self, key: bytes) -> bytes | None:
        """The value hash stored under ``key``, or None."""
        _check_key(key)
        bucket = self._bucket_of(key)
        i = _find(bucket.buf, key, 0, bucket.count)
        o = i * _REC
        if i < bucket.count and bucket.buf[o : o + KEY_LEN] == key:
            return bytes(bucket.buf[o + KEY_LEN : o + _SLOT])
        return None

    def __contains__(self, key: object) -> bool:
        return type(key) is bytes and len(key) == KEY_LEN and self.get(key) is not None

    def items(self) -> Iterator[tuple[bytes, bytes]]:
        """Every (key, value_hash), in key order."""
        stack: list[_Node] = [self._root]
        while stack:
            node = stack.pop()
            if type(node) is _Branch:
                stack.append(node.c1)
                stack.append(node.c0)
                continue
            buf = node.buf  # type: ignore[union-attr]
            for o in range(0, len(buf), _REC):
                yield bytes(buf[o : o + KEY_LEN]), bytes(buf[o + KEY_LEN : o + _SLOT])

    def _bucket_of(self, key: bytes) -> _Bucket:
        node = self._root
        kint = int.from_bytes(key, "big")
        depth = 0
        while type(node) is _Branch:
            node = node.c1 if (kint >> (255 - depth)) & 1 else node.c0
            depth += 1
        return node  # type: ignore[return-value]

    # ---- update -----------------------------------------------------------------------------------------------
    def update(self, batch: Mapping[bytes, bytes | None]) -> bytes:
        """Write (a value hash) or delete (None) every key of ``batch`` at once; returns the new root.

        Every key and value is checked before anything changes, so a bad batch raises ``ValueError`` and leaves
        the tree as it was. Deleting an absent key is a no-op.
        """
        if self._root.count == 0:
            return self._fill(batch)
        changes: list[tuple[int, bytes, bytes | None]] = []
        for key, value in batch.items():
            _check_key(key)
            if value is not None:
                _check_value(value)
            changes.append((int.from_bytes(key, "big"), key, value))
        if changes:
            changes.sort(key=lambda c: c[0])
            kints = [c[0] for c in changes]
            self._root = self._apply(self._root, 0, changes, kints, 0, len(changes))
        return self._root.hash

    def _fill(self, batch: Mapping[bytes, bytes | None]) -> bytes:
        """:meth:`update` of the empty tree: the writes of ``batch`` built in bulk (its deletes are no-ops)."""
        pairs = []
        for key, value in batch.items():
            _check_key(key)
            if value is not None:
                pairs.append(key + _check_value(value))
        if pairs:
            pairs.sort()  # the keys are distinct, so pairs sort by key
            self._root = self._build(pairs)
        return self._root.hash

    def _build(self, pairs: Sequence[bytes]) -> _Node:
        """The nodes for sorted ``key || value_hash`` pairs (at least one): the records with every slot filled,
        cut into buckets and branches as :meth:`_bucket` cuts them."""
        buf = bytearray(ZERO.join(pairs))  # 96-byte records, every slot zero (the last one's appended)
        buf += ZERO
        _fill_slots(pairs, buf)
        return self._cut(buf, 0, len(pairs), 0)

    def _cut(self, buf: bytearray, lo: int, hi: int, depth: int) -> _Node:
        """Records ``[lo, hi)`` of ``buf`` (slots filled, sharing their first ``depth`` bits) as one node."""
        count = hi - lo
        if count <= self._split_above:
            part = buf[lo * _REC : hi * _REC]
            return _Bucket(part, count, _clean_hash(part, 0, count, depth) if count else ZERO)
        a = _first_with_bit(buf, lo, hi, depth)
        c0 = self._cut(buf, lo, a, depth + 1)
        c1 = self._cut(buf, a, hi, depth + 1)
        return _Branch(c0, c1, count, blake2b256(NODE + c0.hash + c1.hash))

    def _apply(self, node: _Node, depth: int, changes: list[tuple[int, bytes, bytes | None]], kints: list[int],
               lo: int, hi: int) -> _Node:
        """Apply ``changes[lo:hi]`` (all under ``node``'s prefix) and rehash the paths they touch."""
        if type(node) is _Branch:
            shift = 255 - depth
            mid = bisect_left(kints, ((kints[lo] >> shift) | 1) << shift, lo, hi)
            c0, c1 = node.c0, node.c1
            h0, h1 = c0.hash, c1.hash  # a child may be updated in place
            if lo < mid:
                c0 = self._apply(c0, depth + 1, changes, kints, lo, mid)
            if mid < hi:
                c1 = self._apply(c1, depth + 1, changes, kints, mid, hi)
            count = c0.count + c1.count
            if count <= self._merge_at:
                return _merge(c0, c1)  # type: ignore[arg-type]  # both are buckets: a branch holds more
            if c0.hash != h0 or c1.hash != h1:
                node.hash = blake2b256(NODE + c0.hash + c1.hash)
            node.c0, node.c1, node.count = c0, c1, count
            return node
        bucket: _Bucket = node  # type: ignore[assignment]
        old = bucket.buf
        n = bucket.count
        out = bytearray()
        dirty: list[int] = []
        prev = 0  # the next old record not yet copied
        for i in range(lo, hi):
            kint, key, value = changes[i]
            pos = _find(old, key, prev, n)
            o = pos * _REC
            present = pos < n and old[o : o + KEY_LEN] == key
            if present and value is not None and old[o + KEY_LEN : o + _SLOT] == value:
                continue  # same value: nothing changes
            if not present and value is None:
                continue  # deleting an absent key
            out += old[prev * _REC : o]
            prev = pos + 1 if present else pos
            if value is not None:
                out += key + value + ZERO
            dirty.append(kint)
        if not dirty:
            return bucket
        out += old[prev * _REC :]
        return self._bucket(out, depth, dirty, 0, len(dirty), bucket)

    def _bucket(self, buf: bytearray, depth: int, dirty: list[int], dlo: int, dhi: int,
                reuse: _Bucket | None = None) -> _Node:
        """A node for ``buf`` at ``depth``: one bucket, or branches over buckets when it holds too many keys."""
        count = len(buf) // _REC
        if count <= self._split_above:
            h = _range_hash(buf, 0, count, depth, dirty, dlo, dhi)
            if reuse is None:
                return _Bucket(buf, count, h)
            reuse.buf, reuse.count, reuse.hash = buf, count, h
            return reuse
        a = _first_with_bit(buf, 0, count, depth)
        shift = 255 - depth
        dmid = bisect_left(dirty, ((int.from_bytes(buf[:KEY_LEN], "big") >> shift) | 1) << shift, dlo, dhi)
        c0 = self._bucket(buf[: a * _REC], depth + 1, dirty, dlo, dmid)
        c1 = self._bucket(buf[a * _REC :], depth + 1, dirty, dmid, dhi)
        return _Branch(c0, c1, count, blake2b256(NODE + c0.hash + c1.hash))

    # ---- proofs -----------------------------------------------------------------------------------------------
    def prove(self, key: bytes) -> Proof:
        """A proof that ``key`` holds its value (if present) or is absent, against the current root."""
        _check_key(key)
        kint = int.from_bytes(key, "big")
        siblings: list[bytes] = []
        node = self._root
        depth = 0
        while type(node) is _Branch:
            if (kint >> (255 - depth)) & 1:
                siblings.append(node.c0.hash)
                node = node.c1
            else:
                siblings.append(node.c1.hash)
                node = node.c0
            depth += 1
        buf = node.buf  # type: ignore[union-attr]
        lo, hi = 0, node.count
        while hi - lo > 1:
            first, split_depth = _split(buf, lo, hi)
            leaves_at = KEY_BITS - (first ^ kint).bit_length()  # where the key leaves the records' shared prefix
            if leaves_at < split_depth:
                siblings.extend([ZERO] * (leaves_at - depth))
                siblings.append(_clean_hash(buf, lo, hi, leaves_at + 1))
                return Proof(tuple(siblings))
            siblings.extend([ZERO] * (split_depth - depth))
            a = _first_with_bit(buf, lo + 1, hi - 1, split_depth)
            depth = split_depth + 1
            if (kint >> (255 - split_depth)) & 1:
                siblings.append(_clean_hash(buf, lo, a, depth))
                lo = a
            else:
                siblings.append(_clean_hash(buf, a, hi, depth))
                hi = a
        if hi == lo:
            return Proof(tuple(siblings))
        o = lo * _REC
        other = bytes(buf[o : o + KEY_LEN])
        if other == key:
            return Proof(tuple(siblings))
        return Proof(tuple(siblings), (other, bytes(buf[o + KEY_LEN : o + _SLOT])))


def _merge(c0: _Bucket, c1: _Bucket) -> _Bucket:
    """The two halves of a prefix as one bucket: no hashing, the halves' hashes give the junction's slot."""
    buf = c0.buf + c1.buf
    count = c0.count + c1.count
    if count == 0:
        return _Bucket(buf, 0, ZERO)
    if count == 1:
        return _Bucket(buf, 1, blake2b256(LEAF + buf[:_SLOT]))
    h = blake2b256(NODE + c0.hash + c1.hash)
    if c0.count and c1.count:  # the junction is a binary node whose right half starts at record c0.count
        slot = c0.count * _REC + _SLOT
        buf[slot : slot + HASH_LEN] = h
    return _Bucket(buf, count, h)


# ---- proofs ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Proof:
    """The path from the root to where a key's search ends, as the siblings met on the way down.

    ``siblings[i]`` is the hash of the other child of the path's node at depth ``i`` (32 zero bytes for an empty
    one). The path ends at depth ``len(siblings)`` in one of three ways: the key's own leaf (membership: ``leaf``
    is None and the verifier supplies the value), an empty subtree (``leaf`` is None, no value), or the leaf of
    another key with the same first ``len(siblings)`` bits (``leaf`` = that key and its value hash).
    """

    siblings: tuple[bytes, ...]
    leaf: tuple[bytes, bytes] | None = None

    def __post_init__(self) -> None:
        reason = _proof_problem(self.siblings, self.leaf)
        if reason is not None:
            raise ValueError(f"not a proof: {reason}")

    def encode(self) -> bytes:
        """Canonical MessagePack: ``[1, [sibling, ...], leaf]``, an empty sibling as empty bytes, ``leaf`` as
        ``[]`` or ``[key, value_hash]``."""
        siblings = [b"" if s == ZERO else s for s in self.siblings]
        return pack([PROOF_VERSION, siblings, [] if self.leaf is None else list(self.leaf)])

    @classmethod
    def decode(cls, data: bytes) -> Proof:
        """The proof in ``data``; raises ``DecodeError`` unless ``data`` is exactly what ``encode`` makes."""
        obj = unpack(data, max_size=MAX_PROOF_BYTES, max_container_len=KEY_BITS, field="proof")
        if type(obj) is not list or len(obj) != 3:
            raise DecodeError("proof", "expected [version, siblings, leaf]")
        version, raw_siblings, raw_leaf = obj
        if version != PROOF_VERSION:
            raise DecodeError("proof.version", f"expected {PROOF_VERSION}, got {version!r:.40}")
        if type(raw_siblings) is not list:
            raise DecodeError("proof.siblings", "expected a list")
        siblings = []
        for i, s in enumerate(raw_siblings):
            if type(s) is not bytes or len(s) not in (0, HASH_LEN) or s == ZERO:
                raise DecodeError(f"proof.siblings[{i}]", "expected empty bytes or a non-zero 32-byte hash")
            siblings.append(s or ZERO)
        if type(raw_leaf) is not list or len(raw_leaf) not in (0, 2):
            raise DecodeError("proof.leaf", "expected [] or [key, value_hash]")
        leaf = None
        if raw_leaf:
            if any(type(x) is not bytes or len(x) != KEY_LEN for x in raw_leaf):
                raise DecodeError("proof.leaf", "key and value hash are 32 bytes each")
            leaf = (raw_leaf[0], raw_leaf[1])
        reason = _proof_problem(tuple(siblings), leaf)
        if reason is not None:
            raise DecodeError("proof", reason)
        return cls(tuple(siblings), leaf)


def _proof_problem(siblings: Any, leaf: Any) -> str | None:
    """Why (siblings, leaf) cannot be a proof from a canonical tree, or None."""
    if type(siblings) is not tuple or len(siblings) > KEY_BITS:
        return f"siblings must be a tuple of at most {KEY_BITS} hashes"
    if any(type(s) is not bytes or len(s) != HASH_LEN for s in siblings):
        return "every sibling is a 32-byte hash"
    if siblings and siblings[-1] == ZERO:
        # The path's last node would have one empty child and either nothing or one leaf under the other: such a
        # node is itself empty or a compressed leaf, so the path ends one level higher.
        return "the last sibling cannot be empty"
    if leaf is not None and (type(leaf) is not tuple or len(leaf) != 2
                             or any(type(x) is not bytes or len(x) != KEY_LEN for x in leaf)):
        return "leaf is None or a (key, value_hash) pair of 32-byte strings"
    return None


def verify_proof(root: bytes, key: bytes, value_hash: bytes | None, proof: Proof | bytes) -> bool:
    """Whether ``proof`` shows that, under ``root``, ``key`` holds ``value_hash`` (or is absent, for None).

    Needs nothing but the bytes; never raises on bad input (a proof given as bytes that does not decode is False).
    """
    if type(root) is not bytes or len(root) != HASH_LEN or type(key) is not bytes or len(key) != KEY_LEN:
        return False
    if value_hash is not None and (type(value_hash) is not bytes or len(value_hash) != HASH_LEN):
        return False
    if isinstance(proof, bytes | bytearray | memoryview):
        try:
            proof = Proof.decode(bytes(proof))
        except DecodeError:
            return False
    elif not isinstance(proof, Proof):
        return False
    siblings = proof.siblings
    depth = len(siblings)
    kint = int.from_bytes(key, "big")
    if proof.leaf is None:
        h = ZERO if value_hash is None else _leaf_hash(key, value_hash)
    else:
        other, other_value = proof.leaf
        if value_hash is not None or other == key:
            return False  # another key's leaf proves only absence
        if (int.from_bytes(other, "big") ^ kint) >> (KEY_BITS - depth):
            return False  # that leaf is not on this key's path
        h = _leaf_hash(other, other_value)
    for d in range(depth - 1, -1, -1):
        s = siblings[d]
        h = blake2b256(NODE + s + h) if (kint >> (255 - d)) & 1 else blake2b256(NODE + h + s)
    return h == root
