"""``EmotionRecognizer``: the one pipeline behind the Python API, the CLI, video and the service."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from facial_emotion.inference.align import crop_face
from facial_emotion.inference.classifier import EmotionClassifier
from facial_emotion.inference.decode import (
    ImageError,
    ImageInput,
    as_bgr,
    check_timeout,
    load_image,
    load_image_within,
)
from facial_emotion.inference.detectors import (
    Detection,
    FaceDetector,
    create_detector,
    find_faces,
    usable_detections,
)

if TYPE_CHECKING:
    from facial_emotion.inference.landmarks import FaceMesh, HeadPose


@dataclass
class Face:
    box: tuple[int, int, int, int]  # x, y, w, h in pixels of the (EXIF-upright) image
    emotion: str
    confidence: float
    scores: dict[str, float]  # every class's probability; they sum to 1
    detector_score: float = 1.0
    track_id: int | None = field(default=None)  # a face's id across the frames of a FaceStream
    # With landmarks on (inference/landmarks.py): the face mesh, (468, 3) x, y, z in image pixels,
    # and the head pose; None when off or when the mesh model saw no face in the box.
    landmarks: np.ndarray | None = field(default=None, repr=False, compare=False)
    pose: HeadPose | None = None
    # The model's calibrated threshold (classifier.uncertain_below): under it the top label is right
    # less than half of the time, and the face is flagged uncertain.
    uncertain_below: float = field(default=0.0, repr=False)

    @property
    def uncertain(self) -> bool:
        return self.confidence < self.uncertain_below

    @property
    def runner_up(self) -> str:
        """The second most likely emotion (what an uncertain face may be instead)."""
        ranked = sorted(self.scores, key=lambda c: -self.scores[c])
        return ranked[1] if len(ranked) > 1 else ranked[0]


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
    ``detector``: 'blazeface' (default, or $FACIAL_EMOTION_DETECTOR), 'haar', 'yunet[:MODEL.onnx]' or
    any object with ``detect(bgr)``.
    ``threads``: the classifier's onnxruntime threads (default: all cores; the detector uses its own).
    ``tta``: average ten crops per face (ten times the classifier's cost; 0.1 to 0.8 points more accurate).
    ``landmarks``: also give each face its 468-point mesh and head pose (``Face.landmarks``,
    ``Face.pose``); about 2.6 times the classifier's cost per face, so off by default.
    Arrays are taken as OpenCV gives them: gray, BGR or BGRA.
    """

    def __init__(
        self,
        model: str | os.PathLike | None = None,
        detector: str | FaceDetector | None = None,
        tta: bool = False,
        threads: int | None = None,
        landmarks: bool = False,
    ):
        self.classifier = EmotionClassifier(model, threads=threads)
        self.detector = create_detector(detector)
        self.tta = tta
        self.landmarks = landmarks
        self.threads = threads
        self._mesh: FaceMesh | None = None

    @property
    def mesh(self) -> FaceMesh:
        """The face-mesh model, loaded on first use by this recognizer."""
        if self._mesh is None:
            from facial_emotion.inference.landmarks import FaceMesh

            self._mesh = FaceMesh(threads=self.threads)
        return self._mesh

    @property
    def classes(self) -> list[str]:
        return self.classifier.classes

    @property
    def model_info(self) -> dict[str, Any]:
        return self.classifier.metadata

    @property
    def model_record(self) -> dict[str, Any]:
        """The model's metadata with its file's name and path: what a saved correction records."""
        path = self.classifier.path
        return {**self.classifier.metadata, "name": path.name, "path": str(path)}

    def detect(self, bgr: np.ndarray) -> list[Detection]:
        """Faces in reading order (row by row from the top, left to right in a row), so output order is stable."""
        return find_faces(self.detector, bgr)

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
                    uncertain_below=self.classifier.uncertain_below,
                )
            )
        return faces

    def analyze_frame(
        self, bgr: np.ndarray, detections: list[Detection] | None = None, landmarks: bool | None = None
    ) -> list[Face]:
        """A decoded BGR frame -> its faces, all classified in one batched call."""
        return self.analyze_frames([bgr], None if detections is None else [detections], landmarks)[0]

    def analyze_frames(
        self,
        frames: list[np.ndarray],
        detections: list[list[Detection]] | None = None,
        landmarks: bool | None = None,
    ) -> list[list[Face]]:
        """Decoded BGR frames -> their faces; ``detections`` skips detection (video passes tracked boxes).
        ``landmarks``: add mesh and pose (default: as the recognizer was made)."""
        frames = [as_bgr(f) for f in frames]  # gray, BGRA, float: converted; not an array: ImageError
        if detections is None:
            dets = [self.detect(f) for f in frames]
        elif len(detections) != len(frames):
            raise ValueError(
                f"detections: one list per frame ({len(frames)} frames, {len(detections)} lists)"
            )
        else:  # the caller's own boxes (or the tracker's), held to the detector's rules
            dets = [usable_detections(ds, f.shape) for f, ds in zip(frames, detections, strict=True)]
        size = self.classifier.face_size
        crops = []
        for frame, frame_dets in zip(frames, dets, strict=True):
            if frame_dets:
                gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)  # once per frame, not per face
                crops += [crop_face(gray, d, size) for d in frame_dets]
        probs = self.classify(np.stack(crops)) if crops else np.zeros((0, len(self.classes)), np.float32)
        out, i = [], 0
        for frame, ds in zip(frames, dets, strict=True):
            faces = self._faces(ds, probs[i : i + len(ds)], frame.shape)
            if self.landmarks if landmarks is None else landmarks:
                for face, det in zip(faces, ds, strict=True):
                    found = self.mesh.run(frame, det)
                    if found is not None:
                        face.landmarks, face.pose = found
            out.append(faces)
            i += len(ds)
        return out

    def analyze(self, image: ImageInput) -> list[Face]:
        """A path, bytes, numpy array or PIL image -> its faces. Raises ImageError for bad input."""
        return self.analyze_frame(load_image(image))

    def analyze_each(
        self, sources: Iterable[ImageInput], timeout: float | None = None
    ) -> Iterator[PhotoResult]:
        """Photos one by one; a bad one gives a result with its ``error`` and the batch goes on.
        ``timeout``: seconds to read and decode one file (a hung network mount, a pathological image)
        before it is reported as an error and the batch moves on; None or 0: no limit (as the CLI's
        --file-timeout 0)."""
        if timeout is not None and timeout == 0:
            timeout = None
        elif timeout is not None:
            timeout = check_timeout(timeout)  # before the first file, not as every file's error
        for source in sources:
            name = str(source) if isinstance(source, (str, os.PathLike)) else type(source).__name__
            try:
                image = load_image(source) if timeout is None else load_image_within(source, timeout)
            except ImageError as e:
                yield PhotoResult(name, error=str(e))
                continue
            yield PhotoResult(name, self.analyze_frame(image), image=image)

    def analyze_batch(self, images: list[ImageInput]) -> list[list[Face]]:
        """Several images; their faces are classified together in one call. Raises on the first bad input."""
        return self.analyze_frames([load_image(im) for im in images])
