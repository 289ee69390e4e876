"""Calibrated confidences: the temperature fit, ECE/NLL, the stored calibration applied in every path,
and the ``uncertain`` flag."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import need_shared

from facial_emotion import EmotionRecognizer
from facial_emotion.evaluation.calibration import (
    ece,
    fit_calibration,
    fit_temperature,
    nll,
    probabilities,
    uncertain_threshold,
)
from facial_emotion.inference.classifier import EmotionClassifier, softmax
from facial_emotion.model_file import BUILTIN_MODELS, CALIBRATION_KEY, resolve_model_path
from facial_emotion.results.schema import face_json

pytest.importorskip("onnx")  # writing model metadata needs it (the [train] extra)


def synthetic(n: int = 20000, temperature: float = 0.5, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Logits whose true probabilities are softmax(logits / temperature), and labels drawn from them."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 2, (n, 7))
    p = softmax(logits, temperature)
    labels = (p.cumsum(axis=1) > rng.random((n, 1))).argmax(axis=1)
    return logits, labels


def test_temperature_fit_recovers_the_true_temperature() -> None:
    logits, labels = synthetic()
    t = fit_temperature(logits, labels)
    assert t == pytest.approx(0.5, rel=0.05)
    assert ece(probabilities(logits, t), labels) < 0.015 < ece(probabilities(logits), labels)
    assert nll(probabilities(logits, t), labels) < nll(probabilities(logits), labels)


def test_ece_and_nll_on_a_hand_example() -> None:
    probs = np.array([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.6, 0.4]])
    labels = np.array([0, 1, 0, 0])
    # bin (0.867, 0.933]: confidence 0.9, accuracy 0.5; bin (0.533, 0.6]: confidence 0.6, accuracy 1.0
    assert ece(probs, labels) == pytest.approx(0.5 * 0.4 + 0.5 * 0.4)
    assert nll(probs, labels) == pytest.approx(-np.mean(np.log([0.9, 0.1, 0.6, 0.6])))


def test_uncertain_threshold_is_where_the_top_label_stops_being_right_half_the_time() -> None:
    logits, labels = synthetic(temperature=1.0)
    probs = probabilities(logits)
    threshold = uncertain_threshold(probs, labels)
    conf, right = probs.max(axis=1), probs.argmax(axis=1) == labels
    assert right[conf < threshold].mean() < 0.5 <= right[conf >= threshold].mean()
    entry = fit_calibration(logits, logits[:, None, :].repeat(2, axis=1), labels, "synthetic")
    assert entry["ece_after"] <= entry["ece_before"] and "temperature_tta" in entry


def calibrated_copy(tmp_path: Path, **calibration: float) -> Path:
    """The built-in fp32 model with the given calibration in its metadata."""
    from facial_emotion.model_file import write_model

    source = resolve_model_path("fp32")
    meta = {**EmotionClassifier(source).metadata, CALIBRATION_KEY: calibration}
    out = tmp_path / "calibrated.onnx"
    write_model(out, source.read_bytes(), meta)
    return out


def test_stored_temperature_is_applied(tmp_path: Path) -> None:
    faces = np.random.default_rng(0).integers(0, 256, (5, 48, 48), dtype=np.uint8)
    model = EmotionClassifier(calibrated_copy(tmp_path, temperature=2.0, temperature_tta=3.0))
    logits = model.logits(faces)
    assert model.predict(faces) == pytest.approx(softmax(logits / 2.0), abs=1e-6)
    assert model.predict(faces, calibrated=False) == pytest.approx(softmax(logits), abs=1e-6)
    tta = model.logits(faces, tta=True)
    assert model.predict(faces, tta=True) == pytest.approx(softmax(tta / 3.0).mean(axis=1), abs=1e-6)
    # the labels never change, only how sure they look
    assert (model.predict(faces).argmax(1) == softmax(logits).argmax(1)).all()


def test_uncertain_flag_at_the_stored_threshold(tmp_path: Path) -> None:
    photo = need_shared("media", "two_people.jpg")
    sure = EmotionRecognizer(calibrated_copy(tmp_path, temperature=1.0, uncertain_below=0.0)).analyze(photo)
    model = calibrated_copy(tmp_path, temperature=1.0, uncertain_below=0.999)
    unsure = EmotionRecognizer(model).analyze(photo)
    assert len(sure) == len(unsure) == 2
    assert not any(f.uncertain for f in sure) and all(f.uncertain for f in unsure)
    doc = face_json(unsure[0])
    assert (
        doc["uncertain"] is True and doc["runner_up"] in doc["scores"] and doc["runner_up"] != doc["emotion"]
    )
    # the flag reaches the CLI's outputs
    proc = subprocess.run(
        [sys.executable, "-m", "facial_emotion", "analyze", str(photo), "--json", "--model", str(model)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert [f["uncertain"] for f in json.loads(proc.stdout)[0]["faces"]] == [True, True]


def test_builtin_models_are_calibrated() -> None:
    for name in BUILTIN_MODELS:
        entry = EmotionClassifier(name).metadata[CALIBRATION_KEY]
        assert entry["fit_split"] == "PublicTest"
        assert 0.5 < entry["temperature"] < 1.5
        assert entry["ece_after"] < entry["ece_before"] and entry["nll_after"] < entry["nll_before"]
        assert 0 < entry["uncertain_below"] < 1


def test_evaluate_reports_ece_and_nll_and_calibrate_refuses_the_test_split(tiny_csv: Path) -> None:
    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "facial_emotion", *args], capture_output=True, text=True, timeout=300
        )

    proc = cli("evaluate", "--data", str(tiny_csv), "--split", "PublicTest", "--json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert 0 <= doc["ece"] <= 1 and doc["nll"] > 0 and doc["temperature"] > 0
    proc = cli("calibrate", "default", "--data", str(tiny_csv), "--split", "PrivateTest")
    assert proc.returncode == 2 and "never on PrivateTest" in proc.stderr and "Traceback" not in proc.stderr
