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
from facial_emotion.inference.decode import IMAGE_SUFFIXES, ImageError, check_regular_file, names_video
from facial_emotion.inference.pipeline import EmotionRecognizer, Face
from facial_emotion.inference.session import DEFAULT_HOLD_S, EmotionEvent, PersonSummary
from facial_emotion.inference.stream import FaceStream
from facial_emotion.settings import DEFAULT_DETECT_EVERY, DEFAULT_SMOOTHING

# on_frame(index, frame, faces, processing fps) -> False to stop. ``faces`` are the last analysed
# frame's, so frames skipped by ``every`` keep the previous faces.
FrameCallback = Callable[[int, np.ndarray, list[Face], float], bool | None]
# on_timed_frame(index, time_s, frame, faces, processing fps): the same with the frame's time,
# counted from the first frame: a file's own timestamp, the clock's for a camera or live stream (when
# it was read), for what places frames by time, as the annotated copy does.
TimedFrameCallback = Callable[[int, float, np.ndarray, list[Face], float], bool | None]


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
    # A file whose frames span its container's duration with no damaged stretch and no gap over
    # MAX_GAP_S: fewer frames than announced is then a variable rate (the count of a Matroska or WebM
    # file is duration x a nominal rate), not lost frames.
    spans_duration: bool = False
    seconds: float = 0.0
    timeline: list[TimelineRow] = field(default_factory=list)
    summary: list[PersonSummary] = field(default_factory=list)  # per person: see inference.session
    events: list[EmotionEvent] = field(default_factory=list)


def is_camera(source: str | int) -> bool:
    return isinstance(source, int) or str(source).isdigit()


# Still-image files OpenCV would open as a one-frame "video" with a made-up frame rate (an animated
# GIF or WebP may be meant as a clip, so those are left to OpenCV).
STILL_IMAGE_SUFFIXES = IMAGE_SUFFIXES - {".webp", ".gif"}


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
    return "://" in str(source) and not names_video(str(source))


def frames(cap: cv2.VideoCapture) -> Iterator[np.ndarray]:
    while True:
        ok, frame = cap.read()
        if not ok or frame is None:
            return
        yield frame


# Undecodable frames in a row skipped in a damaged file before it is taken as ended (10 s at 30 fps).
MAX_BAD_FRAMES = 300


def numbered_frames(cap: cv2.VideoCapture, clock: FrameClock) -> Iterator[tuple[int, float, np.ndarray]]:
    """(index, time_s, frame) for each frame of a file read on from where ``cap`` is, numbered and
    timed by ``clock`` (``FrameClock(fps)`` from the start, or ``seek_before``'s). A damaged stretch
    (frames that do not decode, before the count the container announces) is skipped, up to
    MAX_BAD_FRAMES in a row (reading stopped at the first, and the rest of the video was lost); the
    frames after it keep their own times."""
    expected = expected_frames(cap)
    while True:
        ok, frame = cap.read()
        if not ok or frame is None:
            if expected is None or clock.index >= expected - 1:
                return  # the end
            for _ in range(MAX_BAD_FRAMES):
                ok, frame = cap.read()
                if ok and frame is not None:
                    break
            else:
                return
            clock.skipped = True  # the decoder may give a frame or two from before the stretch, then jump
        index, time_s = clock.place(cap.get(cv2.CAP_PROP_POS_MSEC))
        yield index, time_s, frame


# Timestamps going back further than this start over (recordings joined into one .ts file); less is a
# decoder's stray frame from before a damaged stretch.
RESTART_S = 1.0


class FrameClock:
    """A file's frame -> (index, time). The time is the frame's own timestamp, from the file's first
    frame's (which B-frames put a frame or two in, in some files): phones record at a variable rate
    (fewer frames a second in dim light), and index / fps (the container's average rate) put such a
    video's frames off by up to a fifth of their time. The index is the frame's number, counted;
    after a damaged stretch (``skipped``), and from a ``start`` reached by seeking, it comes from the
    time (time x fps, rounded; one past the last where frames come faster): exact in a constant-rate
    file, an estimate in a variable-rate one. A file without timestamps is timed by its count; where
    its timestamps start over, the time goes on from the frame before."""

    def __init__(self, fps: float, start: int = 0, origin_ms: float | None = None) -> None:
        self.fps, self.index, self.time_s, self.offset = fps, start - 1, 0.0, 0.0
        self.origin_ms = origin_ms  # the first frame's timestamp; None: the next frame read is the first
        self.timed = False  # a timestamp seen: frames without one then follow it
        self.skipped = start > 0  # numbers come from times: the frames before were not counted
        self.frames = 0
        self.largest_gap = 0.0  # seconds between two frames read

    def place(self, ms: float) -> tuple[int, float]:
        """The next frame's (index, time) from its timestamp in ms (0: none, or the first frame)."""
        fps, last_t = self.fps, self.time_s
        if self.origin_ms is None:
            self.origin_ms = max(0.0, ms)
        if ms <= 0:  # none: counted, or one interval on (B-frames flushed at a file's end have none)
            time_s = last_t + 1 / fps if self.timed else max(last_t, (self.index + 1) / fps)
        else:
            self.timed = True
            time_s = (ms - self.origin_ms) / 1000 + self.offset
            if time_s < last_t - RESTART_S:
                self.offset += last_t + 1 / fps - time_s
                time_s = last_t + 1 / fps
            time_s = max(last_t, time_s)  # never backwards: the session needs times in order
        index = max(self.index + 1, round(time_s * fps)) if self.skipped else self.index + 1
        if abs(time_s - index / fps) < 0.001:  # on the rate's grid (to a container's 1 ms): as before
            time_s = max(last_t, index / fps)
        if self.frames:
            self.largest_gap = max(self.largest_gap, time_s - last_t)
        self.frames += 1
        self.index, self.time_s = index, time_s
        return index, time_s


