"""The state tree: its root is the reference root of the live items whatever the batching and order, proofs verify
for present and absent keys and for nothing else, decoding is strict, and an update hashes only its paths."""

import hashlib
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger import smt
from ledger.encoding import pack
from ledger.errors import DecodeError
from ledger.smt import ZERO, Proof, StateTree, root_of, verify_proof


def _key(n: int) -> bytes:
    return n.to_bytes(32, "big")


def _h(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=32).digest()


# Keys that share long prefixes on purpose: random ones, ones that differ only in the last bits (paths 256 deep,
# long one-child chains), in the first bits, or in two places.
keys = st.one_of(
    st.binary(min_size=32, max_size=32),
    st.integers(0, 15).map(_key),
    st.integers(0, 15).map(lambda i: _key(i << 252)),
    st.tuples(st.integers(0, 7), st.integers(0, 7)).map(lambda t: _key(t[0] << 253 | t[1] << 100)),
)
hashes = st.binary(min_size=32, max_size=32)
bucket_sizes = st.sampled_from([8, 9, 16, smt.DEFAULT_BUCKET_MAX])


@st.composite
def histories(draw: st.DrawFn) -> tuple[list[bytes], list[dict[bytes, bytes | None]]]:
    """A pool of keys and batches of writes and deletes over it."""
    pool = draw(st.lists(keys, min_size=1, max_size=48, unique=True))
    batch = st.dictionaries(st.sampled_from(pool), st.none() | hashes, max_size=len(pool))
    return pool, draw(st.lists(batch, min_size=1, max_size=6))


def _replay(batches: list[dict[bytes, bytes | None]], bucket_max: int) -> tuple[StateTree, dict[bytes, bytes]]:
    tree, live = StateTree(bucket_max=bucket_max), {}
    for batch in batches:
        root = tree.update(batch)
        for k, v in batch.items():
            if v is None:
                live.pop(k, None)
            else:
                live[k] = v
        assert root == tree.root == root_of(live)
        assert len(tree) == len(live)
    assert dict(tree.items()) == live
    return tree, live


@given(histories(), bucket_sizes, bucket_sizes, st.randoms(use_true_random=False))
def test_root_is_the_reference_root_of_the_live_items_in_any_order(
    history: tuple[list[bytes], list[dict[bytes, bytes | None]]], bucket_max: int, other_max: int, rng: random.Random
) -> None:
    pool, batches = history
    tree, live = _replay(batches, bucket_max)
    for k in pool:
        assert tree.get(k) == live.get(k)
        assert (k in tree) == (k in live)
    # Another tree reaches the same items one random chunk at a time, in another order, with other bucket sizes.
    items = list(live.items())
    rng.shuffle(items)
    other = StateTree(bucket_max=other_max)
    while items:
        cut = rng.randrange(1, len(items) + 1)
        other.update(dict(items[:cut]))
        items = items[cut:]
    assert other.root == tree.root
    # Deleting everything gives the empty tree.
    assert tree.update(dict.fromkeys(pool)) == ZERO == root_of({})
    assert len(tree) == 0 and list(tree.items()) == []


def _nodes(tree: StateTree) -> list[tuple[object, ...]]:
    """The tree's storage, depth first: each branch's count and hash, each bucket's count, hash and records
    (without the first record's slot, which no hash reads: its binary node lies outside the bucket)."""
    out: list[tuple[object, ...]] = []
    stack = [tree._root]
    while stack:
        node = stack.pop()
        if isinstance(node, smt._Branch):
            out.append(("branch", node.count, node.hash))
            stack += [node.c1, node.c0]
        else:
            out.append(("bucket", node.count, node.hash, bytes(node.buf[:64] + node.buf[96:])))
    return out


