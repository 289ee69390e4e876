"""``EmotionRecognizer``: the one pipeline behind the Python API, the CLI, video and the service."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from facial_emotion.inference.align import crop_face
from facial_emotion.inference.classifier import EmotionClassifier
from facial_emotion.inference.decode import ImageError, ImageInput, load_image
from facial_emotion.inference.detectors import Detection, FaceDetector, create_detector


@dataclass
class Face:
    box: tuple[int, int, int, int]  # x, y, w, h in pixels of the (EXIF-upright) image
    emotion: str
    confidence: float
    scores: dict[str, float]  # every class's probability; they sum to 1
    detector_score: float = 1.0
    track_id: int | None = field(default=None)  # a face's id across the frames of a FaceStream


@dataclass
class PhotoResult:
    """One photo of a batch: its faces, or why it could not be read."""

    source: str
    faces: list[Face] = field(default_factory=list)
    error: str | None = None
    image: np.ndarray | None = field(default=None, repr=False)  # the decoded image, to draw on


class EmotionRecognizer:
    """Detect every face in an image and classify its emotion.

    ``model``: path of a facial-emotion ONNX file (default: the built-in model, or $FACIAL_EMOTION_MODEL).
    ``detector``: 'haar' (default), 'yunet[:MODEL.onnx]' or any object with ``detect(bgr)``.
    ``tta``: average ten crops per face (slower, about one point more accurate).
    Arrays are taken as OpenCV gives them: gray, BGR or BGRA.
    """

    def __init__(
        self,
        model: str | os.PathLike | None = None,
        detector: str | FaceDetector | None = None,
        tta: bool = False,
        threads: int | None = None,
    ):
        self.classifier = EmotionClassifier(model, threads=threads)
        self.detector = create_detector(detector)
        self.tta = tta

    @property
    def classes(self) -> list[str]:
        return self.classifier.classes

    @property
    def model_info(self) -> dict[str, Any]:
        return self.classifier.metadata

    def detect(self, bgr: np.ndarray) -> list[Detection]:
        """Faces in reading order (left to right, then top to bottom), so output order is stable."""
        return sorted(self.detector.detect(bgr), key=lambda d: (d.box[0], d.box[1]))

    def classify(self, faces48: np.ndarray) -> np.ndarray:
        """uint8 (N, 48, 48) aligned gray faces -> probabilities (N, classes)."""
        return self.classifier.predict(faces48, tta=self.tta)

    def _faces(self, dets: list[Detection], probs: np.ndarray, shape: tuple[int, ...]) -> list[Face]:
        faces = []
        h, w = shape[:2]
        for det, p in zip(dets, probs, strict=True):
            k = int(p.argmax())
            x, y, bw, bh = det.box  # a face cut by the border is reported by its visible part
            x0, y0 = min(max(0, x), w), min(max(0, y), h)
            x1, y1 = max(x0, min(w, x + bw)), max(y0, min(h, y + bh))
            faces.append(
                Face(
                    box=(x0, y0, x1 - x0, y1 - y0),
                    emotion=self.classes[k],
                    confidence=float(p[k]),
                    scores={c: float(v) for c, v in zip(self.classes, p, strict=True)},
                    detector_score=det.score,
                )
            )
        return faces

    def analyze_frame(self, bgr: np.ndarray, detections: list[Detection] | None = None) -> list[Face]:
        """A decoded BGR frame -> its faces, all classified in one batched call."""
        return self.analyze_frames([bgr], None if detections is None else [detections])[0]

    def analyze_frames(
        self, frames: list[np.ndarray], detections: list[list[Detection]] | None = None
    ) -> list[list[Face]]:
        """Decoded BGR frames -> their faces; ``detections`` skips detection (video passes tracked boxes)."""
        dets = detections if detections is not None else [self.detect(f) for f in frames]
        size = self.classifier.face_size
        crops = []
        for frame, frame_dets in zip(frames, dets, strict=True):
            if frame_dets:
                gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)  # once per frame, not per face
                crops += [crop_face(gray, d, size) for d in frame_dets]
        probs = self.classify(np.stack(crops)) if crops else np.zeros((0, len(self.classes)), np.float32)
        out, i = [], 0
        for frame, ds in zip(frames, dets, strict=True):
            out.append(self._faces(ds, probs[i : i + len(ds)], frame.shape))
            i += len(ds)
        return out

    def analyze(self, image: ImageInput) -> list[Face]:
        """A path, bytes, numpy array or PIL image -> its faces. Raises ImageError for bad input."""
        return self.analyze_frame(load_image(image))

    def analyze_each(self, sources: Iterable[ImageInput]) -> Iterator[PhotoResult]:
        """Photos one by one; a bad one gives a result with its ``error`` and the batch goes on."""
        for source in sources:
            name = str(source) if isinstance(source, (str, os.PathLike)) else type(source).__name__
            try:
                image = load_image(source)
            except ImageError as e:
                yield PhotoResult(name, error=str(e))
                continue
            yield PhotoResult(name, self.analyze_frame(image), image=image)

    def analyze_batch(self, images: list[ImageInput]) -> list[list[Face]]:
        """Several images; their faces are classified together in one call. Raises on the first bad input."""
        return self.analyze_frames([load_image(im) for im in images])
