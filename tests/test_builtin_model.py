"""The built-in model on the real FER-2013 PublicTest: the ONNX evaluation reproduces the accuracy
recorded at training time, and the lossless csv and the Kaggle JPEGs agree within one point."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import need_shared

from facial_emotion.model_file import builtin_model_path


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


def test_onnx_accuracy_matches_the_training_record(publictest_csv: dict) -> None:
    meta = json.loads(builtin_model_path().with_suffix(".json").read_text())
    assert publictest_csv["n"] == 3589 and publictest_csv["split"] == "PublicTest"
    if meta.get("val_split") not in ("default", "PublicTest") or "fer2013" not in meta.get("dataset", ""):
        pytest.skip("the built-in model was not validated on FER-2013 PublicTest")
    # Same faces, same centre crop: onnxruntime must reproduce what PyTorch measured.
    assert publictest_csv["accuracy"] == pytest.approx(meta["val_accuracy"], abs=0.003)


def test_kaggle_jpegs_agree_with_the_csv_within_one_point(publictest_csv: dict) -> None:
    kaggle = evaluate_json("--data", str(need_shared("datasets", "fer2013-kaggle")), "--split", "test")
    assert kaggle["n"] == 3589
    assert abs(kaggle["accuracy"] - publictest_csv["accuracy"]) <= 0.01
