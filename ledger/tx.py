"""Transactions: one payload class per kind, the canonical signed body, and strict decoding of untrusted bytes.

Wire format (all canonical MessagePack, see ``ledger.encoding``)::

    body   = [TX_VERSION, kind_code, sender(bin 32), nonce, fee, [payload fields in declared order]]
    signed = [body (bin), signature (bin 64)]

The signature covers ``SIGN_DOMAIN + pack(chain_id) + body``, so a tx signed for one chain (or for another
purpose) is useless elsewhere. The tx id is BLAKE2b-256 of ``signed``; a job's id is the id of its submit tx.
``decode_signed_tx`` checks structure, types and sizes only; signatures are ``verify_tx_signature``'s job and
stateful rules are ``ledger.rules``'.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from nacl.signing import SigningKey

from ledger.crypto import SIGNATURE_LEN, account_of, blake2b256, sign, verify
from ledger.encoding import pack, unpack
from ledger.errors import BadSignature, DecodeError, EncodeError
from ledger.types import AccountId, JobId, Tokens

TX_VERSION = 1
MAX_TX_BYTES = 8192
SIGN_DOMAIN = b"dacn/tx/v1\x00"
COMMITMENT_TAG = "dacn/commitment/v1"
FINGERPRINT_TAG = "dacn/fingerprint/v1"
MAX_SUMMARY_LEN = 512
"""Hard cap on the length of a revealed result summary (the chain's ``max_summary_len`` may be lower)."""
MAX_SALT_LEN = 64
U64_MAX = 2**64 - 1
I64_MIN, I64_MAX = -(2**63), 2**63 - 1


# Field specs: (name, checker). A checker takes the decoded value and the field path, and returns it or raises.
def _u64(v: Any, path: str) -> int:
    if type(v) is not int or not 0 <= v <= U64_MAX:
        raise DecodeError(path, "expected an unsigned 64-bit integer")
    return v


def _bytes_exact(n: int) -> Callable[[Any, str], bytes]:
    def check(v: Any, path: str) -> bytes:
        if type(v) is not bytes or len(v) != n:
            raise DecodeError(path, f"expected {n} raw bytes")
        return v

    return check


def _bytes_max(n: int, min_len: int = 0) -> Callable[[Any, str], bytes]:
    def check(v: Any, path: str) -> bytes:
        if type(v) is not bytes or not min_len <= len(v) <= n:
            raise DecodeError(path, f"expected {min_len}..{n} raw bytes")
        return v

    return check


def _str_max(n: int) -> Callable[[Any, str], str]:
    def check(v: Any, path: str) -> str:
        if type(v) is not str or len(v.encode()) > n:
            raise DecodeError(path, f"expected a str of at most {n} UTF-8 bytes")
        return v

    return check


def _int_list(v: Any, path: str) -> list[int]:
    if type(v) is not list or len(v) > MAX_SUMMARY_LEN:
        raise DecodeError(path, f"expected a list of at most {MAX_SUMMARY_LEN} integers")
    for i, x in enumerate(v):
        if type(x) is not int or not I64_MIN <= x <= I64_MAX:
            raise DecodeError(f"{path}[{i}]", "expected a signed 64-bit integer")
    return v


_ACCOUNT = _bytes_exact(32)
_DIGEST = _bytes_exact(32)


class Payload:
    """Base of the per-kind payloads; subclasses declare ``KIND``, ``CODE`` and ``FIELDS`` (order is the wire)."""

    KIND: ClassVar[str]
    CODE: ClassVar[int]
    FIELDS: ClassVar[tuple[tuple[str, Callable[[Any, str], Any]], ...]]
    SPENDS: ClassVar[tuple[str, ...]] = ()
    """Fields that the sender pays out of its balance (``check_tx`` adds them to the fee)."""

    def to_list(self) -> list[Any]:
        return [getattr(self, name) for name, _ in self.FIELDS]

    def spend(self) -> Tokens:
        """Tokens this payload takes from the sender's balance on top of the fee."""
        spends = self.SPENDS
        # Every tx is checked and applied through here several times per node; most kinds spend one field or
        # none, and a generator per call cost more than the sum.
        if len(spends) == 1:
            return getattr(self, spends[0])  # type: ignore[no-any-return]
        if not spends:
            return 0
        return sum(getattr(self, name) for name in spends)


@dataclass(frozen=True, slots=True)
class Transfer(Payload):
    """Move ``amount`` from the sender to ``to``."""

    KIND = "transfer"
    CODE = 1
    FIELDS = (("to", _ACCOUNT), ("amount", _u64))
    SPENDS = ("amount",)
    to: AccountId
    amount: Tokens


@dataclass(frozen=True, slots=True)
class Approve(Payload):
    """Let ``spender`` move up to ``amount`` of the sender's tokens (replaces any previous allowance)."""

    KIND = "approve"
    CODE = 2
    FIELDS = (("spender", _ACCOUNT), ("amount", _u64))
    spender: AccountId
    amount: Tokens


@dataclass(frozen=True, slots=True)
class TransferFrom(Payload):
    """Move ``amount`` from ``owner`` to ``to`` within the allowance ``owner`` gave the sender."""

    KIND = "transfer_from"
    CODE = 3
    FIELDS = (("owner", _ACCOUNT), ("to", _ACCOUNT), ("amount", _u64))
    owner: AccountId
    to: AccountId
    amount: Tokens


@dataclass(frozen=True, slots=True)
class RegisterWorker(Payload):
    """Become a worker: bond ``stake`` and declare the device (``cpu``/``gpu``), its memory and measured capacity,
    and the ``operator``: the account of the node that runs this key (empty: the key runs itself). Keys of one
    operator never hold two roles of one job (``ledger.jobs``), so a node holding several keys cannot run a job
    once and commit it twice; an owner who hides its keys behind different operators is what the audits are for."""

    KIND = "register_worker"
    CODE = 4
    FIELDS = (
        ("stake", _u64),
        ("device_kind", _str_max(16)),
        ("device_name", _str_max(128)),
        ("memory_mb", _u64),
        ("capacity", _u64),
        ("operator", _bytes_max(32)),
    )
    SPENDS = ("stake",)
    stake: Tokens
    device_kind: str
    device_name: str
    memory_mb: int
    capacity: int
    operator: bytes = b""


@dataclass(frozen=True, slots=True)
class AddStake(Payload):
    """Bond ``amount`` more tokens to the sender's worker stake."""

    KIND = "add_stake"
    CODE = 5
    FIELDS = (("amount", _u64),)
    SPENDS = ("amount",)
    amount: Tokens


@dataclass(frozen=True, slots=True)
class Unbond(Payload):
    """Start releasing ``amount`` of stake; it returns to the balance after the unbonding period."""

    KIND = "unbond"
    CODE = 6
    FIELDS = (("amount", _u64),)
    amount: Tokens


@dataclass(frozen=True, slots=True)
class SubmitJob(Payload):
    """Post a job and escrow ``reward + verification_fee``; windows are in blocks (0 = the chain's default).

    ``assign`` picks how the worker is found: ``"bids"`` (or empty) opens a bid window; ``"offers"`` assigns at
    once from workers' standing offers, falling back to the bid window when no offer fits. ``time_limit_ms`` is the
    wall time one run may take (0 = the chain's ``default_job_time_ms``); the spec must carry the same limit, and
    the commit window must leave room for it (``ledger.jobs.commit_blocks_needed``)."""

    KIND = "submit_job"
    CODE = 7
    FIELDS = (
        ("model", _str_max(128)),
        ("params_digest", _DIGEST),
        ("dataset_digest", _DIGEST),
        ("reward", _u64),
        ("verification_fee", _u64),
        ("tolerance_abs", _u64),
        ("tolerance_ppm", _u64),
        ("device", _str_max(16)),
        ("min_memory_mb", _u64),
        ("bid_window", _u64),
        ("commit_window", _u64),
        ("reveal_window", _u64),
        ("assign", _str_max(16)),
        ("time_limit_ms", _u64),
    )
    SPENDS = ("reward", "verification_fee")
    model: str
    params_digest: bytes
    dataset_digest: bytes
    reward: Tokens
    verification_fee: Tokens
    tolerance_abs: int
    tolerance_ppm: int
    device: str = "any"
    min_memory_mb: int = 0
    bid_window: int = 0
    commit_window: int = 0
    reveal_window: int = 0
    assign: str = ""
    time_limit_ms: int = 0


@dataclass(frozen=True, slots=True)
class Bid(Payload):
    """Offer to run an open job for ``price`` (at most its reward)."""

    KIND = "bid"
    CODE = 8
    FIELDS = (("job_id", _DIGEST), ("price", _u64))
    job_id: JobId
    price: Tokens


@dataclass(frozen=True, slots=True)
class CommitResult(Payload):
    """Commit to a result: ``commitment = compute_commitment(job_id, sender, summary, artifact_digest, salt)`` and
    ``fingerprint = compute_fingerprint(job_id, summary, outcome)``: the first hides the claim and binds it to the
    sender; the second lets the ledger see, before anything is revealed, whether two claims are the same, so a
    disagreement is settled by checkers who commit blind (``ledger.jobs``)."""

    KIND = "commit_result"
    CODE = 9
    FIELDS = (("job_id", _DIGEST), ("commitment", _DIGEST), ("fingerprint", _DIGEST))
    job_id: JobId
    commitment: bytes
    fingerprint: bytes


@dataclass(frozen=True, slots=True)
class RevealResult(Payload):
    """Open a commitment: the integer result summary, the digest of the full artifact, the salt, and the kind of
    outcome (``ledger.verdict``: 0 a result; 1 the spec or dataset could not be obtained; 2 the spec fails
    deterministically, ``summary`` holding the error code; 3 the spec's own limits stop the run)."""

    KIND = "reveal_result"
    CODE = 10
    FIELDS = (
        ("job_id", _DIGEST),
        ("summary", _int_list),
        ("artifact_digest", _DIGEST),
        ("salt", _bytes_max(MAX_SALT_LEN, 16)),
        ("outcome", _u64),
    )
    job_id: JobId
    summary: list[int]
    artifact_digest: bytes
    salt: bytes
    outcome: int = 0

    def __hash__(self) -> int:  # summary is a list; hash by the canonical bytes instead
        return hash(pack(self.to_list()))


@dataclass(frozen=True, slots=True)
class CancelJob(Payload):
    """The client withdraws a job that is still open (bidding); the escrow is refunded."""

    KIND = "cancel_job"
    CODE = 11
    FIELDS = (("job_id", _DIGEST),)
    job_id: JobId


@dataclass(frozen=True, slots=True)
class Offer(Payload):
    """A worker's standing offer to take jobs submitted with ``assign="offers"`` for ``price`` each, through
    height ``until`` (``until = 0`` withdraws it), whose run may take up to ``max_time_ms`` (0: any the chain
    allows): a worker names the jobs its machine can finish, and is not assigned the others."""

    KIND = "offer"
    CODE = 12
    FIELDS = (("price", _u64), ("until", _u64), ("max_time_ms", _u64))
    price: Tokens
    until: int
    max_time_ms: int = 0


@dataclass(frozen=True, slots=True)
class ConfirmArtifact(Payload):
    """A confirmer of a ``confirming`` job says it fetched the accepted artifact, whose digest it names, and that
    the summary recomputed from it agrees with the accepted one (``ledger.jobs``): the job settles and pays."""

    KIND = "confirm_artifact"
    CODE = 13
    FIELDS = (("job_id", _DIGEST), ("artifact_digest", _DIGEST))
    job_id: JobId
    artifact_digest: bytes


PAYLOAD_TYPES: tuple[type[Payload], ...] = (
    Transfer,
    Approve,
    TransferFrom,
    RegisterWorker,
    AddStake,
    Unbond,
    SubmitJob,
    Bid,
    CommitResult,
    RevealResult,
    CancelJob,
    Offer,
    ConfirmArtifact,
)
BY_CODE: dict[int, type[Payload]] = {p.CODE: p for p in PAYLOAD_TYPES}
BY_KIND: dict[str, type[Payload]] = {p.KIND: p for p in PAYLOAD_TYPES}


@dataclass(frozen=True, slots=True)
class Tx:
    """An unsigned transaction: who sends it, its nonce and fee, and the kind-specific payload."""

    sender: AccountId
    nonce: int
    fee: Tokens
    payload: Payload

    @property
    def kind(self) -> str:
        return self.payload.KIND

    def body_list(self) -> list[Any]:
        return [TX_VERSION, self.payload.CODE, self.sender, self.nonce, self.fee, self.payload.to_list()]

    def encode_body(self) -> bytes:
        try:
            return pack(self.body_list())
        except EncodeError as exc:
            raise DecodeError(f"tx{exc.path[1:]}", exc.reason) from None


class SignedTx:
    """A transaction with its signature, its canonical encodings and its id (immutable once built)."""

    __slots__ = ("_encoded", "body_bytes", "signature", "tx", "tx_id")

    def __init__(self, tx: Tx, body_bytes: bytes, signature: bytes, encoded: bytes | None = None) -> None:
        self.tx = tx
        self.body_bytes = body_bytes
        self.signature = signature
        self._encoded = encoded if encoded is not None else pack([body_bytes, signature])
        self.tx_id: bytes = blake2b256(self._encoded)

    @property
    def sender(self) -> AccountId:
        return self.tx.sender

    @property
    def nonce(self) -> int:
        return self.tx.nonce

    @property
    def fee(self) -> Tokens:
        return self.tx.fee

    @property
    def kind(self) -> str:
        return self.tx.payload.KIND

    @property
    def payload(self) -> Payload:
        return self.tx.payload

    def encode(self) -> bytes:
        """The canonical signed encoding (what is gossiped, stored in blocks and hashed into ``tx_id``)."""
        return self._encoded

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SignedTx) and other._encoded == self._encoded

    def __hash__(self) -> int:
        return hash(self.tx_id)

    def __repr__(self) -> str:
        return f"SignedTx({self.kind}, sender={self.sender.hex()[:12]}, nonce={self.nonce}, id={self.tx_id.hex()[:12]})"


