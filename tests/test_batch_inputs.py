"""`facial-emotion batch`: what its inputs name and how a job folder holds up in use: one name per
file whatever the spelling or the folder a job starts from, one job at a time per --out, a kill at
any moment (mid-commit, or of the job's process with workers running), the errors table as it
stands, quoted globs, empty folders, manifests saved by spreadsheets, and CSV the two engines agree
on."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import need_shared

from facial_emotion.batch.job import job_lock
from facial_emotion.results.tables import Store, committed, read_table


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """The command in its own process: what a user sees (exit code, stderr, no traceback)."""
    cmd = [sys.executable, "-m", "facial_emotion", "batch", *args, "--quiet"]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=180, cwd=cwd)


def photos(tmp_path: Path, *names: str) -> Path:
    """A folder (tmp/data/media) with copies of the shared photos ``names``."""
    folder = tmp_path / "data" / "media"
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        shutil.copy(need_shared("media", name), folder / name)
    return folder


def test_one_file_has_one_name_whatever_the_spelling_or_the_folder_the_job_starts_from(tmp_path):
    """Resume matched sources by the path as typed: the same job started from another folder, or the
    same file spelled twice, analysed it again and repeated its rows."""
    media = photos(tmp_path, "justin.jpg", "two_people.jpg")
    out = tmp_path / "out"
    spellings = ["data/media", "./data/media/justin.jpg", "data/media/../media/justin.jpg", str(media)]
    first = run_cli(*spellings, "--out", str(out), "--format", "csv", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "2 units analysed (0 already done)" in first.stdout
    sources = sorted(r["source"] for r in read_table(out, "sources"))
    assert sources == [str(media / "justin.jpg"), str(media / "two_people.jpg")]
    for cwd, spelled in ((tmp_path / "data", "media"), (Path("/"), str(media) + "/")):
        again = run_cli(spelled, "--out", str(out), cwd=cwd)
        assert again.returncode == 0 and "0 units analysed (2 already done)" in again.stdout, again.stdout
    assert len(list(read_table(out, "sources"))) == 2

    # A job folder from before names were absolute holds relative ones: a re-run from the folder it
    # was started in finds them.
    legacy = tmp_path / "legacy"
    store = Store(legacy, "csv")
    row = {"source": "data/media/justin.jpg", "chunk": 0, "kind": "photo", "frames_analyzed": 1}
    store.commit(store.new_commit(), [row], [])
    again = run_cli("data/media", "--out", str(legacy), "--format", "csv", cwd=tmp_path)
    assert "1 units analysed (1 already done)" in again.stdout, again.stdout
    # ... as typed, "./" and ".." included (from a manifest in another folder)
    typed = tmp_path / "typed"
    store = Store(typed, "csv")
    rows = [
        {**row, "source": "./data/media/justin.jpg"},
        {**row, "source": "lists/../data/media/two_people.jpg"},
    ]
    store.commit(store.new_commit(), rows, [])
    again = run_cli("data/media", "--out", str(typed), cwd=tmp_path)
    assert "0 units analysed (2 already done)" in again.stdout, again.stdout


def test_a_second_job_on_a_folder_in_use_is_refused(tmp_path):
    """Two jobs on one --out repeated rows (each took the other's units) and each one's start cleared
    the other's commit in progress. Here the running job is this test holding the job's lock."""
    media = photos(tmp_path, "justin.jpg")
    out = tmp_path / "out"
    out.mkdir()
    with job_lock(out):
        proc = run_cli(str(media), "--out", str(out))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "another batch job is writing there" in proc.stderr and not committed(out)
    proc = run_cli(str(media), "--out", str(out))  # the lock went with its holder
    assert proc.returncode == 0 and committed(out), proc.stderr


def test_a_job_killed_while_writing_a_commit_runs_again(tmp_path):
    """A kill while a table file was being written left its hidden temp file (atomic_path's
    ".NAME.tmp"), and every re-run was refused as a folder holding the user's files."""
    media = photos(tmp_path, "justin.jpg")
    out = tmp_path / "out"
    (out / "sources").mkdir(parents=True)
    leftover = out / "sources" / ".20261128T010203-0123abcd-00001.csv.k2j4_x.tmp"
    leftover.write_text("source,chunk\nhalf")
    proc = run_cli(str(media), "--out", str(out), "--format", "csv")
    assert proc.returncode == 0, proc.stderr
    assert not leftover.exists() and len(list(read_table(out, "sources"))) == 1


def children(pid: int) -> list[int]:
    """The job's worker processes (multiprocessing's spawned ones; not its resource tracker)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            stat = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes()
        except (OSError, ValueError):
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid and b"spawn_main" in command:
            found.append(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_the_workers_end_with_a_killed_job(tmp_path):
    """Killing the job's process (a scheduler's timeout, docker stop) left its workers waiting for
    work for ever, a recognizer's memory each."""
    videos = tmp_path / "videos"  # six units: both workers start, and the job runs a while
    videos.mkdir()
    for i in range(6):
        shutil.copy(need_shared("media", "woman2.mp4"), videos / f"clip{i}.mp4")
    cmd = [sys.executable, "-m", "facial_emotion", "batch", str(videos), "--out", str(tmp_path / "out")]
    seen: list[int] = []
    # SIGKILL: the workers notice their job is gone. SIGTERM (docker stop, a scheduler): the job
    # stops them and ends at once, where it waited for the units running (minutes for long videos).
    for sig in (signal.SIGKILL, signal.SIGTERM):
        job = subprocess.Popen([*cmd, "--workers", "2", "--quiet"], stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 90
            while len(workers := children(job.pid)) < 2 and time.monotonic() < deadline:
                time.sleep(0.2)
            seen += workers
            assert len(workers) == 2, "the job did not start its two workers"
            time.sleep(1.0)  # the workers are analysing
            job.send_signal(sig)
            started = time.monotonic()
            job.wait(30)
            if sig == signal.SIGTERM:
                assert job.returncode == 128 + signal.SIGTERM and time.monotonic() - started < 5
            deadline = time.monotonic() + 15
            while any(alive(w) for w in workers) and time.monotonic() < deadline:
                time.sleep(0.2)
            assert not any(alive(w) for w in workers)
        finally:
            job.kill()
            for w in seen:  # never leave this test's processes behind, whatever failed
                if alive(w):
                    os.kill(w, signal.SIGKILL)


def test_the_errors_table_holds_each_sources_latest_failure_until_it_is_done(tmp_path):
    """Each run added its failures: a file failed twice had two rows, and one fixed and run again
    kept its error beside its rows."""
    media = photos(tmp_path, "justin.jpg")
    broken = media / "fixme.jpg"
    broken.write_bytes(need_shared("media", "two_people.jpg").read_bytes()[:2000])  # truncated
    out = tmp_path / "out"
    for _ in range(2):
        assert run_cli(str(media), "--out", str(out), "--format", "csv").returncode == 1
    assert [r["source"] for r in read_table(out, "errors")] == [str(broken)]
    shutil.copy(need_shared("media", "two_people.jpg"), broken)
    fixed = run_cli(str(media), "--out", str(out))
    assert fixed.returncode == 0 and "1 units analysed (1 already done)" in fixed.stdout, fixed.stderr
    assert list(read_table(out, "errors")) == []
    assert sorted(r["source"] for r in read_table(out, "sources")) == [str(broken), str(media / "justin.jpg")]


def test_quoted_globs_empty_folders_and_spreadsheet_manifests(tmp_path):
    """A quoted glob skipped the folders it matched and took any file it matched (a README became an
    error); an empty folder among the inputs vanished without a word; a CSV manifest saved by Excel
    (a byte-order mark before `path`) made its header a missing file, on every run."""
    media = photos(tmp_path, "justin.jpg")
    inner = media / "class-a"
    inner.mkdir()
    shutil.copy(need_shared("media", "two_people.jpg"), inner / "two.jpg")
    (media / "README.md").write_text("not a photo\n")
    (tmp_path / "empty").mkdir()
    out = tmp_path / "out"
    proc = run_cli(f"{media}/*", str(tmp_path / "empty"), "--out", str(out), "--format", "csv")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.strip() == f"error: {tmp_path / 'empty'}: folder holds no photos or videos"
    assert sorted(r["source"] for r in read_table(out, "sources")) == [
        str(inner / "two.jpg"),
        str(media / "justin.jpg"),
    ]
    assert list(read_table(out, "errors")) == []

    from facial_emotion.batch.sources import read_manifest

    urls = tmp_path / "urls.csv"  # no header: a first row with a scheme is a source, not a title
    urls.write_text("https://example.com/photos/123\nhttps://example.com/photos/124\n")
    assert read_manifest(urls) == (["https://example.com/photos/123", "https://example.com/photos/124"], [])
    excel = tmp_path / "excel.csv"
    excel.write_bytes("\ufeffpath,label\r\ndata/media/justin.jpg,happy\r\n".encode())
    other = tmp_path / "other.csv"  # a header of another name; a file whose name starts with "#"
    shutil.copy(need_shared("media", "justin.jpg"), media / "#1.jpg")
    other.write_text("filename,label\ndata/media/#1.jpg,happy\n")
    proc = run_cli(str(excel), str(other), "--out", str(tmp_path / "listed"), "--format", "csv")
    assert proc.returncode == 0, proc.stderr
    assert sorted(r["source"] for r in read_table(tmp_path / "listed", "sources")) == [
        str(media / "#1.jpg"),
        str(media / "justin.jpg"),
    ]


def test_a_manifest_s_rows_without_a_path_are_errors_and_it_may_list_folders_and_manifests(tmp_path):
    """A CSV row with no path cell vanished without a word; a folder listed in a manifest was "is a
    folder, not an image"; a list written from the current folder into another (``ls media/*.jpg >
    lists/all.txt``) named files beside the list, none of which existed."""
    media = photos(tmp_path, "justin.jpg")
    inner = media / "class-a"
    inner.mkdir()
    shutil.copy(need_shared("media", "two_people.jpg"), inner / "two.jpg")
    shutil.copy(need_shared("media", "obama-720p.jpg"), tmp_path / "obama.jpg")
    lists = tmp_path / "lists"
    lists.mkdir()
    (lists / "from-here.txt").write_text("# written from the job's folder\nobama.jpg\n\n")
    (lists / "loop.txt").write_text("loop.txt\n")  # lists itself: read once, reported
    table = lists / "all.csv"
    table.write_text(
        "id,path,note\n"
        f"1,{media / 'justin.jpg'},x\n"
        "2\n"  # line 3: no path cell
        "3,,z\n"  # line 4: an empty one
        ",,\n"  # no cells at all, as a blank line: no row
        "\n"
        f"5,{inner},a folder\n"
        "6,from-here.txt,a manifest beside this one\n"
        "7,loop.txt,\n"
    )
    out = tmp_path / "out"
    proc = run_cli(str(table), "--out", str(out), "--format", "csv", cwd=tmp_path)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.splitlines() == [
        f"error: {table} line 3: no path in the 'path' column",
        f"error: {table} line 4: no path in the 'path' column",
        f"error: {lists / 'loop.txt'}: a manifest that lists itself (through {lists / 'loop.txt'})",
    ]
    assert "3 units analysed" in proc.stdout and "3 errors" in proc.stdout
    assert sorted(r["source"] for r in read_table(out, "sources")) == [
        str(inner / "two.jpg"),
        str(media / "justin.jpg"),
        str(tmp_path / "obama.jpg"),
    ]


def test_a_truncated_video_is_flagged_in_the_sources_table_whole_or_in_frame_ranges(tmp_path):
    """A video cut off at 40 % of its bytes was analysed without a word (`video` warns "read 121 of
    the 300 frames ... damaged or truncated"), and with --chunk-frames its last range was committed
    with no frame and nothing to say why: in a large collection it could not be found."""
    import cv2

    capture = cv2.VideoCapture(str(need_shared("media", "woman2.mp4")))
    whole = tmp_path / "whole.avi"
    writer = cv2.VideoWriter(str(whole), cv2.VideoWriter_fourcc(*"MJPG"), 30.0, (298, 168))
    for _ in range(300):
        ok, frame = capture.read()
        writer.write(cv2.resize(frame, (298, 168)))
    writer.release()
    videos = tmp_path / "videos"
    videos.mkdir()
    (videos / "cut.avi").write_bytes(whole.read_bytes()[: int(whole.stat().st_size * 0.4)])
    shutil.copy(whole, videos / "whole.avi")
    for name, chunks in (("files", []), ("ranges", ["--chunk-frames", "100"])):
        out = tmp_path / name
        proc = run_cli(str(videos), "--out", str(out), "--format", "csv", "--every", "10", *chunks)
        assert proc.returncode == 0, proc.stderr
        rows = list(read_table(out, "sources"))
        flagged = [r for r in rows if r["warning"]]
        assert len(flagged) == 1 and flagged[0]["source"] == str(videos / "cut.avi"), rows
        assert {r["frames_expected"] for r in rows} == {"300"}
        assert "damaged or truncated" in flagged[0]["warning"]
        assert f"warning: {flagged[0]['warning']}" in proc.stderr.splitlines()  # (FFmpeg says more)
        if chunks:  # the last range of the cut file: where its frames end
            assert flagged[0]["chunk"] == "2" and "frames end at 1" in flagged[0]["warning"]
        else:
            assert "of the 300 frames the file announces" in flagged[0]["warning"]
    # A camera's clip whose picture starts 0.85 s after its sound: fewer frames than announced, and
    # whole, as `video` says; its last frame range was called truncated.
    pytest.importorskip("av")
    from test_video import write_clip_with_sound

    camera = tmp_path / "camera"
    camera.mkdir()
    write_clip_with_sound(camera / "lead.mkv", video_from_s=0.85, tone_from_s=2.0, seconds=4)
    for chunks in ([], ["--chunk-frames", "40"]):
        proc = run_cli(
            str(camera), "--out", str(tmp_path / f"camera{len(chunks)}"), "--format", "csv", *chunks
        )
        assert proc.returncode == 0 and "warning" not in proc.stderr, proc.stderr


def test_csv_booleans_are_spelled_as_the_ray_engines(tmp_path):
    """The local engine wrote True/False, Ray's writer true/false: a CSV job resumed on the other
    engine read back both in one column."""
    media = photos(tmp_path, "two_people.jpg")
    out = tmp_path / "out"
    assert run_cli(str(media), "--out", str(out), "--format", "csv").returncode == 0
    rows = list(read_table(out, "faces"))
    assert rows and {r["uncertain"] for r in rows} <= {"true", "false"}


def test_linked_folders_are_followed_and_a_link_to_nothing_is_reported(tmp_path):
    """A linked folder inside an input folder was skipped, and a link to a deleted photo vanished,
    both without a word (`analyze` alike); a link back up the tree must not loop."""
    media = photos(tmp_path, "justin.jpg")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.copy(need_shared("media", "two_people.jpg"), elsewhere / "two.jpg")
    (media / "linked").symlink_to(elsewhere, target_is_directory=True)
    (media / "loop").symlink_to(media, target_is_directory=True)
    (media / "gone.jpg").symlink_to(tmp_path / "deleted.jpg")
    out = tmp_path / "out"
    proc = run_cli(str(media), "--out", str(out), "--format", "csv")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    done = sorted(Path(r["source"]).name for r in read_table(out, "sources"))
    assert done == ["justin.jpg", "two.jpg"]
    assert [r["source"] for r in read_table(out, "errors")] == [str(media / "gone.jpg")]
    analyzed = subprocess.run(
        [sys.executable, "-m", "facial_emotion", "analyze", str(media), "--json"],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert analyzed.returncode == 1 and "gone.jpg" in analyzed.stderr
    assert sorted(Path(r["path"]).name for r in json.loads(analyzed.stdout)) == [
        "gone.jpg",
        "justin.jpg",
        "two.jpg",
    ]
