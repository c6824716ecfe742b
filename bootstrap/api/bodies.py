"""The API's request bodies (pydantic models that refuse unknown fields) and the conversions between them, the
node's calls and JSON."""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from fastapi import Path as PathParam
from fastapi import Query
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from bootstrap.api.errors import parse_hex32
from bootstrap.home import KeystoreError, check_key_name
from bootstrap.jobs import CsvSource, DigestSource, InlineSource, SyntheticSource

MAX_TOKENS = 2**63 - 1
MAX_BODY_BYTES = 32 * 1024 * 1024
DEFAULT_WAIT_S = 20.0
MAX_WAIT_S = 120.0
MAX_INLINE_ARRAY = 4096
FAUCET_ATTEMPTS = 3
MAX_SYNTHETIC_CELLS = 4_000_000
WORKER_FEE_ALLOWANCE = 200
"""A worker funded from the faucet also gets this many minimum fees, so it can pay for its bids, commits and
reveals (a stake alone is bonded and cannot pay fees)."""

MODEL_ALIASES = {
    "linear": "linear_regression",
    "linreg": "linear_regression",
    "k_means": "kmeans",
    "k_means_clustering": "kmeans",
    "kmeans_clustering": "kmeans",
    "pca_analysis": "pca",
    "logistic": "logistic_regression",
    "logreg": "logistic_regression",
    "mlp": "mlp_train",
}
DEFAULT_MODEL_PARAMS: dict[str, dict[str, Any]] = {
    # k-means' default k=8 does not suit the seed's 3-cluster demo data; fewer epochs keep the MLP quick.
    "kmeans": {"k": 3},
    "mlp_train": {"epochs": 5},
}



# ------------------------------------------------------------------------------------------------ request bodies


def _whole_tokens(value: Any) -> int:
    """Token amounts are integers; a JSON number that is whole (``150`` or ``150.0``) is accepted as one."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"must be a whole number of tokens, got {type(value).__name__}")
    if isinstance(value, float):
        if not math.isfinite(value) or not value.is_integer():
            raise ValueError(f"must be a whole number of tokens, got {value!r}")
        value = int(value)
    if not 0 <= value <= MAX_TOKENS:
        raise ValueError(f"must be between 0 and {MAX_TOKENS}, got {value}")
    return value


def _finite_number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise ValueError(f"must be a finite non-negative number, got {value!r}")
    return float(value)


def _key_name(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"must be a key name (a string), got {type(value).__name__}")
    try:
        return check_key_name(value)
    except KeystoreError as exc:
        raise ValueError(str(exc)) from None


TokenAmount = Annotated[int, BeforeValidator(_whole_tokens)]
WaitQuery = Annotated[float | None, Query(ge=0, allow_inf_nan=False,
                                          description="seconds to wait for the tx to commit (default 20, max 120)")]
NameParam = Annotated[str, PathParam(min_length=1, max_length=200,
                                     description="a local key name, a peer id (12D3KooW…) or 64 hex characters")]
JobIdParam = Annotated[str, PathParam(min_length=1, max_length=128, description="the job id (64 hex characters)")]
Capacity = Annotated[float, BeforeValidator(_finite_number)]
KeyName = Annotated[str, BeforeValidator(_key_name)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class WorkerRegistration(_Body):
    """The seed's worker registration: a local key name, the declared GPU, and the stake to bond."""

    worker_id: KeyName
    gpu_type: str = Field(default="", max_length=128)
    compute_capacity: Capacity = 0.0
    stake_amount: TokenAmount


class ClientRegistration(_Body):
    """The seed's client registration: a local key name and the balance it should start with."""

    client_address: KeyName
    initial_balance: TokenAmount = 0