@given(histories(), bucket_sizes, st.randoms(use_true_random=False))
def test_a_bulk_build_is_the_tree_that_updates_make(
    history: tuple[list[bytes], list[dict[bytes, bytes | None]]], bucket_max: int, rng: random.Random
) -> None:
    """``from_sorted`` (and ``update`` of an empty tree, which takes it) gives the reference root, the storage
    that the record-by-record path cuts from the same records, the same proofs as a tree grown one key at a time,
    and a tree that later updates keep right."""
    pool, batches = history
    live = {k: v for k, v in batches[0].items() if v is not None}
    bulk = StateTree.from_sorted(sorted(k + v for k, v in live.items()), bucket_max=bucket_max)
    assert bulk.root == root_of(live) and len(bulk) == len(live) and dict(bulk.items()) == live
    assert _nodes(StateTree(live, bucket_max=bucket_max)) == _nodes(bulk)
    if live:  # what the update path makes of the same records, all of them new
        old = StateTree(bucket_max=bucket_max)
        kints = sorted(int.from_bytes(k, "big") for k in live)
        old._root = old._bucket(bytearray(b"".join(k + v + ZERO for k, v in sorted(live.items()))), 0, kints, 0,
                                len(kints))
        assert _nodes(old) == _nodes(bulk)
    grown = StateTree(bucket_max=bucket_max)
    items = list(live.items())
    rng.shuffle(items)
    for k, v in items:
        grown.update({k: v})
    assert grown.root == bulk.root
    for k in pool:
        assert bulk.prove(k) == grown.prove(k)
    for batch in batches[1:]:
        bulk.update(batch)
        grown.update(batch)
        for k, v in batch.items():
            if v is None:
                live.pop(k, None)
            else:
                live[k] = v
        assert bulk.root == grown.root == root_of(live)


def test_a_bulk_build_takes_only_strictly_sorted_pairs() -> None:
    a, b = _key(1) + _h(b"a"), _key(2) + _h(b"b")
    assert StateTree.from_sorted([a, b]).root == root_of({_key(1): _h(b"a"), _key(2): _h(b"b")})
    assert StateTree.from_sorted([]).root == ZERO and StateTree.from_sorted([a]).root == _h(b"\x00" + a)
    for bad in ([b, a], [a, a], [a, b[:63]], [a, bytearray(b)], [a, b + b"x"]):
        with pytest.raises(ValueError):
            StateTree.from_sorted(bad)  # type: ignore[arg-type]


def _flips(data: bytes) -> list[bytes]:
    return [data[:i] + bytes([data[i] ^ (1 << (i % 8))]) + data[i + 1 :] for i in range(len(data))]


@settings(max_examples=40)
@given(histories(), bucket_sizes, st.lists(keys, max_size=4))
def test_proofs_verify_for_present_and_absent_keys_and_fail_for_any_altered_byte(
    history: tuple[list[bytes], list[dict[bytes, bytes | None]]], bucket_max: int, extra: list[bytes]
) -> None:
    pool, batches = history
    tree, live = _replay(batches, bucket_max)
    root = tree.root
    for k in dict.fromkeys(pool + extra):
        value = live.get(k)
        proof = tree.prove(k)
        data = proof.encode()
        assert Proof.decode(data) == proof
        assert verify_proof(root, k, value, proof) and verify_proof(root, k, value, data)
        # The wrong statement about the same key fails: absent for a present key, present for an absent one,
        # present with another value.
        assert not verify_proof(root, k, None if value else b"\x07" * 32, proof)
        for bad in _flips(data):
            assert not verify_proof(root, k, value, bad)
        for bad in _flips(root):
            assert not verify_proof(bad, k, value, proof)
        if value is not None:
            for bad in _flips(value):
                assert not verify_proof(root, k, bad, proof)
        depth = len(proof.siblings)
        for bad in _flips(k):
            # A changed key passes exactly when the statement is still true: a non-membership proof ends at an
            # empty subtree (or another key's leaf) that covers every key sharing its first len(siblings) bits.
            still_true = value is None and tree.get(bad) is None and _shared_bits(bad, k) >= depth
            assert verify_proof(root, bad, value, proof) == still_true


