"""Hostile and odd inputs on the command line and in the dataset readers (issue #20): a FIFO never
hangs a batch, one slow file cannot stall it, a damaged video is reported, an empty folder is not
dropped, odd csv and folder datasets are read or warned about, odd images are handled or warned about,
and error paths never load torch."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import need_shared, run_cli, synthetic_faces, write_fer_csv
from PIL import Image

from facial_emotion import EmotionRecognizer
from facial_emotion.data import DatasetError, load_dataset
from facial_emotion.inference.decode import ImageError, load_image, load_image_within
from facial_emotion.labels import EMOTIONS


@pytest.fixture
def fifo(tmp_path: Path) -> Path:
    if not hasattr(os, "mkfifo"):
        pytest.skip("no FIFOs on this platform")
    path = tmp_path / "f.jpg"
    os.mkfifo(path)
    return path


def test_fifo_among_photos_is_reported_and_the_batch_finishes(fifo: Path, tmp_path: Path) -> None:
    justin, two = need_shared("media", "justin.jpg"), need_shared("media", "two_people.jpg")
    empty = tmp_path / "empty"
    empty.mkdir()
    proc = run_cli("analyze", str(justin), str(fifo), str(empty), str(two), "--json", timeout=60)
    assert proc.returncode == 1, proc.stderr
    doc = {Path(e["path"]).name: e for e in json.loads(proc.stdout)}
    assert len(doc["justin.jpg"]["faces"]) == 1 and len(doc["two_people.jpg"]["faces"]) == 2
    assert "FIFO" in doc["f.jpg"]["error"]
    assert "no images" in doc["empty"]["error"]  # an empty folder is reported, not dropped
    assert "Traceback" not in proc.stderr
    with pytest.raises(ImageError, match="FIFO"):
        load_image(fifo)


def test_video_on_a_fifo_says_what_it_is(fifo: Path) -> None:
    proc = run_cli("video", str(fifo), timeout=60)
    assert proc.returncode == 2 and "FIFO" in proc.stderr and "not found" not in proc.stderr


def test_per_file_timeout_moves_the_batch_on(tmp_path: Path) -> None:
    justin = need_shared("media", "obama-720p.jpg")
    with pytest.raises(ImageError, match="timed out"):
        load_image_within(justin, 1e-5)  # no decode of a 720p JPEG takes 10 microseconds
    assert load_image_within(justin, 60).shape[2] == 3
    results = list(EmotionRecognizer().analyze_each([str(justin)], timeout=1e-5))
    assert "timed out" in (results[0].error or "")
    proc = run_cli("analyze", str(justin), "--file-timeout", "0.00001", "--json")
    assert proc.returncode == 1 and "timed out" in json.loads(proc.stdout)[0]["error"]


def test_damaged_video_is_a_warning_or_with_strict_an_error(tmp_path: Path) -> None:
    data = need_shared("media", "woman2.mp4").read_bytes()
    third = len(data) // 3
    damaged = tmp_path / "damaged.mp4"  # the reproduction: a third of the file overwritten
    damaged.write_bytes(data[:third] + np.random.default_rng(0).bytes(third) + data[2 * third :])
    proc = run_cli("video", str(damaged), "--every", "25", "--json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["frames_expected"] > doc["frames_read"] * 1.02
    assert "warning" in proc.stderr and "damaged.mp4" in proc.stderr and "frames" in proc.stderr
    strict = run_cli("video", str(damaged), "--every", "25", "--strict", "--json")
    assert strict.returncode == 2 and "damaged.mp4" in strict.stderr and "Traceback" not in strict.stderr
    assert json.loads(strict.stdout)["frames_read"] == doc["frames_read"]  # the outputs still written
    whole = run_cli("video", str(need_shared("media", "woman2.mp4")), "--every", "25", "--json", "--strict")
    assert whole.returncode == 0 and "warning" not in whole.stderr
    assert json.loads(whole.stdout)["frames_read"] == json.loads(whole.stdout)["frames_expected"]


def test_csv_with_byte_order_mark_is_read(tmp_path: Path) -> None:
    images, labels = synthetic_faces(14)
    path = write_fer_csv(tmp_path / "fer.csv", images, labels, ["Training"] * 14)
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())  # Excel's UTF-8
    assert len(load_dataset(path, use_cache=False)) == 14


def test_one_non_utf8_byte_is_one_bad_row(tmp_path: Path) -> None:
    images, labels = synthetic_faces(14)
    path = write_fer_csv(tmp_path / "fer.csv", images, labels, ["Training"] * 14)
    lines = path.read_bytes().split(b"\n")
    lines[3] = lines[3].replace(b",Training", b",Train\xffing")
    path.write_bytes(b"\n".join(lines))
    with pytest.raises(DatasetError, match="line 4: not UTF-8"):
        load_dataset(path, use_cache=False)
    assert len(load_dataset(path, skip_bad=True, use_cache=False)) == 13


def test_folder_not_named_after_an_emotion_is_warned_about(tmp_path: Path, caplog) -> None:
    images, labels = synthetic_faces(14)
    for i, (img, lab) in enumerate(zip(images, labels, strict=True)):
        folder = tmp_path / "ds" / (EMOTIONS[lab] if i % 7 else "misc")
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(folder / f"{i}.png")
    with caplog.at_level(logging.WARNING):
        ds = load_dataset(tmp_path / "ds")
    assert len(ds) == 12 and "misc" in caplog.text and "inside a folder named after an emotion" in caplog.text


def test_float32_tiff_is_read_as_the_photo_it_is(tmp_path: Path) -> None:
    photo = need_shared("media", "justin.jpg")
    gray = np.asarray(Image.open(photo).convert("L"), np.float32) / 255.0  # the usual 0..1 floats
    tiff = tmp_path / "float.tif"
    Image.fromarray(gray, mode="F").save(tiff)
    bgr = load_image(tiff)
    assert bgr.dtype == np.uint8 and 60 < bgr.mean() < 200  # not black, not white
    assert len(EmotionRecognizer().analyze(tiff)) == 1


def test_blank_first_frame_of_an_animation_is_warned_about(tmp_path: Path, caplog) -> None:
    photo = Image.open(need_shared("media", "justin.jpg")).convert("RGB")
    gif = tmp_path / "fade_in.gif"
    Image.new("RGB", photo.size).save(gif, save_all=True, append_images=[photo], duration=100)
    with caplog.at_level(logging.WARNING):
        load_image(gif)
    assert "fade_in.gif" in caplog.text and "blank" in caplog.text


def test_error_paths_never_import_torch(fifo: Path, tmp_path: Path) -> None:
    for argv in (
        ["analyze", str(fifo)],
        ["video", str(fifo)],
        ["video", str(tmp_path / "missing.mp4")],
        ["evaluate", "--data", str(tmp_path / "missing.csv")],
    ):
        probe = (
            "import sys\nfrom facial_emotion.cli import main\nrc = main(" + repr(argv) + ")\n"
            "print(rc, 'torch' in sys.modules)"
        )
        proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
        rc, torch_loaded = proc.stdout.splitlines()[-1].split()
        assert rc in ("1", "2") and torch_loaded == "False", (argv, proc)
        assert "Traceback" not in proc.stderr
