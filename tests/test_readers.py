"""Dataset readers on generated files in every supported layout, including bad rows."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import synthetic_faces, write_fer_csv, write_ferplus

from facial_emotion.data import DatasetError, detect_layout, load_dataset
from facial_emotion.labels import EMOTIONS


def test_csv_reads_faces_labels_and_usage(tiny_csv: Path) -> None:
    ds = load_dataset(tiny_csv)
    images, labels = synthetic_faces(350)
    assert ds.images.dtype == np.uint8 and ds.images.shape == (350, 48, 48)
    np.testing.assert_array_equal(ds.images, images)
    np.testing.assert_array_equal(ds.labels, labels)
    assert ds.splits == ["PublicTest", "Training"]
    assert len(ds.select_split("PublicTest")) == 70


def test_csv_gz_matches_plain_csv(tiny_csv: Path, tmp_path: Path) -> None:
    gz = tmp_path / "copy.csv.gz"
    gz.write_bytes(gzip.compress(tiny_csv.read_bytes()))
    a, b = load_dataset(tiny_csv), load_dataset(gz)
    np.testing.assert_array_equal(a.images, b.images)
    np.testing.assert_array_equal(a.labels, b.labels)


def test_cache_returns_identical_data(tiny_csv: Path) -> None:
    first = load_dataset(tiny_csv)
    second = load_dataset(tiny_csv)  # from the .npz cache
    np.testing.assert_array_equal(first.images, second.images)
    np.testing.assert_array_equal(first.rows, second.rows)
    assert list(second.split) == list(first.split)


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("3,1 2 3,Training", "pixels must be 2304"),
        ("9,{px},Training", "unknown emotion label '9'"),
        ("x,{px},Training", "unknown emotion label 'x'"),
        ("2,{px},Validation", "unknown Usage 'Validation'"),
        ("2,{bad},Training", "pixels must be 2304"),
        ("2,99999999999999999999 {px},Training", "pixels must be 2304"),
        ("²,{px},Training", "unknown emotion label '²'"),
        ("2,{px}", "expected 'emotion,pixels,Usage'"),  # the header has Usage: not a Training face
    ],
)
def test_bad_csv_row_names_its_line_or_is_skipped(tmp_path: Path, row: str, message: str) -> None:
    images, labels = synthetic_faces(5)
    path = write_fer_csv(tmp_path / "bad.csv", images, labels, ["Training"] * 5)
    px = " ".join(["7"] * 2304)
    bad = " ".join(["7"] * 2303 + ["300"])
    lines = path.read_text().splitlines()
    lines.insert(3, row.format(px=px, bad=bad))
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DatasetError, match=rf"line 4: {message}"):
        load_dataset(path, use_cache=False)
    ds = load_dataset(path, skip_bad=True, use_cache=False)
    assert len(ds) == 5 and ds.skipped == 1


def test_missing_path_empty_and_unknown_layouts(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="not found"):
        load_dataset(tmp_path / "nope.csv")
    (tmp_path / "empty.csv").write_text("emotion,pixels,Usage\n")
    with pytest.raises(DatasetError, match="no usable rows"):
        load_dataset(tmp_path / "empty.csv", use_cache=False)
    (tmp_path / "other.csv").write_text("a,b,c\n1,2,3\n")
    with pytest.raises(DatasetError, match="unknown csv layout"):
        load_dataset(tmp_path / "other.csv")
    with pytest.raises(DatasetError, match="/dev/null: not a dataset file or folder"):
        load_dataset(Path("/dev/null"))
    (tmp_path / "zero.csv").write_bytes(b"")
    with pytest.raises(DatasetError, match="zero.csv: empty file"):
        load_dataset(tmp_path / "zero.csv")
    (tmp_path / "fake.npz").write_text("not an archive")
    with pytest.raises(DatasetError, match=r"not a NumPy .npz archive\)$") as caught:
        load_dataset(tmp_path / "fake.npz")
    assert "allow_pickle" not in str(caught.value)  # numpy's advice, unsafe for a file from anywhere
    (tmp_path / "folder" / "cats").mkdir(parents=True)
    with pytest.raises(DatasetError, match="unknown dataset layout"):
        load_dataset(tmp_path / "folder")


def test_kaggle_layout_reads_splits_and_converts_any_size(tiny_kaggle: Path) -> None:
    assert detect_layout(tiny_kaggle) == "folders-split"
    ds = load_dataset(tiny_kaggle)
    assert ds.splits == ["test", "train"]
    assert len(ds) == 140 and ds.images.shape[1:] == (48, 48)
    images, labels = synthetic_faces(140, seed=1)
    # PNGs are lossless: the face read back is the face written, with its label from the folder.
    by_pixels = {img.tobytes(): lab for img, lab in zip(images, labels, strict=True)}
    hits = [
        by_pixels[img.tobytes()] == lab
        for img, lab in zip(ds.images, ds.labels, strict=True)
        if img.tobytes() in by_pixels
    ]
    assert len(hits) >= 90 and all(hits)


def test_unreadable_images_are_warned_counted_and_skipped(tiny_kaggle: Path) -> None:
    broken = tiny_kaggle / "train" / "happy" / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (tiny_kaggle / "train" / "sad" / "empty.png").write_bytes(b"")
    ds = load_dataset(tiny_kaggle, use_cache=False)
    assert len(ds) == 140 and ds.skipped == 2
    assert any("broken.jpg" in w for w in ds.warnings)


def test_split_folders_in_another_case_are_the_same_splits(tiny_kaggle: Path) -> None:
    """Train/ and Test/ were two unknown splits: both trained on, 10 % of them held out."""
    for name in ("train", "test"):
        (tiny_kaggle / name).rename(tiny_kaggle / name.title())
    ds = load_dataset(tiny_kaggle)
    assert ds.splits == ["test", "train"] and len(ds) == 140
    assert len(ds.select_split("Train")) == len(ds.select_split("train")) == 105  # as the folder says


def test_what_a_folder_dataset_does_not_read_is_said_and_counted(
    tiny_kaggle: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Nested folders and loose images were dropped without a word; a dangling link or a folder
    named x.jpg stopped the run; a cached load lost the skipped files' names."""
    happy = tiny_kaggle / "train" / "happy"
    (happy / "more").mkdir()
    cv2.imwrite(str(happy / "more" / "deep.png"), np.zeros((48, 48), np.uint8))
    (happy / "album.jpg").mkdir()
    (happy / "gone.jpg").symlink_to(tiny_kaggle / "nowhere.jpg")
    cv2.imwrite(str(tiny_kaggle / "train" / "loose.png"), np.zeros((48, 48), np.uint8))
    flat = tiny_kaggle / "train"
    with caplog.at_level("WARNING"):
        ds = load_dataset(flat)  # ROOT/<emotion>/ as its own dataset
    assert len(ds) == 105 and ds.skipped == 1  # the dangling link; the folders are not images
    said = caplog.text
    assert "more" in said and "album.jpg" in said and "ignored 1 image(s) lying directly" in said
    assert "gone.jpg" in said
    caplog.clear()
    with caplog.at_level("WARNING"):
        again = load_dataset(flat)  # from the cache: the names kept, for the next process to say
    assert again.skipped == 1 and any("gone.jpg" in w for w in again.warnings)
    assert "skipped" not in caplog.text  # said once a process (quantize read one file five times)
    caplog.clear()
    with caplog.at_level("WARNING"):  # the same loose image in the Kaggle layout's train/: unsaid
        load_dataset(tiny_kaggle)
    assert f"{tiny_kaggle / 'train'}: ignored 1 image(s) lying directly in it" in caplog.text


