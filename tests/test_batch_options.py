"""`facial-emotion batch` re-run into the same --out: the options that decide the rows are the job's
(OUT/job.json); another model, detector, frame range or format is refused by name before any work,
while the same options (how the work runs aside) go on adding sources without repeating a row."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import need_shared

from facial_emotion.batch.job import OPTIONS_FILE, BatchError, run_batch
from facial_emotion.batch.work import AnalyzerOptions
from facial_emotion.cli import main
from facial_emotion.results.tables import committed, read_table


def run_cli(*args: str) -> subprocess.CompletedProcess:
    """The command in its own process: what a user sees (exit code, stderr, no traceback)."""
    cmd = [sys.executable, "-m", "facial_emotion", "batch", *args, "--quiet"]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def snapshot(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


def refused(proc: subprocess.CompletedProcess, *clashes: str) -> None:
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert "new --out" in proc.stderr
    for clash in clashes:
        assert clash in proc.stderr


def face_keys(out: Path) -> list[tuple]:
    return sorted((r["source"], int(r["frame"]), int(r["x"]), int(r["y"])) for r in read_table(out, "faces"))


@pytest.fixture(scope="module")
def mini_video(tmp_path_factory) -> str:
    """The first 15 frames of a real clip (faces on every frame), cut with OpenCV."""
    import cv2

    cap = cv2.VideoCapture(str(need_shared("media", "short_hamilton_clip.mp4")))
    path = tmp_path_factory.mktemp("media") / "mini.mp4"
    writer = None
    for _ in range(15):
        ok, frame = cap.read()
        assert ok
        if writer is None:
            size = (frame.shape[1], frame.shape[0])
            writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 25.0, size)
        writer.write(frame)
    assert writer is not None
    writer.release()
    cap.release()
    return str(path)


def test_another_model_or_format_is_refused_and_same_options_go_on(tmp_path):
    justin, two = (str(need_shared("media", n)) for n in ("justin.jpg", "two_people.jpg"))
    out = tmp_path / "b1"
    assert main(["batch", justin, "--out", str(out), "--format", "csv", "--quiet"]) == 0
    before = snapshot(out)
    recorded = json.loads((out / OPTIONS_FILE).read_text())
    assert recorded["format"] == "csv" and recorded["detector"] == "blazeface"

    proc = run_cli(justin, two, "--out", str(out), "--model", "fast", "--detector", "haar")
    model = f"(the job has {recorded['model']})"
    refused(proc, "--model emotion-fast.onnx sha256:", model, "--detector haar:640 (the job has blazeface)")
    assert "--format" not in proc.stderr  # left out: the job's own format, not a clash
    refused(run_cli(justin, "--out", str(out), "--format", "parquet"), "--format parquet (the job has csv)")
    assert snapshot(out) == before  # refused before any work: nothing written, nothing cleared

    # The same options (no --format: the job's CSV), run another way: the new photo only, once.
    rows_before = face_keys(out)
    code = main(["batch", justin, two, "--out", str(out), "--threads", "2", "--commit-every", "1", "--quiet"])
    assert code == 0
    rows = face_keys(out)
    assert len(rows) == len(set(rows)) > len(rows_before)
    assert [r for r in rows if r[0] == justin] == rows_before
    assert sorted(s["source"] for s in read_table(out, "sources")) == sorted([justin, two])
    assert {p.suffix for p in (out / "faces").glob("*/*")} == {".csv"}


def test_one_detector_setting_in_two_spellings_is_one_job(tmp_path):
    """ "haar" and "haar:640" are the same detector: the re-run was refused as another job's."""
    justin = str(need_shared("media", "justin.jpg"))
    out = tmp_path / "haar"
    run_batch([justin], out, AnalyzerOptions(detector="haar"), fmt="csv")
    assert json.loads((out / OPTIONS_FILE).read_text())["detector"] == "haar:640"
    assert main(["batch", justin, "--out", str(out), "--detector", "haar:640", "--quiet"]) == 0
    refused(
        run_cli(justin, "--out", str(out), "--detector", "haar:320"),
        "--detector haar:320 (the job has haar:640)",
    )
    old = tmp_path / "old"  # a job recorded before: its "haar" is read as the same setting
    run_batch([justin], old, AnalyzerOptions(detector="haar"), fmt="csv")
    (old / OPTIONS_FILE).write_text(
        json.dumps({**json.loads((old / OPTIONS_FILE).read_text()), "detector": "haar"})
    )
    assert main(["batch", justin, "--out", str(old), "--detector", "haar:640", "--quiet"]) == 0


