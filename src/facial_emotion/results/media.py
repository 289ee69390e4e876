"""Annotated media: JPEG bytes of an annotated image, annotated copies of photos in a folder, and an
annotated video, each written atomically (a temp file beside the target, renamed when complete)."""

from __future__ import annotations

from pathlib import Path
from types import TracebackType

import cv2
import numpy as np

from facial_emotion.inference.pipeline import Face
from facial_emotion.results.draw import annotate
from facial_emotion.results.files import atomic_path, atomic_write_bytes
from facial_emotion.results.video_encoders import (  # noqa: F401  (ANNOTATED_VIDEO_SUFFIXES, with_sound: the CLI's)
    ANNOTATED_VIDEO_SUFFIXES,
    FrameWriter,
    MediaError,
    open_writer,
    with_sound,
)


def encode_jpeg(bgr: np.ndarray, quality: int = 90) -> bytes:
    ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise MediaError("JPEG encoding failed")
    return buf.tobytes()


def annotated_jpeg(bgr: np.ndarray, faces: list[Face], quality: int = 90) -> bytes:
    return encode_jpeg(annotate(bgr, faces), quality)


class AnnotatedFolder:
    """Annotated copies of photos in one folder, named ``<stem>.annotated.jpg``; two sources with the
    same file name (from two folders) get ``<stem>.2.annotated.jpg`` and so on, never overwriting."""

    def __init__(self, folder: Path, quality: int = 92):
        self.folder = Path(folder)
        self.quality = quality
        self.written: set[Path] = set()

    def write(self, source: str, bgr: np.ndarray, faces: list[Face]) -> Path:
        stem = Path(source).stem or "image"
        out, n = self.folder / f"{stem}.annotated.jpg", 2
        while out in self.written:
            out, n = self.folder / f"{stem}.{n}.annotated.jpg", n + 1
        self.written.add(out)
        atomic_write_bytes(out, annotated_jpeg(bgr, faces, self.quality))
        return out


# Longest a frame is held in an annotated copy: a longer pause between two frames (two recordings
# joined, one clock an hour on) is cut to this, so the copy cannot grow by thousands of frames.
MAX_HOLD_S = 60.0


class AnnotatedVideo:
    """An annotated copy of a video: ``write(frame, faces)`` per frame, inside a ``with`` block. The
    file appears under its name only when the block ends without an error; otherwise nothing is left.
    ``ANNOTATED_VIDEO_SUFFIXES``; the codecs are video_encoders' (H.264 with the sound of
    ``sound_from``, a local file, where PyAV is installed). The
    frame rate may be set after the source is opened (``set_fps``), before the first frame. The copy
    is written at that constant rate and kept in time with the original: the first frame opens it
    (place 0, as the frame clock counts from the first frame), each later one has its place,
    ``time_s`` x fps rounded (its ``index`` where there is no time), and every frame is held until
    the next one's place (a damaged stretch, a variable-rate file's slow stretch; at most
    ``MAX_HOLD_S``); of frames that share a place (a stretch faster than the copy's rate) the last
    one shows. Without this a damaged file's copy was short and ran ahead,
    and a variable-rate one's ran fast and slow by turns (a Matroska file's at its nominal rate: 6 s
    played in 2.7). Where a pause is cut the sound stops: the copy's time has left the original's.
    ``live`` (a camera or live stream, whose times are the clock's when each frame was read): no frame
    is left out, each at least one place after the one before, so a camera that delivers fewer frames
    than its nominal rate, or an analysis slower than the camera, gives a copy that plays in real time
    (it played fast: an IP camera's 2.8 s at 5 frames/s, announced as 25, lasted 0.6 s), while a burst
    of frames (a stream's buffer after a stall) is kept, each a frame interval long."""

    def __init__(self, path: Path, fps: float = 30.0, sound_from: str | None = None, live: bool = False):
        self.path = Path(path)
        self.fps = fps
        self.sound_from = sound_from
        self.live = live
        self._atomic = atomic_path(self.path, suffix=self.path.suffix or ".mp4")
        self._tmp: Path | None = None
        self._writer: FrameWriter | None = None
        # the last frame and its place, held until the next frame's: the copy is written up to it
        self._pending: tuple[int, np.ndarray] | None = None
        self._cut = 0  # places left out of pauses over MAX_HOLD_S

    def __enter__(self) -> AnnotatedVideo:
        self._tmp = self._atomic.__enter__()
        return self

    def set_fps(self, fps: float) -> None:
        self.fps = fps

    def write(
        self, frame: np.ndarray, faces: list[Face], index: int | None = None, time_s: float | None = None
    ) -> None:
        if self._writer is None:  # the frame size is known from the first frame
            assert self._tmp is not None, "use AnnotatedVideo inside a with block"
            size = (frame.shape[1], frame.shape[0])
            suffix = self.path.suffix.lower() or ".mp4"  # as the temp file's (atomic_path)
            try:
                self._writer = open_writer(self._tmp, suffix, self.fps, size, self.sound_from)
            except MediaError as e:
                raise MediaError(f"{self.path}: {e}") from None
        image = annotate(frame, faces)
        if self._pending is None:
            self._pending = (0, image)  # the first frame: the copy's start
            return
        held, held_image = self._pending
        if time_s is not None:
            place = round(time_s * self.fps) - self._cut
            place = max(place, held + 1) if self.live else place
        else:
            place = held + 1 if index is None else index - self._cut
        if place <= held:  # the place is the frame before's: the later frame shows there
            self._pending = (held, image)
            return
        longest = held + max(1, round(MAX_HOLD_S * self.fps))
        cut = place > longest
        if cut:
            self._cut += place - longest
            place = longest
        self._emit(held_image, place - held, stop_sound=cut)  # the sound of the held minute, then no more
        self._pending = (place, image)

    def _emit(self, image: np.ndarray, times: int, stop_sound: bool = False) -> None:
        assert self._writer is not None
        try:
            for _ in range(times):
                self._writer.write(image)
            if stop_sound:
                self._writer.stop_sound()
        except OSError as e:
            raise self._named(e) from None

    def _named(self, e: OSError) -> OSError:
        """A write error (a full disk) named by the copy, not by its hidden temp file."""
        return OSError(e.errno, e.strerror or str(e), str(self.path))

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            if self._writer is not None:
                complete = kind is None
                try:
                    if complete and self._pending is not None:
                        self._emit(self._pending[1], 1)  # the last frame, once
                except BaseException:
                    complete = False
                    raise
                finally:
                    self._writer.close(complete)
        except BaseException as e:  # a copy that could not be finished is not renamed into place
            self._atomic.__exit__(type(e), e, e.__traceback__)
            if isinstance(e, OSError) and not isinstance(exc, OSError):
                raise self._named(e) from None
            raise
        self._atomic.__exit__(kind, exc, tb)  # renamed into place, or removed after the caller's error