def _shared_bits(a: bytes, b: bytes) -> int:
    return 256 - (int.from_bytes(a, "big") ^ int.from_bytes(b, "big")).bit_length()


@pytest.mark.parametrize("bucket_max", [8, 16])
def test_buckets_split_and_merge_under_growth_and_shrinkage(bucket_max: int) -> None:
    """Single-key steps that grow to 300 keys, shrink to 4, grow and shrink again: every split and every
    (cascaded) merge keeps the root right, also when a merged bucket is later changed on one side only."""
    rng = random.Random(bucket_max)
    tree, live = StateTree(bucket_max=bucket_max), {}
    for target in (300, 4, 120, 8, 60, 0):
        while len(live) != target:
            if len(live) < target:
                key = rng.randbytes(32)
                live[key] = rng.randbytes(32)
                tree.update({key: live[key]})
            else:
                key = rng.choice(list(live))
                del live[key]
                tree.update({key: None})
            if len(live) % 3 == 0:
                assert tree.root == root_of(live)
            if len(live) <= 30 and live:
                probe = rng.choice(list(live))
                assert verify_proof(tree.root, probe, live[probe], tree.prove(probe))


def test_a_merged_bucket_keeps_its_junction_hash_for_a_later_merge() -> None:
    """A branch at prefix 1 merges (its halves 10 and 11 become one bucket), then the root merges over it, then a
    change under prefix 0 only reads the merged bucket's junction hash back, without recomputing it."""
    rng = random.Random(3)

    def under(prefix: int, bits: int) -> bytes:
        return _key(prefix << (256 - bits) | int.from_bytes(rng.randbytes(32), "big") >> bits)

    k10, k11, k0 = [under(2, 2) for _ in range(5)], [under(3, 2) for _ in range(4)], [under(0, 1) for _ in range(6)]
    tree, live = StateTree(bucket_max=8), {}
    for batch in ({k: _h(k) for k in k10 + k11 + k0}, dict.fromkeys(k10[:3] + k11[:2]), dict.fromkeys(k0),
                  {under(0, 1): _h(b"new")}):
        tree.update(batch)
        live.update({k: v for k, v in batch.items() if v is not None})
        for k in [k for k, v in batch.items() if v is None]:
            del live[k]
        assert tree.root == root_of(live)


def test_a_non_membership_proof_holds_only_for_keys_under_its_end() -> None:
    tree = StateTree()
    tree.update({_key(1): _h(b"a"), _key(2): _h(b"b"), _key(1 << 255): _h(b"c")})
    absent = _key(1 << 254)
    proof = tree.prove(absent)
    assert proof.leaf is None and len(proof.siblings) == 2  # the empty subtree at prefix 01
    assert verify_proof(tree.root, absent, None, proof)
    assert verify_proof(tree.root, _key(1 << 254 | 12345), None, proof)  # same prefix 01: also absent
    assert not verify_proof(tree.root, _key(1), None, proof)  # prefix 00 is not empty
    between = _key(3)  # shares 254 bits with key 2: ends at key 2's leaf
    proof = tree.prove(between)
    assert proof.leaf == (_key(2), _h(b"b")) and len(proof.siblings) == 255
    assert verify_proof(tree.root, between, None, proof)
    assert not verify_proof(tree.root, _key(2), None, proof)
    assert not verify_proof(tree.root, between, _h(b"b"), proof)


