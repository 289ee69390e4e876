"""Calibrated confidences: vector scaling (or one temperature) fitted on held-out logits, and the
measures of how well confidences match accuracy (expected calibration error, negative log-likelihood).

A model trained with label smoothing and mixup is under-confident: on FER-2013 its mean confidence is
well below its accuracy, so users see "Sad 26 %" on faces the model in fact gets right most of the
time. Calibration maps the logits to ``scale * logits + bias`` before the softmax:
- ``vector``: a scale and a bias per class, 14 numbers for 7 classes, fitted by
  minimising the NLL. Measured on PublicTest with 2-fold cross-fitting (each half scored with the
  parameters fitted on the other), it leaves 17-40 % less ECE than one temperature on the built-in
  models (benchmarks/calibration.py, README); it can move a label where two classes are nearly tied.
- ``temperature``: one number (scale = 1 / T, bias 0), never changes a single crop's label (ten-crop
  averages probabilities after it, so a near tie can move, rarely); for small fit sets.
- ``auto`` (what ``calibrate`` does unless told): vector scaling, for plain and for ten-crop inference
  each, unless it costs accuracy on the faces it was not fitted on (``choose_method``).
The parameters are fitted on PublicTest (never PrivateTest), stored in the model's metadata, and applied
by the classifier in every path (CLI, API, service, video); ten-crop TTA has parameters of its own.

``uncertain_below``: the top probability under which a face is flagged ``uncertain``. Chosen from the
calibrated reliability curve: the confidence at which the top label becomes right at least half of
the time (below it, the runner-up is about as likely).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from facial_emotion.inference.classifier import calibrated_probabilities as probabilities
from facial_emotion.inference.classifier import softmax
from facial_emotion.model_file import CALIBRATION_KEY

log = logging.getLogger(__name__)

MIN_FACES_PER_CLASS = 20  # for vector scaling: fewer, and a class's bias fits its few faces
MIN_CALIBRATION_FACES = 20  # for any calibration (one temperature)
METHODS = {"vector": "vector scaling (NLL)", "temperature": "temperature scaling (NLL)"}
# "auto" (the default) takes vector scaling unless, cross-fitted over this many random halvings, it
# costs more than ACCURACY_TOLERANCE of accuracy against the raw softmax; then one temperature.
AUTO_SPLITS = 10
ACCURACY_TOLERANCE = 0.001


def accuracy(probs: np.ndarray, labels: np.ndarray) -> float:
    return float((probs.argmax(axis=1) == labels).mean())


ECE_BINS = 15


def nll(probs: np.ndarray, labels: np.ndarray) -> float:
    """Mean negative log-likelihood of the true labels."""
    return float(-np.mean(np.log(np.clip(probs[np.arange(len(labels)), labels], 1e-12, None))))


def ece(probs: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> float:
    """Expected calibration error: |accuracy - mean confidence| per equal-width confidence bin,
    weighted by the bin's share of faces."""
    confidence = probs.max(axis=1)
    correct = probs.argmax(axis=1) == labels
    edges = np.linspace(0, 1, bins + 1)
    index = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    total = 0.0
    for b in range(bins):
        members = index == b
        if members.any():
            total += members.mean() * abs(correct[members].mean() - confidence[members].mean())
    return float(total)