class SyntheticData(_Body):
    """A seeded synthetic dataset (``regression``, ``blobs`` or ``classification``), at most
    4,000,000 cells (``n_samples * n_features``) so a request cannot make the node allocate without bound."""

    kind: str = Field(default="regression", max_length=32)
    n_samples: int = Field(default=256, ge=1, le=1_000_000)
    n_features: int = Field(default=4, ge=1, le=1024)
    seed: int = Field(default=0, ge=0, le=2**63 - 1)
    n_classes: int = Field(default=3, ge=2, le=1000)
    noise: float = Field(default=0.1, ge=0.0, le=1e6, allow_inf_nan=False)

    @model_validator(mode="after")
    def _bounded(self) -> SyntheticData:
        if self.n_samples * self.n_features > MAX_SYNTHETIC_CELLS:
            raise ValueError(f"n_samples * n_features = {self.n_samples * self.n_features} exceeds "
                             f"{MAX_SYNTHETIC_CELLS}")
        return self


class DatasetBody(_Body):
    """Exactly one of: a seeded ``synthetic`` generator, ``csv`` text (with an optional ``target_column``),
    inline arrays ``X`` (rows of numbers) and optional ``y``, or the ``digest`` of a dataset already on the
    network."""

    synthetic: SyntheticData | None = None
    csv: str | None = None
    target_column: int | str | None = None
    X: list[list[float]] | None = None
    y: list[float] | None = None
    digest: str | None = Field(default=None, max_length=64)

    @model_validator(mode="after")
    def _exactly_one(self) -> DatasetBody:
        given = [name for name in ("synthetic", "csv", "X", "digest") if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of synthetic, csv, X or digest (got {given or 'none'})")
        if self.y is not None and self.X is None:
            raise ValueError("y is only allowed with X")
        if self.target_column is not None and self.csv is None:
            raise ValueError("target_column is only allowed with csv")
        return self


class JobSubmission(_Body):
    """The seed's job submission, plus optional model parameters, dataset, verification fee, device, how the
    worker is found (``offers``, the default: assigned in the submit block to a worker with a standing offer, or
    a bid window when none fits; ``bids``: always a bid window), the wall time one run may take
    (``time_limit_ms``; the chain's default when left out) and the commit window in blocks (``commit_window``; 0:
    the chain's default; it must fit the run, and blocks above the default add to the fee)."""

    client_address: KeyName
    model_type: str = Field(max_length=64)
    reward: TokenAmount
    params: dict[str, Any] | None = None
    dataset: DatasetBody | None = None
    verification_fee: TokenAmount | None = None
    device: str = Field(default="any", max_length=16)
    assign: Literal["offers", "bids"] = "offers"
    time_limit_ms: int | None = Field(default=None, ge=1, le=86_400_000)
    commit_window: int = Field(default=0, ge=0, le=1_000_000)


class RawTx(_Body):
    """A transaction signed by an external wallet: its canonical signed encoding as hex."""

    tx: str = Field(max_length=4 * 8192)


MAX_BATCH_TXS = 4096


class RawTxBatch(_Body):
    """Several signed transactions (hex), admitted one by one in the given order (``POST /txs``)."""

    txs: list[Annotated[str, Field(max_length=4 * 8192)]] = Field(max_length=MAX_BATCH_TXS)


# ------------------------------------------------------------------------------------------------- conversions


def normalise_model(name: str) -> str:
    """The compute model name for the seed's ``model_type`` (``linear_regression``, ``kmeans``, ``pca``, …)."""
    key = name.strip().lower().replace("-", "_").replace(" ", "_")
    return MODEL_ALIASES.get(key, key)


def dataset_source(body: DatasetBody | None) -> Any:
    """The ``Node.submit_job`` dataset source for a request's ``dataset`` (None: the node's default synthetic
    data for the model, as the seed did)."""
    if body is None:
        return None
    if body.synthetic is not None:
        return SyntheticSource(**body.synthetic.model_dump())
    if body.csv is not None:
        return CsvSource(body.csv.encode(), body.target_column)
    if body.digest is not None:
        return DigestSource(parse_hex32(body.digest, "dataset.digest"))
    return InlineSource(body.X or [], body.y)


def jsonable(value: Any) -> Any:
    """Bytes become hex, tuples lists, dict keys strings: anything the node returns becomes valid JSON."""
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, dict):
        return {(k.hex() if isinstance(k, bytes) else str(k)): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if hasattr(value, "tolist"):  # numpy arrays and scalars in result displays
        return jsonable(value.tolist())
    return value
