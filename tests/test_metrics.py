"""evaluate's metrics as scikit-learn defines them, on labels made up to hit the edge cases; the paired
comparison of two models (`evaluate --against`) on hand-worked counts and through the CLI."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from conftest import run_cli

from facial_emotion.evaluation.evaluate import model_names
from facial_emotion.evaluation.metrics import paired_comparison, sign_test_p, summarize
from facial_emotion.labels import EMOTIONS


def test_macro_f1_counts_only_the_classes_that_occur() -> None:
    """Disgust neither in the labels nor in the predictions: it is left out of the mean, as
    scikit-learn leaves it (it counted as an F1 of 0)."""
    y_true = np.array([0, 0, 2, 2, 3, 3, 3, 4, 5, 6])
    y_pred = np.array([0, 2, 2, 2, 3, 3, 0, 4, 6, 6])
    got = summarize(y_true, y_pred, list(EMOTIONS))
    # per present class (0, 2, 3, 4, 5, 6): F1 = 2PR / (P + R); scikit-learn's f1_score(average="macro")
    # gives their mean, 0.6278
    f1 = {0: 0.5, 2: 0.8, 3: 0.8, 4: 1.0, 5: 0.0, 6: 2 / 3}
    assert got["macro_f1"] == pytest.approx(np.mean(list(f1.values())), abs=1e-4)
    assert got["per_class"]["disgust"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}


def test_sign_test_p_is_the_exact_two_sided_binomial_tail() -> None:
    assert sign_test_p(10, 0) == pytest.approx(2 / 2**10) == sign_test_p(0, 10)  # all ten one way
    # 5 of 20 one way: 2 x (C(20,0) + ... + C(20,5)) / 2^20, the sum worked by hand
    assert sign_test_p(15, 5) == pytest.approx(2 * (1 + 20 + 190 + 1140 + 4845 + 15504) / 2**20)
    assert sign_test_p(7, 7) == sign_test_p(0, 0) == 1.0  # an even split; no face that differs
    assert sign_test_p(500, 0) == pytest.approx(2 / 2**500, rel=1e-9)  # far in the tail, not 0
    # 100,000 faces that differ (a large dataset): near the continuity-corrected normal approximation
    z = (50500 - 100000 / 2 - 0.5) / math.sqrt(100000 / 4)
    assert sign_test_p(50500, 49500) == pytest.approx(math.erfc(z / math.sqrt(2)), rel=0.02)


def test_paired_comparison_counts_the_faces_only_one_model_gets_right() -> None:
    truth = np.array([0, 1, 2, 3, 4, 5, 6, 0, 1, 2])
    a_right = np.arange(10) < 8  # faces 0-7
    b_right = np.arange(10) >= 4  # faces 4-9
    pred_a = np.where(a_right, truth, (truth + 1) % 7)
    pred_b = np.where(b_right, truth, (truth + 2) % 7)
    got = paired_comparison(truth, pred_a, pred_b)
    assert (got["n"], got["accuracy"], got["only_this_right"], got["only_other_right"]) == (10, 0.6, 4, 2)
    assert got["difference"] == pytest.approx(0.8 - 0.6)
    # Wald interval of a paired difference: se = sqrt(4 + 2 - 10 x 0.2^2) / 10
    half = 1.96 * math.sqrt(5.6) / 10
    assert got["difference_ci95"] == pytest.approx([0.2 - half, 0.2 + half], abs=1e-4)
    assert got["sign_test_p"] == pytest.approx(2 * (1 + 6 + 15) / 2**6, abs=1e-4)  # 2 of 6 one way
    # a lead far beyond noise keeps its p (rounded to 4 decimals it read 0)
    truth = np.zeros(60, dtype=int)
    assert paired_comparison(truth, truth, truth + 1)["sign_test_p"] == pytest.approx(2 / 2**60, rel=1e-3)


def test_two_runs_files_are_named_by_their_folders() -> None:
    """Every run's file is RUN/model.onnx: "model.onnx is right on 5 faces that model.onnx gets wrong"."""
    assert model_names("/a/run1/model.onnx", "/a/run2/model.onnx") == ("run1/model.onnx", "run2/model.onnx")
    assert model_names("/w/emotion.onnx", "/w/emotion-fp32.onnx") == ("emotion.onnx", "emotion-fp32.onnx")
    assert model_names("/w/m.onnx", "/w/m.onnx") == ("m.onnx", "m.onnx")  # itself
    assert model_names("/a/x/m.onnx", "/b/x/m.onnx") == ("/a/x/m.onnx", "/b/x/m.onnx")


def test_evaluate_against_a_model_scores_both_on_the_same_faces(tiny_csv: Path) -> None:
    args = ["evaluate", "--data", str(tiny_csv), "--split", "PublicTest", "--model", "fast"]
    proc = run_cli(*args, "--against", "default", "--json")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    against = result["against"]
    alone = run_cli(
        "evaluate", "--data", str(tiny_csv), "--split", "PublicTest", "--model", "default", "--json"
    )
    assert alone.returncode == 0, alone.stderr
    other = json.loads(alone.stdout)
    assert against["model"] == other["model"] and against["n"] == result["n"] == 70
    # each side as evaluate scores it alone, calibrated and raw
    assert against["accuracy"] == other["accuracy"]
    assert against["uncalibrated"]["accuracy"] == other["accuracy_uncalibrated"]
    for pairs, mine in (
        (against, result["accuracy"]),
        (against["uncalibrated"], result["accuracy_uncalibrated"]),
    ):
        # the faces only one model gets right are the whole difference between them
        gap = (pairs["only_this_right"] - pairs["only_other_right"]) / 70
        assert pairs["difference"] == pytest.approx(gap, abs=1e-4)
        assert mine - pairs["accuracy"] == pytest.approx(gap, abs=2e-4)
    # a model against itself: no face differs
    proc = run_cli(*args, "--against", "fast")
    assert proc.returncode == 0, proc.stderr
    line = next(x for x in proc.stdout.splitlines() if x.startswith("against"))
    assert "emotion-fast.onnx is right on 0 faces that emotion-fast.onnx gets wrong" in line
    assert line.endswith("+0.00 points (95 % CI +0.00 to +0.00), sign test p = 1")
    # a wrong --against is said before the first model's faces are scored
    proc = run_cli(*args, "--against", str(tiny_csv.parent / "no-such.onnx"))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().endswith(f"error: model file not found: {tiny_csv.parent / 'no-such.onnx'}")
