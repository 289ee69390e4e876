"""``video`` and ``webcam`` on real video files: timeline rows, tracking, annotated output, bad videos."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import cpu_seconds, need_shared, poll, run_cli

from facial_emotion import EmotionRecognizer
from facial_emotion.inference.video import VideoError, analyze_video
from facial_emotion.inference.video import frames as read_frames


def test_video_timeline_summary_and_annotated_copy(tmp_path: Path) -> None:
    video = need_shared("media", "woman2.mp4")
    out, timeline, plot = tmp_path / "annotated.mp4", tmp_path / "timeline.csv", tmp_path / "timeline.png"
    proc = run_cli(
        "video",
        str(video),
        "--every",
        "5",
        "--out",
        str(out),
        "--timeline",
        str(timeline),
        "--plot",
        str(plot),
        "--json",
    )
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    cap = cv2.VideoCapture(str(video))
    total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    cap.release()
    assert doc["frames_read"] == total and doc["frames_analyzed"] == (total + 4) // 5
    rows = list(csv.DictReader(timeline.open()))
    # one row per processed frame and face
    assert len(rows) == len(doc["timeline"]) > 0
    assert {int(r["frame"]) % 5 for r in rows} == {0}
    per_frame: dict[int, int] = {}
    for r in rows:
        per_frame[int(r["frame"])] = per_frame.get(int(r["frame"]), 0) + 1
    assert len(per_frame) >= 0.8 * doc["frames_analyzed"]  # the face is found in most frames
    # the single face keeps one id through the clip
    main_id = max(doc["faces"], key=lambda f: f["frames"])
    assert main_id["frames"] >= 0.8 * doc["frames_analyzed"]
    assert sum(main_id["share"].values()) == pytest.approx(1, abs=1e-3)
    # the annotated copy is a valid video with every frame
    cap = cv2.VideoCapture(str(out))
    assert cap.isOpened() and int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == total
    ok, frame = cap.read()
    cap.release()
    assert ok and frame is not None
    assert cv2.imread(str(plot)) is not None


def test_tracking_ids_stable_with_two_faces() -> None:
    video = need_shared("media", "short_hamilton_clip.mp4")
    result = analyze_video(EmotionRecognizer(), str(video), every=3)
    assert result.frames_analyzed > 0
    ids_per_frame: dict[int, list[int]] = {}
    for r in result.timeline:
        ids_per_frame.setdefault(r.frame, []).append(r.face.track_id)
    assert all(len(ids) == len(set(ids)) for ids in ids_per_frame.values())  # never two faces with one id


def test_bad_videos_fail_clearly(tmp_path: Path) -> None:
    zero = tmp_path / "zero.mp4"
    zero.write_bytes(b"")
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"\x00\x01 definitely not a video" * 100)
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(need_shared("media", "woman2.mp4").read_bytes()[:2000])
    for path in (zero, junk, cut, tmp_path / "missing.mp4"):
        with pytest.raises(VideoError):
            analyze_video(EmotionRecognizer(), str(path))
        proc = run_cli("video", str(path))
        assert proc.returncode == 2 and str(path.name) in proc.stderr and "Traceback" not in proc.stderr


def test_sources_that_are_not_videos_say_what_they_are(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A photo "succeeded" as a one-frame video at a made-up 25 fps; a Path named by digits opened
    that camera; bytes gave a message of millions of characters; "" was "a folder"."""
    from facial_emotion.inference.decode import ImageError, load_image

    recognizer = EmotionRecognizer(threads=1)
    photo = need_shared("media", "justin.jpg")
    with pytest.raises(VideoError, match="a photo, not a video"):
        analyze_video(recognizer, photo)
    proc = run_cli("video", str(photo))
    assert proc.returncode == 2 and "a photo, not a video" in proc.stderr
    proc = run_cli("analyze", str(need_shared("media", "woman2.mp4")))  # and the other way round
    assert (
        proc.returncode == 1 and "woman2.mp4: ERROR a video, not a photo (facial-emotion video" in proc.stdout
    )
    monkeypatch.chdir(tmp_path)
    (tmp_path / "2024").write_bytes(need_shared("media", "woman2.mp4").read_bytes())
    result = analyze_video(recognizer, Path("2024"), max_frames=3)  # the file, not camera 2024
    assert result.frames_read == 3 and result.fps > 0
    with pytest.raises(VideoError, match="unsupported video source of type bytes") as raised:
        analyze_video(recognizer, need_shared("media", "woman2.mp4").read_bytes())  # type: ignore[arg-type]
    assert len(str(raised.value)) < 200
    with pytest.raises(ImageError, match="empty file name"):
        load_image("")  # (Path("") is Path("."), a folder, and says so)
    with pytest.raises(VideoError, match="empty file name"):
        analyze_video(recognizer, "")


