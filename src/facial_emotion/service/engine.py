"""Inference for the service: a few worker threads, each with its own recognizer, off the event loop.

The recognizers share one onnxruntime session (its ``run`` is thread-safe) but each worker has its own
face detector: an OpenCV ``CascadeClassifier`` keeps per-call state, so a shared Haar or YuNet
detector takes one call at a time, and workers would wait on each other. The number of workers bounds how many images are analysed at the same time;
more requests wait in the executor's queue instead of piling threads onto a few cores.

Memory per request is bounded: uploads are decoded at most ``max_side`` px on the long side (a JPEG
by libjpeg's reduced decode, so a 64 MP upload costs megabytes, not 200 MB), at most
``decode_slots`` decodes run at once (a PNG cannot be decoded reduced: its full size is decoded, then
reduced), and after a large image the C heap is handed back to the system (glibc keeps freed
per-thread arenas otherwise: 1.4 GB stayed resident after eight 64 MP uploads). Boxes are reported in
the coordinates of the full upright image.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import copy
import ctypes
import ctypes.util
import dataclasses
import os
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from facial_emotion import settings
from facial_emotion.feedback import FeedbackError, FeedbackStore, face_at_box
from facial_emotion.inference.classifier import EmotionClassifier
from facial_emotion.inference.decode import DETECTION_MAX_SIDE, Decoded, decode_reduced, decode_upright
from facial_emotion.inference.detectors import Detection, create_detector
from facial_emotion.inference.pipeline import EmotionRecognizer, Face
from facial_emotion.inference.stream import FaceStream
from facial_emotion.results.media import annotated_jpeg
from facial_emotion.results.schema import face_json
from facial_emotion.results.session import event_json


class Busy(Exception):
    """Too many images are already waiting for a worker (answered with 503)."""


def _malloc_trim() -> Any:
    """glibc's ``malloc_trim`` (returns free heap pages to the system), or None elsewhere."""
    with contextlib.suppress(OSError, AttributeError, TypeError):
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    return None


_MALLOC_TRIM = _malloc_trim()
# Above this many decoded pixels (at full size), a request's buffers are handed back to the system.
TRIM_ABOVE_PIXELS = 4_000_000


