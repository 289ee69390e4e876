"""The Python API takes what a developer tries first and refuses nonsense by name, up front (found by a
review of the public API): paths as ``Path`` or any ``os.PathLike``, frames in any array form ``analyze``
takes, detector names in ``FaceStream``; bad counts, times, timeouts and thread counts raise ValueError
or TypeError naming the argument before any work, a video's capture is released whatever fails, and
the errors the API raises can be imported from the package."""

from __future__ import annotations

import io
import math
import os
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import need_shared
from PIL import Image

import facial_emotion
from facial_emotion import EmotionRecognizer, FaceStream, ImageError, analyze_video, load_image
from facial_emotion.inference.detectors import create_detector
from facial_emotion.inference.pipeline import Face
from facial_emotion.inference.session import Session
from facial_emotion.labels import EMOTIONS
from facial_emotion.results.draw import annotate


@pytest.fixture(scope="module")
def recognizer() -> EmotionRecognizer:
    return EmotionRecognizer()


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_video_paths_may_be_path_objects(recognizer: EmotionRecognizer) -> None:
    video = need_shared("media", "woman2.mp4")
    by_path = analyze_video(recognizer, video, max_frames=5)
    by_str = analyze_video(recognizer, str(video), max_frames=5)
    assert by_path.frames_read == 5 and [r.face.emotion for r in by_path.timeline] == [
        r.face.emotion for r in by_str.timeline
    ]


def test_frames_in_any_array_form_give_the_faces_of_the_bgr_frame(recognizer: EmotionRecognizer) -> None:
    bgr = load_image(need_shared("media", "justin.jpg"))
    forms = {
        "bgra": cv2.cvtColor(bgr, cv2.COLOR_BGR2BGRA),
        "float 0..1": bgr.astype(np.float32) / 255,
        "non-contiguous": np.asfortranarray(bgr),
    }
    expected = [f.emotion for f in FaceStream(recognizer).process(bgr, 0.0)]
    assert expected  # one face
    for name, frame in forms.items():
        got = FaceStream(recognizer).process(frame, 0.0)
        assert [f.emotion for f in got] == expected, name
        assert [f.emotion for f in recognizer.analyze_frame(frame)] == expected, name
    gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    assert len(FaceStream(recognizer, detect_every=5).process(gray, 0.0)) == 1  # was a cv2 error
    with pytest.raises(ImageError):
        FaceStream(recognizer).process(Image.fromarray(gray), 0.0)  # type: ignore[arg-type]


def test_face_stream_takes_detector_names_and_refuses_objects_without_detect(
    recognizer: EmotionRecognizer,
) -> None:
    bgr = load_image(need_shared("media", "two_people.jpg"))
    assert len(FaceStream(recognizer, detector="haar").process(bgr, 0.0)) >= 1
    with pytest.raises(TypeError, match="object with detect"):
        create_detector(123)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="object with detect"):
        EmotionRecognizer(detector=Path("yunet.onnx"))  # type: ignore[arg-type]


def test_video_arguments_are_checked_before_the_video_is_opened(recognizer: EmotionRecognizer) -> None:
    video = need_shared("media", "woman2.mp4")
    bad = [
        {"every": 0},
        {"every": 0.5},
        {"every": -2},
        {"max_frames": 0},
        {"max_frames": -1},
        {"detect_every": 0},
        {"smoothing": 1.5},
        {"hold_s": -1.0},
    ]
    before = open_fds()
    for kwargs in bad:
        with pytest.raises(ValueError, match=next(iter(kwargs))):
            analyze_video(recognizer, video, **kwargs)  # type: ignore[arg-type]

    def broken_writer(_fps: float) -> None:
        raise RuntimeError("the output could not be opened")

    with pytest.raises(RuntimeError):
        analyze_video(recognizer, video, on_open=broken_writer)
    assert open_fds() == before  # nothing left open, though the exceptions are still referenced here


def test_per_file_timeout_zero_means_no_limit_and_nonsense_is_refused(recognizer: EmotionRecognizer) -> None:
    justin = need_shared("media", "justin.jpg")
    (result,) = recognizer.analyze_each([justin], timeout=0)
    assert result.error is None and len(result.faces) == 1
    for bad in (-1.0, math.nan, math.inf, "5"):
        with pytest.raises(ValueError, match="timeout"):
            list(recognizer.analyze_each([justin], timeout=bad))  # type: ignore[arg-type]


def test_frame_times_are_checked_before_the_tracker_moves(recognizer: EmotionRecognizer) -> None:
    bgr = load_image(need_shared("media", "justin.jpg"))
    stream = FaceStream(recognizer, smoothing=0.5)
    stream.process(bgr, 1.0)
    frame_before = stream.tracker.frame
    for bad in (0.5, math.nan, "2.0"):
        with pytest.raises(ValueError, match="time"):
            stream.process(bgr, bad)  # type: ignore[arg-type]
    assert stream.tracker.frame == frame_before  # a refused frame is not half-counted
    stream.process(bgr, 1.5)
    (person,) = stream.summary()
    assert person.frames == 2 and person.first_s == 1.0 and person.last_s == 1.5


