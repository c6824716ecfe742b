"""A small PyTorch MLP classifier trained reproducibly: float64, fixed seeds, deterministic algorithms.

Everything random is drawn in NumPy from ``default_rng(seed)`` (train/test split, initial weights, batch order)
so the CPU and CUDA runs start from the same bits and visit batches in the same order; features are
standardised with the training split's mean and deviation. Training is SGD with momentum 0.9 on the mean
cross-entropy. Reported: the loss curve (mean training loss per epoch), and the final train loss, test loss and
test accuracy evaluated at the final weights. Compared: the curve, the losses, each tensor's sum and norm, and a
sketch (``base.sketch``) of every layer's weights and bias, of the standardisation and of the classes, so every
weight served is a weight compared.

Chaos. Trained long at a high learning rate, SGD is chaotic: a last-bit difference between two honest
implementations (another CPU's kernels, CUDA) grows until the two runs share nothing (measured: final losses
1.81 against 1.72 for the same job on AVX-512 and AVX2 kernels). Whether a run is chaotic depends on the data
as much as on lr × epochs, so a spec rule cannot decide it. Each run measures its own sensitivity instead: a
twin whose initial weights differ by TWIN_DELTA (1e-9, relative, seeded) trains alongside, stacked in the same
tensors, and ``twin_divergence`` is the largest difference between the two runs' summaries (relative to
max(1, |value|)). The summary is scaled by ``k = 1 - smoothstep((divergence - CALM) / (CHAOTIC - CALM))`` and
starts with k: a calm run (divergence ≤ CALM = 1e-3) is compared at full resolution, a chaotic one
(≥ CHAOTIC = 1e-2) reads all zeros, continuously in between. Why honest runs then agree: rounding differences
enter at about 1e-16 per step and grow as the twin's 1e-9 does, so two honest runs differ by at most about
1e-16 × steps / 1e-9 of the twin's divergence (1e-4 for a thousand steps, and rounding errors add up more
like a random walk than that); while k = 1 that is at most 1e-7, and in the ramp k moves by at most that
fraction of itself. The divergence is a maximum over the whole curve and every
reported value, so a chaotic run cannot look calm by luck at one point. Costs: one more (batched) network
in training, and chaotic jobs yield a summary that says only "chaotic" (k = 0).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import Any

import numpy as np

from compute.errors import BackendUnavailable, DatasetError
from compute.models._torch import torch_for
from compute.models.base import Check, Fields, ModelDef, sketch, smoothstep
from compute.models.logistic import classes_of

MAX_CURVE_POINTS = 64
# The twin's divergence is measured on every summary value, the sketch included; it is a comparison of the run
# with its own twin inside one fit, where the job's sketch seed is not known, so it reads a fixed one.
_TWIN_SKETCH_SEED = 0x4D4C50
TWIN_DELTA = 1e-9
CALM, CHAOTIC = 1e-3, 1e-2


def _split(n: int, seed: int, test_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    perm = np.random.default_rng([seed, 1]).permutation(n)
    n_test = max(1, round(test_fraction * n))
    if n - n_test < 1:
        raise DatasetError(f"{n} samples leave nothing to train on with test_fraction={test_fraction}",
                           "nothing_to_train")
    return np.sort(perm[n_test:]), np.sort(perm[:n_test])


def _standardiser(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mu = X.mean(axis=0)
    sd = X.std(axis=0)
    return mu, np.where(sd > 0, sd, 1.0)


def _initial_weights(widths: list[int], seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng([seed, 2])
    out: list[np.ndarray] = []
    for fan_in, fan_out in itertools.pairwise(widths):
        bound = 1.0 / np.sqrt(fan_in)
        out += [rng.uniform(-bound, bound, (fan_out, fan_in)), rng.uniform(-bound, bound, fan_out)]
    return out


def _forward_numpy(weights: list[np.ndarray], X: np.ndarray, activation: str) -> np.ndarray:
    h = X
    for i in range(0, len(weights), 2):
        h = h @ weights[i].T + weights[i + 1]
        if i + 2 < len(weights):
            h = np.maximum(h, 0.0) if activation == "relu" else np.tanh(h)
    return h


def _cross_entropy(logits: np.ndarray, idx: np.ndarray) -> float:
    m = logits.max(axis=1, keepdims=True)
    lse = (m + np.log(np.exp(logits - m).sum(axis=1, keepdims=True)))[:, 0]
    return float(np.mean(lse - logits[np.arange(len(idx)), idx]))


def _true_probability(logits: np.ndarray, idx: np.ndarray) -> float:
    E = np.exp(logits - logits.max(axis=1, keepdims=True))
    return float(np.mean(E[np.arange(len(idx)), idx] / E.sum(axis=1)))


def _evaluate(weights: list[np.ndarray], Xs: np.ndarray, idx: np.ndarray, train: np.ndarray, test: np.ndarray,
              activation: str) -> dict[str, float]:
    with np.errstate(all="ignore"):  # a diverged run's weights overflow; its values are then inf or NaN
        logits = _forward_numpy(weights, Xs, activation)
        return {
            "train_loss": _cross_entropy(logits[train], idx[train]),
            "test_loss": _cross_entropy(logits[test], idx[test]),
            "test_accuracy": float(np.mean(logits[test].argmax(axis=1) == idx[test])),
            # Continuous where the accuracy jumps (a test row on the boundary): what the summary compares.
            "test_true_probability": _true_probability(logits[test], idx[test]),
        }


def fit(backend: str, X: np.ndarray, y: np.ndarray | None, params: Mapping[str, Any]) -> Fields:
    if backend not in ("torch-cpu", "torch-cuda"):
        raise BackendUnavailable(backend, "mlp_train runs on torch-cpu or torch-cuda only")
    torch, device = torch_for(backend)
    classes = classes_of(y)
    assert y is not None
    idx = np.searchsorted(classes, y)
    seed, activation = int(params["seed"]), str(params["activation"])
    train, test = _split(X.shape[0], seed, float(params["test_fraction"]))
    mu, sd = _standardiser(X[train])
    Xs = (X - mu) / sd
    widths = [X.shape[1], *params["hidden"], classes.size]
    init = _initial_weights(widths, seed)
    twin_rng = np.random.default_rng([seed, 4])
    twin = [w * (1.0 + TWIN_DELTA * twin_rng.uniform(-1.0, 1.0, w.shape)) for w in init]
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        # The run and its twin, stacked on a leading axis of 2: one batched pass trains both.
        weights = [torch.tensor(np.stack([a, b]), dtype=torch.float64, device=device, requires_grad=True)
                   for a, b in zip(init, twin, strict=True)]
        opt = torch.optim.SGD(weights, lr=float(params["lr"]), momentum=0.9,
                              weight_decay=float(params["weight_decay"]))
        Xt = torch.from_numpy(Xs[train]).to(device)
        yt = torch.from_numpy(idx[train]).to(device)
        act = torch.relu if activation == "relu" else torch.tanh
        order_rng = np.random.default_rng([seed, 3])
        bs = int(params["batch_size"])
        curves: list[list[float]] = [[], []]
        for _ in range(int(params["epochs"])):
            order = torch.from_numpy(order_rng.permutation(len(train))).to(device)
            total = torch.zeros(2, dtype=torch.float64, device=device)
            for start in range(0, len(train), bs):
                batch = order[start : start + bs]
                h = Xt[batch].expand(2, -1, -1)
                for i in range(0, len(weights), 2):
                    h = torch.baddbmm(weights[i + 1].unsqueeze(1), h, weights[i].transpose(1, 2))
                    if i + 2 < len(weights):
                        h = act(h)
                per_row = torch.nn.functional.cross_entropy(
                    h.reshape(-1, h.shape[-1]), yt[batch].repeat(2), reduction="none"
                )
                loss = per_row.view(2, -1).mean(dim=1)  # each run's own mean loss
                opt.zero_grad(set_to_none=True)
                loss.sum().backward()
                opt.step()
                total = total + loss.detach() * len(batch)
            for run, value in enumerate(total.cpu().numpy()):
                curves[run].append(float(value) / len(train))
        final = [[w.detach()[run].cpu().numpy().astype(np.float64) for w in weights] for run in (0, 1)]
    finally:
        torch.use_deterministic_algorithms(previous)
    runs = []
    for run in (0, 1):
        fields: Fields = {f"w{i}": w for i, w in enumerate(final[run])}
        fields.update(_evaluate(final[run], Xs, idx, train, test, activation))
        fields.update({"loss_curve": np.asarray(curves[run]), "classes": classes, "mu": mu, "sd": sd})
        runs.append(fields)
    with np.errstate(all="ignore"):
        a, b = _raw_summary(runs[0], _TWIN_SKETCH_SEED), _raw_summary(runs[1], _TWIN_SKETCH_SEED)
        gaps = np.abs(a - b) / np.maximum(1.0, np.abs(a))
    # A run that overflows (inf, NaN) has diverged: as far from its twin as a run can be.
    divergence = float(gaps.max()) if np.isfinite(gaps).all() else float("inf")
    runs[0]["twin_divergence"] = divergence
    return runs[0]


def _curve_points(curve: np.ndarray) -> np.ndarray:
    if curve.size <= MAX_CURVE_POINTS:
        return curve
    return curve[np.linspace(0, curve.size - 1, MAX_CURVE_POINTS).round().astype(int)]


def n_layers(f: Fields) -> int:
    """How many layers (weight and bias pairs ``w{2i}``, ``w{2i+1}``) the artifact's network has."""
    return sum(1 for k in f if k[0] == "w" and k[1:].isdigit()) // 2


