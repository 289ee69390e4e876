"""Accuracy, confusion matrix and per-class precision / recall / F1 (as scikit-learn defines them)."""

from __future__ import annotations

from typing import Any

import numpy as np


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """Rows = true class, columns = predicted class."""
    return np.bincount(y_true * num_classes + y_pred, minlength=num_classes * num_classes).reshape(
        num_classes, num_classes
    )


def _scores(cm: np.ndarray) -> tuple[np.ndarray, ...]:
    """Per class: precision, recall, F1 (0 where undefined, as scikit-learn's zero_division=0) and the
    number of true and of predicted faces."""
    tp = np.diag(cm).astype(float)
    support = cm.sum(axis=1)
    predicted = cm.sum(axis=0)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, support, out=np.zeros_like(tp), where=support > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(tp), where=denom > 0)
    return precision, recall, f1, support, predicted


def per_class_report(cm: np.ndarray, classes: list[str]) -> dict[str, dict[str, float]]:
    precision, recall, f1, support, _ = _scores(cm)
    return {
        c: {
            "precision": round(float(precision[i]), 4),
            "recall": round(float(recall[i]), 4),
            "f1": round(float(f1[i]), 4),
            "support": int(support[i]),
        }
        for i, c in enumerate(classes)
    }


def macro_f1(cm: np.ndarray) -> float:
    """The mean F1 over the classes that occur among the labels or the predictions, as scikit-learn's
    ``f1_score(average="macro")`` (a class absent from both would count as 0 otherwise)."""
    _, _, f1, support, predicted = _scores(cm)
    present = (support + predicted) > 0
    return float(f1[present].mean()) if present.any() else 0.0


def summarize(y_true: np.ndarray, y_pred: np.ndarray, classes: list[str]) -> dict[str, Any]:
    cm = confusion_matrix(y_true, y_pred, len(classes))
    return {
        "accuracy": round(float((y_true == y_pred).mean()), 4) if len(y_true) else 0.0,
        "n": int(len(y_true)),
        "macro_f1": round(macro_f1(cm), 4),
        "per_class": per_class_report(cm, classes),
        "confusion_matrix": cm.tolist(),
    }
