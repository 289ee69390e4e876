"""The encoders behind an annotated video copy (``media.AnnotatedVideo``). With PyAV installed (the
``video`` extra): H.264 in .mp4, .m4v, .mov and .mkv (Motion JPEG in .avi) with the original's sound
re-encoded as AAC. Without it: OpenCV's MPEG-4 Part 2 (Motion JPEG in .avi and .mkv) and no sound,
because OpenCV's pip wheels write no H.264 and no audio. Browsers, phones and QuickTime play H.264;
none of them plays MPEG-4 Part 2."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np

try:
    import av
except ImportError:  # the base install: OpenCV's encoders
    av = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

# (what can be written, not what can be read: decode.VIDEO_SUFFIXES)
MPEG4_SUFFIXES = (".mp4", ".m4v", ".mov")
ANNOTATED_VIDEO_SUFFIXES = (*MPEG4_SUFFIXES, ".avi", ".mkv")
# PyAV's container formats (FFmpeg would take .m4v for a raw MPEG-4 Part 2 stream)
AV_FORMATS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska", ".avi": "avi"}
H264_OPTIONS = {"crf": "20", "preset": "veryfast"}  # visually lossless for drawn boxes; ~real time at 720p
MJPEG_QUALITY = 3  # FFmpeg's -q:v scale, 2 (best) to 31
FF_QP2LAMBDA = 118  # FFmpeg's global_quality unit
AAC_FRAME = 1024  # samples per AAC frame


class MediaError(Exception):
    """An output file cannot be written in the requested format or place."""


class FrameWriter(Protocol):
    def write(self, bgr: np.ndarray) -> None:
        """One frame of the copy, at the next place."""

    def stop_sound(self) -> None:
        """The copy's time leaves the original's (a pause was cut): no more sound from here on."""

    def close(self, complete: bool) -> None:
        """``complete``: finish the file; else only release what is open (the file is thrown away)."""


def with_sound() -> bool:
    """Whether annotated copies are H.264 with sound (PyAV is installed)."""
    return av is not None


def open_writer(
    path: Path, suffix: str, fps: float, size: tuple[int, int], sound_from: str | None
) -> FrameWriter:
    """A writer of ``size`` (width, height) frames at ``fps`` into ``path`` (a temp file, so the
    format comes from ``suffix``, the target's); ``sound_from``: a local file whose first audio
    stream goes into the copy (PyAV only)."""
    if av is not None:
        return PyAVWriter(path, suffix, fps, size, sound_from)
    return OpenCVWriter(path, suffix, fps, size)


class OpenCVWriter:
    def __init__(self, path: Path, suffix: str, fps: float, size: tuple[int, int]):
        fourcc = cv2.VideoWriter.fourcc(*("mp4v" if suffix in MPEG4_SUFFIXES else "MJPG"))
        self._writer = cv2.VideoWriter(str(path), fourcc, fps, size)
        if not self._writer.isOpened():
            raise MediaError("cannot write a video here")

    def write(self, bgr: np.ndarray) -> None:
        self._writer.write(bgr)

    def stop_sound(self) -> None:
        pass

    def close(self, complete: bool) -> None:
        self._writer.release()


def frame_rate(fps: float) -> Fraction:
    """The container's rate as a fraction: NTSC's 29.97 is 30000/1001, as cameras write it."""
    return Fraction(fps).limit_denominator(1001) if fps > 0 else Fraction(30)


class PyAVWriter:
    def __init__(self, path: Path, suffix: str, fps: float, size: tuple[int, int], sound_from: str | None):
        self.rate = frame_rate(fps)
        self.written = 0
        # H.264's 4:2:0 needs even sides: an odd one gets a black row or column
        self.size = (size[0] + size[0] % 2, size[1] + size[1] % 2)
        options = {"movflags": "+faststart"} if AV_FORMATS[suffix] in ("mp4", "mov") else {}
        try:
            self.container: Any = av.open(str(path), "w", format=AV_FORMATS[suffix], options=options)
            if suffix == ".avi":  # AVI players expect Motion JPEG
                quality = {"flags": "+qscale", "global_quality": str(MJPEG_QUALITY * FF_QP2LAMBDA)}
                self.stream = self.container.add_stream("mjpeg", rate=self.rate, options=quality)
                self.stream.pix_fmt = "yuvj420p"
            else:
                self.stream = self.container.add_stream("libx264", rate=self.rate, options=H264_OPTIONS)
                self.stream.pix_fmt = "yuv420p"
            self.stream.width, self.stream.height = self.size
        except (av.FFmpegError, ValueError) as e:
            raise MediaError(f"cannot write a video here ({e})") from None
        self.sound = SoundTrack.open(sound_from, self.container) if sound_from else None

    def write(self, bgr: np.ndarray) -> None:
        pad_x, pad_y = self.size[0] - bgr.shape[1], self.size[1] - bgr.shape[0]
        if pad_x or pad_y:
            bgr = cv2.copyMakeBorder(bgr, 0, pad_y, 0, pad_x, cv2.BORDER_CONSTANT, value=0)
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(bgr), format="bgr24")
        frame.pts = self.written
        self.container.mux(self.stream.encode(frame))
        self.written += 1
        if self.sound is not None:  # interleaved: the sound of the frames written so far
            self.sound.until(float(self.written / self.rate))

    def stop_sound(self) -> None:
        if self.sound is not None:
            self.sound.close()
            self.sound = None

    def close(self, complete: bool) -> None:
        try:
            if complete:
                self.container.mux(self.stream.encode(None))
                if self.sound is not None:
                    self.sound.close(float(self.written / self.rate))
        finally:
            if not complete and self.sound is not None:
                self.sound.source.close()
            self.container.close()


class SoundTrack:
    """The first audio stream of the original, re-encoded as AAC into the copy and placed as the
    copy's frames are: the copy starts at the original's first video frame (the frame clock counts
    from it), so the sound at the original's time t plays at t - that frame's time. Sound before the
    first frame, and past the copy's end (``--max-frames``), is left out. A source without sound,
    or one whose sound cannot be read, gives a copy without it (and a warning for the second)."""

    def __init__(self, source: Any, audio: Any, origin_s: float, out: Any):
        self.source = source
        self.origin_s = origin_s
        rate = audio.codec_context.sample_rate or 48000
        layout = "mono" if (audio.codec_context.channels or 2) == 1 else "stereo"
        self.rate = rate
        self.stream = out.add_stream("aac", rate=rate, layout=layout)
        self.out = out
        self.resampler = av.AudioResampler(format="fltp", layout=layout, rate=rate, frame_size=AAC_FRAME)
        self.frames: Iterator[Any] = source.decode(audio)
        self.pts: int | None = None  # the next sample's place in the copy, once the first is placed
        self.ended = False

    @classmethod
    def open(cls, path: str, out: Any) -> SoundTrack | None:
        try:
            source = av.open(path)
        except (av.FFmpegError, OSError, ValueError) as e:
            log.warning("%s: the copy has no sound (%s)", path, e)
            return None
        if not source.streams.audio:
            source.close()
            return None
        video = source.streams.video[0] if source.streams.video else None
        origin = 0.0
        if video is not None and video.start_time is not None and video.time_base is not None:
            origin = float(video.start_time * video.time_base)
        return cls(source, source.streams.audio[0], origin, out)

    def until(self, end_s: float) -> None:
        """Encode the original's sound up to the copy's time ``end_s`` (or one frame of sound past it)."""
        end = round(end_s * self.rate)
        while not self.ended and (self.pts is None or self.pts < end):
            try:
                frame = next(self.frames)
            except StopIteration:
                self.ended = True
                break
            except av.FFmpegError as e:  # a damaged stretch of sound: the rest is left out
                log.warning("the copy's sound stops at %.1f s: %s", (self.pts or 0) / self.rate, e)
                self.ended = True
                break
            if self.pts is None:
                start_s = (frame.time or 0.0) - self.origin_s
                if start_s + frame.samples / frame.sample_rate <= 0:
                    continue  # before the first video frame
                self.pts = max(0, round(start_s * self.rate))
            frame.pts = None  # the resampler's frames follow one another from self.pts
            self._encode(self.resampler.resample(frame))

    def _encode(self, frames: list[Any]) -> None:
        assert self.pts is not None
        for frame in frames:
            frame.pts = self.pts
            self.pts += frame.samples
            self.out.mux(self.stream.encode(frame))

    def close(self, end_s: float | None = None) -> None:
        """The sound up to the copy's end ``end_s`` (None: where it stopped), then the encoder's flush."""
        if end_s is not None:
            self.until(end_s)
        if self.pts is not None and (end_s is None or self.pts < round(end_s * self.rate)):
            self._encode(self.resampler.resample(None))
        self.out.mux(self.stream.encode(None))
        self.source.close()
