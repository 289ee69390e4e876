"""Model files a user brings or edits, and the commands that write them: a damaged description is one
clear error naming the file, a model for other face sizes is refused by evaluate and calibrate, a
failed write loses no model, and an ensemble holds distinct, sound members and says what is int8."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import model_with_description, run_cli, synthetic_faces, write_fer_csv

from facial_emotion.inference.classifier import EmotionClassifier
from facial_emotion.model_file import ModelFileError, builtin_model_path, write_model

DAMAGED = {
    "format_version": "abc",
    "calibration": "abc",
    "calibration:scale without bias": {"scale": [1.0] * 7},
    "calibration:temperature 0": {"temperature": 0},
    "calibration:negative temperature": {"temperature": -1.0},
    "calibration:uncertain_below": {"temperature": 1.2, "uncertain_below": "x"},
    "calibration:nested scales": {"scale": [[1.0]] * 7, "bias": [0.0] * 7},
}


@pytest.mark.parametrize("what", sorted(DAMAGED))
def test_a_damaged_description_is_one_error_naming_the_file(tmp_path: Path, what: str) -> None:
    """Hand-edited or damaged metadata gave TypeErrors, KeyErrors and a ZeroDivisionError (exit 1,
    a traceback), and a negative temperature silently turned every ranking round."""
    key = what.split(":")[0]
    path = model_with_description(tmp_path, "edited", **{key: DAMAGED[what]})
    with pytest.raises(ModelFileError) as refused:
        EmotionClassifier(path)
    said = str(refused.value)
    assert said.startswith(f"{path}: ")
    assert (
        "damaged calibration" in said
        if key == "calibration"
        else "'format_version' must be a whole number" in said
    )


def test_metadata_that_is_not_an_object_is_refused_by_the_command_line(tmp_path: Path) -> None:
    path = tmp_path / "null.onnx"
    write_model(path, builtin_model_path("fast").read_bytes(), None)  # type: ignore[arg-type]
    proc = run_cli("analyze", "--model", str(path), str(path))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert f"{path}: damaged metadata (not a JSON object)" in proc.stderr


def test_a_folder_given_as_the_model_is_named_as_one(tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match="a folder, not a model file"):  # it said "not found"
        EmotionClassifier(tmp_path)


def test_a_model_for_other_face_sizes_is_refused_by_evaluate_and_calibrate(tmp_path: Path) -> None:
    """evaluate and calibrate fed the dataset's 48 px faces to a 64 px model: a ValueError traceback."""
    images, labels = synthetic_faces(70)
    data = write_fer_csv(tmp_path / "faces.csv", images, labels, ["PublicTest"] * 70)
    model = model_with_description(tmp_path, "face64", face_size=64)
    for command in (
        ["evaluate", "--data", str(data), "--split", "PublicTest", "--model", str(model)],
        ["calibrate", str(model), "--data", str(data), "--split", "PublicTest", "--method", "temperature"],
    ):
        proc = run_cli(*command)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
        assert f"faces are 48 px, the model {model} wants 64 px" in proc.stderr


def test_a_write_that_cannot_finish_replaces_no_model(tmp_path: Path) -> None:
    """With a folder where the description goes, the model file was replaced and then the command
    failed: the user's model was lost."""
    mine = tmp_path / "mine.onnx"
    write_model(mine, builtin_model_path("fast").read_bytes(), EmotionClassifier("fast").metadata)
    before = mine.read_bytes()
    mine.with_suffix(".json").unlink()
    mine.with_suffix(".json").mkdir()
    with pytest.raises(ModelFileError, match="is a folder"):
        write_model(mine, builtin_model_path("default").read_bytes(), EmotionClassifier("default").metadata)
    assert mine.read_bytes() == before


def test_an_ensemble_has_distinct_sound_members_and_says_what_is_int8(tmp_path: Path) -> None:
    """One file twice was an ensemble; a member whose graph gives 8 outputs for 7 classes failed as
    "the merged graph does not load" naming no member; and an ensemble of int8 members did not say
    so, so `quantize` quantized it again into a file nothing could load."""
    pytest.importorskip("onnx", reason="ensemble and quantize need the [train] extra")
    proc = run_cli("ensemble", "fast", "fast", "--out", str(tmp_path / "twice.onnx"))
    assert (
        proc.returncode == 2 and "is the same model file as" in proc.stderr and "Traceback" not in proc.stderr
    )
    eight = model_with_description(tmp_path, "eight-outputs", classes=["a", "b", "c", "d", "e", "f"])
    proc = run_cli("ensemble", "fast", str(eight), "--out", str(tmp_path / "bad.onnx"))
    assert proc.returncode == 2 and str(eight) in proc.stderr and "Traceback" not in proc.stderr
    pair = tmp_path / "pair.onnx"
    proc = run_cli("ensemble", "default", "fp32", "--out", str(pair))
    assert proc.returncode == 0, proc.stderr
    assert json.loads(pair.with_suffix(".json").read_text())["quantized"] == {
        "scheme": f"int8 members ({builtin_model_path().name})"
    }
    images, labels = synthetic_faces(70)
    data = write_fer_csv(tmp_path / "faces.csv", images, labels, ["Training"] * 70)
    proc = run_cli("quantize", str(pair), "--data", str(data), "--out", str(tmp_path / "q.onnx"))
    assert proc.returncode == 2 and "already quantized" in proc.stderr and not (tmp_path / "q.onnx").exists()
    assert np.isfinite(EmotionClassifier(pair).logits(images[:4])).all()
