"""Video files, streams and cameras: frames are read here and fed to a ``FaceStream`` (which finds,
tracks, classifies and smooths the faces); what becomes of each frame is the caller's ``on_frame``
(draw it, show it, write it: see ``results``)."""

from __future__ import annotations

import numbers
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from facial_emotion.arguments import whole_number
from facial_emotion.inference.decode import IMAGE_SUFFIXES, VIDEO_SUFFIXES, ImageError, check_regular_file
from facial_emotion.inference.pipeline import EmotionRecognizer, Face
from facial_emotion.inference.session import DEFAULT_HOLD_S, EmotionEvent, PersonSummary
from facial_emotion.inference.stream import FaceStream
from facial_emotion.settings import DEFAULT_DETECT_EVERY, DEFAULT_SMOOTHING

# on_frame(index, frame, faces, processing fps) -> False to stop. ``faces`` are the last analysed
# frame's, so frames skipped by ``every`` keep the previous faces.
FrameCallback = Callable[[int, np.ndarray, list[Face], float], bool | None]


class VideoError(Exception):
    """The video or camera cannot be opened or read."""


@dataclass
class TimelineRow:
    frame: int
    time_s: float
    face: Face


@dataclass
class VideoResult:
    source: str
    fps: float
    frames_read: int = 0
    frames_analyzed: int = 0
    frames_expected: int | None = None  # from the container (frame count, or duration x fps); files only
    end_s: float | None = None  # a file: where its last frame read ends (a damaged stretch counted)
    seconds: float = 0.0
    timeline: list[TimelineRow] = field(default_factory=list)
    summary: list[PersonSummary] = field(default_factory=list)  # per person: see inference.session
    events: list[EmotionEvent] = field(default_factory=list)


def is_camera(source: str | int) -> bool:
    return isinstance(source, int) or str(source).isdigit()


# Still-image files OpenCV would open as a one-frame "video" with a made-up frame rate (an animated
# GIF or WebP may be meant as a clip, so those are left to OpenCV).
STILL_IMAGE_SUFFIXES = IMAGE_SUFFIXES - {".webp"}


def open_capture(source: str | int) -> cv2.VideoCapture:
    if isinstance(source, numbers.Integral) and not isinstance(source, bool):
        source = int(source)  # a numpy integer is a camera index too
    if not isinstance(source, (str, int)) or isinstance(source, bool):
        raise VideoError(
            f"unsupported video source of type {type(source).__name__}: give a file path, a URL or a camera index"
        )
    if not is_camera(source) and "://" not in str(source):
        path = Path(str(source))
        if not str(source):
            raise VideoError("empty file name")
        try:  # a FIFO, device or socket is refused by name: opening a FIFO would block
            check_regular_file(path, str(source))
        except ImageError as e:
            raise VideoError(
                str(e).replace("an image file", "a video file").replace("an image", "a video")
            ) from None
        if path.stat().st_size == 0:
            raise VideoError(f"{source}: empty file (0 bytes)")
        if path.suffix.lower() in STILL_IMAGE_SUFFIXES:
            raise VideoError(f"{source}: a photo, not a video (analyze reads photos)")
    cap = cv2.VideoCapture(int(source) if is_camera(source) else source)
    if not cap.isOpened():
        what = f"camera {source}" if is_camera(source) else str(source)
        raise VideoError(f"{what}: cannot open (not a readable video, or no such camera)")
    return cap


def is_live(source: str | int) -> bool:
    """A camera or a live stream, timed by the clock and without an end: a camera index, or a URL
    but one naming a video file (``http://host/talk.mp4``: timed by its frames as on disk; it was
    timed by how fast it was analysed). An IP camera's ``http://host/video.mjpg``, rtsp://, HLS
    playlists and the like are live."""
    if is_camera(source):
        return True
    _, sep, rest = str(source).partition("://")
    return bool(sep) and Path(rest.split("?", 1)[0]).suffix.lower() not in VIDEO_SUFFIXES


def frames(cap: cv2.VideoCapture) -> Iterator[np.ndarray]:
    while True:
        ok, frame = cap.read()
        if not ok or frame is None:
            return
        yield frame


# Undecodable frames in a row skipped in a damaged file before it is taken as ended (10 s at 30 fps).
MAX_BAD_FRAMES = 300


def numbered_frames(cap: cv2.VideoCapture, fps: float, start: int = 0) -> Iterator[tuple[int, np.ndarray]]:
    """(index, frame) for each frame of a file read from frame ``start`` on. A damaged stretch (frames
    that do not decode, before the count the container announces) is skipped, up to MAX_BAD_FRAMES
    in a row: reading stopped at the first one, and the rest of the video was lost. From there on a
    frame's index comes from its timestamp, so the frames after the stretch keep their times."""
    expected = expected_frames(cap)
    index, damaged = start, False
    while True:
        ok, frame = cap.read()
        if not ok or frame is None:
            if expected is None or index >= expected - 1:
                return  # the end
            for _ in range(MAX_BAD_FRAMES):
                ok, frame = cap.read()
                if ok and frame is not None:
                    break
            else:
                return
            damaged = True
        if damaged:  # the decoder may give a frame or two from before the stretch, then jump
            ms = cap.get(cv2.CAP_PROP_POS_MSEC)
            index = max(index, round(ms / 1000 * fps)) if ms > 0 else index
        yield index, frame
        index += 1


# A file that gives fewer frames than its container announces by more than this is damaged or cut.
SHORTFALL_WARNING = 0.02