def test_other_frame_ranges_are_refused_and_never_repeat_frames(tmp_path, mini_video):
    out = tmp_path / "b2"
    run_batch([mini_video], out, fmt="csv")
    before = snapshot(out)
    frames = [k[1] for k in face_keys(out)]
    assert set(frames) == set(range(15))

    proc = run_cli(mini_video, "--out", str(out), "--chunk-frames", "5", "--overlap", "0")
    refused(proc, "--chunk-frames 5 (the job has 0)")
    proc = run_cli(mini_video, "--out", str(out), "--max-frames", "10", "--every", "2", "--smoothing", "0")
    refused(proc, "--max-frames 10 (the job has none)", "--every 2 (the job has 1)")
    refused(proc, "--smoothing 0.0 (the job has 0.6)")
    assert snapshot(out) == before

    again = run_batch([mini_video], out, AnalyzerOptions(threads=2))  # threads: how, not what
    assert (again.skipped, again.done) == (1, 0)
    assert snapshot(out) == before


def test_options_are_recorded_once_rows_are_committed(tmp_path):
    """A folder from before options were recorded takes the next run's; a record with nothing
    committed yet binds nothing (a run stopped before its first commit left no rows to mix)."""
    justin = str(need_shared("media", "justin.jpg"))
    out = tmp_path / "b3"
    out.mkdir()
    (out / OPTIONS_FILE).write_text(json.dumps({"detector": "haar", "format": "csv"}))
    run_batch([justin], out, fmt="parquet")  # nothing committed: the stale record is replaced
    assert json.loads((out / OPTIONS_FILE).read_text())["format"] == "parquet"
    assert committed(out)

    (out / OPTIONS_FILE).unlink()  # as written before this change: rows, no record
    report = run_batch([justin], out, AnalyzerOptions(smoothing=0.3))
    assert report.skipped == 1
    assert json.loads((out / OPTIONS_FILE).read_text())["smoothing"] == 0.3
    with pytest.raises(BatchError, match=r"--smoothing 0.6 \(the job has 0.3\)"):
        run_batch([justin], out)