def test_the_cache_sees_files_added_to_a_linked_emotion_folder(tiny_kaggle: Path, tmp_path: Path) -> None:
    root = tmp_path / "linked"
    root.mkdir()
    (root / "happy").symlink_to(tiny_kaggle / "train" / "happy", target_is_directory=True)
    before = len(load_dataset(root))
    cv2.imwrite(str(tiny_kaggle / "train" / "happy" / "new.png"), np.full((48, 48), 99, np.uint8))
    assert len(load_dataset(root)) == before + 1


def test_plain_emotion_folders(tmp_path: Path) -> None:
    images, labels = synthetic_faces(21)
    for i, (img, lab) in enumerate(zip(images, labels, strict=True)):
        folder = tmp_path / "mine" / ("Happiness" if EMOTIONS[lab] == "happy" else EMOTIONS[lab])
        folder.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(folder / f"{i}.png"), img)
    ds = load_dataset(tmp_path / "mine")
    assert ds.splits == ["all"] and len(ds) == 21
    assert sorted(np.bincount(ds.labels).tolist()) == [3] * 7


def test_ferplus_soft_and_majority_labels(tiny_csv: Path) -> None:
    usages = ["Training"] * 280 + ["PublicTest"] * 70
    write_ferplus(tiny_csv.parent / "fer2013new.csv", 350, usages, blank_rows={0, 5})
    ds7 = load_dataset(tiny_csv, labels="ferplus")
    assert len(ds7) == 348  # the two rows without an image name are dropped
    assert ds7.soft is not None and ds7.soft.shape == (348, 7)
    np.testing.assert_allclose(ds7.soft.sum(1), 1, atol=1e-6)
    np.testing.assert_array_equal(ds7.labels, ds7.soft.argmax(1))
    ds8 = load_dataset(tiny_csv, labels="ferplus", ferplus_classes=8)
    assert ds8.soft.shape[1] == 8 and ds8.class_names[-1] == "contempt"


def test_ferplus_must_be_row_aligned(tiny_csv: Path) -> None:
    write_ferplus(tiny_csv.parent / "fer2013new.csv", 100, ["Training"] * 100)
    with pytest.raises(DatasetError, match="not row-aligned"):
        load_dataset(tiny_csv, labels="ferplus")


def test_real_fer2013_csv_and_kaggle_agree() -> None:
    from conftest import need_shared

    csv_path = need_shared("datasets", "fer2013", "fer2013.csv.gz")
    kaggle = need_shared("datasets", "fer2013-kaggle")
    ds = load_dataset(csv_path)
    assert len(ds) == 32298
    assert ds.select_split("PublicTest").class_counts().tolist() == [467, 56, 496, 895, 653, 415, 607]
    folders = load_dataset(kaggle)
    assert folders.select_split("test").class_counts().tolist() == [467, 56, 496, 895, 653, 415, 607]


def test_cli_bad_row_exit_2_or_skipped_with_warning(tmp_path: Path) -> None:
    import subprocess
    import sys

    images, labels = synthetic_faces(14)
    path = write_fer_csv(tmp_path / "fer.csv", images, labels, ["PublicTest"] * 14)
    path.write_text(path.read_text() + "3,1 2 3,PublicTest\n")

    def run(*extra: str) -> subprocess.CompletedProcess:
        args = [sys.executable, "-m", "facial_emotion", "evaluate", "--data", str(path), "--json", *extra]
        return subprocess.run(args, capture_output=True, text=True, timeout=120)

    failed = run()
    assert failed.returncode == 2 and "line 16" in failed.stderr and "Traceback" not in failed.stderr
    skipped = run("--skip-bad")
    assert skipped.returncode == 0, skipped.stderr
    assert json.loads(skipped.stdout)["n"] == 14 and "skipped 1" in skipped.stderr