def expected_frames(cap: cv2.VideoCapture) -> int | None:
    """What the container announces, or None. OpenCV's FFmpeg backend gives the stream's frame count,
    or its duration x fps where the container has no count."""
    count = cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0.0
    return int(count) if 0 < count < 1e9 else None


def shortfall(result: VideoResult) -> str | None:
    """A warning naming the file when it gave over 2 % fewer frames than its container announces."""
    expected = result.frames_expected
    if not expected or result.frames_read >= expected * (1 - SHORTFALL_WARNING):
        return None
    missing = 1 - result.frames_read / expected
    return (
        f"{result.source}: read {result.frames_read} of the {expected} frames the file announces "
        f"({missing:.0%} missing): the video is damaged or truncated"
    )


def video_fps(cap: cv2.VideoCapture) -> float:
    """The container's frame rate, or 30 where it is missing or absurd (cameras, some streams)."""
    fps = cap.get(cv2.CAP_PROP_FPS) or 0.0
    return fps if 0 < fps < 1000 else 30.0


def analyze_video(
    recognizer: EmotionRecognizer,
    source: str | int | os.PathLike,
    every: int = 1,
    smoothing: float = DEFAULT_SMOOTHING,
    on_frame: FrameCallback | None = None,
    max_frames: int | None = None,
    progress: bool = False,
    detect_every: int = DEFAULT_DETECT_EVERY,
    keep_timeline: bool = True,
    on_open: Callable[[float], None] | None = None,
    on_event: Callable[[EmotionEvent], object] | None = None,
    hold_s: float | None = DEFAULT_HOLD_S,
    interrupt_stops: bool = False,
) -> VideoResult:
    """Analyse every ``every``-th frame of a file, URL or camera through one ``FaceStream``. A camera
    is an int (numpy ints too) or a string of digits; a ``Path`` is always a file, even ``Path("0")``; a
    photo's file name (.jpg, .png...), bytes and "" are refused (``VideoError``).
    ``on_open(fps)`` is called once the source is open; ``on_frame`` for every frame read, and may
    return False to stop (the webcam quits on 'q'). ``keep_timeline=False`` keeps only the per-person
    summary and the events (a camera runs for hours). Frame times are index / fps for a file (on
    disk or over http) and the clock for a camera or live stream (``is_live``), in the timeline and
    the summary alike; ``on_event`` gets each
    ``EmotionEvent`` as it fires. ``interrupt_stops``: Ctrl-C ends the reading as 'q' does and the
    result holds what came before (a camera without a window has no other way to stop); otherwise
    KeyboardInterrupt goes up. Bad arguments raise ValueError before the source is opened."""
    if isinstance(source, numbers.Integral) and not isinstance(source, bool):
        source = int(source)  # a numpy integer camera index
    if isinstance(source, os.PathLike):  # a path is a file, even one named by digits (not a camera)
        name = str(os.fspath(source))
        source = os.path.join(".", name) if name.isdigit() else name
    every = whole_number("every", every)
    max_frames = None if max_frames is None else whole_number("max_frames", max_frames)
    stream = FaceStream(recognizer, detect_every=detect_every, smoothing=smoothing, hold_s=hold_s)
    if on_event is not None:
        stream.on_change(on_event)
    cap = open_capture(source)
    result = VideoResult(source=str(source), fps=video_fps(cap))
    live = is_live(source)
    if not live:
        result.frames_expected = expected_frames(cap)
        stream.session.expect_frame_interval(every / result.fps)  # file times are index / fps
    bar = None
    faces: list[Face] = []
    end = 0
    t0 = time.perf_counter()
    try:  # from here on the capture is released whatever happens (a camera stays busy otherwise)
        if on_open is not None:
            on_open(result.fps)
        if progress:
            from tqdm import tqdm  # progress bars only where a person watches

            total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
            bar = tqdm(total=total or None, unit="frame", desc=Path(str(source)).name)
        try:
            numbered = enumerate(frames(cap)) if live else numbered_frames(cap, result.fps)
            for index, frame in numbered:
                result.frames_read += 1
                end = index + 1  # frames in the file up to this one, a damaged stretch included
                if index % every == 0:
                    t = time.perf_counter() - t0 if live else index / result.fps
                    faces = stream.process(frame, t)
                    result.frames_analyzed += 1
                    if keep_timeline:
                        result.timeline += [TimelineRow(index, t, face) for face in faces]
                elapsed = time.perf_counter() - t0
                rate = result.frames_read / elapsed if elapsed > 0 else 0.0
                if on_frame is not None and on_frame(index, frame, faces, rate) is False:
                    result.frames_expected = None  # stopped on purpose: no shortfall to report
                    break
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(fps=f"{rate:.1f}", faces=len(faces))
                if max_frames and result.frames_read >= max_frames:
                    result.frames_expected = None
                    break
        except KeyboardInterrupt:
            if not interrupt_stops:
                raise
            result.frames_expected = None  # stopped on purpose
    finally:
        cap.release()
        if bar is not None:
            bar.close()
    if result.frames_read == 0:
        raise VideoError(f"{source}: no frame could be decoded (corrupt or unsupported video)")
    result.seconds = time.perf_counter() - t0
    # a file ends with its last frame read; a camera or stream has no end to cut at
    result.end_s = None if live else end / result.fps
    result.summary = stream.summary(result.end_s)
    result.events = stream.session.events
    return result