def test_webcam_runs_on_a_capture_source_and_says_when_no_camera(tmp_path: Path) -> None:
    video = need_shared("media", "woman2.mp4")
    proc = run_cli("webcam", "--source", str(video), "--no-window", "--max-frames", "20")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("20 frames")
    proc = run_cli("webcam", "--source", str(video), "--no-window", "--max-frames", "20", "--json")
    doc = json.loads(proc.stdout)  # as video --json, but no per-frame timeline
    assert doc["frames_read"] == 20 and len(doc["faces"]) == 1 and doc["timeline"] == []
    proc = run_cli("webcam", "--camera", "7", "--no-window")
    assert proc.returncode == 2 and "camera" in proc.stderr and "Traceback" not in proc.stderr


def test_followed_faces_stay_on_the_face_between_full_searches() -> None:
    from facial_emotion.inference.detectors import create_detector
    from facial_emotion.inference.tracking import VideoFaceFinder, iou

    cap = cv2.VideoCapture(str(need_shared("media", "woman2.mp4")))
    frames = [cap.read()[1] for _ in range(60)]
    cap.release()
    detector = create_detector("haar:320")
    finder = VideoFaceFinder(detector, refresh=30)
    followed = [finder.detect(f) for f in frames]
    assert all(len(boxes) == 1 for boxes in followed)
    # Frames 1..29 were followed by template matching, not detected: compare with fresh detections.
    for i in (5, 15, 29):
        fresh = detector.detect(frames[i])
        assert len(fresh) == 1 and iou(followed[i][0].box, fresh[0].box) > 0.7


def test_webcam_without_a_display_says_so() -> None:
    import os

    if os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"):
        pytest.skip("a display is available here")
    proc = run_cli("webcam", "--source", str(need_shared("media", "woman2.mp4")))
    assert proc.returncode == 2 and "no display" in proc.stderr and "Traceback" not in proc.stderr


def test_time_seen_never_runs_past_the_end_of_the_file() -> None:
    """Every 10th frame of woman2 (464 frames at 29.97 fps, 15.48 s) counted 15.7 s seen: the last
    analysed frame counted a whole sampling interval past the video's end."""
    recognizer = EmotionRecognizer(threads=1)
    video = need_shared("media", "woman2.mp4")
    sparse = analyze_video(recognizer, video, every=10)
    length = sparse.frames_read / sparse.fps
    (person,) = sparse.summary
    assert length - 0.35 < person.seconds <= length + 1e-6
    assert person.timeline[-1].end_s <= length + 1e-6
    (every,) = analyze_video(recognizer, video, max_frames=60).summary  # 60 of 464: the clip ends there
    assert every.seconds == pytest.approx(60 / sparse.fps, abs=1e-6)