def sketched(f: Fields) -> list[np.ndarray]:
    """The arrays the summary's sketch covers: each layer's weights and bias as one vector (a sketch per layer,
    not per tensor, keeps 8 hidden layers and a 64-point curve within the ledger's 256 values), the
    standardisation (mean and deviation) and the class labels."""
    layers = [np.concatenate([np.ravel(f[f"w{2 * i}"]), np.ravel(f[f"w{2 * i + 1}"])]) for i in range(n_layers(f))]
    return [*layers, np.concatenate([np.ravel(f["mu"]), np.ravel(f["sd"])]), np.asarray(f["classes"])]


def _raw_summary(f: Fields, seed: int) -> np.ndarray:
    curve = np.asarray(f["loss_curve"], dtype=np.float64)
    # Per-tensor sum and norm tie the summary to the weights' size; the sketch, to every weight's value.
    tensors = [np.asarray(f[f"w{i}"]) for i in range(2 * n_layers(f))]
    stats = [v for w in tensors for v in (float(w.sum()), float(np.linalg.norm(w)))]
    return np.concatenate(
        [_curve_points(curve), [f["train_loss"], f["test_loss"], f["test_true_probability"]], stats,
         sketch(sketched(f), seed)]
    )


def damping(divergence: float) -> float:
    """The summary's scale for a run whose twin diverged by ``divergence``: 1 when calm, 0 when chaotic."""
    if not divergence <= CHAOTIC:  # NaN and inf included
        return 0.0
    return float(1.0 - smoothstep((divergence - CALM) / (CHAOTIC - CALM)))


