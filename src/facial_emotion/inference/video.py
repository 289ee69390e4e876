"""Video files, streams and cameras: frames are read here and fed to a ``FaceStream`` (which finds,
tracks, classifies and smooths the faces); what becomes of each frame is the caller's ``on_frame``
(draw it, show it, write it: see ``results``)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from facial_emotion.inference.pipeline import EmotionRecognizer, Face
from facial_emotion.inference.stream import FaceStream
from facial_emotion.settings import DEFAULT_DETECT_EVERY

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
    seconds: float = 0.0
    timeline: list[TimelineRow] = field(default_factory=list)
    summary: list[dict[str, Any]] = field(default_factory=list)


def is_camera(source: str | int) -> bool:
    return isinstance(source, int) or source.isdigit()


def open_capture(source: str | int) -> cv2.VideoCapture:
    if not is_camera(source) and "://" not in str(source):
        path = Path(str(source))
        if not path.is_file():
            raise VideoError(f"{source}: file not found")
        if path.stat().st_size == 0:
            raise VideoError(f"{source}: empty file (0 bytes)")
    cap = cv2.VideoCapture(int(source) if is_camera(source) else source)
    if not cap.isOpened():
        what = f"camera {source}" if is_camera(source) else str(source)
        raise VideoError(f"{what}: cannot open (not a readable video, or no such camera)")
    return cap


def frames(cap: cv2.VideoCapture) -> Iterator[np.ndarray]:
    while True:
        ok, frame = cap.read()
        if not ok or frame is None:
            return
        yield frame


def video_fps(cap: cv2.VideoCapture) -> float:
    """The container's frame rate, or 30 where it is missing or absurd (cameras, some streams)."""
    fps = cap.get(cv2.CAP_PROP_FPS) or 0.0
    return fps if 0 < fps < 1000 else 30.0


def analyze_video(
    recognizer: EmotionRecognizer,
    source: str | int,
    every: int = 1,
    smoothing: float = 0.0,
    on_frame: FrameCallback | None = None,
    max_frames: int | None = None,
    progress: bool = False,
    detect_every: int = DEFAULT_DETECT_EVERY,
    keep_timeline: bool = True,
    on_open: Callable[[float], None] | None = None,
) -> VideoResult:
    """Analyse every ``every``-th frame of a file, URL or camera through one ``FaceStream``.
    ``on_open(fps)`` is called once the source is open; ``on_frame`` for every frame read, and may
    return False to stop (the webcam quits on 'q'). ``keep_timeline=False`` keeps only the per-face
    summary (a camera runs for hours)."""
    cap = open_capture(source)
    result = VideoResult(source=str(source), fps=video_fps(cap))
    if on_open is not None:
        on_open(result.fps)
    stream = FaceStream(recognizer, detect_every=detect_every, smoothing=smoothing)
    bar = None
    if progress:
        from tqdm import tqdm  # progress bars only where a person watches

        total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        bar = tqdm(total=total or None, unit="frame", desc=Path(str(source)).name)
    faces: list[Face] = []
    t0 = time.perf_counter()
    try:
        for index, frame in enumerate(frames(cap)):
            result.frames_read += 1
            if index % every == 0:
                faces = stream.process(frame)
                result.frames_analyzed += 1
                if keep_timeline:
                    result.timeline += [TimelineRow(index, index / result.fps, face) for face in faces]
            elapsed = time.perf_counter() - t0
            rate = result.frames_read / elapsed if elapsed > 0 else 0.0
            if on_frame is not None and on_frame(index, frame, faces, rate) is False:
                break
            if bar is not None:
                bar.update(1)
                bar.set_postfix(fps=f"{rate:.1f}", faces=len(faces))
            if max_frames and result.frames_read >= max_frames:
                break
    finally:
        cap.release()
        if bar is not None:
            bar.close()
    if result.frames_read == 0:
        raise VideoError(f"{source}: no frame could be decoded (corrupt or unsupported video)")
    result.seconds = time.perf_counter() - t0
    result.summary = stream.summary()
    return result