def reliability(probs: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> list[dict[str, float]]:
    """Per confidence bin: its range, faces, mean confidence and accuracy (the reliability diagram);
    the ECE's bins, so that the diagram shows the figure its legend gives."""
    confidence = probs.max(axis=1)
    correct = probs.argmax(axis=1) == labels
    edges = np.linspace(0, 1, bins + 1)
    out = []
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        members = (confidence > lo) & (confidence <= hi)
        if members.any():
            out.append(
                {
                    "from": round(float(lo), 3),
                    "to": round(float(hi), 3),
                    "faces": int(members.sum()),
                    "confidence": round(float(confidence[members].mean()), 4),
                    "accuracy": round(float(correct[members].mean()), 4),
                }
            )
    return out


def fit_temperature(logits: np.ndarray, labels: np.ndarray, lo: float = 0.05, hi: float = 20.0) -> float:
    """The temperature that minimises the NLL, by golden-section search on log T (the NLL is convex in
    1 / T for plain logits, and unimodal in practice for averaged test-time crops)."""
    a, b = np.log(lo), np.log(hi)
    ratio = (np.sqrt(5) - 1) / 2

    def loss(log_t: float) -> float:
        return nll(probabilities(logits, float(np.exp(-log_t))), labels)

    c, d = b - ratio * (b - a), a + ratio * (b - a)
    fc, fd = loss(c), loss(d)
    for _ in range(60):  # the interval shrinks to 1e-12 of its width
        if fc < fd:
            b, d, fd = d, c, fc
            c = b - ratio * (b - a)
            fc = loss(c)
        else:
            a, c, fc = c, d, fd
            d = a + ratio * (b - a)
            fd = loss(d)
    return float(np.exp((a + b) / 2))


def _nll_gradient(
    logits: np.ndarray, labels: np.ndarray, scale: np.ndarray, bias: np.ndarray
) -> tuple[float, np.ndarray, np.ndarray]:
    """The NLL of ``probabilities(logits, scale, bias)`` and its gradient in scale and bias."""
    z = logits if logits.ndim == 3 else logits[:, None, :]  # (N, K crops, C)
    q = softmax(z * scale + bias)
    n, k, _ = q.shape
    rows = np.arange(n)
    q_true = q[rows, :, labels]  # (N, K)
    p_true = np.clip(q_true.mean(axis=1), 1e-12, None)  # the crops' mean probability of the label
    onehot = np.zeros_like(q)
    onehot[rows, :, labels] = 1.0
    # d(-log p_true) / d(scaled logit c of crop j) = -q_true_j (onehot_c - q_jc) / (K p_true)
    grad = -(q_true / (k * n * p_true[:, None]))[:, :, None] * (onehot - q)
    return float(-np.mean(np.log(p_true))), (grad * z).sum(axis=(0, 1)), grad.sum(axis=(0, 1))


def _bfgs(f: Callable[[np.ndarray], tuple[float, np.ndarray]], x: np.ndarray, steps: int = 300) -> np.ndarray:
    """Minimise a smooth ``f`` (value, gradient) from ``x``: BFGS with a backtracking line search
    (the package does not depend on SciPy for these 14 numbers)."""
    fx, g = f(x)
    inverse_hessian = np.eye(len(x))
    for _ in range(steps):
        if np.abs(g).max() < 1e-7:
            break
        direction = -inverse_hessian @ g
        if g @ direction >= 0:  # not a descent direction: restart from the gradient
            inverse_hessian, direction = np.eye(len(x)), -g
        step = 1.0
        while True:
            x_new = x + step * direction
            f_new, g_new = f(x_new)
            if f_new <= fx + 1e-4 * step * (g @ direction):
                break
            step /= 2
            if step < 1e-12:
                return x  # no step lowers f any more: converged as far as float64 tells
        s, y = x_new - x, g_new - g
        x, fx, g = x_new, f_new, g_new
        if s @ y > 1e-12:
            rho, eye = 1.0 / (s @ y), np.eye(len(x))
            inverse_hessian = (eye - rho * np.outer(s, y)) @ inverse_hessian @ (
                eye - rho * np.outer(y, s)
            ) + rho * np.outer(s, s)
    return x


def fit_vector_scaling(logits: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-class (scale, bias) minimising the NLL, from the NLL temperature (the objective is convex
    for plain logits, and smooth for averaged test-time crops)."""
    classes = logits.shape[-1]
    start = np.concatenate([np.full(classes, 1.0 / fit_temperature(logits, labels)), np.zeros(classes)])

    def f(x: np.ndarray) -> tuple[float, np.ndarray]:
        loss, d_scale, d_bias = _nll_gradient(logits, labels, x[:classes], x[classes:])
        return loss, np.concatenate([d_scale, d_bias])

    x = _bfgs(f, start)
    return x[:classes], x[classes:]


def fit_parameters(logits: np.ndarray, labels: np.ndarray, method: str) -> tuple[np.ndarray, np.ndarray]:
    """(scale, bias) per class of ``method`` ("vector" or "temperature"), rounded as they are stored."""
    if method == "vector":
        scale, bias = fit_vector_scaling(logits, labels)
    else:
        scale, bias = (
            np.full(logits.shape[-1], 1.0 / fit_temperature(logits, labels)),
            np.zeros(logits.shape[-1]),
        )
    return np.round(scale, 4), np.round(bias, 4)


def cross_fitted(logits: np.ndarray, labels: np.ndarray, method: str, seed: int = 0) -> np.ndarray:
    """Probabilities of every face from parameters fitted on the other half of the faces (two folds,
    a fixed shuffle): an out-of-sample estimate of what the calibration does on unseen faces."""
    order = np.random.default_rng(seed).permutation(len(labels))
    halves = (order[: len(order) // 2], order[len(order) // 2 :])
    probs = np.zeros((len(labels), logits.shape[-1]))
    for fit_on, score in (halves, halves[::-1]):
        probs[score] = probabilities(logits[score], *fit_parameters(logits[fit_on], labels[fit_on], method))
    return probs


def choose_method(
    logits: np.ndarray, labels: np.ndarray, splits: int = AUTO_SPLITS, tolerance: float = ACCURACY_TOLERANCE
) -> str:
    """ "vector" unless its labels, scored out of sample (the mean over ``splits`` cross-fits), are
    less accurate than the raw softmax's by more than ``tolerance``: then "temperature", which never
    changes a crop's label (ten-crop's average of them only at a near tie). (Measured: vector
    scaling cost the ensemble's ten-crop 0.29 points this way.)"""
    return _choose_method(logits, labels, splits, tolerance)[0]


def _choose_method(
    logits: np.ndarray, labels: np.ndarray, splits: int = AUTO_SPLITS, tolerance: float = ACCURACY_TOLERANCE
) -> tuple[str, np.ndarray]:
    """``choose_method``'s answer and its first (seed 0) cross-fit of vector scaling, which
    ``fit_calibration`` reports when vector scaling is chosen instead of fitting it again."""
    raw = accuracy(probabilities(logits), labels)
    fits = [cross_fitted(logits, labels, "vector", seed) for seed in range(splits)]
    held_out = np.mean([accuracy(f, labels) for f in fits])
    return ("vector" if held_out >= raw - tolerance else "temperature"), fits[0]


def uncertain_threshold(probs: np.ndarray, labels: np.ndarray, bins: int = 20) -> float:
    """The lowest confidence from which the top label is right at least half of the time: the upper
    edge of the first bin (from the top down, among bins of 20 faces or more) whose accuracy falls
    under 50 %, where the right half ends; if none does, the lower edge of the lowest bin."""
    curve = reliability(probs, labels, bins)
    threshold = 0.5
    for row in sorted(curve, key=lambda r: -r["to"]):
        if row["faces"] >= 20 and row["accuracy"] < 0.5:
            return round(row["to"], 3)
        threshold = row["from"]
    return round(max(threshold, 0.0), 3)


def fit_calibration(
    logits: np.ndarray, tta_logits: np.ndarray | None, labels: np.ndarray, split: str, method: str = "auto"
) -> dict[str, Any]:
    """The metadata entry: the method and (scale, bias) for plain and for ten-crop inference, the
    uncertain threshold and the before/after measures on the split they were fitted on, in-sample and
    cross-fitted. ``method``: "vector", "temperature" or "auto" (``choose_method``, per crop mode)."""
    if method not in (*METHODS, "auto"):
        raise ValueError(f"unknown calibration method {method!r}; choose from auto, {', '.join(METHODS)}")
    entry: dict[str, Any] = {"fit_split": split, "faces": len(labels)}
    for suffix, z in (("", logits), ("_tta", tta_logits)):
        if z is None:
            continue
        chosen, vector_fit = _choose_method(z, labels) if method == "auto" else (method, None)
        scale, bias = fit_parameters(z, labels, chosen)
        before, after = probabilities(z), probabilities(z, scale, bias)
        held_out = (
            vector_fit if chosen == "vector" and vector_fit is not None else cross_fitted(z, labels, chosen)
        )
        entry.update(
            {
                f"method{suffix}": METHODS[chosen],
                f"scale{suffix}": scale.tolist(),
                f"bias{suffix}": bias.tolist(),
                f"ece{suffix}_before": round(ece(before, labels), 4),
                f"ece{suffix}_after": round(ece(after, labels), 4),
                f"ece{suffix}_after_crossfit": round(ece(held_out, labels), 4),
                f"nll{suffix}_before": round(nll(before, labels), 4),
                f"nll{suffix}_after": round(nll(after, labels), 4),
                f"nll{suffix}_after_crossfit": round(nll(held_out, labels), 4),
                f"accuracy{suffix}_before": round(accuracy(before, labels), 4),
                f"accuracy{suffix}_after": round(accuracy(after, labels), 4),
                f"accuracy{suffix}_after_crossfit": round(accuracy(held_out, labels), 4),
            }
        )
        if chosen == "temperature":
            entry[f"temperature{suffix}"] = round(float(1.0 / scale[0]), 4)
        if not suffix:
            entry["uncertain_below"] = uncertain_threshold(after, labels)
    return entry


def calibrate_model(
    model: str | Path | None,
    data: str | Path,
    split: str,
    out: Path | None = None,
    threads: int | None = None,
    method: str = "auto",
    labels: str | None = None,
) -> dict[str, Any]:
    """Fit the calibration of a model file on a labelled split and store it in the model's metadata
    (``out``, default: the model file itself, rewritten atomically; a model shipped in the package is
    refused then, ``ModelFileError``). Returns the metadata entry.
    ``labels``: "fer2013" or "ferplus" (the FER+ majority vote; the default for an 8-class model).
    PrivateTest is refused: it is the held-out test, and fitting on it would make its figures
    optimistic."""
    from facial_emotion.data import DatasetError, load_dataset
    from facial_emotion.evaluation.evaluate import trained_on_faces
    from facial_emotion.inference.classifier import EmotionClassifier
    from facial_emotion.model_file import ModelFileError, is_packaged_model, resolve_model_path, write_model

    # Here, not in the command alone: an API call with no ``out`` rewrote the installed package.
    if out is None and is_packaged_model(resolve_model_path(model)):
        raise ModelFileError(
            f"{model or 'default'} is a model shipped inside the package: give --out FILE for the "
            "calibrated copy (its own path in the package, if rewriting the shipped file is really meant)"
        )
    if split.lower() == "privatetest":
        raise DatasetError(
            "calibrate on PublicTest or a split of Training, never on PrivateTest (the test set)"
        )
    classifier = EmotionClassifier(model, threads=threads)
    labels = labels or ("ferplus" if len(classifier.classes) == 8 else "fer2013")
    dataset = load_dataset(data, labels=labels, ferplus_classes=len(classifier.classes))
    (split,) = dataset.resolve_splits(split)  # "Test" for a test/ folder, as evaluate takes it
    if split not in dataset.splits:
        raise DatasetError(
            f"{data} has no split {split} (it has {', '.join(dataset.splits) or 'none'}): calibrate on "
            "labelled faces the model never trained on, named with --split (a Kaggle-layout test/ folder "
            "holds FER-2013's PublicTest and PrivateTest together: fitting on it spends the test set)"
        )
    part = dataset.select_split(split)
    if len(part) < MIN_CALIBRATION_FACES:  # one face fitted a temperature of 0.14 and "ECE 0.00 %"
        raise DatasetError(
            f"--split {split} of {data} has {len(part)} faces: a calibration fitted on fewer than "
            f"{MIN_CALIBRATION_FACES} fits their noise; give a split of more labelled faces"
        )
    if trained_on_faces(classifier.metadata, data, split):
        log.warning(
            "--split %s is the split %s trained on: its confidences would be fitted to faces it has "
            "learnt (over-confident on new faces); calibrate on faces it never trained on",
            split,
            classifier.path.name,
        )
    if list(part.class_names) != classifier.classes:
        raise DatasetError(
            f"model classes {classifier.classes} differ from the dataset's {list(part.class_names)}"
        )
    part.check_face_size(classifier.face_size, str(classifier.path))
    counts = np.bincount(part.labels, minlength=len(part.class_names))
    scarce = f"{part.class_names[int(counts.argmin())]} has {counts.min()}"
    if method == "vector" and counts.min() < MIN_FACES_PER_CLASS:
        raise DatasetError(
            f"vector scaling fits a scale and a bias per class and needs {MIN_FACES_PER_CLASS} faces of "
            f"each in --split {split} ({scarce}); use --method temperature or auto"
        )
    small = method == "auto" and counts.min() < MIN_FACES_PER_CLASS
    if small:  # too few faces of a class for its own bias: one temperature for both modes
        method = "temperature"
    entry = fit_calibration(
        classifier.logits(part.images), classifier.logits(part.images, tta=True), part.labels, split, method
    )
    if small:
        entry["method_why"] = (
            f"fewer than {MIN_FACES_PER_CLASS} faces of a class for vector scaling ({scarce})"
        )
    meta = {**classifier.metadata, CALIBRATION_KEY: entry}
    write_model(Path(out) if out else classifier.path, classifier.path.read_bytes(), meta)
    return entry
