"""Corrections (issue #22): saved by the CLI and the library, read back as a dataset."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import pytest
from conftest import need_shared, synthetic_faces, write_fer_csv

from facial_emotion.cli import main
from facial_emotion.feedback import FeedbackError, FeedbackStore, load_feedback
from facial_emotion.inference.decode import load_image
from facial_emotion.inference.pipeline import EmotionRecognizer
from facial_emotion.model_file import FACE_SIZE


def test_correct_saves_aligned_face_original_and_sidecar(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    photo = need_shared("media", "two_people.jpg")
    fb = tmp_path / "fb"
    assert (
        main(["correct", str(photo), "--face", "2", "--emotion", "surprise", "--feedback-dir", str(fb)]) == 0
    )
    assert "saved as surprise" in capsys.readouterr().out
    faces = list((fb / "surprise").glob("*.png"))
    assert len(faces) == 1
    face = cv2.imread(str(faces[0]), cv2.IMREAD_GRAYSCALE)
    assert face.shape == (FACE_SIZE, FACE_SIZE)
    original = cv2.imread(str(fb / "surprise" / "originals" / faces[0].name))
    sidecar = json.loads(faces[0].with_suffix(".json").read_text())
    # face 2 as analyze numbers it: the same box, and the crop is that box at full resolution
    recognizer = EmotionRecognizer()
    second = recognizer.analyze(photo)[1]
    assert original.shape[:2] == (second.box[3], second.box[2])  # the face's box, at full resolution
    assert sidecar["emotion"] == "surprise" and sidecar["source"] == str(photo.resolve())  # absolute
    assert sidecar["scores"] == pytest.approx(second.scores, abs=1e-5)
    assert sidecar["predicted"] == second.emotion
    assert sidecar["model"]["name"] == "emotion.onnx"  # which file, as the service's sidecars say
    ds = load_feedback(fb)  # the readers' folder layout: originals/ and sidecars are not samples
    assert len(ds) == 1 and ds.skipped == 0


def test_correct_refuses_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    photo = need_shared("media", "justin.jpg")
    fb = tmp_path / "fb"
    assert main(["correct", str(photo), "--emotion", "contempt", "--feedback-dir", str(fb)]) == 2
    assert "unknown emotion 'contempt'" in capsys.readouterr().err
    assert main(["correct", str(photo), "--face", "5", "--emotion", "sad", "--feedback-dir", str(fb)]) == 2
    assert "no face #5" in capsys.readouterr().err
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    assert main(["correct", str(photo), "--emotion", "sad", "--feedback-dir", str(blocker / "fb")]) == 2
    assert "not writable" in capsys.readouterr().err
    assert main(["correct", str(photo), "--emotion", "sad", "--feedback-dir", str(blocker)]) == 2
    assert f"feedback folder {blocker} is a file" in capsys.readouterr().err
    assert main(["finetune", "--feedback", str(blocker), "--out", str(tmp_path / "m.onnx")]) == 2
    assert f"feedback folder {blocker} is a file" in capsys.readouterr().err
    assert not list(fb.rglob("*.png"))


def test_correct_takes_odd_names_and_emotion_aliases(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """A photo name that is not UTF-8 crashed the save (UnicodeEncodeError); "Happiness" was refused
    though finetune reads a Happiness/ folder as happy; a photo with no face said "no face #1"."""
    import os

    odd = tmp_path / os.fsdecode(b"bad\xff.jpg")
    odd.write_bytes(need_shared("media", "justin.jpg").read_bytes())
    fb = tmp_path / "fb"
    assert main(["correct", str(odd), "--emotion", "Happiness", "--feedback-dir", str(fb)]) == 0
    assert "saved as happy" in capsys.readouterr().out
    (sidecar,) = (fb / "happy").glob("*.json")
    assert json.loads(sidecar.read_text())["source"].endswith("bad\\xff.jpg")
    # --box, as the service's box=: the face found that overlaps it most, whatever --face says
    photo = need_shared("media", "two_people.jpg")
    x, y, w, h = EmotionRecognizer().analyze(photo)[1].box
    box = f"{x + w // 10},{y},{w},{h}"
    assert main(["correct", str(photo), "--box", box, "--emotion", "fear", "--feedback-dir", str(fb)]) == 0
    assert "face #2:" in capsys.readouterr().out
    assert (
        main(["correct", str(photo), "--box", "0,0,5,5", "--emotion", "fear", "--feedback-dir", str(fb)]) == 2
    )
    assert "no face at box [0, 0, 5, 5]" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["correct", str(photo), "--box", "1,2,0,4", "--emotion", "fear"])
    assert "width and height must be positive" in capsys.readouterr().err
    none = need_shared("media", "no-faces.jpg")
    assert main(["correct", str(none), "--emotion", "sad", "--feedback-dir", str(fb)]) == 2
    assert "no face found in this photo" in capsys.readouterr().err


def test_concurrent_saves_lose_nothing_and_corrupt_files_are_counted(tmp_path: Path) -> None:
    photo = need_shared("media", "two_people.jpg")
    recognizer = EmotionRecognizer()
    image = load_image(photo)
    dets = recognizer.detect(image)
    store = FeedbackStore(tmp_path / "fb", recognizer.classes)

    def save(i: int) -> Path:
        return store.save(
            image, dets[i % len(dets)], "happy", recognizer.model_info, {}, f"page-{i % 2}"
        ).face

    with ThreadPoolExecutor(8) as pool:
        saved = list(pool.map(save, range(24)))
    assert len(set(saved)) == 24
    assert not [p for p in (tmp_path / "fb").rglob("*") if p.name.startswith(".")]  # no temp file left
    (tmp_path / "fb" / "happy" / "broken.png").write_bytes(b"not a png")
    ds = load_feedback(tmp_path / "fb")
    assert len(ds) == 24 and ds.skipped == 1
    with pytest.raises(FeedbackError, match="unknown emotion"):
        store.save(image, dets[0], "bored", recognizer.model_info, {}, "x")


def _synthetic_feedback(root: Path, n: int, seed: int) -> Path:
    from conftest import synthetic_faces

    from facial_emotion.labels import EMOTIONS

    images, labels = synthetic_faces(n, seed=seed)
    for i, (image, label) in enumerate(zip(images, labels, strict=True)):
        folder = root / EMOTIONS[label]
        folder.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(folder / f"{i}.png"), image)
    return root


def test_finetune_with_too_few_corrections_says_what_it_needs(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    fb = _synthetic_feedback(tmp_path / "fb", 14, seed=0)  # two per emotion
    assert main(["finetune", "--feedback", str(fb), "--out", str(tmp_path / "m.onnx")]) == 2
    err = capsys.readouterr().err
    assert "at least 5" in err and "happy: 2 (needs 3 more)" in err
    assert not (tmp_path / "m.onnx").exists()
    # The same face saved five times is one correction: its copies kept aside would score the
    # fine-tune on faces it trained on (and they made up the five an emotion needs).
    again = _synthetic_feedback(tmp_path / "again", 35, seed=0)  # five per emotion
    (first, *others) = sorted((again / "sad").glob("*.png"))
    for other in others:
        other.write_bytes(first.read_bytes())
    assert main(["finetune", "--feedback", str(again), "--out", str(tmp_path / "m.onnx")]) == 2
    err = capsys.readouterr().err
    assert "sad: 1 (needs 4 more)" in err and "4 correction(s) repeat another" in err  # says why


def test_finetune_keeps_publictest_accuracy(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """A fine-tune on a small synthetic feedback set costs at most one point of PublicTest."""
    fer = need_shared("datasets", "fer2013", "fer2013.csv.gz")
    fb = _synthetic_feedback(tmp_path / "fb", 70, seed=1)
    out = tmp_path / "tuned.onnx"
    args = ["finetune", "--feedback", str(fb), "--out", str(out), "--fer2013", str(fer)]
    assert main([*args, "--mix", "1000", "--epochs", "1", "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "FER-2013 PublicTest (n=3589)" in printed and "recall disgust" in printed
    meta = json.loads(out.with_suffix(".json").read_text())["finetune"]
    assert meta["corrections"] == 70 and meta["kept_aside"] == 14
    before, after = meta["before"]["PublicTest"]["accuracy"], meta["after"]["PublicTest"]["accuracy"]
    assert after >= before - 0.01, (before, after)
    assert EmotionRecognizer(out).classes == EmotionRecognizer().classes  # a model analyze can use


def test_finetune_without_fer2013_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    from facial_emotion import settings

    monkeypatch.setenv("FACIAL_EMOTION_SHARED", str(tmp_path / "no-shared"))
    monkeypatch.chdir(tmp_path)  # nor a ../shared beside it
    settings.reload()
    fb = _synthetic_feedback(tmp_path / "fb", 35, seed=2)
    out = tmp_path / "alone.onnx"
    assert main(["finetune", "--feedback", str(fb), "--out", str(out), "--epochs", "1", "--quiet"]) == 0
    captured = capsys.readouterr()
    assert "FER-2013 not found" in captured.err and "PublicTest is not measured" in captured.err
    assert "kept-aside corrections (n=7)" in captured.out and "PublicTest" not in captured.out
    assert json.loads(out.with_suffix(".json").read_text())["finetune"]["fer2013_mix"] == 0


def test_finetune_skips_malformed_fer2013_rows_when_told(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """The error for a malformed --fer2013 row says to use --skip-bad: finetune has it too."""
    images, labels = synthetic_faces(80)
    fer = write_fer_csv(tmp_path / "fer.csv", images, labels, ["Training"] * 60 + ["PublicTest"] * 20)
    with fer.open("a") as f:
        f.write("9,1 2 3,Training\n")  # line 82: an unknown label and too few pixels
    fb = _synthetic_feedback(tmp_path / "fb", 35, seed=3)
    args = ["finetune", "--feedback", str(fb), "--fer2013", str(fer), "--epochs", "1", "--quiet"]
    assert main([*args, "--out", str(tmp_path / "a.onnx")]) == 2
    err = capsys.readouterr().err
    assert "line 82" in err and "--skip-bad" in err and not (tmp_path / "a.onnx").exists()
    assert main([*args, "--out", str(tmp_path / "b.onnx"), "--skip-bad"]) == 0
    assert "(n=20)" in capsys.readouterr().out and (tmp_path / "b.onnx").is_file()


def test_finetune_never_writes_over_its_base_and_refuses_bases_it_cannot_train(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """``--out`` naming the built-in fp32 file (the default base) replaced it without a word; an
    ensemble base failed after scoring it, with "unknown architecture 'ensemble'"; ``--base fast``
    was told to use "the fp32 file it was made from (--base fp32)", another net."""
    import hashlib

    from facial_emotion.inference.classifier import EmotionClassifier
    from facial_emotion.model_file import builtin_model_path, write_model

    fb = _synthetic_feedback(tmp_path / "fb", 35, seed=4)
    fp32 = builtin_model_path("fp32")
    digest = hashlib.sha256(fp32.read_bytes()).hexdigest()
    assert main(["finetune", "--feedback", str(fb), "--out", str(fp32), "--quiet"]) == 2
    assert "is one of the inputs" in capsys.readouterr().err
    assert hashlib.sha256(fp32.read_bytes()).hexdigest() == digest
    out = tmp_path / "m.onnx"
    wide = tmp_path / "wide.onnx"  # described for another face size, as analyze and correct accept
    write_model(wide, fp32.read_bytes(), {**EmotionClassifier(fp32).metadata, "face_size": 64})
    for base, says in (
        ("default", "use the fp32 file it was made from (--base fp32, the default)"),
        ("fast", "is not the built-in fp32 model"),
        ("ensemble", "an ensemble graph cannot be fine-tuned (its members: vgg-l-s0.onnx"),
        (str(wide), "a model for 64 px faces; fine-tuning trains on 48 px faces"),  # was a traceback
    ):
        assert main(["finetune", "--feedback", str(fb), "--out", str(out), "--base", base, "--quiet"]) == 2
        err = capsys.readouterr().err
        assert says in err and "Traceback" not in err, (base, err)
    assert not out.exists()


def test_finetune_gives_no_recall_for_an_emotion_with_no_test_face(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """A PublicTest of angry and happy faces only showed 0.0 % recall for the five other emotions,
    in the table and the model's metadata."""
    images, labels = synthetic_faces(90)
    labels[70:] = [0, 3] * 10  # the 20 PublicTest faces: angry and happy
    fer = write_fer_csv(tmp_path / "fer.csv", images, labels, ["Training"] * 70 + ["PublicTest"] * 20)
    fb = _synthetic_feedback(tmp_path / "fb", 35, seed=5)
    out = tmp_path / "m.onnx"
    args = ["finetune", "--feedback", str(fb), "--fer2013", str(fer), "--out", str(out), "--epochs", "1"]
    assert main([*args, "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "recall angry" in printed and "recall happy" in printed and "recall fear" not in printed
    meta = json.loads(out.with_suffix(".json").read_text())["finetune"]
    assert (
        set(meta["before"]["PublicTest"]["recall"])
        == set(meta["after"]["PublicTest"]["recall"])
        == {
            "angry",
            "happy",
        }
    )
