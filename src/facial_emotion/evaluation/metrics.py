"""Accuracy, confusion matrix and per-class precision / recall / F1 (as scikit-learn defines them),
and the paired comparison of two models on the same faces."""

from __future__ import annotations

import math
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


def sign_test_p(wins: int, losses: int) -> float:
    """Two-sided exact sign test (McNemar's exact test): the chance of a split at least this uneven
    of the faces only one of two models gets right, were each as likely to be the one. The binomial
    tail is summed in logs (log C(n, i+1) = log C(n, i) + log((n - i) / (i + 1))): exact integers took
    20 s for 20,000 such faces."""
    n, k = wins + losses, min(wins, losses)
    if n == 0:
        return 1.0
    i = np.arange(k, dtype=np.float64)
    log_comb = np.concatenate([[0.0], np.cumsum(np.log(n - i) - np.log(i + 1))])  # log C(n, 0..k)
    top = log_comb.max()
    log_tail = top + math.log(np.exp(log_comb - top).sum()) - n * math.log(2)
    return min(1.0, 2 * math.exp(log_tail))


def paired_comparison(y_true: np.ndarray, pred_a: np.ndarray, pred_b: np.ndarray) -> dict[str, Any]:
    """Two models' predictions on the same faces: how many each gets right that the other gets wrong,
    the sign test on those, and the accuracy difference (a minus b) with its 95 % interval (the
    paired Wald one: a normal approximation, loose where few faces differ, where the sign test is the
    one to read). Faces both get right or wrong say nothing about which is better, so a
    difference of a point on 3,589 faces can be noise or not depending on how many faces differ."""
    right_a, right_b = pred_a == y_true, pred_b == y_true
    n = len(y_true)
    only_a, only_b = int(np.sum(right_a & ~right_b)), int(np.sum(right_b & ~right_a))
    diff = (only_a - only_b) / n if n else 0.0
    se = math.sqrt(max(only_a + only_b - n * diff * diff, 0.0)) / n if n else 0.0
    return {
        "n": int(n),
        "accuracy": round(float(right_b.mean()), 4) if n else 0.0,
        "only_this_right": only_a,
        "only_other_right": only_b,
        "difference": round(diff, 4),
        "difference_ci95": [round(diff - 1.96 * se, 4), round(diff + 1.96 * se, 4)],
        "sign_test_p": float(f"{sign_test_p(only_a, only_b):.4g}"),  # significant figures: 3e-9 is no 0
    }
