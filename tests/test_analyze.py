"""The inference pipeline and the ``analyze`` command on the real photos, with the built-in model."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import need_shared, run_cli

import facial_emotion
from facial_emotion import EMOTIONS, EmotionRecognizer
from facial_emotion.model_file import builtin_model_path

FACES_EXPECTED = {
    "two_people.jpg": 2,
    "justin.jpg": 1,
    "no-faces.jpg": 0,
    "32bit.png": 1,
    "obama-720p.jpg": 1,
    "obama_partial_face.jpg": 1,
}


@pytest.fixture(scope="module")
def recognizer() -> EmotionRecognizer:
    return EmotionRecognizer()


def test_builtin_model_ships_with_metadata() -> None:
    path = builtin_model_path()
    assert path.is_file() and path.with_suffix(".json").is_file()
    meta = json.loads(path.with_suffix(".json").read_text())
    assert meta["classes"] == list(EMOTIONS)


@pytest.mark.parametrize(("name", "count"), FACES_EXPECTED.items())
def test_face_counts_on_real_photos(recognizer: EmotionRecognizer, name: str, count: int) -> None:
    faces = recognizer.analyze(need_shared("media", name))
    assert len(faces) == count
    for f in faces:
        assert f.emotion in EMOTIONS and set(f.scores) == set(EMOTIONS)
        assert sum(f.scores.values()) == pytest.approx(1, abs=1e-4)
        assert f.confidence == pytest.approx(max(f.scores.values()))
        assert f.box[2] > 40 and f.box[3] > 40


def test_all_input_kinds_give_the_same_faces(recognizer: EmotionRecognizer) -> None:
    path = need_shared("media", "two_people.jpg")
    from PIL import Image

    by_path = recognizer.analyze(path)
    by_bytes = recognizer.analyze(path.read_bytes())
    by_array = recognizer.analyze(cv2.imread(str(path)))
    by_pil = recognizer.analyze(Image.open(path))
    for other in (by_bytes, by_array, by_pil):
        assert [f.box for f in other] == [f.box for f in by_path]
        assert [f.emotion for f in other] == [f.emotion for f in by_path]
    assert [f.box[0] for f in by_path] == sorted(f.box[0] for f in by_path)  # left to right


def test_batch_matches_single_calls(recognizer: EmotionRecognizer) -> None:
    paths = [need_shared("media", n) for n in ("two_people.jpg", "no-faces.jpg", "justin.jpg")]
    batch = recognizer.analyze_batch(paths)
    assert [len(b) for b in batch] == [2, 0, 1]
    for single, batched in zip((recognizer.analyze(p) for p in paths), batch, strict=True):
        for a, b in zip(single, batched, strict=True):
            np.testing.assert_allclose(list(a.scores.values()), list(b.scores.values()), atol=1e-5)


def test_tta_returns_probabilities() -> None:
    faces = EmotionRecognizer(tta=True).analyze(need_shared("media", "justin.jpg"))
    assert len(faces) == 1 and sum(faces[0].scores.values()) == pytest.approx(1, abs=1e-4)


def test_top_level_analyze() -> None:
    assert len(facial_emotion.analyze(need_shared("media", "justin.jpg"))) == 1


def test_cli_json_two_people() -> None:
    proc = run_cli("analyze", str(need_shared("media", "two_people.jpg")), "--json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert len(doc) == 1 and doc[0]["error"] is None and len(doc[0]["faces"]) == 2
    for face in doc[0]["faces"]:
        assert set(face) >= {"box", "emotion", "confidence", "scores"}
        assert len(face["scores"]) == 7 and sum(face["scores"].values()) == pytest.approx(1, abs=1e-3)


def test_cli_bad_files_are_reported_and_the_rest_processed(tmp_path: Path) -> None:
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(need_shared("media", "justin.jpg").read_bytes()[:500])
    zero = tmp_path / "zero.png"
    zero.write_bytes(b"")
    text = tmp_path / "readme.jpg"
    text.write_text("hello")
    good = need_shared("media", "justin.jpg")
    nofaces = need_shared("media", "no-faces.jpg")
    out_csv = tmp_path / "faces.csv"
    annotated = tmp_path / "annotated"
    proc = run_cli(
        "analyze",
        str(broken),
        str(good),
        str(zero),
        str(text),
        str(nofaces),
        str(tmp_path / "missing.jpg"),
        "--json",
        "--csv",
        str(out_csv),
        "--annotate",
        str(annotated),
    )
    assert proc.returncode == 1  # some inputs failed
    assert "Traceback" not in proc.stderr
    doc = {Path(e["path"]).name: e for e in json.loads(proc.stdout)}
    assert len(doc["justin.jpg"]["faces"]) == 1 and doc["justin.jpg"]["error"] is None
    assert (
        doc["no-faces.jpg"]["faces"] == [] and doc["no-faces.jpg"]["error"] is None
    )  # no face is not an error
    for name in ("broken.jpg", "zero.png", "readme.jpg", "missing.jpg"):
        assert doc[name]["error"] and name in doc[name]["error"]
    rows = list(csv.DictReader(out_csv.open()))
    assert [r["emotion"] for r in rows if Path(r["path"]).name == "justin.jpg"] == [
        doc["justin.jpg"]["faces"][0]["emotion"]
    ]
    img = cv2.imread(str(annotated / "justin.annotated.jpg"))
    assert img is not None and img.shape == cv2.imread(str(good)).shape
    assert doc["justin.jpg"]["annotated"] == str(annotated / "justin.annotated.jpg")
    assert "annotated" not in doc["missing.jpg"]


def test_cli_folder_and_glob_inputs_and_table() -> None:
    media = need_shared("media")
    proc = run_cli("analyze", str(media))
    assert proc.returncode == 0, proc.stderr
    assert "two_people.jpg: 2 face(s)" in proc.stdout and "no-faces.jpg: 0 face(s)" in proc.stdout
    proc = run_cli("analyze", str(media / "*.png"), "--json")
    assert [Path(e["path"]).name for e in json.loads(proc.stdout)] == ["32bit.png"]


def test_gif_photos_are_found_in_folders_as_when_named(tmp_path: Path) -> None:
    """`analyze photo.gif` found the face, `analyze folder` with that GIF said "no images", and a
    dataset folder's GIFs were dropped without a word."""
    from PIL import Image

    from facial_emotion.data import load_dataset

    photos, faces = tmp_path / "photos", tmp_path / "faces" / "happy"
    photos.mkdir()
    faces.mkdir(parents=True)
    Image.open(need_shared("media", "justin.jpg")).save(photos / "justin.gif")
    Image.new("L", (48, 48), 128).save(faces / "face.gif")
    proc = run_cli("analyze", str(photos), "--json")
    assert proc.returncode == 0, proc.stderr
    assert [(Path(e["path"]).name, len(e["faces"])) for e in json.loads(proc.stdout)] == [("justin.gif", 1)]
    assert len(load_dataset(faces.parent, use_cache=False)) == 1  # a folder dataset's GIF face