def test_ctrl_c_stops_a_windowless_webcam_with_its_summary_and_sigterm_leaves_no_temp_file(
    tmp_path: Path,
) -> None:
    """`webcam --no-window` has no q: Ctrl-C, the one way to stop it, printed "interrupted" and threw
    the session away. And SIGTERM (`timeout`, a scheduler, `docker stop`) killed `video --out` with
    its hidden temp file left beside the output, one more each run."""
    import signal
    import subprocess
    import sys

    video = need_shared("media", "woman2.mp4")
    summary = tmp_path / "session.json"
    command = [sys.executable, "-m", "facial_emotion", "webcam", "--source", str(video), "--no-window"]
    webcam = subprocess.Popen(
        [*command, "--summary", str(summary), "--detect-every", "1", "--landmarks"],  # slow: 15+ s
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # Ctrl-C as a terminal sends it, also where the tests run in the background: a shell starts
        # background jobs with SIGINT ignored, Python keeps it so, and the interrupt was lost.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    # Interrupted once it runs (the model loaded: frames are being analysed, the file lasts 15 s).
    assert poll(lambda: webcam.poll() is not None or cpu_seconds(webcam.pid) > 3.0, 120)
    webcam.send_signal(signal.SIGINT)
    out, err = webcam.communicate(timeout=60)
    assert webcam.returncode == 0, err
    assert "person #1:" in out and "interrupted" not in err
    assert 0 < json.loads(summary.read_text())["people"][0]["frames"] < 464  # stopped half-way

    annotated = tmp_path / "annotated.mp4"
    video_job = subprocess.Popen(
        [sys.executable, "-m", "facial_emotion", "video", str(video), "--out", str(annotated)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert poll(lambda: video_job.poll() is not None or any(tmp_path.glob(".annotated.mp4.*")), 120)
    video_job.send_signal(signal.SIGTERM)
    _, err = video_job.communicate(timeout=60)
    assert video_job.returncode == 128 + signal.SIGTERM and "terminated" in err and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["session.json"]


def test_a_video_over_http_is_timed_by_its_frames_and_outputs_need_files_of_their_own(
    tmp_path: Path,
) -> None:
    """A recording fetched over http was timed by the clock, as a live stream is: its times and time
    seen depended on how fast the machine analysed it. Two outputs naming one file: the one written
    last replaced the other without a word."""
    import functools
    import http.server
    import threading

    photo = cv2.imread(str(need_shared("media", "justin.jpg")))
    clip = tmp_path / "clip.avi"  # Motion JPEG: read front to back, no seeking over http
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), 2.0, photo.shape[1::-1])
    for _ in range(12):
        writer.write(photo)
    writer.release()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        url = f"http://127.0.0.1:{server.server_address[1]}/clip.avi"
        result = analyze_video(EmotionRecognizer(detector="haar"), url)
        server.shutdown()
    assert [row.time_s for row in result.timeline] == [i / 2.0 for i in range(12)]  # 2 fps
    (person,) = result.summary
    assert person.seconds == pytest.approx(6.0)

    from facial_emotion.inference.video import is_live

    # A URL naming a video file is a file; an IP camera's MJPEG, rtsp:// and HLS are live.
    assert not is_live("http://host/talk.mp4?token=1") and not is_live("https://host/a/clip.AVI")
    assert (
        is_live("http://cam.local/video.mjpg")
        and is_live("rtsp://cam/stream")
        and is_live("https://h/live.m3u8")
    )
    same = tmp_path / "same.csv"
    proc = run_cli("video", str(clip), "--timeline", str(same), "--summary", str(same))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "--summary" in proc.stderr and "--timeline" in proc.stderr and "name the same file" in proc.stderr
    assert not same.exists()


def test_a_live_stream_s_copy_plays_in_real_time_and_keeps_every_frame(tmp_path: Path) -> None:
    """An IP camera's MJPEG stream (FFmpeg announces 25 frames/s for one) that delivers 5 a second,
    as a camera does in dim light or where the analysis is slower than the camera: the annotated copy
    had its 15 frames one after another at 25 frames/s, 0.6 s for 2.8 s of camera. Each frame is now
    placed by the clock when it was read, no frame left out (a stream's burst after a stall is kept,
    each a frame interval long); the API gives the same times to ``on_timed_frame`` (it gave None)."""
    import http.server
    import threading
    import time

    bits, count, interval = 4, 15, 0.2  # frame k shows k in binary stripes, as in the test above
    stripes = [
        np.repeat([(k >> b & 1) * 255 for b in range(bits)], 16).astype(np.uint8) for k in range(count)
    ]
    jpegs = [
        cv2.imencode(".jpg", np.ascontiguousarray(np.broadcast_to(row[None, :, None], (96, 16 * bits, 3))))[1]
        for row in stripes
    ]

    class Camera(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
            self.end_headers()
            for jpeg in jpegs:
                part = b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(jpeg)
                self.wfile.write(part + jpeg.tobytes() + b"\r\n")
                self.wfile.flush()
                time.sleep(interval)

        def log_message(self, *args: object) -> None:
            pass

    copy, times = tmp_path / "camera.avi", []
    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), Camera) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        url = f"http://127.0.0.1:{server.server_address[1]}/video.mjpg"
        proc = run_cli("video", url, "--out", str(copy), "--json")
        result = analyze_video(
            EmotionRecognizer(detector="haar"), url, on_timed_frame=lambda i, t, *_: times.append(t)
        )
        server.shutdown()
    assert proc.returncode == 0, proc.stderr
    capture = cv2.VideoCapture(str(copy))
    fps = capture.get(cv2.CAP_PROP_FPS)
    shown = [number_shown(image, bits) for image in read_frames(capture)]
    assert fps == 25 and len(shown) / fps == pytest.approx((count - 1) * interval, abs=0.5)
    assert sorted(set(shown)) == list(range(count))  # every frame
    assert shown == sorted(shown)  # in order, each held until the next
    assert result.frames_read == count and times[0] == 0
    gaps = np.diff(times)
    # the stream's first frames may come at once (FFmpeg reads ahead while it opens the stream)
    assert gaps.min() >= 0 and np.median(gaps) == pytest.approx(interval, abs=0.05)


