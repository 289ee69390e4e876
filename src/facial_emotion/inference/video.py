"""Video files, streams and cameras through the same pipeline: every N-th frame is analysed,
faces are tracked, and results go to a timeline, an annotated video and a summary."""

from __future__ import annotations

import csv
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from facial_emotion.inference.draw import annotate
from facial_emotion.inference.pipeline import EmotionRecognizer, Face
from facial_emotion.inference.tracking import DEFAULT_DETECT_EVERY, FaceTracker, VideoFaceFinder


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

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "video_fps": round(self.fps, 3),
            "frames_read": self.frames_read,
            "frames_analyzed": self.frames_analyzed,
            "processing_seconds": round(self.seconds, 3),
            "processing_fps": round(self.frames_read / self.seconds, 2) if self.seconds else None,
            "faces": self.summary,
            "timeline": [
                {"frame": r.frame, "time_s": round(r.time_s, 3), **r.face.to_dict()} for r in self.timeline
            ],
        }


def open_capture(source: str | int) -> cv2.VideoCapture:
    if isinstance(source, str) and not source.isdigit() and "://" not in source:
        path = Path(source)
        if not path.is_file():
            raise VideoError(f"{source}: file not found")
        if path.stat().st_size == 0:
            raise VideoError(f"{source}: empty file (0 bytes)")
    cap = cv2.VideoCapture(int(source) if isinstance(source, str) and source.isdigit() else source)
    if not cap.isOpened():
        what = f"camera {source}" if isinstance(source, int) or str(source).isdigit() else str(source)
        raise VideoError(f"{what}: cannot open (not a readable video, or no such camera)")
    return cap


def frames(cap: cv2.VideoCapture) -> Iterator[np.ndarray]:
    while True:
        ok, frame = cap.read()
        if not ok or frame is None:
            return
        yield frame


class _AtomicVideoWriter:
    """Writes to a temp file beside the target and renames on close: no half-written output."""

    def __init__(self, path: Path, fps: float, size: tuple[int, int]):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=path.suffix or ".mp4")
        os.close(fd)
        self.tmp = Path(tmp)
        fourcc = cv2.VideoWriter.fourcc(
            *("mp4v" if path.suffix.lower() in (".mp4", ".m4v", ".mov") else "MJPG")
        )
        self.writer = cv2.VideoWriter(str(self.tmp), fourcc, fps, size)
        if not self.writer.isOpened():
            self.tmp.unlink(missing_ok=True)
            raise VideoError(f"{path}: cannot write a video here")

    def write(self, frame: np.ndarray) -> None:
        self.writer.write(frame)

    def close(self, ok: bool = True) -> None:
        self.writer.release()
        if ok:
            os.chmod(self.tmp, 0o644)
            os.replace(self.tmp, self.path)
        else:
            self.tmp.unlink(missing_ok=True)


def analyze_video(
    recognizer: EmotionRecognizer,
    source: str | int,
    every: int = 1,
    smoothing: float = 0.0,
    annotated_out: Path | None = None,
    on_frame: Callable[[int, np.ndarray, list[Face], float], bool] | None = None,
    max_frames: int | None = None,
    progress: bool = False,
    detect_every: int = DEFAULT_DETECT_EVERY,
    keep_timeline: bool = True,
) -> VideoResult:
    """Analyse every ``every``-th frame. ``on_frame(index, annotated, faces, fps)`` may return False to stop
    (the webcam uses it to show frames and quit on 'q'). Frames in between keep the last faces drawn."""
    cap = open_capture(source)
    fps = cap.get(cv2.CAP_PROP_FPS) or 0.0
    fps = fps if 0 < fps < 1000 else 30.0
    total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
    result = VideoResult(source=str(source), fps=fps)
    tracker = FaceTracker(recognizer.classes, smoothing=smoothing)
    finder = VideoFaceFinder(recognizer.detector, refresh=detect_every)
    writer: _AtomicVideoWriter | None = None
    bar = None
    if progress:
        from tqdm import tqdm  # progress bars only where a person watches

        bar = tqdm(total=total or None, unit="frame", desc=Path(str(source)).name)
    faces: list[Face] = []
    t0 = time.perf_counter()
    ok = False
    try:
        for index, frame in enumerate(frames(cap)):
            result.frames_read += 1
            if index % every == 0:
                faces = tracker.update(recognizer.analyze_frame(frame, finder.detect(frame)))
                result.frames_analyzed += 1
                if keep_timeline:  # a camera runs for hours: it keeps only the per-face summary
                    result.timeline += [TimelineRow(index, index / fps, face) for face in faces]
            elapsed = time.perf_counter() - t0
            rate = result.frames_read / elapsed if elapsed > 0 else 0.0
            if annotated_out is not None or on_frame is not None:
                drawn = annotate(frame, faces, fps=rate if on_frame is not None else None)
                if annotated_out is not None:
                    if writer is None:
                        writer = _AtomicVideoWriter(annotated_out, fps, (frame.shape[1], frame.shape[0]))
                    writer.write(drawn)
                if on_frame is not None and on_frame(index, drawn, faces, rate) is False:
                    break
            if bar is not None:
                bar.update(1)
                bar.set_postfix(fps=f"{rate:.1f}", faces=len(faces))
            if max_frames and result.frames_read >= max_frames:
                break
        ok = True
    finally:
        cap.release()
        if writer is not None:
            writer.close(ok)
        if bar is not None:
            bar.close()
    if result.frames_read == 0:
        raise VideoError(f"{source}: no frame could be decoded (corrupt or unsupported video)")
    result.seconds = time.perf_counter() - t0
    result.summary = tracker.summary()
    return result


def write_timeline_csv(result: VideoResult, path: Path, classes: list[str]) -> None:
    from facial_emotion.model_file import atomic_write_bytes

    rows: list[list[object]] = [
        ["frame", "time_s", "track_id", "x", "y", "w", "h", "emotion", "confidence", *classes]
    ]
    for r in result.timeline:
        f = r.face
        rows.append(
            [
                r.frame,
                f"{r.time_s:.3f}",
                f.track_id,
                *f.box,
                f.emotion,
                f"{f.confidence:.4f}",
                *(f"{f.scores[c]:.4f}" for c in classes),
            ]
        )
    import io

    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    atomic_write_bytes(path, buf.getvalue().encode())


def plot_timeline(result: VideoResult, path: Path, classes: list[str]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from facial_emotion.labels import COLORS_RGB

    ids = sorted({r.face.track_id or 0 for r in result.timeline})
    n = max(1, len(ids))
    fig, axes = plt.subplots(n, 1, figsize=(10, 2.4 * n), squeeze=False, sharex=True)
    for ax, tid in zip(axes[:, 0], ids, strict=False):
        rows = [r for r in result.timeline if r.face.track_id == tid]
        t = [r.time_s for r in rows]
        for c in classes:
            ax.plot(
                t,
                [r.face.scores[c] for r in rows],
                label=c,
                color=np.array(COLORS_RGB.get(c, (0, 0, 0))) / 255,
            )
        ax.set(ylabel=f"face #{tid}", ylim=(0, 1))
    axes[0, 0].legend(ncol=7, fontsize=7, loc="upper center", bbox_to_anchor=(0.5, 1.35))
    axes[-1, 0].set_xlabel("time (s)")
    import io

    from facial_emotion.model_file import atomic_write_bytes

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