def test_cli_usage_errors_exit_2(tmp_path: Path) -> None:
    assert run_cli("frobnicate").returncode == 2
    assert run_cli("analyze").returncode == 2
    proc = run_cli("analyze", str(need_shared("media", "justin.jpg")), "--model", str(tmp_path / "none.onnx"))
    assert proc.returncode == 2 and "model file not found" in proc.stderr and "Traceback" not in proc.stderr
    bogus = tmp_path / "bogus.onnx"
    bogus.write_bytes(b"not onnx")
    proc = run_cli("analyze", str(need_shared("media", "justin.jpg")), "--model", str(bogus))
    assert proc.returncode == 2 and "cannot load the model" in proc.stderr
    proc = run_cli("analyze", str(need_shared("media", "justin.jpg")), "--detector", "yunet:/nope.onnx")
    assert proc.returncode == 2 and "YuNet model file not found" in proc.stderr


def test_help_lists_subcommands() -> None:
    proc = run_cli("--help")
    for cmd in ("train", "evaluate", "export", "analyze", "video", "webcam", "serve"):
        assert f"    {cmd}" in proc.stdout


def test_example_script_runs(tmp_path: Path) -> None:
    out = tmp_path / "annotated.jpg"
    example = Path(__file__).resolve().parents[1] / "examples" / "analyze_photo.py"
    proc = subprocess.run(
        [sys.executable, str(example), str(need_shared("media", "two_people.jpg")), str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert len(proc.stdout.splitlines()) == 2 and cv2.imread(str(out)) is not None


def test_output_closed_early_is_not_an_error() -> None:
    """``facial-emotion analyze ... | head -1``: the reader went away, which is not a failure."""
    media = need_shared("media")
    proc = subprocess.Popen(
        [sys.executable, "-m", "facial_emotion", "analyze", str(media), "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # before it writes anything: its first write meets a closed pipe
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 0, err
    assert "error" not in err.lower() and "Traceback" not in err


def test_undecodable_file_name_keeps_the_batch(tmp_path: Path) -> None:
    """A file name that is not UTF-8 is written with its odd byte escaped in every output; no result is
    lost."""
    photo = need_shared("media", "justin.jpg")
    odd = tmp_path / "x\udcff.jpg"  # the byte 0xff, as Python keeps it in a str (surrogate escape)
    odd.write_bytes(photo.read_bytes())
    out_csv = tmp_path / "o.csv"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "facial_emotion",
            "analyze",
            str(odd),
            str(photo),
            "--json",
            "--csv",
            str(out_csv),
        ],
        capture_output=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr.decode()
    doc = json.loads(proc.stdout)
    assert [len(e["faces"]) for e in doc] == [1, 1]
    assert doc[0]["path"].endswith("x\\xff.jpg")
    rows = list(csv.DictReader(out_csv.open(encoding="utf-8")))
    assert [r["path"].endswith("x\\xff.jpg") for r in rows] == [True, False]
    table = run_cli("analyze", str(odd))
    assert table.returncode == 0 and "x\\xff.jpg: 1 face(s)" in table.stdout


def test_the_table_says_uncertain_as_the_drawing_does() -> None:
    """ "uncertain: sad / angry" on the page and the annotated image; the table said "uncertain" alone."""
    photo = str(need_shared("media", "two_people.jpg"))
    faces = json.loads(run_cli("analyze", photo, "--json").stdout)[0]["faces"]
    table = run_cli("analyze", photo).stdout
    unsure = [f for f in faces if f["uncertain"]]
    assert unsure, "the sample photo has no uncertain face to check"
    for face in unsure:
        assert f"uncertain: {face['emotion']} / {face['runner_up']}" in table
