"""`facial-emotion download fer2013`: importing archives a user downloaded by hand (csv and folder
layouts, small ones built here), refusing incomplete and hostile ones, and the no-credentials path.
No test reaches the network."""

from __future__ import annotations

import gzip
import io
import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import cv2
import pytest
from conftest import synthetic_faces

from facial_emotion.data import download
from facial_emotion.data.readers import load_dataset
from facial_emotion.labels import EMOTIONS

N_TRAIN, N_TEST = 70, 21
CSV_EXPECTED = {"Training": (N_TRAIN,), "PublicTest": (N_TEST,), "PrivateTest": (0,)}
FOLDER_EXPECTED = {"train": (N_TRAIN,), "test": (N_TEST,)}


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "facial_emotion", *args], capture_output=True, text=True, timeout=120, env=env
    )


def fer_csv_text(bad_rows: int = 0) -> str:
    images, labels = synthetic_faces(N_TRAIN + N_TEST)
    lines = ["emotion,pixels,Usage"]
    for i, (img, lab) in enumerate(zip(images, labels, strict=True)):
        usage = "Training" if i < N_TRAIN else "PublicTest"
        lines.append(f"{lab},{' '.join(map(str, img.ravel()))},{usage}")
    lines += ["3,1 2 3,Training"] * bad_rows  # too few pixels
    return "\n".join(lines) + "\n"


def folder_members() -> dict[str, bytes]:
    images, labels = synthetic_faces(N_TRAIN + N_TEST, seed=2)
    out = {}
    for i, (img, lab) in enumerate(zip(images, labels, strict=True)):
        split = "train" if i < N_TRAIN else "test"
        out[f"{split}/{EMOTIONS[lab]}/im{i}.jpg"] = cv2.imencode(".jpg", img)[1].tobytes()
    return out


def write_zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    return path


