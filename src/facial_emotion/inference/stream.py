"""``FaceStream``: the one object that turns a sequence of frames into tracked, classified faces.

A video file, a camera, a browser's live stream and a batch chunk are all sequences of frames, and all
go through this: find the faces (a full detection every ``detect_every`` frames, the known faces
followed in between), classify them in one batched call, give each the id of its track and smooth
its scores over time. Nothing else composes those steps.

>>> stream = FaceStream(EmotionRecognizer(), smoothing=0.6)
>>> for frame in frames:
...     faces = stream.process(frame)  # Face objects with track_id set
>>> stream.summary()  # per tracked face: frames seen, dominant emotion, share of each emotion
"""

from __future__ import annotations

from typing import Any

import numpy as np

from facial_emotion.inference.detectors import FaceDetector
from facial_emotion.inference.pipeline import EmotionRecognizer, Face
from facial_emotion.inference.tracking import FaceTracker, VideoFaceFinder
from facial_emotion.settings import DEFAULT_DETECT_EVERY


class FaceStream:
    """``recognizer`` classifies; ``detector`` finds faces (default: the recognizer's own). A stream
    keeps state between frames, so it serves one sequence, one frame at a time; its classifier may be
    shared with other streams (onnxruntime sessions are thread-safe), its detector may not."""

    def __init__(
        self,
        recognizer: EmotionRecognizer,
        detector: FaceDetector | None = None,
        detect_every: int = DEFAULT_DETECT_EVERY,
        smoothing: float = 0.0,
    ):
        if not 0 <= smoothing < 1:
            raise ValueError("smoothing must be in 0..1 (1 excluded: the scores would never change)")
        self.recognizer = recognizer
        self.finder = VideoFaceFinder(detector or recognizer.detector, refresh=detect_every)
        self.tracker = FaceTracker(recognizer.classes, smoothing=smoothing)
        self.frames = 0

    @property
    def classes(self) -> list[str]:
        return self.recognizer.classes

    def process(self, bgr: np.ndarray) -> list[Face]:
        """The next frame (BGR uint8) -> its faces, each with ``track_id`` and smoothed scores."""
        self.frames += 1
        faces = self.recognizer.analyze_frame(bgr, self.finder.detect(bgr))
        return self.tracker.update(faces)

    def summary(self) -> list[dict[str, Any]]:
        """Per tracked face: frames seen, dominant emotion and the share of its frames per emotion."""
        return self.tracker.summary()