def seek_before(cap: cv2.VideoCapture, fps: float, place: int) -> FrameClock:
    """Put ``cap`` (at the file's start) where the next frame read is at or before ``place`` (time x
    fps, as ``FrameClock``), and return the clock to read on with. OpenCV's ``CAP_PROP_POS_FRAMES``
    counts frames from a key frame: in a variable-rate video it overshot, and a batch range lost
    the frames in between (45 rows of 80). So an overshoot is tried again from further back."""
    origin = cap.get(cv2.CAP_PROP_POS_MSEC) if cap.grab() else 0.0  # the first frame's: times count from it
    target = place
    for _ in range(16):
        cap.set(cv2.CAP_PROP_POS_FRAMES, target)
        if target == 0:
            break
        ok = cap.grab()
        ms = cap.get(cv2.CAP_PROP_POS_MSEC) if ok else 0.0
        landed = round((ms - origin) / 1000 * fps) if ms > 0 else target
        if ok and landed <= place:
            cap.set(cv2.CAP_PROP_POS_FRAMES, target)  # that frame is read again
            return FrameClock(fps, start=landed, origin_ms=origin)
        target = max(0, (target - max(1, landed - place)) if ok else target // 2)
    cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
    return FrameClock(fps)


class EveryNth:
    """Which frames ``every`` = N analyses. A file's: a frame whose stretch of N frame intervals at
    the container's rate (time x fps // N) is not the frame before's, so a variable-rate video is
    sampled by its time, and a batch range read from one frame before its start takes the frames a
    whole-file read takes. A live stream's (no time given): every N-th frame read. N = 1: all."""

    def __init__(self, every: int, fps: float) -> None:
        self.every, self.fps = every, fps
        self.last: int | None = None

    def __call__(self, index: int, time_s: float | None) -> bool:
        if self.every == 1:
            return True
        if time_s is None:
            return index % self.every == 0
        stretch = round(time_s * self.fps) // self.every
        previous, self.last = self.last, stretch  # every frame read moves it: a range read from
        return stretch != previous  # one frame before its start decides as a whole-file read


# A file that gives fewer frames than its container announces by more than this is damaged or cut.
SHORTFALL_WARNING = 0.02


MAX_FPS = 1000.0  # a container's rate from here on is its clock's, not its frames'

# Longest start of a file's sound before its picture (cameras: under a second) that explains why
# fewer frames than announced were read; a later first frame may be a cut or damaged start.
MAX_LEAD_S = 2.0


def expected_frames(cap: cv2.VideoCapture) -> int | None:
    """What the container announces, or None. OpenCV's FFmpeg backend gives the stream's frame count,
    or its duration x fps where the container has no count: with no frame rate in the file (a
    browser's WebM recording) fps is its clock's 1000, and that count no count ("97 % missing")."""
    count = cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0.0
    rate = cap.get(cv2.CAP_PROP_FPS) or 0.0
    return int(count) if 0 < count < 1e9 and rate < MAX_FPS else None


# Frames further apart than this in a file with fewer frames than announced: frames were lost.
MAX_GAP_S = 1.0


def picture_lead_s(cap: cv2.VideoCapture, fps: float) -> float:
    """Where a file's picture starts on its clock (after its sound, in a camera's file), read once
    its first frame is: OpenCV gives that frame's time as 0, and its CAP_PROP_PTS counts from the
    clock's 0, not from where the file starts it (a TS file's 1.4 s), so only a lead of up to
    MAX_LEAD_S is believed."""
    lead_s = cap.get(cv2.CAP_PROP_PTS) / fps
    return lead_s if 0 < lead_s <= MAX_LEAD_S else 0.0


def spans_duration(clock: FrameClock, lead_s: float, frames_expected: int | None) -> bool:
    """Whether a file's frames read from its start (``clock``) span the container's duration with no
    damaged stretch and no gap over MAX_GAP_S: fewer frames than announced is then a variable rate.
    The container's frame count is its duration x fps, or the other way round; the duration runs
    from the start of the file's clock, where its sound may start before its picture (``lead_s``; a
    camera's Matroska file: 0.6 s, "15% missing"), and may run on a frame after it (a 3-frame
    clip's last sound packet: "25% missing")."""
    end_s, duration = clock.time_s + 1 / clock.fps, (frames_expected or 0) / clock.fps
    return (
        not clock.skipped
        and clock.largest_gap <= MAX_GAP_S
        and min(abs(end_s - duration), abs(lead_s + end_s - duration))
        <= SHORTFALL_WARNING * duration + 1 / clock.fps
    )


def shortfall(result: VideoResult) -> str | None:
    """A warning naming the file when it gave over 2 % fewer frames than its container announces,
    unless those frames span the file's duration (``spans_duration``)."""
    expected = result.frames_expected
    if not expected or result.spans_duration or result.frames_read >= expected * (1 - SHORTFALL_WARNING):
        return None
    missing = 1 - result.frames_read / expected
    return (
        f"{result.source}: read {result.frames_read} of the {expected} frames the file announces "
        f"({missing:.0%} missing): the video is damaged or truncated"
    )


def video_fps(cap: cv2.VideoCapture) -> float:
    """The container's frame rate, or 30 where it is missing or absurd (cameras, some streams)."""
    fps = cap.get(cv2.CAP_PROP_FPS) or 0.0
    return fps if 0 < fps < MAX_FPS else 30.0


def _untimed(on_frame: FrameCallback) -> TimedFrameCallback:
    return lambda index, _time_s, frame, faces, rate: on_frame(index, frame, faces, rate)


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
    on_timed_frame: TimedFrameCallback | None = None,
) -> VideoResult:
    """Analyse one frame in each ``every`` frame intervals (``EveryNth``) of a file, URL or camera
    through one ``FaceStream``. A camera
    is an int (numpy ints too) or a string of digits; a ``Path`` is always a file, even ``Path("0")``; a
    photo's file name (.jpg, .png...), bytes and "" are refused (``VideoError``).
    ``on_open(fps)`` is called once the source is open; ``on_frame`` (or ``on_timed_frame``, which
    also gets the frame's time) for every frame read, and may return False to stop (the
    webcam quits on 'q'). ``keep_timeline=False`` keeps only the per-person
    summary and the events (a camera runs for hours). Frame times are a file's own timestamps (on
    disk or over http; see ``numbered_frames``) and the clock for a camera or live stream
    (``is_live``), in the timeline and the summary alike; ``on_event`` gets each
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
    if on_frame is not None and on_timed_frame is not None:
        raise ValueError("give on_frame or on_timed_frame, not both")
    callback = on_timed_frame if on_frame is None else _untimed(on_frame)
    stream = FaceStream(recognizer, detect_every=detect_every, smoothing=smoothing, hold_s=hold_s)
    if on_event is not None:
        stream.on_change(on_event)
    cap = open_capture(source)
    result = VideoResult(source=str(source), fps=video_fps(cap))
    live = is_live(source)
    if not live:
        result.frames_expected = expected_frames(cap)
        stream.session.expect_frame_interval(every / result.fps)  # until the file's own intervals are seen
    bar = None
    faces: list[Face] = []
    t0 = time.perf_counter()
    try:  # from here on the capture is released whatever happens (a camera stays busy otherwise)
        if on_open is not None:
            on_open(result.fps)
        if progress:
            from tqdm import tqdm  # progress bars only where a person watches

            total = expected_frames(cap) or 0
            bar = tqdm(total=total or None, unit="frame", desc=Path(str(source)).name)
        try:
            clock = FrameClock(result.fps)
            numbered: Iterator[tuple[int, float, np.ndarray]] = (
                ((i, 0.0, frame) for i, frame in enumerate(frames(cap)))  # live: timed by the clock
                if live
                else numbered_frames(cap, clock)
            )
            take = EveryNth(every, result.fps)
            lead_s = 0.0  # where the picture starts on the file's clock (after its sound, in some)
            first_read: float | None = None  # a live source's clock starts with its first frame
            for index, time_s, frame in numbered:
                result.frames_read += 1
                if live:
                    now = time.perf_counter()
                    first_read = now if first_read is None else first_read
                    time_s = now - first_read
                if result.frames_read == 1 and not live:
                    lead_s = picture_lead_s(cap, result.fps)
                if take(index, None if live else time_s):  # a live stream's every N-th frame read
                    faces = stream.process(frame, time_s)
                    result.frames_analyzed += 1
                    if keep_timeline:
                        result.timeline += [TimelineRow(index, time_s, face) for face in faces]
                elapsed = time.perf_counter() - t0
                rate = result.frames_read / elapsed if elapsed > 0 else 0.0
                if callback is not None and callback(index, time_s, frame, faces, rate) is False:
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
    end_s = clock.time_s + 1 / result.fps  # a file up to the end of its last frame read
    result.end_s = None if live else end_s
    result.spans_duration = not live and spans_duration(clock, lead_s, result.frames_expected)
    result.summary = stream.summary(result.end_s)
    result.events = stream.session.events
    return result