_prefix_cache: dict[str, bytes] = {}


def signing_message(chain_id: str, body_bytes: bytes) -> bytes:
    """The bytes a signature covers: domain tag, then the chain id (length-prefixed by msgpack), then the body."""
    prefix = _prefix_cache.get(chain_id)
    if prefix is None:
        prefix = SIGN_DOMAIN + pack(chain_id)
        if len(_prefix_cache) < 64:
            _prefix_cache[chain_id] = prefix
    return prefix + body_bytes


def sign_tx(body_or_tx: Tx, signing_key: SigningKey, chain_id: str) -> SignedTx:
    """Sign ``tx`` for ``chain_id``; the key must belong to ``tx.sender`` (``ValueError`` otherwise)."""
    tx = body_or_tx
    if account_of(signing_key) != tx.sender:
        raise ValueError("signing key does not match tx.sender")
    body = tx.encode_body()
    if len(body) + SIGNATURE_LEN + 8 > MAX_TX_BYTES:
        raise DecodeError("tx", f"encoded tx would exceed MAX_TX_BYTES={MAX_TX_BYTES}")
    return SignedTx(tx, body, sign(signing_key, signing_message(chain_id, body)))


def make_tx(payload: Payload, signing_key: SigningKey, chain_id: str, *, nonce: int, fee: Tokens) -> SignedTx:
    """Build and sign a tx from the key's own account in one call."""
    return sign_tx(Tx(account_of(signing_key), nonce, fee, payload), signing_key, chain_id)