def test_a_folder_that_is_not_a_jobs_is_refused_and_left_as_it_was(tmp_path):
    """Files named like a job's tables but no job's marks are the user's: a batch run into the folder
    would have taken them for an interrupted commit's and deleted them."""
    justin = str(need_shared("media", "justin.jpg"))
    out = tmp_path / "userdata"
    (out / "sources").mkdir(parents=True)
    (out / "errors").mkdir()
    (out / "sources" / "notes.txt").write_text("precious\n")
    (out / "errors" / "log.csv").write_text("a,b\n1,2\n")
    before = snapshot(out)
    proc = run_cli(justin, "--out", str(out), "--format", "csv")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "holds files of its own in faces, sources, errors/" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and snapshot(out) == before

    # Files beside the tables are never touched: a folder of results and notes is fine, and so is a
    # job killed before its first commit by a version that wrote no job.json (its files are stamped).
    shared = tmp_path / "shared-folder"
    (shared / "faces" / "20260101T000000-0123abcd-00001").mkdir(parents=True)
    (shared / "faces" / "20260101T000000-0123abcd-00001" / "part-0.csv").write_text("half,written\n")
    (shared / "README.md").write_text("mine\n")
    assert main(["batch", justin, "--out", str(shared), "--format", "csv", "--quiet"]) == 0
    assert (shared / "README.md").read_text() == "mine\n" and committed(shared)
    assert not (shared / "faces" / "20260101T000000-0123abcd-00001").exists()  # uncommitted: cleared

    a_file = tmp_path / "results.csv"
    a_file.write_text("keep\n")
    proc = run_cli(justin, "--out", str(a_file))
    assert proc.returncode == 2 and "is a file" in proc.stderr and "Traceback" not in proc.stderr
    assert a_file.read_text() == "keep\n"

    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["batch", justin, "--out", str(empty), "--format", "csv", "--quiet"]) == 0
    assert committed(empty)


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_a_file_name_that_is_not_utf8_is_written_and_skipped_on_a_rerun(tmp_path, fmt):
    """Parquet refused the commit holding it (its rows and the others' were lost, every run); a CSV
    job wrote it but could not read its own sources table back on the re-run."""
    if fmt == "parquet":
        pytest.importorskip("pyarrow")
    photos = tmp_path / "photos"
    photos.mkdir()
    justin = need_shared("media", "justin.jpg").read_bytes()
    # Latin-1 and cp1252 bytes (surrogate escapes in Python): two names that differ only in bytes
    # that are not UTF-8 must stay two names, and so two resume keys (U+FFFD made them one).
    (photos / os.fsdecode(b"caf\xe9.jpg")).write_bytes(justin)
    (photos / os.fsdecode(b"caf\xe8.jpg")).write_bytes(justin)
    (photos / "two.jpg").write_bytes(need_shared("media", "two_people.jpg").read_bytes())
    out = tmp_path / "job"
    one = run_batch([str(photos / os.fsdecode(b"caf\xe9.jpg"))], out, fmt=fmt)  # as if killed after it
    assert (one.done, one.skipped) == (1, 0)
    first = run_batch([str(photos)], out, fmt=fmt)
    assert (first.done, first.skipped) == (2, 1)
    sources = sorted(r["source"] for r in read_table(out, "sources"))
    expected = [str(photos / "caf\\xe8.jpg"), str(photos / "caf\\xe9.jpg"), str(photos / "two.jpg")]
    assert sources == sorted(expected)
    faces = read_table(out, "faces")
    assert {r["source"] for r in faces} == set(expected)
    again = run_batch([str(photos)], out)
    assert (again.done, again.skipped) == (0, 3)


def test_a_job_folder_from_before_names_kept_their_bytes_still_resumes(tmp_path):
    """Its sources table names a non-UTF-8 file with U+FFFD: the re-run analysed it again and wrote
    its rows twice."""
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / os.fsdecode(b"caf\xe9.jpg")).write_bytes(need_shared("media", "justin.jpg").read_bytes())
    out = tmp_path / "job"
    assert run_batch([str(photos)], out, fmt="csv").done == 1
    for table in out.glob("sources/*.csv"):  # as the job wrote it then
        table.write_text(table.read_text(encoding="utf-8").replace("caf\\xe9", "caf\ufffd"), encoding="utf-8")
    assert "caf\ufffd" in "".join(t.read_text(encoding="utf-8") for t in out.glob("sources/*.csv"))
    again = run_batch([str(photos)], out)
    assert (again.done, again.skipped) == (0, 1)


def test_a_damaged_table_is_one_error_naming_the_folder(tmp_path):
    pytest.importorskip("pyarrow")
    justin = str(need_shared("media", "justin.jpg"))
    out = tmp_path / "job"
    run_batch([justin], out, fmt="parquet")
    [table] = (out / "sources").glob("*.parquet")
    table.write_bytes(b"junk, not parquet")
    proc = run_cli(justin, "--out", str(out))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert f"{out}: a committed table cannot be read" in proc.stderr
    assert table.read_bytes() == b"junk, not parquet"  # left for the user to restore
