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
import io
import os
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import cv2
from PIL import Image

from facial_emotion.inference.decode import ImageError, from_bytes
from facial_emotion.inference.detectors import Detection, create_detector
from facial_emotion.inference.draw import annotate
from facial_emotion.inference.pipeline import EmotionRecognizer, Face


class Busy(Exception):
    """Too many images are already waiting for a worker (answered with 503)."""


class TooLarge(ImageError):
    """The image has more pixels than the service accepts (answered with 413)."""


def check_pixels(data: bytes, max_pixels: int, name: str) -> None:
    """Reject huge images from their header alone, before a single pixel is decoded."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            w, h = img.size
    except Exception:  # not something Pillow can read: the decoder gives the real message later
        return
    if w * h > max_pixels:
        raise TooLarge(
            f"{name}: image too large ({w}x{h} = {w * h / 1e6:.1f} MP; limit {max_pixels / 1e6:.1f} MP)"
        )


def is_too_large(e: ImageError) -> bool:
    # decode.from_bytes has its own pixel cap and bomb guard; both say "too large".
    return isinstance(e, TooLarge) or "too large" in str(e)


class Engine:
    def __init__(
        self,
        model: str | os.PathLike | None = None,
        detector: Any = None,
        workers: int | None = None,
        threads: int | None = 1,
        max_pixels: int = 64_000_000,
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
        # Live streams follow faces between full searches (VideoFaceFinder), searching frames at
        # 320 px unless the server was given a detector; an object detector is used as it is.
        self.stream_detector: str | None = (
            (detector or os.environ.get("FACIAL_EMOTION_DETECTOR") or "haar:320")
            if not detector or isinstance(detector, str)
            else None
        )
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

    # --- the jobs (run in worker threads) ---------------------------------------------------------

    def analyze_bytes(
        self,
        rec: EmotionRecognizer,
        data: bytes,
        name: str,
        want_annotated: bool = False,
        post: Callable[[list[Face]], list[Face]] | None = None,
        detect: Callable[[Any], list[Detection]] | None = None,
    ) -> dict[str, Any]:
        t0 = time.perf_counter()
        check_pixels(data, self.max_pixels, name)
        bgr = from_bytes(data, name)
        faces = rec.analyze_frame(bgr, detect(bgr) if detect is not None else None)
        if post is not None:
            faces = post(faces)
        out: dict[str, Any] = {
            "faces": [f.to_dict() for f in faces],
            "width": bgr.shape[1],
            "height": bgr.shape[0],
        }
        if want_annotated:
            ok, buf = cv2.imencode(".jpg", annotate(bgr, faces), [cv2.IMWRITE_JPEG_QUALITY, 88])
            if not ok:
                raise RuntimeError("JPEG encoding failed")
            out["annotated_jpeg_base64"] = base64.b64encode(buf.tobytes()).decode("ascii")
        out["elapsed_ms"] = round((time.perf_counter() - t0) * 1000, 1)
        return out