def decode_payload(code: int, fields: Any) -> Payload:
    """Check and build the payload of kind ``code`` from its decoded field list."""
    cls = BY_CODE.get(code)
    if cls is None:
        raise DecodeError("tx.kind", f"unknown transaction kind {code}")
    if type(fields) is not list or len(fields) != len(cls.FIELDS):
        raise DecodeError(f"{cls.KIND}", f"expected a list of {len(cls.FIELDS)} fields")
    values = [check(v, f"{cls.KIND}.{name}") for (name, check), v in zip(cls.FIELDS, fields, strict=True)]
    return cls(*values)


def decode_tx_body(body: bytes) -> Tx:
    """Decode and check an unsigned body (canonical bytes only)."""
    obj = unpack(body, max_size=MAX_TX_BYTES, field="tx.body")
    if type(obj) is not list or len(obj) != 6:
        raise DecodeError("tx.body", "expected [version, kind, sender, nonce, fee, payload]")
    version, code, sender, nonce, fee, fields = obj
    if version != TX_VERSION:
        raise DecodeError("tx.version", f"unsupported version {version!r}")
    if type(code) is not int:
        raise DecodeError("tx.kind", "expected an integer kind code")
    return Tx(_ACCOUNT(sender, "tx.sender"), _u64(nonce, "tx.nonce"), _u64(fee, "tx.fee"), decode_payload(code, fields))