def test_known_roots_pin_the_encoding() -> None:
    a, b, va, vb = _key(0), _key(1 << 255), _h(b"a"), _h(b"b")
    leaf_a, leaf_b = _h(b"\x00" + a + va), _h(b"\x00" + b + vb)
    assert root_of({}) == StateTree().root == ZERO
    assert StateTree({a: va}).root == leaf_a  # one key: its leaf is the root, at depth 0
    assert StateTree({a: va, b: vb}).root == _h(b"\x01" + leaf_a + leaf_b)
    # Keys 0 and 1 differ only in the last bit: a binary node at depth 255 under 255 one-child nodes.
    c, vc = _key(1), _h(b"c")
    h = _h(b"\x01" + leaf_a + _h(b"\x00" + c + vc))
    for _ in range(255):
        h = _h(b"\x01" + h + ZERO)
    assert StateTree({a: va, c: vc}).root == h == root_of({a: va, c: vc})
    proof = StateTree({a: va, c: vc}).prove(c)
    assert proof.siblings == (ZERO,) * 255 + (leaf_a,)
    assert verify_proof(h, c, vc, proof)


def test_the_vectors_in_docs_state_tree_md() -> None:
    va, vb, vc = _h(b"a"), _h(b"b"), _h(b"c")
    tree = StateTree({_key(0): va, _key(1): vb, _key(1 << 255): vc})
    assert tree.root.hex() == "3213c4306342982e2cb2b54222cb25c1bf56dd18085c08ceef3da28e5c410d87"
    assert root_of({_key(0): va}).hex() == "2dcd76ecfc413e336c66e740d0298585ba048618080be6dbd37c4cfb452cfa5b"
    assert root_of({_key(0): va, _key(1 << 255): vb}).hex() == (
        "a1839dcd8d894def842896f8b7d4994be44d343f6f3e7f38f3a325f1b46d80b4")
    assert root_of({_key(0): va, _key(1): vb}).hex() == (
        "8da329f5f0ec19de5060303182fddc6218b22526ff8d3a54dd8526b15485db64")
    assert tree.prove(_key(1 << 254)).encode().hex() == (
        "930192c420d94a2ade4623112c0ebdbf0a595e0873ca1edf86bcc9d98ff2d2c1719ecb2bdfc420d1bef53d993817fb9cb11e6e4dcdca9"
        "45f886ec74d3ae6e3542a80efaca4097b90")
    assert tree.prove(_key(1 << 255)).encode().hex() == (
        "930191c420880a90f9602970318886f889e78edcda29c62a5b7f7a8183df0385e47bd35fe790")


def test_a_bad_batch_raises_and_changes_nothing() -> None:
    tree = StateTree({_key(1): _h(b"a")})
    root = tree.root
    for batch in ({_key(2): _h(b"b"), b"short": _h(b"c")}, {_key(2): b"x" * 31}, {_key(2): bytearray(32)}):
        with pytest.raises(ValueError):
            tree.update(batch)  # type: ignore[arg-type]
    assert tree.root == root and len(tree) == 1 and tree.get(_key(2)) is None
    with pytest.raises(ValueError):
        StateTree(bucket_max=2)
    assert tree.update({}) == root and tree.update({_key(9): None}) == root  # no-ops


