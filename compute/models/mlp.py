"""A small PyTorch MLP classifier trained reproducibly: float64, fixed seeds, deterministic algorithms.

Everything random is drawn in NumPy from ``default_rng(seed)`` (train/test split, initial weights, batch order)
so the CPU and CUDA runs start from the same bits and visit batches in the same order; features are
standardised with the training split's mean and deviation. Training is SGD with momentum 0.9 on the mean
cross-entropy. Reported: the loss curve (mean training loss per epoch), and the final train loss, test loss and
test accuracy evaluated at the final weights.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import Any

import numpy as np

from compute.errors import BackendUnavailable, DatasetError
from compute.models._torch import torch_for
from compute.models.base import Check, Fields, ModelDef
from compute.models.logistic import classes_of

MAX_CURVE_POINTS = 64


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


def _evaluate(weights: list[np.ndarray], Xs: np.ndarray, idx: np.ndarray, train: np.ndarray, test: np.ndarray,
              activation: str) -> dict[str, float]:
    logits = _forward_numpy(weights, Xs, activation)
    return {
        "train_loss": _cross_entropy(logits[train], idx[train]),
        "test_loss": _cross_entropy(logits[test], idx[test]),
        "test_accuracy": float(np.mean(logits[test].argmax(axis=1) == idx[test])),
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
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        weights = [torch.tensor(w, dtype=torch.float64, device=device, requires_grad=True) for w in init]
        opt = torch.optim.SGD(weights, lr=float(params["lr"]), momentum=0.9,
                              weight_decay=float(params["weight_decay"]))
        Xt = torch.from_numpy(Xs[train]).to(device)
        yt = torch.from_numpy(idx[train]).to(device)
        act = torch.relu if activation == "relu" else torch.tanh
        order_rng = np.random.default_rng([seed, 3])
        bs = int(params["batch_size"])
        curve: list[float] = []
        for _ in range(int(params["epochs"])):
            order = torch.from_numpy(order_rng.permutation(len(train))).to(device)
            total = torch.zeros((), dtype=torch.float64, device=device)
            for start in range(0, len(train), bs):
                batch = order[start : start + bs]
                h = Xt[batch]
                for i in range(0, len(weights), 2):
                    h = h @ weights[i].T + weights[i + 1]
                    if i + 2 < len(weights):
                        h = act(h)
                loss = torch.nn.functional.cross_entropy(h, yt[batch])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total = total + loss.detach() * len(batch)
            curve.append(float(total.item()) / len(train))
        final = [w.detach().cpu().numpy().astype(np.float64) for w in weights]
    finally:
        torch.use_deterministic_algorithms(previous)
    fields: Fields = {f"w{i}": w for i, w in enumerate(final)}
    fields.update(_evaluate(final, Xs, idx, train, test, activation))
    fields.update({"loss_curve": np.asarray(curve), "classes": classes, "mu": mu, "sd": sd})
    return fields


def _curve_points(curve: np.ndarray) -> np.ndarray:
    if curve.size <= MAX_CURVE_POINTS:
        return curve
    return curve[np.linspace(0, curve.size - 1, MAX_CURVE_POINTS).round().astype(int)]


def summarise(f: Fields) -> tuple[np.ndarray, dict[str, Any]]:
    curve = np.asarray(f["loss_curve"])
    # Per-tensor sum and norm tie the summary to the weights themselves, not only to their metrics.
    tensors = [np.asarray(f[f"w{i}"]) for i in range(sum(1 for k in f if k[0] == "w" and k[1:].isdigit()))]
    stats = [v for w in tensors for v in (float(w.sum()), float(np.linalg.norm(w)))]
    summary = np.concatenate(
        [_curve_points(curve), [f["train_loss"], f["test_loss"], f["test_accuracy"]], stats]
    )
    return summary, {
        "loss_curve": curve.tolist(), "train_loss": f["train_loss"], "test_loss": f["test_loss"],
        "test_accuracy": f["test_accuracy"],
    }


def certify(X: np.ndarray, y: np.ndarray | None, params: Mapping[str, Any], f: Fields) -> list[Check]:
    """Training has no cheap certificate, but the claimed weights must reproduce the reported train loss, test
    loss and test accuracy on the seeded split (one forward pass), with the right standardisation."""
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
    return [
        Check("standardisation_mismatch", float(max(np.abs(mu - f["mu"]).max(), np.abs(sd - f["sd"]).max())), 1e-9),
        *(Check(f"{k}_mismatch", abs(got[k] - float(f[k])), 1e-9) for k in ("train_loss", "test_loss",
                                                                               "test_accuracy")),
    ]


MODEL = ModelDef("mlp_train", ("torch-cpu", "torch-cuda"), "labels", fit, summarise, certify)