def _split_canonical(data: bytes) -> tuple[bytes, bytes] | None:
    """``(body, signature)`` if ``data`` is exactly ``pack([body, signature])`` with a 64-byte signature, else None.

    The outer list is two bins, so its canonical spelling is fixed: ``0x92``, the body as bin8 (under 256 bytes)
    or bin16, then ``0xc4 0x40`` and the signature. Reading it by hand spares a full unpack and re-pack of every tx
    (the body is still unpacked and checked); anything else goes the slow way, which names what is wrong."""
    n = len(data)
    if n < 4 or data[0] != 0x92:
        return None
    if data[1] == 0xC4:
        size, start = data[2], 3
    elif data[1] == 0xC5:
        size, start = int.from_bytes(data[2:4]), 4
        if size < 256:
            return None  # a bin16 that fits in a bin8 is not canonical
    else:
        return None
    end = start + size
    if n != end + 2 + SIGNATURE_LEN or data[end] != 0xC4 or data[end + 1] != SIGNATURE_LEN:
        return None
    return bytes(data[start:end]), bytes(data[end + 2:])


def decode_signed_tx(data: bytes) -> SignedTx:
    """Decode untrusted bytes into a ``SignedTx`` (structure, types and sizes; not the signature)."""
    if type(data) is bytes and len(data) <= MAX_TX_BYTES:
        parts = _split_canonical(data)
        if parts is not None:
            return SignedTx(decode_tx_body(parts[0]), parts[0], parts[1], data)
    obj = unpack(data, max_size=MAX_TX_BYTES, field="tx")
    if type(obj) is not list or len(obj) != 2:
        raise DecodeError("tx", "expected [body, signature]")
    body, signature = obj
    if type(body) is not bytes:
        raise DecodeError("tx.body", "expected raw bytes")
    _bytes_exact(SIGNATURE_LEN)(signature, "tx.signature")
    return SignedTx(decode_tx_body(body), body, signature, bytes(data))