def test_a_damaged_stretch_is_skipped_and_the_frames_after_it_keep_their_times(tmp_path: Path) -> None:
    """Reading stopped at the first frame that did not decode: a tenth of woman2.mp4 overwritten in
    the middle lost the second half (209 of 464 frames). Now the stretch is skipped, a hole in the
    timeline, and the frames after it are timed by their place in the file; the shortfall is still
    said. batch reads the same way. The annotated copy left the stretch out, and ran ahead of the
    original after it: the stretch now holds its last good frame."""
    from facial_emotion.batch.job import run_batch
    from facial_emotion.results.tables import read_table

    data = bytearray(need_shared("media", "woman2.mp4").read_bytes())
    a, b = int(len(data) * 0.45), int(len(data) * 0.55)
    data[a:b] = bytes(b - a)
    damaged = tmp_path / "damaged.mp4"
    damaged.write_bytes(bytes(data))
    annotated = tmp_path / "annotated.avi"
    proc = run_cli("video", str(damaged), "--json", "--out", str(annotated))
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert 400 < doc["frames_read"] < 464 and "damaged or truncated" in proc.stderr
    copy = cv2.VideoCapture(str(annotated))  # the stretch holds its last good frame: in time, not short
    assert sum(1 for _ in read_frames(copy)) == 464
    times = [row["time_s"] for row in doc["timeline"]]
    assert times[-1] == pytest.approx(463 / 29.97, abs=0.05)  # the last frame, at its own time
    assert max(np.diff(times)) > 1.0  # the stretch: a gap, not squeezed out
    (person,) = doc["faces"]
    assert len(person["timeline"]) >= 2 and person["timeline"][-1]["end_s"] == pytest.approx(15.48, abs=0.05)
    run_batch([str(damaged)], tmp_path / "batch")
    frames = sorted(int(r["frame"]) for r in read_table(tmp_path / "batch", "faces"))
    assert frames[-1] == 463 and len(frames) == len(times)