def test_session_refuses_nan_settings_and_unknown_emotions() -> None:
    for kwargs in ({"min_duration_s": math.nan}, {"hold_s": math.nan}, {"max_gap_s": math.inf}):
        with pytest.raises(ValueError, match="finite"):
            Session(list(EMOTIONS), **kwargs)
    session = Session(["a", "b"])
    happy = Face((0, 0, 10, 10), "happy", 0.9, {"happy": 0.9}, track_id=1)
    with pytest.raises(ValueError, match="happy"):
        session.update(0.0, [happy])
    assert session.summary() == []  # nothing half-recorded


def test_threads_must_be_a_count_not_blamed_on_the_model() -> None:
    for bad in ("2", 2.5, -1):
        with pytest.raises(ValueError, match="threads"):
            EmotionRecognizer(threads=bad)  # type: ignore[arg-type]


def test_odd_image_objects(recognizer: EmotionRecognizer, tmp_path: Path) -> None:
    data = need_shared("media", "justin.jpg").read_bytes()
    truncated = Image.open(io.BytesIO(data[: len(data) // 3]))  # opens lazily; decoding fails
    with pytest.raises(ImageError, match="cannot decode"):
        recognizer.analyze(truncated)
    (tmp_path / "justin.jpg").write_bytes(data)
    entry = next(os.scandir(tmp_path))  # an os.PathLike that is not a Path
    assert len(recognizer.analyze(entry)) == 1  # type: ignore[arg-type]
    faces = recognizer.analyze(entry)  # type: ignore[arg-type]
    drawn = annotate(load_image(entry).astype(np.float32) / 255, faces)  # type: ignore[arg-type]
    assert drawn.dtype == np.uint8 and drawn.max() == 255  # drawn on a 0..255 copy, not lost in 0..1
    assert annotate(str(tmp_path / "justin.jpg"), faces).shape == drawn.shape


def test_a_frame_of_another_size_is_searched_afresh(recognizer: EmotionRecognizer) -> None:
    bgr = load_image(need_shared("media", "justin.jpg"))
    stream = FaceStream(recognizer, detect_every=10)
    assert len(stream.process(bgr, 0.0)) == 1
    small = np.full((96, 96, 3), 127, np.uint8)  # no face: the old box must not be carried over
    assert stream.process(small, 0.1) == []


def test_a_stream_url_has_one_time_base(recognizer: EmotionRecognizer) -> None:
    video = need_shared("media", "woman2.mp4")
    result = analyze_video(recognizer, video.resolve().as_uri(), max_frames=40)  # file:// : read as live
    assert result.timeline
    (person,) = result.summary
    assert person.last_s == pytest.approx(max(r.time_s for r in result.timeline))


def test_the_errors_the_api_raises_are_exported() -> None:
    for name in ("ImageError", "ImageTooLarge", "DetectorError", "VideoError", "ModelFileError"):
        assert issubclass(getattr(facial_emotion, name), Exception) and name in facial_emotion.__all__
    with pytest.raises(facial_emotion.VideoError):
        analyze_video(EmotionRecognizer(), "/nonexistent.mp4")


def test_numpy_scalars_and_fractions_are_numbers(recognizer: EmotionRecognizer, tmp_path: Path) -> None:
    # What video and array libraries hand out: np.int64 counts, np.float32 times, a Fraction frame rate.
    from facial_emotion.batch.job import run_batch
    from facial_emotion.batch.work import AnalyzerOptions

    video, justin = need_shared("media", "woman2.mp4"), need_shared("media", "justin.jpg")
    result = analyze_video(recognizer, video, every=np.int64(2), max_frames=np.int64(6))
    assert result.frames_read == 6 and result.frames_analyzed == 3
    bgr = load_image(justin)
    stream = FaceStream(recognizer, detect_every=np.int32(3))  # type: ignore[arg-type]
    fps = Fraction(30000, 1001)
    for i in range(3):
        stream.process(bgr, i / fps)  # type: ignore[arg-type]
    stream.process(bgr, np.float32(1.0))  # type: ignore[arg-type]
    assert stream.summary()[0].frames == 4
    assert EmotionRecognizer(threads=np.int64(1)).analyze(justin)  # type: ignore[arg-type]
    assert recognizer.analyze_each([justin], timeout=np.float32(30)).__next__().error is None  # type: ignore[arg-type]
    options = AnalyzerOptions(every=np.int64(2), smoothing=np.float32(0.5))  # type: ignore[arg-type]
    report = run_batch([str(justin)], tmp_path / "job", options, fmt="csv")
    assert report.done == 1 and not report.errors