def verify_tx_signature(stx: SignedTx, chain_id: str) -> None:
    """Raise ``BadSignature`` unless the sender signed this body for ``chain_id``."""
    if not verify(stx.tx.sender, signing_message(chain_id, stx.body_bytes), stx.signature):
        raise BadSignature(stx.tx_id)


def compute_commitment(
    job_id: bytes, committer: AccountId, summary: list[int], artifact_digest: bytes, salt: bytes, outcome: int = 0
) -> bytes:
    """The commitment a worker posts before revealing: ``blake2b256(pack([tag, job, committer, summary, digest]
    + [outcome] unless it is 0) + salt)``.

    Binding the job and the committer means a party cannot post another's commitment and later replay its
    opening: the copy would open to a different committer and fail the check. The outcome is bound too, so a
    party cannot commit to an error and reveal a result (or the reverse) once it has seen the other's.
    """
    body = [COMMITMENT_TAG, job_id, committer, list(summary), artifact_digest]
    if outcome:
        body.append(outcome)
    return blake2b256(pack(body) + salt)


def compute_fingerprint(job_id: bytes, summary: list[int], outcome: int = 0) -> bytes:
    """What a claim looks like without showing it: ``blake2b256(pack([tag, job, outcome, summary]))``.

    Unsalted and unbound to the committer, so two identical claims on a job have the same fingerprint and the
    ledger learns whether the parties agree before anyone reveals. It hides a result summary (a long vector of
    integers nobody can guess); it does not hide which of a few small error codes a party claims."""
    return blake2b256(pack([FINGERPRINT_TAG, job_id, outcome, list(summary)]))