def summarise(f: Fields, seed: int) -> tuple[np.ndarray, dict[str, Any]]:
    curve = np.asarray(f["loss_curve"])
    k = damping(float(f["twin_divergence"]))
    with np.errstate(all="ignore"):
        raw = _raw_summary(f, seed)
    # k = 0 reads exactly zero, whatever a diverged run holds (0 × inf is NaN).
    scaled = k * raw if k > 0 else np.zeros(raw.size)
    return np.concatenate([[k], scaled]), {
        "loss_curve": curve.tolist(), "train_loss": f["train_loss"], "test_loss": f["test_loss"],
        "test_accuracy": f["test_accuracy"], "twin_divergence": f["twin_divergence"], "damping": k,
    }


def _gap(a: float, b: float) -> float:
    # A diverged run reports inf or NaN; the same non-finite value reproduced is a match.
    if not (np.isfinite(a) and np.isfinite(b)):
        return 0.0 if (np.isnan(a) and np.isnan(b)) or a == b else float("inf")
    return abs(a - b)


def certify(X: np.ndarray, y: np.ndarray | None, params: Mapping[str, Any], f: Fields) -> list[Check]:
    """Necessary conditions only (``certifiable=False``): the claimed weights must reproduce the reported train
    loss, test loss, test accuracy and true-class probability on the seeded split (one forward pass), with the
    right standardisation. Untrained (or otherwise wrong) weights reproduce their own metrics just as well: only
    training again from the seed says whether these are the trained weights, so the answer is "re-run it"."""
    classes = classes_of(y)
    assert y is not None
    idx = np.searchsorted(classes, y)
    train, test = _split(X.shape[0], int(params["seed"]), float(params["test_fraction"]))
    mu, sd = _standardiser(X[train])
    widths = [X.shape[1], *params["hidden"], classes.size]
    weights = [np.asarray(f.get(f"w{i}", np.zeros(0)), dtype=np.float64) for i in range(2 * (len(widths) - 1))]
    expected = [s for a, b in itertools.pairwise(widths) for s in ((b, a), (b,))]
    curve = np.asarray(f.get("loss_curve", np.zeros(0)))
    if [w.shape for w in weights] != expected or curve.shape != (int(params["epochs"]),):
        return [Check("shapes", float("inf"), 0.0)]
    got = _evaluate(weights, (X - mu) / sd, idx, train, test, str(params["activation"]))
    divergence = float(f["twin_divergence"])
    return [
        Check("classes_mismatch", 0.0 if np.array_equal(np.asarray(f["classes"], dtype=np.float64).ravel(),
                                                        classes.astype(np.float64)) else 1.0, 0.0),
        Check("standardisation_mismatch", float(max(np.abs(mu - f["mu"]).max(), np.abs(sd - f["sd"]).max())), 1e-9),
        *(Check(f"{k}_mismatch", _gap(got[k], float(f[k])), 1e-9) for k in ("train_loss", "test_loss",
                                                                                "test_accuracy",
                                                                                "test_true_probability")),
        # The twin's divergence is the run's own measurement: only its range can be checked without training.
        Check("twin_divergence_invalid", 0.0 if divergence >= 0 else 1.0, 0.0),
    ]


MODEL = ModelDef("mlp_train", ("torch-cpu", "torch-cuda"), "labels", fit, summarise, certify, certifiable=False)
