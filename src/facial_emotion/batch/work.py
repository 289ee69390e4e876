"""One unit of work -> its face rows and its summary (or its error). The same code runs in a local
worker process and in a Ray actor: an ``Analyzer`` holds one recognizer and analyses one unit at a
time. Photos go through ``EmotionRecognizer``, videos (or frame ranges of them) through ``FaceStream``.

Track ids across the frame ranges of one video: each range replays ``warmup`` frames before its
start, so the tracker already follows the faces on screen and their smoothed scores are warm when
its first written frame comes; its ids are numbered from ``chunk * TRACK_ID_STRIDE``, so that ids
never collide between ranges. A face that crosses a range boundary therefore continues under the
next range's id (match them on the boundary frame's boxes where one id per person matters, or run
whole files, the default, where ids are those of ``facial-emotion video``).
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from facial_emotion.batch.sources import Unit
from facial_emotion.results.schema import batch_row, safe_name
from facial_emotion.settings import DEFAULT_SMOOTHING

TRACK_ID_STRIDE = 1_000_000


@dataclass
class AnalyzerOptions:
    model: str | None = None
    detector: str | None = None
    threads: int | None = 1  # one core per worker: workers, not threads, use the machine
    every: int = 1
    smoothing: float = DEFAULT_SMOOTHING
    detect_every: int = 1


@dataclass
class UnitResult:
    rows: list[dict[str, Any]]
    summary: dict[str, Any] | None  # None when the unit failed
    error: dict[str, Any] | None
    frames: int  # frames analysed (progress figures)


def model_id(recognizer) -> str:
    """The model file's name and the date it was trained: enough to tell results of two models apart."""
    meta = recognizer.model_info
    return f"{Path(str(recognizer.classifier.path)).name}:{meta.get('arch', '')}:{meta.get('date', '')}"


def read_bytes(uri: str) -> bytes:
    """A photo named by a URI (s3://, gs://, hdfs://, file://...), read through pyarrow's filesystems."""
    try:
        from pyarrow import fs
    except ImportError:
        from facial_emotion.extras import install_hint

        raise OSError(
            f"{uri}: reading URIs needs the [scale] extra (pyarrow): {install_hint('scale')}"
        ) from None
    filesystem, path = fs.FileSystem.from_uri(uri)
    with filesystem.open_input_stream(path) as f:
        return f.read()