def tar_gz(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as t:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@pytest.mark.parametrize(
    "how", ["plain", "in-folder", "gzipped", "challenge-tar-in-zip", "bare", "bare-gz", "bare-renamed"]
)
def test_csv_layout_is_imported_and_counted(tmp_path: Path, how: str) -> None:
    text = fer_csv_text().encode()
    if how.startswith("bare"):  # the csv itself, not in an archive: the file most users have
        names = {"bare": "fer2013.csv", "bare-gz": "fer2013.csv.gz", "bare-renamed": "my faces (2).csv"}
        archive = tmp_path / names[how]
        archive.write_bytes(gzip.compress(text) if how == "bare-gz" else text)
    else:
        members = {
            "plain": {"fer2013.csv": text},
            "in-folder": {"fer2013/fer2013.csv": text, "fer2013/README": b"x"},
            "gzipped": {"data/fer2013.csv.gz": gzip.compress(text)},
            "challenge-tar-in-zip": {"fer2013.tar.gz": tar_gz({"fer2013/fer2013.csv": text})},
        }[how]
        archive = write_zip(tmp_path / "archive.zip", members)
    result = download.import_archive(archive, tmp_path / "fer", expected=CSV_EXPECTED)
    assert result.layout == "csv" and not result.problems
    assert result.counts == {"Training": N_TRAIN, "PublicTest": N_TEST}
    assert result.path.parent == tmp_path / "fer" and result.path.name.startswith("fer2013.csv")
    ds = load_dataset(result.path, use_cache=False)  # what `train --data` will read
    assert len(ds) == N_TRAIN + N_TEST
    assert f"--data {result.path}" in result.train_command()


def test_folder_layout_is_imported_from_zip_and_tar(tmp_path: Path) -> None:
    members = {f"FER2013/{k}": v for k, v in folder_members().items()}
    for archive in (
        write_zip(tmp_path / "archive.zip", members),
        tmp_path / "archive.tar.gz",
    ):
        if archive.suffix == ".gz":
            archive.write_bytes(tar_gz(members))
        dest = tmp_path / f"fer-{archive.name}"
        result = download.import_archive(archive, dest, expected=FOLDER_EXPECTED)
        assert result.layout == "folders" and result.path == dest and not result.problems
        assert result.counts == {"train": N_TRAIN, "test": N_TEST}
        assert sum(result.per_emotion.values()) == N_TRAIN + N_TEST
        assert len(list(dest.glob("train/*/*.jpg"))) == N_TRAIN
        ds = load_dataset(dest, use_cache=False)
        assert len(ds) == N_TRAIN + N_TEST and set(ds.splits) == {"train", "test"}


def test_cli_refuses_an_incomplete_archive_and_imports_it_on_request(tmp_path: Path) -> None:
    archive = write_zip(tmp_path / "archive.zip", folder_members())
    dest = tmp_path / "fer"
    r = run_cli("download", "fer2013", "--from-zip", str(archive), "--to", str(dest))
    assert r.returncode == 2
    assert "incomplete" in r.stderr and f"train has {N_TRAIN} images, expected 28,709" in r.stderr
    assert "Traceback" not in r.stderr and not dest.exists()
    assert not list(tmp_path.glob(".fer*")), "a temp folder was left behind"

    r = run_cli("download", "fer2013", "--from-zip", str(archive), "--to", str(dest), "--allow-partial")
    assert r.returncode == 0, r.stderr
    assert f"next: facial-emotion train --data {dest}" in r.stdout
    assert len(list(dest.glob("*/*/*.jpg"))) == N_TRAIN + N_TEST

    # An existing dataset is kept unless --force replaces it.
    r = run_cli("download", "fer2013", "--from-zip", str(archive), "--to", str(dest), "--allow-partial")
    assert r.returncode == 2 and "--force" in r.stderr


def test_malformed_rows_and_a_missing_csv_are_reported(tmp_path: Path) -> None:
    archive = write_zip(tmp_path / "bad.zip", {"fer2013.csv": fer_csv_text(bad_rows=3).encode()})
    with pytest.raises(download.DownloadError, match="3 malformed rows"):
        download.import_archive(archive, tmp_path / "fer", expected=CSV_EXPECTED)
    other = write_zip(tmp_path / "other.zip", {"photos/cat.jpg": b"x"})
    with pytest.raises(download.DownloadError, match="no FER-2013 inside"):
        download.import_archive(other, tmp_path / "fer2", expected=CSV_EXPECTED)
    (tmp_path / "notzip.zip").write_bytes(b"not an archive")
    with pytest.raises(download.DownloadError, match="not a .zip"):
        download.import_archive(tmp_path / "notzip.zip", tmp_path / "fer3")


def test_members_that_leave_the_target_are_never_written(tmp_path: Path) -> None:
    members = folder_members()
    members["../escaped.txt"] = b"zip-slip"
    members["/abs/escaped.txt"] = b"absolute"
    members["train/happy/../../../escaped2.jpg"] = b"x"
    work = tmp_path / "a" / "b"
    work.mkdir(parents=True)
    archive = write_zip(work / "evil.zip", members)
    with pytest.raises(download.DownloadError, match="unsafe paths"):
        download.import_archive(archive, work / "fer", expected=FOLDER_EXPECTED)
    result = download.import_archive(archive, work / "fer", expected=FOLDER_EXPECTED, allow_partial=True)
    assert result.counts == {"train": N_TRAIN, "test": N_TEST}
    written = {p.name for p in tmp_path.rglob("*") if p.is_file()}
    assert not {"escaped.txt", "escaped2.jpg"} & written


def test_no_credentials_gives_instructions_without_touching_the_network(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KAGGLE_")}
    env["HOME"] = str(tmp_path)  # no ~/.kaggle here
    r = run_cli("download", "fer2013", "--to", str(tmp_path / "fer"), env=env)
    assert r.returncode == 2
    assert "no Kaggle credentials" in r.stderr
    assert download.KAGGLE_PAGE in r.stderr and "--from-zip" in r.stderr
    assert "Traceback" not in r.stderr and not (tmp_path / "fer").exists()


def test_credentials_are_found_where_kaggle_keeps_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key in ("KAGGLE_USERNAME", "KAGGLE_KEY", "KAGGLE_API_TOKEN", "KAGGLE_CONFIG_DIR"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    modules_before = set(sys.modules)
    with pytest.raises(download.NoCredentials):
        download.download_kaggle(tmp_path / "fer")
    assert not {m for m in set(sys.modules) - modules_before if m.startswith("kaggle")}
    (tmp_path / ".kaggle").mkdir()
    (tmp_path / ".kaggle" / "kaggle.json").write_text('{"username": "u", "key": "k"}')
    assert download.kaggle_credentials() == str(tmp_path / ".kaggle" / "kaggle.json")
    monkeypatch.setenv("KAGGLE_USERNAME", "u")
    monkeypatch.setenv("KAGGLE_KEY", "k")
    assert download.kaggle_credentials() == "KAGGLE_USERNAME / KAGGLE_KEY"


def test_a_bare_csv_that_is_not_fer2013_is_named_in_the_error(tmp_path: Path) -> None:
    other = tmp_path / "other.csv"
    other.write_text("a,b,c\n1,2,3\n")
    r = run_cli("download", "fer2013", "--from-zip", str(other), "--to", str(tmp_path / "out"))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "other.csv: the header is 'a,b,c'; expected 'emotion,pixels,Usage'" in r.stderr
    assert not (tmp_path / "out").exists()


def test_a_mac_s_archive_clutter_is_left_out(tmp_path: Path) -> None:
    """A zip made in the macOS Finder holds ``__MACOSX/.../._NAME.jpg`` beside every photo: they were
    counted (train 140 of 70, so a complete archive was "incomplete") and imported as unreadable faces."""
    members = folder_members()
    clutter = {f"__MACOSX/{Path(k).parent}/._{Path(k).name}": b"\0\5\26\7mac" for k in members}
    archive = write_zip(tmp_path / "mac.zip", {**members, **clutter, "train/.DS_Store": b"x"})
    result = download.import_archive(archive, tmp_path / "fer", expected=FOLDER_EXPECTED)
    assert result.counts == {"train": N_TRAIN, "test": N_TEST} and not result.problems
    assert not list((tmp_path / "fer").rglob("._*")) and not list((tmp_path / "fer").rglob("__MACOSX"))


def test_the_import_checks_rows_as_training_reads_them(tmp_path: Path) -> None:
    """The import passed rows that `train` and `evaluate` then refused (a header with spaces, an
    emotion id of -1, a pixel of 256), and its "next:" command failed; a csv's trailing blank line,
    and an upper-case .CSV.GZ, stopped the reader."""
    good = fer_csv_text()
    head, *rows = good.splitlines()
    spaced = "emotion, pixels, Usage\n" + "\n".join(rows) + "\n\r\n"  # a blank last line too
    archive = tmp_path / "FACES.CSV.GZ"
    archive.write_bytes(gzip.compress(spaced.encode()))
    result = download.import_archive(archive, tmp_path / "fer", expected=CSV_EXPECTED)
    assert result.counts == {"Training": N_TRAIN, "PublicTest": N_TEST} and not result.problems
    assert len(load_dataset(result.path, use_cache=False)) == N_TRAIN + N_TEST
    assert len(load_dataset(archive, use_cache=False)) == N_TRAIN + N_TEST
    pixels = rows[0].split(",")[1]
    bad = [f"-1,{pixels},Training", f"3,256 {' '.join(pixels.split()[1:])},Training", f"3,{pixels},Holdout"]
    broken = write_zip(tmp_path / "bad.zip", {"fer2013.csv": (good + "\n".join(bad) + "\n").encode()})
    with pytest.raises(download.DownloadError, match="3 malformed rows"):
        download.import_archive(broken, tmp_path / "fer2", expected=CSV_EXPECTED)


def test_import_into_the_current_folder(tmp_path: Path) -> None:
    """`--to .` (an empty folder the user made and went into) ended in a traceback after the whole
    import: '.' has no name to build the temp folder's from; the folder itself stays (a shell is in it)."""
    archive = write_zip(tmp_path / "archive.zip", folder_members())
    here = tmp_path / "data"
    here.mkdir()
    args = ("download", "fer2013", "--from-zip", str(archive), "--to", ".", "--allow-partial")
    r = subprocess.run(
        [sys.executable, "-m", "facial_emotion", *args], capture_output=True, text=True, timeout=120, cwd=here
    )
    assert r.returncode == 0, r.stderr
    assert "next: facial-emotion train --data ." in r.stdout
    assert here.is_dir() and len(list(here.glob("*/*/*.jpg"))) == N_TRAIN + N_TEST
    assert sorted(p.name for p in tmp_path.iterdir()) == ["archive.zip", "data"]  # no temp folder left
    # replacing the folder the command runs in is refused, before any work
    r = subprocess.run(
        [sys.executable, "-m", "facial_emotion", *args, "--force"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=here / "train",
    )
    assert r.returncode == 2 and "the folder this command runs in" in r.stderr and "Traceback" not in r.stderr
