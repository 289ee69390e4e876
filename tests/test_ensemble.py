"""``facial-emotion ensemble``: members averaged inside one ONNX graph, on the real built-in models
and real PublicTest faces; the built-in ensemble loads by name and is calibrated."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import need_shared, run_cli

from facial_emotion.data import load_dataset
from facial_emotion.inference.classifier import EmotionClassifier
from facial_emotion.model_file import CALIBRATION_KEY, builtin_model_path

pytest.importorskip("onnx", reason="building an ensemble needs the [train] extra")


def softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_the_ensemble_graph_is_the_mean_of_its_members(tmp_path: Path) -> None:
    faces = load_dataset(need_shared("datasets", "fer2013", "fer2013.csv.gz")).select_split("PublicTest")
    faces = faces.images[:300]
    out = tmp_path / "pair.onnx"
    proc = run_cli("ensemble", "default", "fp32", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    members = [EmotionClassifier("default"), EmotionClassifier("fp32")]
    pair = EmotionClassifier(out)
    want = np.mean([softmax(m.logits(faces)) for m in members], axis=0)
    assert np.abs(softmax(pair.logits(faces)) - want).max() < 1e-5
    want_tta = np.mean([m.predict(faces, tta=True, calibrated=False) for m in members], axis=0)
    assert np.abs(pair.predict(faces, tta=True, calibrated=False) - want_tta).max() < 1e-5
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["arch"] == "ensemble" and [m["file"] for m in meta["members"]] == [
        builtin_model_path().name,
        builtin_model_path("fp32").name,
    ]
    assert CALIBRATION_KEY not in meta  # the members' temperatures do not fit the mean: calibrate it
    assert (meta["dataset"], meta["labels"]) == ("fer2013.npz", "fer2013")  # each value once


def test_the_ensemble_names_every_members_data(tmp_path: Path) -> None:
    """It named the first member's data only, hiding a member trained on other faces."""
    torch = pytest.importorskip("torch")
    from facial_emotion.labels import EMOTIONS
    from facial_emotion.model_file import make_metadata, write_model
    from facial_emotion.training.export import onnx_bytes
    from facial_emotion.training.nets import create_model

    mine = tmp_path / "mine.onnx"
    torch.manual_seed(0)
    net = create_model("vgg-s", 7).eval()
    write_model(
        mine, onnx_bytes(net, 40), make_metadata(classes=list(EMOTIONS), dataset="my-faces", labels="folders")
    )
    out = tmp_path / "mixed.onnx"
    proc = run_cli("ensemble", "fast", str(mine), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["dataset"] == "fer2013.csv.gz + my-faces" and meta["labels"] == "fer2013 + folders"
    assert [m["dataset"] for m in meta["members"]] == ["fer2013.csv.gz", "my-faces"]


def test_members_that_disagree_on_classes_are_refused(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    from facial_emotion.labels import FERPLUS_8_CLASSES
    from facial_emotion.model_file import make_metadata, write_model
    from facial_emotion.training.export import onnx_bytes
    from facial_emotion.training.nets import create_model

    eight = tmp_path / "eight.onnx"
    torch.manual_seed(0)
    write_model(
        eight, onnx_bytes(create_model("vgg-s", 8).eval(), 40), make_metadata(classes=list(FERPLUS_8_CLASSES))
    )
    for args in (["default", str(eight)], ["default"]):
        proc = run_cli("ensemble", *args, "--out", str(tmp_path / "bad.onnx"))
        assert proc.returncode == 2 and "Traceback" not in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "bad.onnx").exists()


def test_builtin_ensemble_loads_by_name_and_is_calibrated() -> None:
    ensemble = EmotionClassifier("ensemble")
    meta = ensemble.metadata
    assert meta["arch"] == "ensemble" and len(meta["members"]) >= 2
    assert ensemble.classes == EmotionClassifier("default").classes
    entry = meta[CALIBRATION_KEY]
    assert entry["fit_split"] == "PublicTest" and entry["ece_after"] < entry["ece_before"]


def test_a_dynamic_int8_member_makes_a_loadable_ensemble(tmp_path: Path) -> None:
    """export --int8 leaves nodes unnamed: two "Reshape"s passed onnx's checker and the file, written
    with exit 0, did not load."""
    torch = pytest.importorskip("torch")
    from facial_emotion.model_file import make_metadata, write_model
    from facial_emotion.training.export import onnx_bytes, quantize_int8
    from facial_emotion.training.nets import create_model

    paths = []
    for seed, int8 in ((0, True), (1, False)):
        torch.manual_seed(seed)
        graph = onnx_bytes(create_model("vgg-s", 7).eval(), 40)
        paths.append(tmp_path / f"m{seed}.onnx")
        write_model(paths[-1], quantize_int8(graph) if int8 else graph, make_metadata(arch="vgg-s"))
    out = tmp_path / "pair.onnx"
    proc = run_cli("ensemble", *map(str, paths), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    faces = np.random.default_rng(0).integers(0, 256, (6, 48, 48), dtype=np.uint8)
    want = np.mean([softmax(EmotionClassifier(p).logits(faces)) for p in paths], axis=0)
    assert np.abs(softmax(EmotionClassifier(out).logits(faces)) - want).max() < 1e-5
