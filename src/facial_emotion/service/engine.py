"""Inference for the service: a few worker threads, each with its own recognizer, off the event loop.

The recognizers share one onnxruntime session (its ``run`` is thread-safe) but each worker has its own
face detector, because an OpenCV ``CascadeClassifier`` keeps per-call state and must not be used by
two threads at once. The number of workers bounds how many images are analysed at the same time;
more requests wait in the executor's queue instead of piling threads onto a few cores.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import os
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from facial_emotion import settings
from facial_emotion.inference.decode import from_bytes
from facial_emotion.inference.detectors import create_detector
from facial_emotion.inference.pipeline import EmotionRecognizer, Face
from facial_emotion.inference.stream import FaceStream
from facial_emotion.results.media import annotated_jpeg
from facial_emotion.results.schema import face_json


class Busy(Exception):
    """Too many images are already waiting for a worker (answered with 503)."""


class Engine:
    def __init__(
        self,
        model: str | os.PathLike | None = None,
        detector: Any = None,
        workers: int | None = None,
        threads: int | None = 1,
        max_pixels: int = settings.DEFAULT_MAX_PIXELS,
        max_pending: int = 256,
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
        info = base.model_info
        self.model_id = {
            "name": base.classifier.path.name,
            "arch": info.get("arch"),
            "date": info.get("date"),
        }
        # Each live stream gets a detector of its own, made from the same spec; an object detector is
        # used as it is (one worker, so never by two threads at once).
        self.stream_detector: str | None = None
        if detector is None:
            self.stream_detector = settings.current().detector_or(settings.DEFAULT_DETECTOR)
        elif isinstance(detector, str):
            self.stream_detector = detector
        self.max_pixels = max_pixels
        self.max_pending = max_pending  # beyond this, refuse at once rather than queue for minutes
        self.pending = 0
        # Each worker thread takes one prepared recognizer when it starts and keeps it for its life.
        spare: queue.SimpleQueue[EmotionRecognizer] = queue.SimpleQueue()
        for rec in self.recognizers:
            spare.put(rec)
        self._local = threading.local()
        self._executor = ThreadPoolExecutor(
            max_workers=workers,
            thread_name_prefix="facial-emotion",
            initializer=lambda: setattr(self._local, "rec", spare.get_nowait()),
        )

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
        return fn(self._local.rec, *args)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    def new_stream(self, smoothing: float = 0.0) -> FaceStream:
        """A FaceStream for one live connection, with its own detector (a stream's frames are analysed
        one at a time, so its detector is never shared); classification shares the model session."""
        detector = create_detector(self.stream_detector) if self.stream_detector else None
        return FaceStream(self.recognizer, detector, smoothing=smoothing)

    # --- the jobs (run in worker threads) ---------------------------------------------------------

    def analyze_bytes(
        self, rec: EmotionRecognizer, data: bytes, name: str, want_annotated: bool = False
    ) -> dict[str, Any]:
        """One uploaded image. Raises ``ImageError`` (``ImageTooLarge`` above the pixel limit)."""
        t0 = time.perf_counter()
        bgr = from_bytes(data, name, self.max_pixels)
        return self._reply(bgr, rec.analyze_frame(bgr), want_annotated, t0)

    def analyze_stream_frame(
        self, _rec: EmotionRecognizer, data: bytes, name: str, stream: FaceStream
    ) -> dict[str, Any]:
        """One frame of a live stream, through that connection's FaceStream."""
        t0 = time.perf_counter()
        bgr = from_bytes(data, name, self.max_pixels)
        return self._reply(bgr, stream.process(bgr), False, t0)

    @staticmethod
    def _reply(bgr: np.ndarray, faces: list[Face], want_annotated: bool, t0: float) -> dict[str, Any]:
        out: dict[str, Any] = {
            "faces": [face_json(f) for f in faces],
            "width": bgr.shape[1],
            "height": bgr.shape[0],
        }
        if want_annotated:
            out["annotated_jpeg_base64"] = base64.b64encode(annotated_jpeg(bgr, faces, 88)).decode("ascii")
        out["elapsed_ms"] = round((time.perf_counter() - t0) * 1000, 1)
        return out
