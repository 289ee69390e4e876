"""Calibrated confidences: temperature scaling fitted on held-out logits, and the measures of how well
confidences match accuracy (expected calibration error, negative log-likelihood).

A model trained with label smoothing and mixup is under-confident: on FER-2013 its mean confidence is
well below its accuracy, so users see "Sad 26 %" on faces the model in fact gets right most of the
time. One temperature ``T`` divides the logits (``softmax(logits / T)``; T < 1 sharpens) and leaves
every label unchanged; it is fitted on PublicTest (never PrivateTest) by minimising the NLL, stored in
the model's metadata, and applied by the classifier in every path (CLI, API, service, video).

``uncertain_below``: the top probability under which a face is flagged ``uncertain``. Chosen from the
calibrated reliability curve: the confidence at which the top label becomes right at least half of
the time (below it, the runner-up is about as likely).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from facial_emotion.inference.classifier import softmax
from facial_emotion.model_file import CALIBRATION_KEY

ECE_BINS = 15


def probabilities(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """(N, C) logits, or (N, K, C) logits of K test-time crops averaged after the softmax."""
    p = softmax(logits, temperature)
    return p.mean(axis=1) if p.ndim == 3 else p


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


def reliability(probs: np.ndarray, labels: np.ndarray, bins: int = 10) -> list[dict[str, float]]:
    """Per confidence bin: its range, faces, mean confidence and accuracy (the reliability diagram)."""
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
        return nll(probabilities(logits, float(np.exp(log_t))), labels)

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


def uncertain_threshold(probs: np.ndarray, labels: np.ndarray, bins: int = 20) -> float:
    """The lowest confidence from which the top label is right at least half of the time: the lower
    edge of the first bin (from the top down) whose accuracy falls under 50 %, or 0.5 by default."""
    curve = reliability(probs, labels, bins)
    threshold = 0.5
    for row in sorted(curve, key=lambda r: -r["to"]):
        if row["faces"] >= 20 and row["accuracy"] < 0.5:
            return round(row["to"], 3)
        threshold = row["from"]
    return round(max(threshold, 0.0), 3)


def fit_calibration(
    logits: np.ndarray, tta_logits: np.ndarray | None, labels: np.ndarray, split: str
) -> dict[str, Any]:
    """The metadata entry: temperatures for plain and ten-crop inference, the uncertain threshold and
    the before/after measures on the split they were fitted on."""
    t = fit_temperature(logits, labels)
    before, after = probabilities(logits), probabilities(logits, t)
    entry: dict[str, Any] = {
        "method": "temperature scaling (NLL)",
        "fit_split": split,
        "faces": len(labels),
        "temperature": round(t, 4),
        "uncertain_below": uncertain_threshold(after, labels),
        "ece_before": round(ece(before, labels), 4),
        "ece_after": round(ece(after, labels), 4),
        "nll_before": round(nll(before, labels), 4),
        "nll_after": round(nll(after, labels), 4),
    }
    if tta_logits is not None:
        t_tta = fit_temperature(tta_logits, labels)
        entry["temperature_tta"] = round(t_tta, 4)
        entry["ece_tta_before"] = round(ece(probabilities(tta_logits), labels), 4)
        entry["ece_tta_after"] = round(ece(probabilities(tta_logits, t_tta), labels), 4)
    return entry


def calibrate_model(
    model: str | Path | None,
    data: str | Path,
    split: str,
    out: Path | None = None,
    threads: int | None = None,
) -> dict[str, Any]:
    """Fit the calibration of a model file on a labelled split and store it in the model's metadata
    (``out``, default: the model file itself, rewritten atomically). Returns the metadata entry.
    PrivateTest is refused: it is the held-out test, and fitting on it would make its figures
    optimistic."""
    from facial_emotion.data import DatasetError, load_dataset
    from facial_emotion.inference.classifier import EmotionClassifier
    from facial_emotion.model_file import write_model

    if split == "PrivateTest":
        raise DatasetError(
            "calibrate on PublicTest or a split of Training, never on PrivateTest (the test set)"
        )
    classifier = EmotionClassifier(model, threads=threads)
    part = load_dataset(data).select_split(split)
    if list(part.class_names) != classifier.classes:
        raise DatasetError(
            f"model classes {classifier.classes} differ from the dataset's {list(part.class_names)}"
        )
    entry = fit_calibration(
        classifier.logits(part.images), classifier.logits(part.images, tta=True), part.labels, split
    )
    meta = {**classifier.metadata, CALIBRATION_KEY: entry}
    write_model(Path(out) if out else classifier.path, classifier.path.read_bytes(), meta)
    return entry
