"""Canonical MessagePack: the only byte format the ledger signs, hashes or stores.

Allowed values: ``int`` (-2**63 .. 2**64-1), ``bytes`` (packed as bin), ``str`` (packed as str), ``list`` and
``tuple`` (packed as arrays) and ``None``. Forbidden: floats (no floats in the ledger), ``bool`` (so that 1 and
True never get confused), and dicts (maps): every ledger structure is a list with a fixed field order, so there is
no key order to agree on. msgpack always picks the shortest encoding of a value, so the bytes of a value are unique;
``unpack`` checks that by re-packing, which rejects any other spelling of the same value (a malleability guard: the
same transaction cannot have two ids).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgpack

from ledger.errors import DecodeError, EncodeError

INT_MIN = -(2**63)
INT_MAX = 2**64 - 1


def _check(obj: object) -> None:
    """Raise ``EncodeError`` at the first disallowed value in ``obj``. Valid values (nearly all, and a block is
    thousands of items) take a walk that builds no paths; only a failure walks again to name where."""
    if not _allowed(obj):
        _check_with_paths(obj)


def _allowed(obj: object) -> bool:
    """Whether every value in ``obj`` is allowed; without recursion, like :func:`_check_with_paths`."""
    stack: list[object] = [obj]
    pop, extend = stack.pop, stack.extend
    while stack:
        value = pop()
        t = type(value)
        if t is bytes or t is str or value is None:
            continue
        if t is int:
            if not INT_MIN <= value <= INT_MAX:  # type: ignore[operator]
                return False
        elif t is list or t is tuple:
            extend(value)  # type: ignore[arg-type]
        else:
            return False
    return True


def _check_with_paths(obj: object) -> None:
    """Walk ``obj`` without recursion (a hostile nesting depth must not hit Python's recursion limit)."""
    stack: list[tuple[object, str]] = [(obj, "$")]
    while stack:
        value, path = stack.pop()
        t = type(value)
        if t is int:
            if not INT_MIN <= value <= INT_MAX:  # type: ignore[operator]
                raise EncodeError(path, "integer out of the 64-bit range")
        elif t is bytes or t is str or value is None:
            continue
        elif t is list or t is tuple:
            for i, item in enumerate(value):  # type: ignore[arg-type]
                stack.append((item, f"{path}[{i}]"))
        else:
            raise EncodeError(path, f"type {t.__name__} is not allowed")


def pack(obj: Any) -> bytes:
    """Encode ``obj`` canonically; raises ``EncodeError`` on a float, bool, dict or other disallowed value."""
    _check(obj)
    return msgpack.packb(obj, use_bin_type=True)


def unchecked_packer() -> Callable[[Any], bytes]:
    """``pack`` without its check, for one loop over many values whose every field the caller has type-checked
    itself (the state's bulk encoder checks an account's key and two ints; that and one packer reused, where
    ``msgpack.packb`` builds one per call, make a record ~6x cheaper than ``pack``). The same bytes as ``pack``.
    Make one per loop and keep it local: it holds a buffer, so it is never shared between threads."""
    return msgpack.Packer(use_bin_type=True).pack


def _no_ext(code: int, data: bytes) -> object:
    raise DecodeError("message", f"extension type {code} is not allowed")


def unpack(
    data: bytes,
    *,
    max_size: int,
    max_container_len: int | None = None,
    field: str = "message",
    canonical: bool = True,
) -> Any:
    """Decode untrusted bytes with strict limits; raises ``DecodeError(field, reason)``.

    ``max_size`` bounds the input; ``max_container_len`` (default: ``max_size``) bounds every array, str and bin.
    Maps, ext types, floats and bools are rejected; with ``canonical`` the bytes must be exactly what ``pack``
    would produce for the decoded value.
    """
    obj = unpack_unchecked(data, max_size=max_size, max_container_len=max_container_len, field=field)
    try:
        canonical_bytes = pack(obj)
    except EncodeError as exc:
        raise DecodeError(f"{field}{exc.path[1:]}", exc.reason) from None
    if canonical and canonical_bytes != bytes(data):
        raise DecodeError(field, "not in canonical encoding")
    return obj


def unpack_unchecked(data: bytes, *, max_size: int, max_container_len: int | None = None,
                     field: str = "message") -> Any:
    """:func:`unpack` without its last step: the value as MessagePack decodes it, with the same limits (no maps, no
    ext types), but floats and bools not yet refused and the encoding not yet compared. For a caller that checks
    every part itself and compares its own re-encoding with ``data`` (``ledger.state.decode_state``, record by
    record, which is what makes a snapshot of a million accounts decode in seconds); anyone else uses ``unpack``.
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise DecodeError(field, f"expected bytes, got {type(data).__name__}")
    if len(data) > max_size:
        raise DecodeError(field, f"{len(data)} bytes exceeds the limit of {max_size}")
    limit = max_size if max_container_len is None else max_container_len
    try:
        obj = msgpack.unpackb(
            data,
            raw=False,
            use_list=True,
            strict_map_key=True,
            max_str_len=limit,
            max_bin_len=limit,
            max_array_len=limit,
            max_map_len=0,
            max_ext_len=0,
            ext_hook=_no_ext,
        )
    except DecodeError:
        raise
    except msgpack.ExtraData:
        raise DecodeError(field, "trailing bytes after the value") from None
    except UnicodeDecodeError:
        raise DecodeError(field, "str is not valid UTF-8") from None
    except (ValueError, TypeError, msgpack.UnpackException, RecursionError, OverflowError) as exc:
        raise DecodeError(field, f"malformed MessagePack ({type(exc).__name__}: {exc})") from None
    return obj