class WorkerDetector:
    """Finds faces with the calling worker thread's own detector (see ``Engine.new_stream``)."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self.name: str = getattr(engine.recognizer.detector, "name", "detector")

    def detect(self, bgr: np.ndarray) -> list[Detection]:
        index = getattr(self.engine._local, "index", 0)  # 0: not in a worker thread (tests)
        return self.engine.recognizers[index].detector.detect(bgr)


class Engine:
    def __init__(
        self,
        model: str | os.PathLike | None = None,
        detector: Any = None,
        workers: int | None = None,
        threads: int | None = 1,
        max_pixels: int = settings.DEFAULT_MAX_PIXELS,
        max_pending: int = 256,
        max_side: int = DETECTION_MAX_SIDE,
        decode_slots: int = 2,
    ):
        base = EmotionRecognizer(model, detector, threads=threads)
        if workers is None:
            workers = max(1, min(4, os.cpu_count() or 1))
        if detector is not None and not isinstance(detector, str):
            workers = 1  # a detector object is used as given; we cannot know whether it is thread-safe
        self.recognizers = [base]
        for _ in range(workers - 1):
            clone = copy.copy(base)  # shares the classifier and its onnxruntime session
            clone.detector = create_detector(detector)
            self.recognizers.append(clone)
        self.model_id = self._model_id(base)
        self._swapping = threading.Lock()
        self.max_pixels = max_pixels
        self.max_side = max_side
        self._decodes = threading.BoundedSemaphore(max(1, decode_slots))
        self.max_pending = max_pending  # beyond this, refuse at once rather than queue for minutes
        self.pending = 0
        # Each worker thread takes one slot (its own detector) when it starts and keeps it for its
        # life; the recognizer in that slot is looked up per job, so a model swap reaches every worker.
        spare: queue.SimpleQueue[int] = queue.SimpleQueue()
        for index in range(len(self.recognizers)):
            spare.put(index)
        self._local = threading.local()
        self._executor = ThreadPoolExecutor(
            max_workers=workers,
            thread_name_prefix="facial-emotion",
            initializer=lambda: setattr(self._local, "index", spare.get_nowait()),
        )

    @staticmethod
    def _model_id(rec: EmotionRecognizer) -> dict[str, Any]:
        info = rec.model_info
        return {"name": rec.classifier.path.name, "arch": info.get("arch"), "date": info.get("date")}

    def swap_model(self, model: str | os.PathLike | None) -> dict[str, Any]:
        """Load ``model`` and make it the one every new job uses; returns its id. A job that has
        started keeps the recognizer it took (``_call``), so it finishes on the old model; the list
        of recognizers is replaced by one assignment, never edited in place. A bad model file raises
        (ModelFileError) and the old model stays."""
        with self._swapping:
            threads = self.recognizers[0].threads
            classifier = EmotionClassifier(model, threads=threads)
            fresh = []
            for old in self.recognizers:
                rec = copy.copy(old)  # keeps this worker's detector (used by that thread only)
                rec.classifier = classifier
                fresh.append(rec)
            self.recognizers = fresh
            self.model_id = self._model_id(fresh[0])
            return self.model_id

    @property
    def recognizer(self) -> EmotionRecognizer:
        return self.recognizers[0]

    @property
    def workers(self) -> int:
        return len(self.recognizers)

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(recognizer, *args)`` in a worker thread. Cancelling (a request timeout) drops a job
        that has not started yet; a running one finishes in its thread and its result is discarded."""
        if self.pending >= self.max_pending:
            raise Busy(f"server busy: {self.pending} images waiting; try again shortly")
        self.pending += 1  # only touched on the event loop thread: no lock needed
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, self._call, fn, args)
        finally:
            self.pending -= 1

    def _call(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> Any:
        rec = self.recognizers[self._local.index]  # read once: the job keeps this model
        reply = fn(rec, *args)
        # Named from the recognizer that made it: a reply finished after a reload said the new model.
        reply["model"] = self._model_id(rec)
        return reply

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    def new_stream(self, smoothing: float = 0.0) -> FaceStream:
        """A FaceStream for one live connection. Its frames are analysed in the worker threads, so it
        finds faces with the detector of whichever worker runs the frame: never two threads on one
        detector, and no detector (an onnxruntime session, ~15 MB) per connection: 50 live streams
        took the server from 160 MB to 900 MB when each made its own. Classification shares the
        model session; the tracking state is the stream's own."""
        return FaceStream(self.recognizer, WorkerDetector(self), smoothing=smoothing)

    # --- the jobs (run in worker threads) ---------------------------------------------------------

    def _decode(self, data: bytes, name: str) -> Decoded:
        """The picture at most ``max_side`` on its long side, the full upright size, the orientation."""
        with self._decodes:
            return decode_upright(data, name, self.max_pixels, self.max_side)

    @staticmethod
    def _release(full: tuple[int, int]) -> None:
        if _MALLOC_TRIM is not None and full[0] * full[1] > TRIM_ABOVE_PIXELS:
            _MALLOC_TRIM(0)

    def analyze_bytes(
        self,
        rec: EmotionRecognizer,
        data: bytes,
        name: str,
        want_annotated: bool = False,
        landmarks: bool = False,
    ) -> dict[str, Any]:
        """One uploaded image (``landmarks``: with mesh and head pose). Raises ``ImageError``
        (``ImageTooLarge`` above the pixel limit)."""
        t0 = time.perf_counter()
        bgr, full, orientation = self._decode(data, name)
        try:
            reply = self._reply(bgr, rec.analyze_frame(bgr, landmarks=landmarks), want_annotated, t0, full)
            reply["orientation"] = orientation  # read with the picture, not parsed again
            return reply
        finally:
            self._release(full)

    def analyze_stream_frame(
        self, rec: EmotionRecognizer, data: bytes, name: str, stream: FaceStream, time_s: float | None = None
    ) -> dict[str, Any]:
        """One frame of a live stream (received at ``time_s``), through that connection's FaceStream;
        ``events``: the session events it fired. It classifies with the job's recognizer, so a stream
        opened before a model reload moves to the new model with its next frame."""
        t0 = time.perf_counter()
        stream.recognizer = rec
        bgr, full, _ = self._decode(data, name)
        try:
            reply = self._reply(bgr, stream.process(bgr, time_s), False, t0, full)
            reply["events"] = [event_json(e) for e in stream.last_events]
            return reply
        finally:
            self._release(full)

    def feedback_bytes(
        self,
        rec: EmotionRecognizer,
        data: bytes,
        name: str,
        face: int | None,
        emotion: str,
        store: FeedbackStore,
        box: tuple[int, int, int, int] | None = None,
    ) -> dict[str, Any]:
        """Save face number ``face`` (1-based, in the order /v1/analyze lists faces) of an uploaded
        image as an example of ``emotion``; the image is decoded and its faces found exactly as
        ``analyze_bytes`` does, so the numbers match. With ``box`` (x, y, w, h in the image's pixels)
        the face found whose box overlaps it most is saved instead: a live frame's faces come from
        the tracker, whose boxes and order can differ from a fresh detection's. Raises FeedbackError
        for a face not there."""
        emotion = store.check_emotion(emotion, rec.classes)  # before the decode and the detection
        bgr, full, _ = self._decode(data, name)
        try:
            dets = rec.detect(bgr)
            faces = rec.analyze_frame(bgr, dets)
            if box is not None:
                k = bgr.shape[1] / full[0]  # the client's box is in the full image's pixels
                x, y, w, h = (round(v * k) for v in box)
                try:
                    face = face_at_box([f.box for f in faces], (x, y, w, h))
                except FeedbackError:
                    raise FeedbackError(
                        f"no face at box {list(box)} in this image ({len(dets)} found)"
                    ) from None
            if face is None or not 1 <= face <= len(dets):
                raise FeedbackError(f"no face {face} in this image ({len(dets)} found)")
            found = faces[face - 1]
            picture, det = bgr, dets[face - 1]
            if full != (bgr.shape[1], bgr.shape[0]):
                # found on the reduced picture: saved from the full one, as `correct` saves it (the
                # box in the upload's pixels, the crop at its resolution)
                with self._decodes:  # a full-size decode, in the same bounded slots as the others
                    picture = decode_reduced(data, name, self.max_pixels, None)[0]
                scale = picture.shape[1] / bgr.shape[1]
                det = Detection(
                    tuple(round(v * scale) for v in det.box),  # type: ignore[arg-type]
                    det.score,
                    None if det.landmarks is None else det.landmarks * scale,
                )
            saved = store.save(
                picture, det, emotion, rec.model_record, found.scores, name, classes=rec.classes
            )
            return {
                "saved": saved.face.name,
                "emotion": saved.emotion,
                "predicted": found.emotion,
                "face": face,
            }
        finally:
            self._release(full)

    @staticmethod
    def _reply(
        bgr: np.ndarray, faces: list[Face], want_annotated: bool, t0: float, full: tuple[int, int]
    ) -> dict[str, Any]:
        """Boxes and size in the full image's pixels; the annotated JPEG is the decoded (reduced) one."""
        scale = full[0] / bgr.shape[1]
        sent = faces  # in the image's pixels, as the client sent it; ``faces`` stay on ``bgr``'s
        if scale != 1.0:
            sent = [
                dataclasses.replace(
                    f,
                    box=tuple(round(v * scale) for v in f.box),  # type: ignore[arg-type]
                    landmarks=None if f.landmarks is None else f.landmarks * scale,
                )
                for f in faces
            ]
        out: dict[str, Any] = {"faces": [face_json(f) for f in sent], "width": full[0], "height": full[1]}
        if want_annotated:
            out["annotated_jpeg_base64"] = base64.b64encode(annotated_jpeg(bgr, faces, 88)).decode("ascii")
        out["elapsed_ms"] = round((time.perf_counter() - t0) * 1000, 1)
        return out
