"""``FaceStream``: the one object that turns a sequence of frames into tracked, classified faces.

A video file, a camera, a browser's live stream and a batch chunk are all sequences of frames, and all
go through this: find the faces (a full detection every ``detect_every`` frames, the known faces
followed in between), classify them in one batched call, give each the id of its track and smooth
its scores over time; then its ``Session`` keeps each person's emotions over time and fires the
events. Nothing else composes those steps.

>>> stream = FaceStream(EmotionRecognizer(), smoothing=0.6)
>>> stream.on_change(print)  # EmotionEvent: a person's emotion changed, or held for hold_s
>>> for i, frame in enumerate(frames):
...     faces = stream.process(frame, time_s=i / fps)  # Face objects with track_id set
>>> stream.summary()  # per person: time share of each emotion, dominant one, changes, timeline
"""

from __future__ import annotations

import time

import numpy as np

from facial_emotion.arguments import whole_number
from facial_emotion.inference.decode import as_bgr
from facial_emotion.inference.detectors import FaceDetector, create_detector
from facial_emotion.inference.pipeline import EmotionRecognizer, Face
from facial_emotion.inference.session import (
    DEFAULT_HOLD_S,
    DEFAULT_MIN_DURATION_S,
    EmotionEvent,
    EventCallback,
    PersonSummary,
    Session,
)
from facial_emotion.inference.tracking import FaceTracker, VideoFaceFinder
from facial_emotion.settings import DEFAULT_DETECT_EVERY, DEFAULT_SMOOTHING


class FaceStream:
    """``recognizer`` classifies; ``detector`` finds faces (default: the recognizer's own). A stream
    keeps state between frames, so it serves one sequence, one frame at a time; its classifier and the
    built-in detectors may be shared with other streams and threads (onnxruntime sessions are
    thread-safe; Haar and YuNet take one call at a time), a detector object of your own only if it is
    thread-safe itself."""

    def __init__(
        self,
        recognizer: EmotionRecognizer,
        detector: str | FaceDetector | None = None,
        detect_every: int = DEFAULT_DETECT_EVERY,
        smoothing: float = DEFAULT_SMOOTHING,
        min_duration_s: float = DEFAULT_MIN_DURATION_S,
        hold_s: float | None = DEFAULT_HOLD_S,
    ):
        if not 0 <= smoothing < 1:
            raise ValueError("smoothing must be in 0..1 (1 excluded: the scores would never change)")
        self.recognizer = recognizer
        detect_every = whole_number("detect_every", detect_every)
        # a name ("haar") as EmotionRecognizer takes it; None: the recognizer's own detector
        finder = recognizer.detector if detector is None else create_detector(detector)
        self.finder = VideoFaceFinder(finder, refresh=detect_every)
        self.tracker = FaceTracker(recognizer.classes, smoothing=smoothing)
        self.session = Session(recognizer.classes, min_duration_s=min_duration_s, hold_s=hold_s)
        self.last_events: list[EmotionEvent] = []  # those fired by the last frame
        self._t0: float | None = None

    @property
    def classes(self) -> list[str]:
        return self.recognizer.classes

    def process(self, bgr: np.ndarray, time_s: float | None = None) -> list[Face]:
        """The next frame (BGR uint8; gray, BGRA and float arrays are converted) -> its faces, each with ``track_id`` and smoothed scores.
        ``time_s``: the frame's time in seconds (a video file's timestamp, ``CAP_PROP_POS_MSEC`` / 1000;
        index / fps in a constant-rate file); default: the clock,
        counted from the first frame (a live camera)."""
        if time_s is None:
            now = time.monotonic()
            self._t0 = now if self._t0 is None else self._t0
            time_s = now - self._t0
        # Checked before the tracker moves on: a refused frame leaves the stream as it was.
        time_s = self.session.check_time(time_s)
        bgr = as_bgr(bgr)  # gray, BGRA, float frames converted; not an array: ImageError
        faces = self.tracker.update(self.recognizer.analyze_frame(bgr, self.finder.detect(bgr)))
        self.last_events = self.session.update(time_s, faces)
        return faces

    def on_change(self, callback: EventCallback) -> EventCallback:
        """``callback(event)`` for each ``EmotionEvent`` (see ``inference.session`` for the rule)."""
        return self.session.on_change(callback)

    def summary(self, end_s: float | None = None) -> list[PersonSummary]:
        """Per person (track id): time share of each emotion, dominant emotion, changes, timeline.
        ``end_s``: where the sequence ends, if known (a file's length), so that the last frame
        counted does not run past it."""
        return self.session.summary(end_s)
