"""Fuzzing kit shared by ``tests/*/test_fuzz_*.py`` and ``bench/fuzz_long.py``.

Inputs come from three sources: random bytes, byte-level mutations of a valid encoding (flip bits, truncate,
extend, insert, delete, splice a copy of a chunk), and structure-aware mutations (decode the valid MessagePack,
change one node of the tree -- swap its type, drop it, duplicate it, wrap it in a list, append a stray element --
and re-encode it, so the mutant gets past the MessagePack layer and reaches the typed checks behind it).

A :class:`Target` is one decoder with the only errors it may raise and a check of what it accepts. The property
every target must hold: for any bytes, the decoder either raises one of its typed errors or returns an object
that ``check`` accepts (usually: it re-encodes to exactly the input bytes, so no two encodings mean one thing).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

# Values swapped into a decoded structure: every MessagePack type, edge integers, and the sizes our formats use.
ODD_VALUES: list[Any] = [
    None,
    True,
    False,
    0,
    1,
    -1,
    255,
    2**31,
    2**63 - 1,
    2**64 - 1,
    -(2**63),
    0.5,
    float("inf"),
    "",
    "x",
    "é" * 3,
    b"",
    b"\x00",
    bytes(20),
    bytes(32),
    bytes(33),
    bytes(64),
    [],
    [0],
    [[]],
    {},
    {"k": 1},
    {b"k": b"v"},
    msgpack.ExtType(1, b"ext"),
]


def _paths(obj: Any, path: tuple[int, ...] = ()) -> list[tuple[int, ...]]:
    """Every node of a decoded structure (lists only; map values are treated as leaves)."""
    out = [path]
    stack = [(obj, path)]
    while stack:
        node, p = stack.pop()
        if isinstance(node, list):
            for i, item in enumerate(node):
                out.append((*p, i))
                stack.append((item, (*p, i)))
    return out


def _get(obj: Any, path: tuple[int, ...]) -> Any:
    for i in path:
        obj = obj[i]
    return obj


@st.composite
def byte_mutants(draw: st.DrawFn, valid: st.SearchStrategy[bytes], max_steps: int = 3) -> bytes:
    """A valid encoding with 1..max_steps byte-level edits."""
    data = bytearray(draw(valid))
    for _ in range(draw(st.integers(1, max_steps))):
        op = draw(st.sampled_from(["flip", "truncate", "extend", "insert", "delete", "splice", "set"]))
        n = len(data)
        if op == "flip" and n:
            i = draw(st.integers(0, n - 1))
            data[i] ^= 1 << draw(st.integers(0, 7))
        elif op == "set" and n:
            data[draw(st.integers(0, n - 1))] = draw(st.sampled_from([0x00, 0x7F, 0x80, 0xC0, 0xC1, 0xC2, 0xC3,
                                                                      0xCA, 0xCB, 0xD4, 0xDC, 0xDD, 0xDE, 0xFF]))
        elif op == "truncate" and n:
            del data[draw(st.integers(0, n - 1)) :]
        elif op == "extend":
            data += draw(st.binary(min_size=1, max_size=16))
        elif op == "insert":
            i = draw(st.integers(0, n))
            data[i:i] = draw(st.binary(min_size=1, max_size=8))
        elif op == "delete" and n:
            i = draw(st.integers(0, n - 1))
            del data[i : i + draw(st.integers(1, 8))]
        elif op == "splice" and n:
            i = draw(st.integers(0, n - 1))
            chunk = data[i : i + draw(st.integers(1, 32))]
            j = draw(st.integers(0, n))
            data[j:j] = chunk
    return bytes(data)


@st.composite
def structure_mutants(draw: st.DrawFn, valid: st.SearchStrategy[bytes], max_steps: int = 2) -> bytes:
    """A valid MessagePack encoding, decoded, with 1..max_steps edits to its tree, and encoded again."""
    obj = msgpack.unpackb(draw(valid), raw=False, strict_map_key=False)
    for _ in range(draw(st.integers(1, max_steps))):
        paths = _paths(obj)
        path = draw(st.sampled_from(paths))
        op = draw(st.sampled_from(["swap", "drop", "dup", "wrap", "append", "grow"]))
        # a copy: the mutants must never share (and so change) ODD_VALUES' lists and maps, or each other's nodes
        odd = copy.deepcopy(draw(st.sampled_from(ODD_VALUES)))
        if not path:  # the root itself
            obj = [obj] if op == "wrap" else odd if op == "swap" else obj
            continue
        parent, i = _get(obj, path[:-1]), path[-1]
        node = parent[i]
        if op == "swap":
            parent[i] = odd
        elif op == "drop":
            del parent[i]
        elif op == "dup":
            parent.insert(i, copy.deepcopy(node))
        elif op == "wrap":
            parent[i] = [node]
        elif op == "append":
            parent.append(odd)
        elif op == "grow":
            # A longer string, bytes or int of the same type: size limits and integer ranges.
            if isinstance(node, bytes):
                parent[i] = node + bytes(draw(st.integers(1, 64)))
            elif isinstance(node, str):
                parent[i] = node + "y" * draw(st.integers(1, 64))
            elif isinstance(node, int) and not isinstance(node, bool):
                grown = draw(st.sampled_from([node + 1, node - 1, -node - 1, 2**64 - 1, 2**63]))
                parent[i] = grown if -(2**63) <= grown < 2**64 else node  # MessagePack's own integer range
    return msgpack.packb(obj, use_bin_type=True)


def fuzz_bytes(
    valid: st.SearchStrategy[bytes], *, msgpack_format: bool = True, max_random: int = 512
) -> st.SearchStrategy[bytes]:
    """Random bytes, byte-level mutants and (for MessagePack formats) structure-aware mutants of ``valid``."""
    sources = [st.binary(max_size=max_random), byte_mutants(valid)]
    if msgpack_format:
        sources.append(structure_mutants(valid))
    return st.one_of(sources)


@dataclass(frozen=True)
class Target:
    """One decoder under fuzz: ``decode(bytes)`` raises only ``errors``; what it returns passes ``check``."""

    name: str
    decode: Callable[[bytes], Any]
    errors: tuple[type[BaseException], ...]
    valid: st.SearchStrategy[bytes]
    check: Callable[[Any, bytes], None]
    msgpack_format: bool = True  # False for text and protobuf formats: no structure-aware mutants

    def inputs(self) -> st.SearchStrategy[bytes]:
        """What to fuzz this target with."""
        return fuzz_bytes(self.valid, msgpack_format=self.msgpack_format)

    def run_one(self, data: bytes) -> bool:
        """Decode ``data``: False for a typed refusal, True for a result that passed ``check``; any other
        exception (or a failed check) propagates."""
        try:
            result = self.decode(data)
        except self.errors:
            return False
        self.check(result, data)
        return True


# Bounded by the active Hypothesis profile; mutated inputs are often large or slow to generate by design.
FUZZ = settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def target_tests(targets: list[Target]) -> tuple[Callable[[Target], None], Callable[[Target], None]]:
    """The two tests every decoder gets, parametrised over ``targets``: fuzzed input raises only the typed
    error, and valid input decodes (and passes the target's check). Bind both to ``test_*`` names in a module."""

    @pytest.mark.parametrize("target", targets, ids=lambda t: t.name)
    def test_fuzzed_input_raises_only_the_typed_error(target: Target) -> None:
        @FUZZ
        @given(target.inputs())
        def run(data: bytes) -> None:
            target.run_one(data)

        run()

    @pytest.mark.parametrize("target", targets, ids=lambda t: t.name)
    def test_valid_input_decodes_and_round_trips(target: Target) -> None:
        @FUZZ
        @given(target.valid)
        def run(data: bytes) -> None:
            assert target.run_one(data)

        run()

    return test_fuzzed_input_raises_only_the_typed_error, test_valid_input_decodes_and_round_trips

