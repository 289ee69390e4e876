"""The built-in models on the real FER-2013 PublicTest: the fp32 ONNX evaluation reproduces the
accuracy recorded at training time; the int8 default, made from it, gives up at most 0.3 points and
agrees with it face by face; the lossless csv and the Kaggle JPEGs agree within one point."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from conftest import need_shared

from facial_emotion import settings
from facial_emotion.data import load_dataset
from facial_emotion.inference.classifier import EmotionClassifier
from facial_emotion.labels import EMOTIONS
from facial_emotion.model_file import (
    BUILTIN_MODELS,
    ModelFileError,
    builtin_model_path,
    default_model_path,
)


def evaluate_json(*args: str) -> dict:
    proc = subprocess.run(
        [sys.executable, "-m", "facial_emotion", "evaluate", *args, "--json"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.fixture(scope="module")
def publictest_csv() -> dict:
    return evaluate_json(
        "--data", str(need_shared("datasets", "fer2013", "fer2013.csv.gz")), "--split", "PublicTest"
    )


@pytest.fixture(scope="module")
def fp32_publictest_csv() -> dict:
    path = need_shared("datasets", "fer2013", "fer2013.csv.gz")
    return evaluate_json("--data", str(path), "--split", "PublicTest", "--model", "fp32")


def test_onnx_accuracy_matches_the_training_record(fp32_publictest_csv: dict) -> None:
    meta = json.loads(builtin_model_path("fp32").with_suffix(".json").read_text())
    assert fp32_publictest_csv["n"] == 3589 and fp32_publictest_csv["split"] == "PublicTest"
    if meta.get("val_split") not in ("default", "PublicTest") or "fer2013" not in meta.get("dataset", ""):
        pytest.skip("the built-in model was not validated on FER-2013 PublicTest")
    # Same faces, same centre crop: onnxruntime must reproduce what PyTorch measured (before the
    # calibration, which PyTorch did not have).
    assert fp32_publictest_csv["accuracy_uncalibrated"] == pytest.approx(meta["val_accuracy"], abs=0.003)
    # what calibrate recorded (fitted in float64; the classifier runs float32: a near tie may differ)
    assert fp32_publictest_csv["accuracy"] == pytest.approx(
        meta["calibration"]["accuracy_after"], abs=2 / 3589
    )


def test_int8_default_loses_at_most_0_3_points(publictest_csv: dict, fp32_publictest_csv: dict) -> None:
    q = EmotionClassifier("default").metadata["quantized"]
    acc = q["accuracy"]
    assert acc["split"] == "PublicTest" and q["calibration"]["split"] == "Training"
    # What `facial-emotion quantize` recorded (uncalibrated) is what evaluate measures now, for both.
    assert publictest_csv["accuracy_uncalibrated"] == pytest.approx(acc["after"], abs=1e-4)
    assert fp32_publictest_csv["accuracy_uncalibrated"] == pytest.approx(acc["before"], abs=1e-4)
    assert acc["after"] >= acc["before"] - 0.003 and acc["after_tta"] >= acc["before_tta"] - 0.003


def test_default_against_fp32_pairs_the_two_on_publictest(
    publictest_csv: dict, fp32_publictest_csv: dict
) -> None:
    """`evaluate --against`: each model's figure is the one it gets alone, and the int8 file differs from
    the fp32 one it was made from on few faces, which the sign test does not call a difference."""
    path = need_shared("datasets", "fer2013", "fer2013.csv.gz")
    result = evaluate_json("--data", str(path), "--split", "PublicTest", "--against", "fp32")
    against = result["against"]
    assert (
        result["accuracy"] == publictest_csv["accuracy"]
        and against["accuracy"] == fp32_publictest_csv["accuracy"]
    )
    raw = against["uncalibrated"]
    assert raw["accuracy"] == fp32_publictest_csv["accuracy_uncalibrated"]
    for pairs in (against, raw):
        assert pairs["n"] == 3589 and pairs["only_this_right"] + pairs["only_other_right"] <= 0.02 * 3589
        assert pairs["sign_test_p"] > 0.05


def test_builtin_models_load_by_name_with_the_same_classes() -> None:
    default, fp32 = EmotionClassifier("default"), EmotionClassifier("fp32")
    assert set(BUILTIN_MODELS) >= {"default", "fp32"}
    assert default.path == builtin_model_path() and fp32.path == builtin_model_path("fp32")
    assert default.classes == fp32.classes == list(EMOTIONS)
    assert (default.face_size, default.crop) == (fp32.face_size, fp32.crop)
    # The default is the fp32 file quantized: same metadata but for `quantized` and each one's own
    # calibration (fitted on its own logits after quantization, so the fp32 file's bytes, and the
    # hash the quantization recorded, have changed since).
    meta, fp32_meta = dict(default.metadata), dict(fp32.metadata)
    q = meta.pop("quantized")
    assert len(meta.pop("calibration")["scale"]) == len(fp32_meta.pop("calibration")["scale"]) == 7
    assert fp32_meta.pop("quantized") == "none" and meta == fp32_meta
    assert len(q["source"]["sha256"]) == 64
    with pytest.raises(ModelFileError, match="model file not found"):
        EmotionClassifier("no-such-model")  # not a name: a path, and a missing one


def test_int8_and_fp32_agree_on_real_faces() -> None:
    faces = load_dataset(need_shared("datasets", "fer2013", "fer2013.csv.gz")).select_split("PublicTest")
    int8 = EmotionClassifier("default").predict(faces.images)
    fp32 = EmotionClassifier("fp32").predict(faces.images)
    assert np.mean(int8.argmax(1) == fp32.argmax(1)) >= 0.98
    assert np.abs(int8 - fp32).mean() < 0.01


def test_the_environment_names_a_builtin_model(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FACIAL_EMOTION_MODEL", "fp32")
    settings.reload()
    try:
        assert default_model_path() == builtin_model_path("fp32")
        assert EmotionClassifier().metadata["quantized"] == "none"
    finally:
        monkeypatch.delenv("FACIAL_EMOTION_MODEL")
        settings.reload()
    assert EmotionClassifier().path == builtin_model_path()


def test_kaggle_jpegs_agree_with_the_csv_within_one_point(publictest_csv: dict) -> None:
    kaggle = evaluate_json("--data", str(need_shared("datasets", "fer2013-kaggle")), "--split", "test")
    assert kaggle["n"] == 3589
    # the data path's agreement, so the model's raw labels (the calibration was fitted on the csv's faces)
    assert abs(kaggle["accuracy_uncalibrated"] - publictest_csv["accuracy_uncalibrated"]) <= 0.01


def test_train_defaults_are_the_builtin_recipe() -> None:
    """`facial-emotion train` without options reproduces the built-in model (its seed aside; of a model
    trained in stages, its first stage)."""
    pytest.importorskip("torch", reason="the training config needs the [train] extra")
    from facial_emotion.training.config import TrainConfig

    meta = EmotionClassifier("fp32").metadata
    recipe = (meta.get("stages") or [meta])[0]["recipe"]
    defaults = json.loads(json.dumps(TrainConfig().to_dict()))  # tuples as JSON lists, like the metadata
    keys = ("arch", "epochs", "batch_size", "lr", "weight_decay", "momentum", "schedule", "label_smoothing")
    keys += ("mixup", "ema_decay", "labels", "ferplus_mix", "distill", "augment")
    assert {k: recipe[k] for k in keys} == {k: defaults[k] for k in keys}
