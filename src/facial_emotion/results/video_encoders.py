"""The encoders behind an annotated video copy (``media.AnnotatedVideo``). With PyAV installed (the
``video`` extra): H.264 in .mp4, .m4v, .mov and .mkv with the original's sound re-encoded as AAC,
Motion JPEG with PCM sound in .avi. Without it: OpenCV's MPEG-4 Part 2 (Motion JPEG in .avi and .mkv) and no sound,
because OpenCV's pip wheels write no H.264 and no audio. Browsers, phones and QuickTime play H.264;
none of them plays MPEG-4 Part 2."""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
from fractions import Fraction
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np

# PyAV, imported when a video is written (photos and the web service never load it): None until then
av: Any = None

log = logging.getLogger(__name__)

# (what can be written, not what can be read: decode.VIDEO_SUFFIXES)
MPEG4_SUFFIXES = (".mp4", ".m4v", ".mov")
ANNOTATED_VIDEO_SUFFIXES = (*MPEG4_SUFFIXES, ".avi", ".mkv")
# PyAV's container formats (FFmpeg would take .m4v for a raw MPEG-4 Part 2 stream)
AV_FORMATS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska", ".avi": "avi"}
H264_OPTIONS = {"crf": "20", "preset": "veryfast"}  # visually lossless for drawn boxes; ~real time at 720p
MJPEG_QUALITY = 3  # FFmpeg's -q:v scale, 2 (best) to 31
FF_QP2LAMBDA = 118  # FFmpeg's global_quality unit
ENCODE_QUEUE = 4  # frames waiting for the encoder thread (a 720p frame is 2.7 MB)
AAC_FRAME = 1024  # samples per AAC frame
AAC_RATES = (96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000)
# The sound's codec by container: AAC, but PCM in AVI, whose muxer shifts the whole copy by AAC's
# priming delay (the first frame showed twice) and loses a late start (AVI keeps no timestamps)
SOUND_CODECS = {".avi": "pcm_s16le"}
SOUND_FORMATS = {"aac": "fltp", "pcm_s16le": "s16"}  # the sample formats the encoders take


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
    """Whether annotated copies are H.264 with sound (PyAV is installed; imported here)."""
    global av
    if av is None:
        try:
            import av as pyav
        except ImportError:  # the base install: OpenCV's encoders
            return False
        av = pyav
    return True


def open_writer(
    path: Path, suffix: str, fps: float, size: tuple[int, int], sound_from: str | None
) -> FrameWriter:
    """A writer of ``size`` (width, height) frames at ``fps`` into ``path`` (a temp file, so the
    format comes from ``suffix``, the target's); ``sound_from``: a local file whose first audio
    stream goes into the copy (PyAV only)."""
    if with_sound():
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
        codec = SOUND_CODECS.get(suffix, "aac")
        self.sound = SoundTrack.open(sound_from, self.container, codec) if sound_from else None
        # Encoding runs on a thread of its own, a few frames behind the analysis: x264 at 720p takes
        # about as long as the analysis of a frame, and the two overlap on a second core.
        self._jobs: queue.Queue[tuple[str, np.ndarray | None]] = queue.Queue(maxsize=ENCODE_QUEUE)
        self._error: BaseException | None = None
        self._last_image: np.ndarray | None = None  # the last frame given, and its VideoFrame
        self._last_frame: Any = None
        self._worker = threading.Thread(target=self._work, name="annotated-copy", daemon=True)
        self._worker.start()

    def write(self, bgr: np.ndarray) -> None:
        self._raise()
        self._jobs.put(("frame", bgr))  # the caller does not change it afterwards (annotate's copy)

    def stop_sound(self) -> None:
        self._raise()
        self._jobs.put(("stop sound", None))

    def _raise(self) -> None:
        """The encoder thread's error, in the caller's thread (a full disk ends the copy there)."""
        if self._error is not None:
            raise self._error

    def _work(self) -> None:
        while True:
            job, bgr = self._jobs.get()
            if job == "end":
                return
            if self._error is not None:
                continue  # failed: the rest is only taken off the queue, so that no put blocks
            try:
                if job == "frame":
                    assert bgr is not None
                    self._encode(bgr)
                else:
                    self._stop_sound()
            except BaseException as e:  # handed to the caller's thread
                self._error = e

    def _encode(self, bgr: np.ndarray) -> None:
        if bgr is not self._last_image:  # a held frame (a slow stretch) is converted once
            self._last_image = bgr
            pad_x, pad_y = self.size[0] - bgr.shape[1], self.size[1] - bgr.shape[0]
            if pad_x or pad_y:
                bgr = cv2.copyMakeBorder(bgr, 0, pad_y, 0, pad_x, cv2.BORDER_CONSTANT, value=0)
            self._last_frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(bgr), format="bgr24")
        frame = self._last_frame  # the encoder keeps its own reference to what it was given
        frame.pts = self.written
        self.container.mux(self.stream.encode(frame))
        self.written += 1
        if self.sound is not None:  # interleaved: the sound of the frames written so far
            self.sound.until(float(self.written / self.rate))

    def _stop_sound(self) -> None:
        if self.sound is not None:
            self.sound.close()
            self.sound = None

    def close(self, complete: bool) -> None:
        if self._worker.is_alive():
            self._jobs.put(("end", None))
            self._worker.join()
        if complete and self._error is not None:
            self.close(complete=False)
            raise self._error
        if complete:
            try:
                self.container.mux(self.stream.encode(None))
                if self.sound is not None:
                    self.sound.close(float(self.written / self.rate))
                    self.sound = None
            except BaseException:
                self.close(complete=False)
                raise
            self.container.close()
            return
        # a copy thrown away: what is open is released, and errors writing its end (a full disk
        # again) would only hide the one that stopped it
        if self.sound is not None:
            self.sound.source.close()
        with contextlib.suppress(av.FFmpegError, OSError):
            self.container.close()