def write_variable_rate_video(
    path: Path, frame: np.ndarray | list[np.ndarray], times: list[float], rate: int = 30
) -> None:
    """A video whose frames carry the given timestamps (OpenCV's writer makes constant-rate files
    only): H.264 in MP4 or Matroska, VP9 in WebM, by the suffix; one frame shown throughout, or one
    per time."""
    import fractions

    import av

    shown = frame if isinstance(frame, list) else [frame] * len(times)
    height, width = shown[0].shape[0] // 2 * 2, shown[0].shape[1] // 2 * 2  # yuv420p wants even sizes
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libvpx-vp9" if path.suffix == ".webm" else "libx264", rate=rate)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for t, image in zip(times, shown, strict=True):
            picture = av.VideoFrame.from_ndarray(np.ascontiguousarray(image[:height, :width]), format="bgr24")
            picture.pts, picture.time_base = round(t * 1000), fractions.Fraction(1, 1000)
            for packet in stream.encode(picture):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def test_a_variable_frame_rate_video_is_timed_by_its_frames_own_timestamps(tmp_path: Path) -> None:
    """Phones lower the frame rate in dim light. Frames were timed index / fps (the container's
    average rate): in a clip of 2 s at 30 fps, then 4 s at 5 fps, up to 2.1 s off, and the person was
    seen 5.5 of its 5.9 s. Each frame now has its own time, in ``video`` and in ``batch``, and
    ``every`` samples by time. A batch range of a clip slow at first was reached by seeking past its
    first frames (OpenCV counts frames): 45 rows of 80. Ranges now give the whole file's rows."""
    from facial_emotion.batch.job import run_batch
    from facial_emotion.batch.work import AnalyzerOptions
    from facial_emotion.results.tables import read_table

    face = cv2.resize(cv2.imread(str(need_shared("media", "justin.jpg"))), None, fx=0.5, fy=0.5)
    times = [i / 30 for i in range(60)] + [2 + i / 5 for i in range(20)]
    clip = tmp_path / "phone.mp4"
    write_variable_rate_video(clip, face, times)
    recognizer = EmotionRecognizer()
    result = analyze_video(recognizer, clip)
    assert result.frames_read == 80 and result.fps < 20  # the average rate
    assert [row.time_s for row in result.timeline] == pytest.approx(times, abs=1e-3)
    assert [row.frame for row in result.timeline] == list(range(80))  # numbers are counted
    (person,) = result.summary
    assert person.seconds == pytest.approx(5.8 + 1 / result.fps, abs=0.01)
    matroska = tmp_path / "phone.mkv"  # its frame count is duration x a nominal rate: 175 "expected"
    write_variable_rate_video(matroska, face, times)
    proc = run_cli("video", str(matroska), "--every", "10", "--strict", "--json")
    assert proc.returncode == 0 and "warning" not in proc.stderr, proc.stderr  # was "54% missing", exit 2
    assert json.loads(proc.stdout)["frames_read"] == 80
    sampled = [row.time_s for row in analyze_video(recognizer, clip, every=3).timeline]
    # one frame in each stretch of 3 intervals at the average rate (0.21 s): at most two apart
    assert 25 <= len(sampled) <= 32 and max(np.diff(sampled)) < 2 * 3 / result.fps

    slow_first = tmp_path / "slow_first.mp4"
    times = [i / 5 for i in range(10)] + [2 + i / 30 for i in range(60)] + [4 + i / 5 for i in range(10)]
    write_variable_rate_video(slow_first, face, times)
    fps = cv2.VideoCapture(str(slow_first)).get(cv2.CAP_PROP_FPS)
    stretches = [round(t * fps) // 4 for t in times]  # every=4: a frame whose stretch is not the one before's
    by_time = [t for k, t in enumerate(times) if k == 0 or stretches[k] != stretches[k - 1]]
    for every in (1, 4):
        options = AnalyzerOptions(every=every)
        run_batch([str(slow_first)], tmp_path / f"whole{every}", options=options)
        run_batch([str(slow_first)], tmp_path / f"ranges{every}", options=options, chunk_frames=25, overlap=5)
        whole, ranges = (
            sorted(float(r["time_s"]) for r in read_table(tmp_path / f"{name}{every}", "faces"))
            for name in ("whole", "ranges")
        )
        assert ranges == whole and whole == pytest.approx(times if every == 1 else by_time, abs=1e-3)
    assert len(by_time) != len(times[::4])  # sampling by index would be another set


def number_shown(image: np.ndarray, bits: int) -> int:
    return sum(int(image[:, 16 * b : 16 * b + 16].mean() > 128) << b for b in range(bits))


def test_a_webm_recording_without_a_frame_rate_is_not_called_damaged(tmp_path: Path) -> None:
    """A browser's WebM recording has no frame rate: OpenCV gives its clock's 1000 fps and a count of
    duration x 1000, and every such file was "97 % missing: damaged or truncated" (exit 2 with
    --strict). The count is no count then; the frames keep their own times."""
    face = cv2.resize(cv2.imread(str(need_shared("media", "justin.jpg"))), None, fx=0.25, fy=0.25)
    times = [0.0, *np.cumsum(np.random.default_rng(0).uniform(0.008, 0.058, 59))]  # 8-58 ms apart
    clip = tmp_path / "recording.webm"
    write_variable_rate_video(clip, face, times, rate=1000)
    assert cv2.VideoCapture(str(clip)).get(cv2.CAP_PROP_FPS) == 1000
    proc = run_cli("video", str(clip), "--strict", "--json")
    assert proc.returncode == 0 and "warning" not in proc.stderr, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["frames_read"] == 60 and doc["frames_expected"] is None
    assert [row["time_s"] for row in doc["timeline"]] == pytest.approx(times, abs=1e-3)
    from facial_emotion.batch.sources import plan_units

    # batch --chunk-frames cut it by that count: 100 ranges of 20 "frames", 97 of them past its end
    assert len(plan_units([str(clip)], chunk_frames=20)) == 1


def test_the_annotated_copy_of_a_variable_rate_video_keeps_the_original_s_time(tmp_path: Path) -> None:
    """The copy is written at one rate, and its frames were written one after another: a clip of 2 s
    at 30 fps then 4 s at 5 fps ran fast and slow by turns (its MP4 at the average rate), or 2.7 s
    long in all (its Matroska file at the nominal 30 fps). Each frame now shows from its place in
    time to the next frame's: a slow stretch holds its frames; in a fast one, of frames that share a
    place the last one shows (the first hid the 5 fps stretch's first frame, 0.2 s, in the MP4). A
    pause over a minute (two recordings joined) is cut to one: the copy was 100 s long, mostly one
    frame."""
    bits = 7  # frame k shows k in binary: 7 stripes 16 pixels wide, white for a 1 (compression keeps it)
    rows = [np.repeat([(k >> b & 1) * 255 for b in range(bits)], 16).astype(np.uint8) for k in range(80)]
    numbered = [np.ascontiguousarray(np.broadcast_to(row[None, :, None], (96, 16 * bits, 3))) for row in rows]
    phone = [i / 30 for i in range(60)] + [2 + i / 5 for i in range(20)]
    joined = [i / 10 for i in range(10)] + [100 + i / 10 for i in range(10)]
    for name, times in (("phone.mp4", phone), ("phone.mkv", phone), ("joined.mkv", joined)):
        clip, copy = tmp_path / name, tmp_path / f"copy-{name}.avi"
        write_variable_rate_video(clip, numbered[: len(times)], times)
        proc = run_cli("video", str(clip), "--out", str(copy), "--json")
        assert proc.returncode == 0, proc.stderr
        capture = cv2.VideoCapture(str(copy))
        fps = capture.get(cv2.CAP_PROP_FPS)
        assert fps == pytest.approx(cv2.VideoCapture(str(clip)).get(cv2.CAP_PROP_FPS), rel=1e-3)
        shown = [number_shown(image, bits) for image in read_frames(capture)]
        places = [round(t * fps) for t in times]
        if name == "joined.mkv":  # the pause held for a minute, the rest of it cut
            cut = places[10] - (places[9] + round(60 * fps))
            places = places[:10] + [p - cut for p in places[10:]]
        # place p shows the last frame placed at or before it
        expected = [max(k for k, at in enumerate(places) if at <= p) for p in range(places[-1] + 1)]
        assert shown == expected, name
        if name != "joined.mkv":
            assert len(shown) / fps == pytest.approx(
                times[-1], abs=0.1
            )  # to the last frame's time, whatever the rate
    assert len(shown) / fps == pytest.approx(60 + 0.9 + 0.9, abs=0.1)


def test_the_frame_clock_counts_from_the_first_frame_and_goes_on_where_timestamps_start_over() -> None:
    """Two recordings joined into one .ts: the second half's frames all had the first half's last
    time, and --every analysed none of them. Small steps back (a damaged file's stray frame) hold.
    B-frames put the first frame at 67 ms in some files (times count from it, as index / fps did)
    and leave the last ones without a timestamp (each follows the one before)."""
    from facial_emotion.inference.video import FrameClock

    clock = FrameClock(fps=10.0)
    ms = [0, 1000, 2000, 3000, 50, 1050, 2050, 2000, 3050, 0, 1000]
    times = [clock.place(m)[1] for m in ms]
    assert times == pytest.approx([0, 1, 2, 3, 3.1, 4.1, 5.1, 5.1, 6.1, 6.2, 6.3])
    assert clock.index == 10  # counted
    clock = FrameClock(fps=15.0)  # the last two frames without a timestamp: flushed B-frames
    assert [clock.place(m) for m in (66.7, 133.3, 200.0, 0, 0)] == [(i, i / 15) for i in range(5)]


def write_clip_with_sound(
    path: Path,
    video_from_s: float,
    tone_from_s: float,
    seconds: float,
    size=(96, 64),
    sound_from_s: float = 0.0,
    sound_s: float | None = None,
    hole: tuple[float, float] | None = None,
    rate: int = 48000,
    layout: str = "mono",
    pause: tuple[float, float] | None = None,
) -> None:
    """A camera's kind of file: 25 fps H.264 and AAC (48 kHz mono unless said), the first video frame at
    ``video_from_s`` (as the test clip's, 0.85 s after its sound), the last before ``seconds``; sound
    from ``sound_from_s`` to ``sound_s`` (default ``seconds``), none in ``hole``: silence, then a
    1 kHz tone from ``tone_from_s`` on (times on the file's clock, which Matroska keeps in ms); no
    picture in ``pause``."""
    import fractions

    import av

    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=25)
        video.width, video.height, video.pix_fmt = *size, "yuv444p"  # 4:4:4 takes odd sides
        audio = out.add_stream("aac", rate=rate, layout=layout)
        grey = np.full((size[1], size[0], 3), 128, np.uint8)
        frames = [(video_from_s + i / 25, "v") for i in range(round((seconds - video_from_s) * 25))]
        first, last = round(sound_from_s * rate / 1024), int((sound_s or seconds) * rate / 1024)
        frames += [(i * 1024 / rate, "a") for i in range(first, last)]
        if hole:
            frames = [(t, kind) for t, kind in frames if kind == "v" or not hole[0] <= t < hole[1]]
        if pause:
            frames = [(t, kind) for t, kind in frames if kind == "a" or not pause[0] <= t < pause[1]]
        for t, kind in sorted(frames):  # interleaved by time, as a camera writes them
            if kind == "v":
                picture = av.VideoFrame.from_ndarray(grey, format="bgr24")
                picture.pts, picture.time_base = round(t * 1000), fractions.Fraction(1, 1000)
                out.mux(video.encode(picture))
            else:
                s = np.arange(round(t * rate), round(t * rate) + 1024) / rate
                wave = np.where(s >= tone_from_s, 0.5 * np.sin(2 * np.pi * 1000 * s), 0.0).astype(np.float32)
                channels = 1 if layout == "mono" else 2
                sound = av.AudioFrame.from_ndarray(np.tile(wave, (channels, 1)), format="fltp", layout=layout)
                sound.sample_rate, sound.pts = rate, round(t * rate)
                sound.time_base = fractions.Fraction(1, rate)
                out.mux(audio.encode(sound))
        out.mux(video.encode(None))
        out.mux(audio.encode(None))


