"""`facial-emotion batch`: the local engine and Ray (a real local Ray, started and stopped here) on
real photos and the first frames of real videos; bad inputs; resume after a kill; a killed Ray worker."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import need_shared

from facial_emotion.batch.job import run_batch
from facial_emotion.batch.work import AnalyzerOptions
from facial_emotion.cli import main
from facial_emotion.results.schema import batch_columns
from facial_emotion.results.tables import committed, read_table

MAX_FRAMES = 12  # of each video: enough for tracks and smoothing, short for the tests' time
CLASSES = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]


def media_inputs(tmp_path: Path) -> tuple[list[str], set[str]]:
    """A mixed set: photos (faces, none, RGBA), two videos, and four bad sources (missing, not an
    image, a 0-byte video, a video file with no decodable frame); returns (inputs, bad sources)."""
    media = need_shared("media")
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(b"\x00not a video" * 100)
    bad = {str(tmp_path / "missing.jpg"), str(media / "README.md"), str(empty), str(garbage)}
    photos = ["justin.jpg", "two_people.jpg", "no-faces.jpg", "32bit.png"]
    videos = ["woman2.mp4", "short_hamilton_clip.mp4"]
    return [str(media / n) for n in photos + videos] + sorted(bad), bad


def face_rows(out: Path) -> list[dict]:
    rows = list(read_table(out, "faces"))
    return sorted(rows, key=lambda r: (r["source"], r["frame"], r["x"], r["y"]))


def test_local_batch_records_bad_sources_and_goes_on(tmp_path, capsys):
    inputs, bad = media_inputs(tmp_path)
    manifest = tmp_path / "list.csv"
    manifest.write_text("path,note\n" + "\n".join(f"{i},x" for i in inputs) + "\n")
    out = tmp_path / "out"
    code = main(
        ["batch", str(manifest), "--out", str(out), "--format", "csv", "--max-frames", "6", "--quiet"]
    )
    assert code == 1  # some sources failed, the others were analysed
    errors = list(read_table(out, "errors"))
    assert {e["source"] for e in errors} == bad
    assert all(e["error"] for e in errors)
    sources = {s["source"]: s for s in read_table(out, "sources")}
    assert set(sources) == set(inputs) - bad
    assert int(sources[str(need_shared("media", "woman2.mp4"))]["frames_analyzed"]) == 6
    header = (next((out / "faces").glob("*/*.csv"))).read_text().splitlines()[0]
    assert header.split(",") == list(batch_columns(CLASSES))
    rows = list(read_table(out, "faces"))
    assert {r["source"] for r in rows} >= {i for i in inputs if "justin" in i or "woman2" in i}
    assert "no-faces.jpg" not in {Path(r["source"]).name for r in rows}
    assert "error:" in capsys.readouterr().err


def test_chunked_video_matches_whole_file_but_for_track_ids(tmp_path):
    video = str(need_shared("media", "woman2.mp4"))
    opts = AnalyzerOptions(smoothing=0.0)  # smoothing carries state: without it frames are independent
    run_batch([video], tmp_path / "whole", opts, max_frames=30)
    report = run_batch([video], tmp_path / "chunks", opts, max_frames=30, chunk_frames=10, overlap=3)
    assert report.units == 3
    whole, chunks = face_rows(tmp_path / "whole"), face_rows(tmp_path / "chunks")
    assert [r["frame"] for r in chunks] == [r["frame"] for r in whole]  # every frame once, none twice
    drop = lambda r: {k: v for k, v in r.items() if k != "track_id"}  # noqa: E731
    assert [drop(r) for r in chunks] == [drop(r) for r in whole]
    assert {r["track_id"] // 1_000_000 for r in chunks} == {0, 1, 2}  # ids never collide between ranges


# --- Ray -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ray_local(tmp_path_factory):
    """One real local Ray for this module's tests (start-up takes seconds); its processes end with it,
    and its session files stay in pytest's temp folder, not in /tmp/ray."""
    ray = pytest.importorskip("ray")
    pytest.importorskip("pyarrow")
    temp = tmp_path_factory.mktemp("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, _temp_dir=str(temp))
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The local engine's results on the mixed set, with two worker processes."""
    tmp = tmp_path_factory.mktemp("reference")
    inputs, bad = media_inputs(tmp)
    report = run_batch(inputs, tmp / "out", workers=2, max_frames=MAX_FRAMES, fmt="parquet")
    assert {e["source"] for e in report.errors} == bad
    return inputs, face_rows(tmp / "out"), tmp / "out"


def test_ray_gives_the_local_engines_rows(ray_local, reference, tmp_path):
    inputs, expected, local_out = reference
    report = run_batch(inputs, tmp_path / "ray", engine="ray", workers=2, max_frames=MAX_FRAMES)
    assert face_rows(tmp_path / "ray") == expected
    assert len(expected) > 20
    assert sorted(e["source"] for e in report.errors) == sorted(
        e["source"] for e in read_table(local_out, "errors")
    )
    key = lambda s: (s["source"], s["faces"], s["tracks"], s["frames_analyzed"])  # noqa: E731
    assert sorted(map(key, read_table(tmp_path / "ray", "sources"))) == sorted(
        map(key, read_table(local_out, "sources"))
    )


def _ray_worker_busy() -> int | None:
    """The pid of a Ray actor of ours while it is analysing a unit (Ray names the process so)."""
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            if cmd.startswith(b"ray::MapWorker(MapBatches(RayAnalyzer)).submit"):
                return int(pid)
    return None


def test_ray_retries_a_killed_worker(ray_local, reference, tmp_path):
    inputs, expected, _ = reference
    result: dict = {}
    job = threading.Thread(
        target=lambda: result.update(
            report=run_batch(inputs, tmp_path / "out", engine="ray", workers=2, max_frames=MAX_FRAMES)
        )
    )
    job.start()
    killed = None
    deadline = time.monotonic() + 60
    while killed is None and job.is_alive() and time.monotonic() < deadline:
        killed = _ray_worker_busy()
        time.sleep(0.01)
    assert killed is not None, "no Ray worker was seen analysing a unit"
    os.kill(killed, signal.SIGKILL)
    job.join(timeout=120)
    assert not job.is_alive()
    assert face_rows(tmp_path / "out") == expected  # the dead worker's unit ran again, once


def test_rerun_after_a_kill_completes_without_duplicates(ray_local, reference, tmp_path):
    inputs, expected, _ = reference
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "facial_emotion", "batch", *inputs, "--out", str(out), "--quiet"]
    cmd += ["--max-frames", str(MAX_FRAMES), "--commit-every", "1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while len(committed(out)) < 3 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        proc.kill()
        proc.wait()
    first = len(committed(out))
    assert 0 < first < len(inputs), "the job was not interrupted mid-way"
    report = run_batch(inputs, out, engine="ray", workers=2, max_frames=MAX_FRAMES)
    assert report.skipped >= first - 4  # committed units (less any failed ones) were not run again
    assert report.done == len(inputs) - report.skipped
    assert face_rows(out) == expected
    again = run_batch(inputs, out, max_frames=MAX_FRAMES)
    assert again.done == len(again.errors) == 4  # only the bad sources are tried again
    assert face_rows(out) == expected


# --- Ray missing or unreachable: one clear message, exit 2 ----------------------------------------


def run_cli(args: list[str], prelude: str = "", timeout: float = 60) -> subprocess.CompletedProcess:
    code = f"{prelude}\nimport sys\nfrom facial_emotion.cli import main\nsys.exit(main({args!r}))"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout)


def test_engine_ray_without_the_extra_says_so(tmp_path):
    photo = str(need_shared("media", "justin.jpg"))
    blocked = "import sys; sys.modules['ray'] = None"  # import ray now fails as if not installed
    proc = run_cli(["batch", photo, "--out", str(tmp_path / "o"), "--engine", "ray"], prelude=blocked)
    assert proc.returncode == 2
    assert "[scale]" in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_unreachable_ray_address_fails_fast(tmp_path):
    pytest.importorskip("ray")
    photo = str(need_shared("media", "justin.jpg"))
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t0 = time.monotonic()
    for address in (f"127.0.0.1:{port}", f"ray://127.0.0.1:{port}"):
        proc = run_cli(
            ["batch", photo, "--out", str(tmp_path / "o"), "--engine", "ray", "--address", address]
        )
        assert proc.returncode == 2
        assert "cannot reach the Ray cluster" in proc.stderr and "Traceback" not in proc.stderr
    assert time.monotonic() - t0 < 30
