"""Calibrated confidences: the temperature and vector-scaling fits, ECE/NLL, the stored calibration
applied in every path, and the ``uncertain`` flag."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import need_shared

from facial_emotion import EmotionRecognizer
from facial_emotion.evaluation.calibration import (
    _nll_gradient,
    choose_method,
    cross_fitted,
    ece,
    fit_calibration,
    fit_temperature,
    fit_vector_scaling,
    nll,
    probabilities,
    uncertain_threshold,
)
from facial_emotion.evaluation.evaluate import calibration_method
from facial_emotion.inference.classifier import EmotionClassifier, softmax
from facial_emotion.model_file import BUILTIN_MODELS, CALIBRATION_KEY, ModelFileError, resolve_model_path
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
    assert ece(probabilities(logits, 1 / t), labels) < 0.015 < ece(probabilities(logits), labels)
    assert nll(probabilities(logits, 1 / t), labels) < nll(probabilities(logits), labels)


def test_vector_scaling_recovers_per_class_scales_and_biases() -> None:
    rng = np.random.default_rng(1)
    logits = rng.normal(0, 2, (30000, 4))
    true_scale, true_bias = np.array([0.5, 1.0, 2.0, 1.5]), np.array([0.3, -0.4, 0.0, 0.6])
    p = softmax(logits * true_scale + true_bias)
    labels = (p.cumsum(axis=1) > rng.random((len(p), 1))).argmax(axis=1)
    scale, bias = fit_vector_scaling(logits, labels)
    assert scale == pytest.approx(true_scale, abs=0.06)
    # biases are defined up to a common shift (softmax ignores it)
    assert bias - bias.mean() == pytest.approx(true_bias - true_bias.mean(), abs=0.06)
    # one temperature cannot express per-class scales: the held-out (cross-fitted) figures say so
    temperature = {"ece": ece(cross_fitted(logits, labels, "temperature"), labels)}
    vector = {"ece": ece(cross_fitted(logits, labels, "vector"), labels)}
    assert vector["ece"] < 0.015 < temperature["ece"]


def test_auto_takes_vector_scaling_unless_it_costs_accuracy_out_of_sample() -> None:
    rng = np.random.default_rng(3)
    logits = rng.normal(0, 2, (6000, 4))
    # the truth has per-class biases: the raw argmax is often wrong, fitted biases fix it out of sample
    p = softmax(logits + np.array([1.5, 0.0, -1.0, 0.0]))
    labels = (p.cumsum(axis=1) > rng.random((len(p), 1))).argmax(axis=1)
    assert choose_method(logits, labels, splits=3) == "vector"
    entry = fit_calibration(logits, None, labels, "synthetic")
    assert entry["method"] == "vector scaling (NLL)" and "method_tta" not in entry
    assert entry["accuracy_after_crossfit"] > entry["accuracy_before"] + 0.02
    # a weak, already calibrated model on few faces: 14 numbers fitted on 150 faces a half move labels
    # for the worse out of sample (here 36.3 % -> 33.7 %), so one temperature, which keeps every label
    rng = np.random.default_rng(1)
    logits = rng.normal(0, 1.0, (300, 7))
    labels = (softmax(logits).cumsum(axis=1) > rng.random((300, 1))).argmax(axis=1)
    assert choose_method(logits, labels) == "temperature"
    entry = fit_calibration(logits, logits[:, None, :].repeat(2, axis=1), labels, "synthetic")
    assert entry["method"] == entry["method_tta"] == "temperature scaling (NLL)"
    assert entry["accuracy_after"] == entry["accuracy_before"] and "temperature" in entry


def test_nll_gradient_matches_finite_differences_for_ten_crops() -> None:
    rng = np.random.default_rng(2)
    logits, labels = rng.normal(0, 2, (50, 10, 7)), rng.integers(0, 7, 50)
    scale, bias = rng.uniform(0.5, 1.5, 7), rng.normal(0, 0.3, 7)
    _, d_scale, d_bias = _nll_gradient(logits, labels, scale, bias)
    eps = 1e-6
    for c in range(7):
        step = np.eye(7)[c] * eps
        f = lambda s, b: _nll_gradient(logits, labels, s, b)[0]  # noqa: E731
        assert (f(scale + step, bias) - f(scale - step, bias)) / (2 * eps) == pytest.approx(
            d_scale[c], abs=1e-6
        )
        assert (f(scale, bias + step) - f(scale, bias - step)) / (2 * eps) == pytest.approx(
            d_bias[c], abs=1e-6
        )


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
    entry = fit_calibration(logits, logits[:, None, :].repeat(2, axis=1), labels, "synthetic", "vector")
    assert (
        entry["ece_after"] <= entry["ece_before"] and len(entry["scale_tta"]) == len(entry["bias_tta"]) == 7
    )


def calibrated_copy(tmp_path: Path, **calibration: object) -> Path:
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
    # a file written before vector scaling (a temperature, no method) still reads, and a calibration
    # that does not fit the model's classes is one clear error
    assert calibration_method({"temperature": 2.0}, tta=True) == "temperature scaling"
    assert calibration_method({}, tta=False) == "none"
    with pytest.raises(
        ModelFileError, match=r"calibration: .* 7 finite numbers each.* shaped \[3\] and \[7\]"
    ):
        EmotionClassifier(calibrated_copy(tmp_path, scale=[1.0, 1.0, 1.0], bias=[0.0] * 7))


def test_stored_vector_scaling_is_applied(tmp_path: Path) -> None:
    faces = np.random.default_rng(0).integers(0, 256, (5, 48, 48), dtype=np.uint8)
    scale, bias = [0.5, 1.0, 1.5, 2.0, 1.0, 0.8, 1.2], [0.0, -1.0, 0.5, 0.0, 2.0, 0.0, -0.5]
    scale_tta, bias_tta = [1.5] * 7, [0.0, 0.0, 0.0, 3.0, 0.0, 0.0, 0.0]
    model = EmotionClassifier(
        calibrated_copy(tmp_path, scale=scale, bias=bias, scale_tta=scale_tta, bias_tta=bias_tta)
    )
    logits, tta = model.logits(faces), model.logits(faces, tta=True)
    assert model.predict(faces) == pytest.approx(softmax(logits * scale + np.array(bias)), abs=1e-6)
    expected_tta = softmax(tta * 1.5 + np.array(bias_tta)).mean(axis=1)
    assert model.predict(faces, tta=True) == pytest.approx(expected_tta, abs=1e-6)
    assert model.predict(faces, calibrated=False) == pytest.approx(softmax(logits), abs=1e-6)


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
        assert entry["fit_split"] == "PublicTest" and entry["method"] == "vector scaling (NLL)"
        assert entry.get("method_tta", entry["method"]) in (
            "vector scaling (NLL)",
            "temperature scaling (NLL)",
        )
        assert len(entry["scale"]) == len(entry["bias_tta"]) == 7
        assert entry["ece_after"] < entry["ece_before"] and entry["nll_after"] < entry["nll_before"]
        assert entry["ece_after_crossfit"] < entry["ece_before"]
        assert 0 < entry["uncertain_below"] < 1


def test_evaluate_reports_ece_and_nll_and_calibrate_refuses_the_test_split(tiny_csv: Path) -> None:
    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "facial_emotion", *args], capture_output=True, text=True, timeout=300
        )

    report = tiny_csv.parent / "report"
    proc = cli(
        "evaluate", "--data", str(tiny_csv), "--split", "PublicTest", "--json", "--report", str(report)
    )
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert 0 <= doc["ece"] <= 1 and doc["nll"] > 0 and doc["calibration"] == "vector scaling (NLL)"
    assert sum(b["faces"] for b in doc["reliability"]) == sum(
        b["faces"] for b in doc["reliability_uncalibrated"]
    )
    # the report draws the reliability diagram and states ECE and NLL, calibrated and raw
    diagram = cv2.imread(str(report / "reliability.png"))
    assert diagram is not None and diagram.shape[0] > 300
    text = (report / "report.md").read_text()
    assert f"ECE {doc['ece']:.2%} (raw softmax {doc['ece_uncalibrated']:.2%})" in text
    assert "![reliability diagram](reliability.png)" in text
    out = tiny_csv.parent / "calibrated.onnx"
    proc = cli("calibrate", "default", "--data", str(tiny_csv), "--split", "PrivateTest", "--out", str(out))
    assert proc.returncode == 2 and "never on PrivateTest" in proc.stderr and "Traceback" not in proc.stderr
    # 70 faces are too few for a scale and a bias per class: vector scaling refuses, auto (the default)
    # fits one temperature and says why
    proc = cli("calibrate", "default", "--data", str(tiny_csv), "--out", str(out), "--method", "vector")
    assert proc.returncode == 2 and "--method temperature or auto" in proc.stderr and not out.exists()
    proc = cli("calibrate", "default", "--data", str(tiny_csv), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "fewer than 20 faces of a class for vector scaling" in proc.stdout
    entry = EmotionClassifier(out).metadata[CALIBRATION_KEY]
    assert entry["method"] == entry["method_tta"] == "temperature scaling (NLL)" and entry["faces"] == 70
    assert entry["scale"] == pytest.approx([1 / entry["temperature"]] * 7, rel=1e-3)


def test_calibrate_needs_enough_faces_takes_a_split_in_any_case_and_warns_on_the_training_split(
    tiny_kaggle: Path, tmp_path: Path
) -> None:
    """One face fitted a temperature of 0.14, "ECE 20.89% -> 0.00%", and flagged every face under 95 %
    uncertain; `--split Test` was refused where evaluate takes it (quantize's hint named no split for
    folder data); calibrating a model on the faces it trained on was not mentioned."""
    from conftest import model_with_description

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "facial_emotion", *args], capture_output=True, text=True, timeout=300
        )

    one = tmp_path / "one"
    (one / "happy").mkdir(parents=True)
    shutil.copy(next((tiny_kaggle / "test").glob("*/*.png")), one / "happy" / "face.png")
    out = tmp_path / "calibrated.onnx"
    proc = cli("calibrate", "fast", "--data", str(one), "--split", "all", "--out", str(out))
    assert proc.returncode == 2 and "has 1 faces" in proc.stderr and not out.exists(), proc.stderr
    mine = model_with_description(tmp_path, "mine", dataset="kaggle", train_split="train")
    proc = cli("calibrate", str(mine), "--data", str(tiny_kaggle), "--split", "Test", "--out", str(out))
    assert proc.returncode == 0 and "warning" not in proc.stderr, proc.stderr
    assert EmotionClassifier(out).metadata[CALIBRATION_KEY]["fit_split"] == "test"
    proc = cli("calibrate", str(mine), "--data", str(tiny_kaggle), "--split", "train", "--out", str(out))
    assert proc.returncode == 0 and "is the split mine.onnx trained on" in proc.stderr, proc.stderr