def sound_of(path: Path) -> tuple[np.ndarray, int, float]:
    """A file's first audio stream as the player places it: each decoded piece at its own
    timestamp, mono, in [-1, 1]; its rate, and the file's duration as the container gives it."""
    import av

    with av.open(str(path)) as f:
        stream = f.streams.audio[0]
        rate, channels = stream.codec_context.sample_rate, stream.codec_context.channels
        pieces = []
        for frame in f.decode(stream):
            x = frame.to_ndarray()
            if frame.format.is_packed:  # (1, n x channels) integers
                x = x.reshape(-1, channels).T / 32768.0
            pieces.append((max(0, round(frame.time * rate)), x.mean(axis=0)))
        placed = np.zeros(max(at + len(x) for at, x in pieces))
        for at, x in pieces:
            placed[at : at + len(x)] = x
        return placed, rate, f.duration / 1e6


def codecs_of(path: Path) -> dict[str, str]:
    import av

    with av.open(str(path)) as f:
        return {s.type: s.codec_context.name for s in f.streams}


def tone_starts(path: Path) -> float:
    samples, rate, _ = sound_of(path)
    return np.flatnonzero(np.abs(samples) > 0.2)[0] / rate


def test_the_annotated_copy_is_h264_with_the_original_s_sound_in_time(tmp_path: Path) -> None:
    """OpenCV's MPEG-4 Part 2 copy played in no browser or phone, and had no sound. With PyAV it is
    H.264 with the sound re-encoded as AAC (Motion JPEG and PCM in .avi), in time with the picture:
    from the original's first video frame, not its first sound (a camera's file starts its sound
    first), each piece of sound at its own time (Matroska's clock is in ms: the copy was 160 s long),
    holes kept, a late start kept in AVI (which keeps no timestamps), nothing past the last frame."""
    clip = tmp_path / "talk.mkv"
    write_clip_with_sound(clip, video_from_s=0.6, tone_from_s=1.6, seconds=4.0, size=(95, 63))
    codecs = {".mp4": "h264", ".mov": "h264", ".mkv": "h264", ".avi": "mjpeg"}
    for suffix, video_codec in codecs.items():
        copy = tmp_path / f"copy{suffix}"
        proc = run_cli("video", str(clip), "--out", str(copy), "--json")
        assert proc.returncode == 0, proc.stderr
        assert "note:" not in proc.stderr and "warning" not in proc.stderr.lower()
        sound = "pcm_s16le" if suffix == ".avi" else "aac"
        assert codecs_of(copy) == {"video": video_codec, "audio": sound}, suffix
        shown = list(read_frames(cv2.VideoCapture(str(copy))))
        assert len(shown) == 85 and shown[0].shape == (64, 96, 3), suffix  # odd sides padded for 4:2:0
        samples, rate, duration = sound_of(copy)
        assert duration == pytest.approx(85 / 25, abs=0.05), suffix
        assert len(samples) / rate == pytest.approx(85 / 25, abs=0.03), suffix  # as long as the picture
        assert tone_starts(copy) == pytest.approx(1.0, abs=0.005), suffix  # 1 s after the first frame
    # a hole in the sound stays a hole: what follows keeps its time; a late start is silence first
    clip = tmp_path / "hole.mkv"
    write_clip_with_sound(clip, 0.0, tone_from_s=3.0, seconds=4.0, sound_from_s=0.5, hole=(1.5, 2.1))
    for suffix in (".mp4", ".avi"):
        copy = tmp_path / f"hole{suffix}"
        assert run_cli("video", str(clip), "--out", str(copy)).returncode == 0
        assert tone_starts(copy) == pytest.approx(3.0, abs=0.005), suffix
        samples, rate, duration = sound_of(copy)
        assert len(samples) / rate == pytest.approx(4.0, abs=0.03), suffix
    # two recordings joined into one TS file, the second one's sound in another layout and rate:
    # the queue and the resampler took the first one's only (a crash, once a segfault)
    # (from 0.2 s: no timestamp of the first one below 0, which the muxer would shift)
    first, second, joined = tmp_path / "a.ts", tmp_path / "b.ts", tmp_path / "joined.ts"
    write_clip_with_sound(first, 0.2, tone_from_s=99, seconds=2.0, sound_from_s=0.2, layout="stereo")
    write_clip_with_sound(second, 2.0, tone_from_s=3.0, seconds=4.0, sound_from_s=2.0, rate=44100)
    joined.write_bytes(first.read_bytes() + second.read_bytes())
    for suffix in (".mp4", ".avi"):
        copy = tmp_path / f"joined{suffix}"
        proc = run_cli("video", str(joined), "--out", str(copy))
        assert proc.returncode == 0, proc.stderr
        assert tone_starts(copy) == pytest.approx(2.8, abs=0.005), suffix
    # ... and joined where the second recording's clock starts over: its sound was all left out
    second, joined = tmp_path / "b0.ts", tmp_path / "restarted.ts"
    write_clip_with_sound(second, 0.2, tone_from_s=1.0, seconds=2.0, sound_from_s=0.2)
    joined.write_bytes(first.read_bytes() + second.read_bytes())
    copy = tmp_path / "restarted.mp4"
    assert run_cli("video", str(joined), "--out", str(copy)).returncode == 0
    assert tone_starts(copy) == pytest.approx(1.8 + 0.8, abs=0.02)  # its picture goes on at 1.8 s too
    # a pause over a minute (a still screen) is cut to a minute: the sound plays through that minute
    clip, copy = tmp_path / "pause.mkv", tmp_path / "pause.mp4"
    write_clip_with_sound(clip, 0.0, tone_from_s=30.0, seconds=72.0, pause=(1.0, 71.0))
    assert run_cli("video", str(clip), "--out", str(copy)).returncode == 0
    samples, rate, _ = sound_of(copy)
    # 0-0.96 s, the last of them held for a minute, then 71-72 s: the sound to the minute's end
    assert len(list(read_frames(cv2.VideoCapture(str(copy))))) == 24 + 1500 + 25
    assert len(samples) / rate == pytest.approx((24 + 1500) / 25, abs=0.05) and tone_starts(
        copy
    ) == pytest.approx(30.0, abs=0.005)
    # sound that runs on after the last frame is left out with it
    clip, copy = tmp_path / "long-sound.mkv", tmp_path / "short-copy.mp4"
    write_clip_with_sound(clip, video_from_s=0.0, tone_from_s=2.0, seconds=1.0, sound_s=3.0)
    assert run_cli("video", str(clip), "--out", str(copy)).returncode == 0
    samples, rate, duration = sound_of(copy)
    assert len(samples) / rate == pytest.approx(1.0, abs=0.03) and duration == pytest.approx(1.0, abs=0.05)
    assert np.abs(samples).max() < 0.01  # the tone came after the last frame