def _counting(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls = [0]
    real = smt.blake2b256

    def counted(data: bytes) -> bytes:
        calls[0] += 1
        return real(data)

    monkeypatch.setattr(smt, "blake2b256", counted)
    return calls


def test_a_bulk_build_hashes_each_node_about_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """The definition hashes every node of the tree once; the bulk build does the same, plus one hash per branch
    over the buckets and a few one-child levels above each bucket's top node, read again for its hash."""
    rng = random.Random(5)
    items = {rng.randbytes(32): rng.randbytes(32) for _ in range(1 << 13)}
    calls = _counting(monkeypatch)
    root = root_of(items)
    nodes, calls[0] = calls[0], 0
    assert StateTree(items).root == root
    assert nodes <= calls[0] <= nodes * 1.1


def test_an_update_hashes_its_paths_only_and_shares_them(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(7)
    n = 1 << 14
    tree = StateTree({rng.randbytes(32): rng.randbytes(32) for _ in range(n)})
    present = [k for k, _ in tree.items()]
    calls = _counting(monkeypatch)
    counts = []
    for key in rng.sample(present, 50):  # one record: its path (~log2(n) + 1.3 nodes), its leaf, leaf siblings
        calls[0] = 0
        tree.update({key: rng.randbytes(32)})
        counts.append(calls[0])
    calls[0] = 0
    tree.update({rng.randbytes(32): rng.randbytes(32)})  # an insert
    counts.append(calls[0])
    assert sum(counts) / len(counts) <= 14 + 8 and max(counts) <= 2 * 14 + 8
    k = 1024  # a batch of k: the top log2(k) levels are shared, so about k * (log2(n / k) + 4.5)
    calls[0] = 0
    tree.update({key: rng.randbytes(32) for key in rng.sample(present, k)})
    assert calls[0] <= k * (14 - 10 + 6)
    calls[0] = 0
    tree.update(dict.fromkeys(rng.sample(present, k)))  # deletes
    assert calls[0] <= k * (14 - 10 + 6)
    assert len(tree) == n - k + 1


# ---- proof decoding ---------------------------------------------------------------------------------------------
@given(st.binary(max_size=200))
def test_decode_rejects_garbage_or_reads_back_exactly(data: bytes) -> None:
    try:
        proof = Proof.decode(data)
    except DecodeError:
        return
    assert proof.encode() == data


@given(st.lists(hashes.filter(lambda h: h != ZERO) | st.just(ZERO), max_size=40), st.none() | st.tuples(keys, hashes))
def test_decode_reads_back_what_encode_writes(siblings: list[bytes], leaf: tuple[bytes, bytes] | None) -> None:
    if siblings and siblings[-1] == ZERO:
        with pytest.raises(ValueError):
            Proof(tuple(siblings), leaf)
        return
    proof = Proof(tuple(siblings), leaf)
    assert Proof.decode(proof.encode()) == proof


H = b"\x11" * 32


@pytest.mark.parametrize("obj", [
    [2, [H], []],  # unknown version
    [1, [H]],  # a field missing
    [1, [H], [], 0],  # a field too many
    [1, [ZERO], []],  # an empty sibling spelled as 32 zero bytes
    [1, [H, b""], []],  # the last sibling empty
    [1, [H[:31]], []],  # a short hash
    [1, ["x" * 32], []],  # str, not bytes
    [1, [H] * 257, []],  # deeper than 256
    [1, [H], [H]],  # half a leaf
    [1, [H], [H, H[:31]]],
    [1, [H], [H, None]],
    [1, H, []],
    [1, [H], None],
    "proof",
])
def test_decode_rejects_malformed_proofs(obj: object) -> None:
    with pytest.raises(DecodeError):
        Proof.decode(pack(obj))


@pytest.mark.parametrize("data", [
    b"", b"\x93\x01\x90", pack([1, [H], []]) + b"\x00",  # truncated, trailing bytes
    b"\x93\xcc\x01\x90\x90",  # 1 as uint8: not canonical
    b"\x81\x01\x02", b"\x93\x01\x90\xc3", b"\x93\x01\x90\xcb" + b"\x00" * 8,  # a map, a bool, a float
    b"\xdd\xff\xff\xff\xff", b"\x00" * (smt.MAX_PROOF_BYTES + 1),
])
def test_decode_rejects_bad_bytes(data: bytes) -> None:
    with pytest.raises(DecodeError):
        Proof.decode(data)
    assert not verify_proof(ZERO, _key(0), None, data)


def test_verify_never_raises_on_bad_input() -> None:
    proof = StateTree().prove(_key(0))
    assert verify_proof(ZERO, _key(0), None, proof)
    for root, key, value, p in [(ZERO[:31], _key(0), None, proof), (ZERO, b"k", None, proof),
                                (ZERO, _key(0), b"v", proof), (ZERO, _key(0), None, "proof"),
                                (bytearray(32), _key(0), None, proof)]:
        assert not verify_proof(root, key, value, p)  # type: ignore[arg-type]