def first_picture_s(path: str) -> float:
    """The time of the first frame that decodes, on the file's clock: where the copy starts (a file
    cut in the middle of a group of pictures starts at its first key frame, half a second on, not at
    its video stream's start)."""
    try:
        with av.open(path) as probe:
            if not probe.streams.video:
                return 0.0
            video = probe.streams.video[0]
            for packet in probe.demux(video):
                try:
                    frames = packet.decode()
                except av.FFmpegError:  # a damaged or headless start: decoding goes on after it
                    continue
                for frame in frames:
                    if frame.time is not None:
                        return float(frame.time)
            if video.start_time is not None and video.time_base is not None:
                return float(video.start_time * video.time_base)
    except (av.FFmpegError, OSError, ValueError):
        pass
    return 0.0


class SoundTrack:
    """The first audio stream of the original, re-encoded (AAC, PCM in AVI) into the copy and placed as the
    copy's frames are: the copy starts at the original's first video frame (the frame clock counts
    from it), so the sound at the original's time t plays at t - that frame's time. Each decoded
    piece of sound goes to its own time: a hole in the original's sound (or a damaged packet, which
    is skipped) is silence in the copy, sound before the first video frame and past the copy's last
    one is left out, and sound that starts late is preceded by silence (not by a timestamp, which
    AVI does not keep); where the clock starts over (recordings joined) the sound goes on, as the
    picture does. A source without sound gives a copy without it; one whose sound cannot be read or
    encoded, too, with a warning."""

    def __init__(
        self,
        path: str,
        source: Any,
        audio: Any,
        origin_s: float,
        codec: str,
        rate: int,
        layout: str,
        out: Any,
    ):
        self.path = path
        self.source = source
        self.origin_s = origin_s
        self.rate = rate
        self.channels = 1 if layout == "mono" else 2
        self.layout = layout
        self.format = SOUND_FORMATS[codec]
        self.out = out
        self.stream = out.add_stream(codec, rate=rate, layout=layout)
        self.resampler = av.AudioResampler(format=self.format, layout=layout, rate=rate)
        self.fifo = av.AudioFifo()
        self.packets = source.demux(audio)
        self.placed = 0  # samples of the copy's sound put in the queue so far, silence included
        self.encoded = 0  # of those, encoded
        self.end = 0  # the copy's end, in samples, as far as it is known
        self.held: tuple[int, list[Any]] | None = None  # decoded sound waiting for its place
        self.pending: list[Any] = []  # decoded frames of the last packet not yet placed
        self.ended = False
        self.kind: tuple[str, str, int] | None = None  # the source sound's format, layout and rate
        self.damaged = 0
        self.slack = rate // 100  # timestamps jitter (Matroska's are in ms): 10 ms either way is on time

    @classmethod
    def open(cls, path: str, out: Any, codec: str) -> SoundTrack | None:
        try:
            source = av.open(path)
        except (av.FFmpegError, OSError, ValueError) as e:
            log.warning("%s: the annotated copy has no sound (%s)", path, e)
            return None
        if not source.streams.audio:
            source.close()
            return None
        audio = source.streams.audio[0]
        if audio.codec_context is None:  # a codec FFmpeg does not know
            log.warning("%s: the annotated copy has no sound (its sound's codec cannot be read)", path)
            source.close()
            return None
        origin = first_picture_s(path)
        rate = audio.codec_context.sample_rate or 48000
        if codec == "aac" and rate not in AAC_RATES:  # AAC goes up to 96 kHz
            rate = 48000
        layout = "mono" if audio.codec_context.channels == 1 else "stereo"
        try:  # the encoder opens with the file's header, where a failure would lose the picture too
            probe: Any = av.CodecContext.create(codec, "w")
            probe.sample_rate, probe.layout, probe.format = rate, layout, SOUND_FORMATS[codec]
            probe.open()
        except (av.FFmpegError, ValueError) as e:
            log.warning("%s: the annotated copy has no sound (%s at %d Hz: %s)", path, codec, rate, e)
            source.close()
            return None
        return cls(path, source, audio, origin, codec, rate, layout, out)

    def until(self, end_s: float) -> None:
        """Encode the original's sound up to the copy's time ``end_s``."""
        self.end = max(self.end, round(end_s * self.rate))
        while self.placed < self.end:
            if self.held is None and not self._decode():
                break
            assert self.held is not None
            at, frames = self.held
            if at > self.placed + self.slack:  # a hole, or sound that starts late: silence up to it
                self._silence(min(at, self.end) - self.placed)
                if at > self.end:
                    break  # its place is past the copy's end so far: held for later
            self.held = None
            skip = self.placed - at  # sound before the first video frame, or overlapping the last piece
            self._put(frames, skip if skip > self.slack or self.placed == 0 else 0)
        self._encode(self.end)

    def _decode(self) -> bool:
        """The next decoded piece of sound into ``held``, at its place in the copy; False at the end."""
        while True:
            while not self.pending:
                if self.ended:
                    return False
                try:
                    packet = next(self.packets)
                except StopIteration:
                    self.ended = True
                    rest = self.resampler.resample(None)  # what the resampler still holds
                    self.held = (self.placed, rest) if rest else None
                    return self.held is not None
                except av.FFmpegError:  # the container cannot be read on: the sound ends here
                    self.ended = True
                    self.damaged += 1
                    continue
                try:
                    self.pending = packet.decode()
                except av.FFmpegError:  # a damaged packet: left out, silence in its place
                    self.damaged += 1
            frame = self.pending.pop(0)
            at = self.placed if frame.time is None else round((frame.time - self.origin_s) * self.rate)
            if self.placed and at < self.placed - self.rate:
                # the clock started over (recordings joined): the sound goes on from here, as the
                # picture does (FrameClock); else every later piece lay before the copy's sound
                self.origin_s -= (self.placed - at) / self.rate
                at = self.placed
            frame.pts = None
            kind = (frame.format.name, frame.layout.name, frame.sample_rate)
            if kind != self.kind:  # the sound changes format mid-file (joined recordings, broadcasts)
                if self.kind is not None:
                    self._put(self.resampler.resample(None), 0)  # the old format's last samples
                self.kind = kind
                self.resampler = av.AudioResampler(format=self.format, layout=self.layout, rate=self.rate)
            try:
                self.held = (at, self.resampler.resample(frame))
                return True
            except (av.FFmpegError, ValueError):  # a frame the resampler cannot take: silence instead
                self.damaged += 1

    def _put(self, frames: list[Any], skip: int) -> None:
        for frame in frames:
            if skip >= frame.samples:
                skip -= frame.samples
                continue
            if skip > 0:  # planar samples are (channels, n), packed ones (1, n x channels)
                packed = 1 if self.format == "fltp" else self.channels
                frame = self._frame(frame.to_ndarray()[:, skip * packed :])
                skip = 0
            # the queue takes frames of one kind; a resampler passes a frame it need not convert
            # through with its source's time base (Matroska's ms, TS's 1/90000)
            frame.pts, frame.time_base = None, Fraction(1, self.rate)
            self.fifo.write(frame)
            self.placed += frame.samples
            self._encode(self.end)

    def _silence(self, samples: int) -> None:
        while samples > 0:
            n = min(samples, self.rate)
            zeros = (
                np.zeros((self.channels, n), np.float32)
                if self.format == "fltp"
                else np.zeros((1, n * self.channels), np.int16)
            )
            self.fifo.write(self._frame(zeros))
            self.placed += n
            samples -= n
            self._encode(self.end)

    def _frame(self, samples: np.ndarray) -> Any:
        frame = av.AudioFrame.from_ndarray(
            np.ascontiguousarray(samples), format=self.format, layout=self.layout
        )
        frame.sample_rate, frame.time_base = self.rate, Fraction(1, self.rate)
        return frame

    def _encode(self, end: int, last: bool = False) -> None:
        """Encode whole AAC frames that end by ``end``; ``last``: the short one left too."""
        while self.encoded < end:
            n = min(AAC_FRAME, end - self.encoded)
            if self.fifo.samples < n or (n < AAC_FRAME and not last):
                return
            frame: Any = self.fifo.read(n)
            frame.pts, frame.time_base = self.encoded, Fraction(1, self.rate)
            self.out.mux(self.stream.encode(frame))
            self.encoded += n

    def close(self, end_s: float | None = None) -> None:
        """The sound up to the copy's end ``end_s`` (None: as far as it has gone), then the encoder's
        flush; says so where damaged sound was left out."""
        if end_s is not None:
            self.until(end_s)
        self._encode(min(self.end, self.placed), last=True)
        self.out.mux(self.stream.encode(None))
        self.source.close()
        if self.damaged:
            log.warning(
                "%s: %d damaged packet(s) of sound left out of the annotated copy (silence in their place)",
                self.path,
                self.damaged,
            )