def test_without_pyav_the_copy_is_opencv_s_and_says_how_to_get_sound(tmp_path: Path) -> None:
    clip, copy = tmp_path / "talk.mkv", tmp_path / "copy.mp4"
    write_clip_with_sound(clip, video_from_s=0.0, tone_from_s=1.0, seconds=2.0)
    code = "import sys; sys.modules['av'] = None; from facial_emotion.cli import main; sys.exit(main())"
    proc = subprocess.run(
        [sys.executable, "-c", code, "video", str(clip), "--out", str(copy), "--json"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "for H.264 with the original's sound: pip install 'facial-emotion[video]'" in proc.stderr
    assert codecs_of(copy) == {"video": "mpeg4"}
    assert len(list(read_frames(cv2.VideoCapture(str(copy))))) == 50


def test_a_copy_whose_writing_fails_leaves_no_file_and_no_temp_file(tmp_path: Path) -> None:
    from facial_emotion.results.media import AnnotatedVideo

    clip = tmp_path / "talk.mkv"
    write_clip_with_sound(clip, video_from_s=0.0, tone_from_s=0.5, seconds=1.0)
    target = tmp_path / "out" / "copy.mp4"
    frame = np.full((64, 96, 3), 100, np.uint8)
    with (
        pytest.raises(RuntimeError, match="stopped"),
        AnnotatedVideo(target, fps=25, sound_from=str(clip)) as copy,
    ):
        for i in range(10):
            copy.write(frame, [], i, i / 25)
        raise RuntimeError("stopped")
    assert list(target.parent.iterdir()) == []
    with AnnotatedVideo(target, fps=25, sound_from=str(clip)) as copy:  # the same, finished
        for i in range(10):
            copy.write(frame, [], i, i / 25)
    assert [p.name for p in target.parent.iterdir()] == ["copy.mp4"]
    assert codecs_of(target) == {"video": "h264", "audio": "aac"}


def test_a_full_disk_while_writing_the_copy_is_one_error_naming_it_and_leaves_nothing(tmp_path: Path) -> None:
    import resource

    video, target = need_shared("media", "woman2.mp4"), tmp_path / "out" / "copy.mp4"
    limit = lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (300_000, 300_000))  # noqa: E731  (a disk that fills)
    proc = subprocess.run(
        [sys.executable, "-m", "facial_emotion", "video", str(video), "--out", str(target)],
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=limit,
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip() == f"facial-emotion video: error: {target}: File too large"
    assert list(target.parent.iterdir()) == []


def test_sound_that_cannot_be_read_gives_a_silent_copy_and_a_short_clip_is_not_called_damaged(
    tmp_path: Path,
) -> None:
    """A sound codec FFmpeg does not know was a traceback (no copy); a 3-frame Matroska clip, whose
    last sound packet runs 20 ms past its picture, read "3 of 4 frames (25% missing)"."""
    clip, unknown = tmp_path / "talk.mkv", tmp_path / "unknown-sound.mkv"
    write_clip_with_sound(clip, 0.0, tone_from_s=0.5, seconds=1.0)
    unknown.write_bytes(clip.read_bytes().replace(b"A_AAC", b"A_ZZZ"))
    copy = tmp_path / "copy.mp4"
    proc = run_cli("video", str(unknown), "--out", str(copy))
    assert proc.returncode == 0, proc.stderr
    assert "the annotated copy has no sound (its sound's codec cannot be read)" in proc.stderr
    assert codecs_of(copy) == {"video": "h264"}
    short = tmp_path / "three-frames.mkv"
    write_clip_with_sound(short, 0.0, tone_from_s=99, seconds=0.12)
    proc = run_cli("video", str(short), "--strict", "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["frames_read"] == 3