class Analyzer:
    """One recognizer, many units: ``analyze(unit)`` never raises for a bad source."""

    def __init__(self, options: AnalyzerOptions):
        from facial_emotion.inference.pipeline import EmotionRecognizer

        self.options = options
        self.recognizer = EmotionRecognizer(options.model, detector=options.detector, threads=options.threads)
        self.model = model_id(self.recognizer)

    def analyze(self, unit: Unit) -> UnitResult:
        t0 = time.perf_counter()
        try:
            analyse = self._video if unit.kind == "video" else self._photo
            rows, frames, fps, expected, warning = analyse(unit)
        except Exception as e:  # noqa: BLE001 - one source's failure (any) must not end the job
            # Names as every table format can hold them (\\xNN for bytes that are not UTF-8), as in
            # the face rows: Parquet refused the whole commit, a CSV re-run could not read it back.
            error = {"source": safe_name(unit.source), "chunk": unit.chunk, "error": safe_name(_message(e))}
            return UnitResult([], None, error, 0)
        emotions = Counter(r["emotion"] for r in rows)
        summary = {
            "source": safe_name(unit.source),
            "chunk": unit.chunk,
            "kind": unit.kind,
            "first_frame": unit.start,
            "frames_analyzed": frames,
            "video_fps": round(fps, 3),
            "frames_expected": expected,
            "warning": safe_name(warning),
            "faces": len(rows),
            "tracks": len({r["track_id"] for r in rows if r["track_id"] is not None}),
            "dominant_emotion": emotions.most_common(1)[0][0] if emotions else "",
            "seconds": round(time.perf_counter() - t0, 3),
            "model": self.model,
        }
        return UnitResult(rows, summary, None, frames)

    def _photo(self, unit: Unit) -> tuple[list[dict[str, Any]], int, float, int, str]:
        """As ``_video``'s: one frame, no rate, no frame count, no warning."""
        from facial_emotion.inference.decode import load_image

        source = unit.source
        local = source[len("file://") :] if source.startswith("file://") else source
        image = load_image(read_bytes(source) if "://" in local else local, name=source)
        classes = self.recognizer.classes
        faces = self.recognizer.analyze_frame(image)
        return [batch_row(source, 0, 0.0, f, classes, self.model) for f in faces], 1, 0.0, 0, ""

    def _video(self, unit: Unit) -> tuple[list[dict[str, Any]], int, float, int, str]:
        """(face rows, frames analysed, the container's rate, its frame count (0: none), a warning
        where a unit that reads to the end finds fewer frames than announced: "" or, as ``video``
        says it, "... the video is damaged or truncated")."""
        from facial_emotion.inference.stream import FaceStream
        from facial_emotion.inference.video import (
            SHORTFALL_WARNING,
            EveryNth,
            FrameClock,
            VideoError,
            VideoResult,
            expected_frames,
            numbered_frames,
            open_capture,
            picture_lead_s,
            seek_before,
            shortfall,
            spans_duration,
            video_fps,
        )

        opts, classes = self.options, self.recognizer.classes
        cap = open_capture(unit.source)
        try:
            fps, expected = video_fps(cap), expected_frames(cap)
            first = unit.start - unit.warmup
            # From a frame before the range: ``every`` then takes the frames a whole-file read takes.
            clock = seek_before(cap, fps, first - 1) if first else FrameClock(fps)
            stream = FaceStream(self.recognizer, detect_every=opts.detect_every, smoothing=opts.smoothing)
            take = EveryNth(opts.every, fps)
            rows: list[dict[str, Any]] = []
            analysed = read = 0
            lead_s = 0.0
            for index, time_s, frame in numbered_frames(cap, clock):
                read += 1
                if read == 1 and not first:
                    lead_s = picture_lead_s(cap, fps)
                # A frame's range is decided by its time alone (its place at the container's rate),
                # so neighbouring ranges of a variable-rate video agree on it.
                place = round(time_s * fps)
                if unit.stop is not None and place >= unit.stop:
                    break
                if not take(index, time_s) or place < first:
                    continue
                faces = stream.process(frame, time_s)
                if place < unit.start:
                    continue  # warm-up: state only
                analysed += 1
                for face in faces:
                    row = batch_row(unit.source, index, time_s, face, classes, self.model)
                    if row["track_id"] is not None:  # the tracker's own Face objects stay as they are
                        row["track_id"] += unit.chunk * TRACK_ID_STRIDE
                    rows.append(row)
        finally:
            cap.release()
        if analysed == 0 and unit.chunk == 0:
            raise VideoError(
                f"{unit.source}: no frame could be decoded (corrupt, empty or unsupported video)"
            )
        warning = ""
        if unit.stop is None and expected:  # a unit that reads to the end: did the file end early?
            if not first:  # the whole file, counted as ``video`` counts it
                spans = spans_duration(clock, lead_s, expected)
                found = VideoResult(unit.source, fps, read, frames_expected=expected, spans_duration=spans)
                warning = shortfall(found) or ""
            else:  # the last frame range: where its frames end (a range of a file cut short reads none),
                # on the file's clock, where a camera's picture starts after its sound (as video allows)
                end = round(clock.time_s * fps) + 1 if read else unit.start
                lead = round(first_picture_lead_s(unit.source, fps) * fps)
                if end + lead < expected * (1 - SHORTFALL_WARNING) - 1:
                    warning = (
                        f"{unit.source}: the frames end at {end} of the {expected} the file announces "
                        f"({1 - end / expected:.0%} missing): the video is damaged or truncated"
                    )
        return rows, analysed, fps, expected or 0, warning


def first_picture_lead_s(source: str, fps: float) -> float:
    """``video.picture_lead_s`` of a file, from its first frame (a frame range starts further on)."""
    from facial_emotion.inference.video import open_capture, picture_lead_s

    cap = open_capture(source)
    try:
        return picture_lead_s(cap, fps) if cap.grab() else 0.0
    finally:
        cap.release()


def _message(e: BaseException) -> str:
    """The error as one line; errors of ours already name the source, others get their type."""
    from facial_emotion.inference.decode import ImageError
    from facial_emotion.inference.video import VideoError

    text = str(e).splitlines()[0] if str(e) else ""
    if isinstance(e, (ImageError, VideoError)):
        return text
    if isinstance(e, OSError) and e.strerror:
        return f"{e.strerror}" + (f": {e.filename}" if e.filename else "")
    return f"{type(e).__name__}: {text}"
