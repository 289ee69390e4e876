"""Face detectors behind one small interface (``detect(bgr) -> list[Detection]``).

- ``blazeface`` (default): MediaPipe's BlazeFace DNN, bundled as ONNX (``inference/blazeface.py``):
  turned, small and dim faces, 6 keypoints to level the eyes, a few ms a frame. ``blazeface:short``
  uses the short-range model (faster, for faces that fill the frame); ``blazeface:tiles`` always
  searches large frames in tiles too, ``blazeface:whole`` never does.
- ``haar``: OpenCV's frontal-face Haar cascade, shipped inside the opencv-python(-headless)
  4.x wheels. Runs on a frame downscaled to at most ``max_side`` pixels for speed.
- ``yunet``: OpenCV's YuNet DNN (``cv2.FaceDetectorYN``), more accurate on turned, small and dim
  faces, with 5 landmarks used to level the eyes. Its ONNX file is not bundled: give its path as
  ``yunet:/path/face_detection_yunet_2023mar.onnx`` or in ``$FACIAL_EMOTION_YUNET``.
"""

from __future__ import annotations

import math
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np

from facial_emotion import settings
from facial_emotion.settings import DEFAULT_DETECTOR


class DetectorError(Exception):
    """The detector cannot be created (unknown name, missing model file)."""


@dataclass
class Detection:
    box: tuple[int, int, int, int]  # x, y, w, h in pixels of the full frame; may reach past its edges
    score: float
    # (K, 2) keypoints, the first two the eyes: the person's right eye (left in the picture), then the
    # left. YuNet: eyes, nose, mouth corners; BlazeFace: eyes, nose tip, mouth, ears.
    landmarks: np.ndarray | None = None


def usable_detections(dets: list[Detection], shape: tuple[int, ...]) -> list[Detection]:
    """``dets`` (``Detection``s, or plain ``(x, y, w, h)`` boxes, scored 1) as the pipeline needs them:
    whole-pixel int boxes, float scores, float32 keypoints. A
    box that is empty, not finite, or wholly outside the frame is dropped: a custom detector's (or a
    caller's) such boxes crashed the crop, or gave a zero-size face a confident label; numpy numbers
    in a box broke the JSON output."""
    h, w = shape[:2]
    out = []
    for det in dets:
        if not hasattr(det, "box"):  # a box of the caller's own, (x, y, w, h): as certain as a face gets
            det = Detection(det, 1.0)  # type: ignore[arg-type]
        try:
            x, y, bw, bh = (float(v) for v in det.box)
            score = float(det.score)
        except (TypeError, ValueError, AttributeError):
            raise ValueError(f"a detection needs box=(x, y, w, h) numbers and a score, not {det!r}") from None
        if not all(math.isfinite(v) for v in (x, y, bw, bh)):
            continue
        box = (round(x), round(y), round(bw), round(bh))
        if (
            box[2] < 1
            or box[3] < 1
            or box[0] >= w
            or box[1] >= h
            or box[0] + box[2] <= 0
            or box[1] + box[3] <= 0
        ):
            continue
        keypoints = None if det.landmarks is None else np.asarray(det.landmarks, np.float32)
        out.append(Detection(box, score, keypoints))
    return out


def reading_order(dets: list[Detection]) -> list[Detection]:
    """``dets`` row by row from the top, left to right in each row, so face numbers follow the
    picture as it is read. A face starts a new row when its centre lies below the bottom of the
    row's first (topmost) face: faces of one row at slightly different heights stay in it, and a
    few pixels of jitter never swap two rows (sorting on x first put a face of the bottom row
    before the one above it)."""
    rows: list[list[Detection]] = []
    for det in sorted(dets, key=lambda d: (d.box[1] + d.box[3] / 2, d.box[0])):
        if rows and det.box[1] + det.box[3] / 2 < rows[-1][0].box[1] + rows[-1][0].box[3]:
            rows[-1].append(det)
        else:
            rows.append([det])
    return [det for row in rows for det in sorted(row, key=lambda d: (d.box[0], d.box[1]))]


class FaceDetector(Protocol):
    name: str

    def detect(self, bgr: np.ndarray) -> list[Detection]: ...


def _downscale(img: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    h, w = img.shape[:2]
    scale = min(1.0, max_side / max(h, w))
    if scale < 1.0:
        img = cv2.resize(img, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
    return img, scale


class HaarDetector:
    name = "haar"
    DEFAULT_MAX_SIDE = 640

    def __init__(
        self,
        max_side: int = DEFAULT_MAX_SIDE,
        min_face: float = 0.05,
        min_neighbors: int = 5,
        pad: float = 0.15,
    ):
        cascades = cv2.data.haarcascades  # type: ignore[attr-defined]
        path = Path(cascades) / "haarcascade_frontalface_default.xml"
        self.cascade = cv2.CascadeClassifier(str(path))
        # One recognizer may be shared by threads; OpenCV's cascade keeps per-call state inside the
        # object (threads sharing it crashed with cv2.error or got another frame's faces).
        self.lock = threading.Lock()
        if self.cascade.empty():
            raise DetectorError(f"cannot load the Haar cascade {path} (needs opencv-python-headless 4.x)")
        self.max_side = max_side
        self.min_face = min_face  # smallest face, as a fraction of the shorter image side
        self.min_neighbors = min_neighbors
        # Haar needs the whole face in view; padding the frame with its own border lets it find
        # faces cut by the image edge (measured on obama_partial_face.jpg: found only with padding).
        self.pad = pad

    def _cascade(
        self, gray: np.ndarray, min_side: int, max_side: int = 0
    ) -> list[tuple[tuple[int, ...], float]]:
        equalized = cv2.equalizeHist(gray)
        with self.lock:
            boxes, _, weights = self.cascade.detectMultiScale3(
                equalized,
                scaleFactor=1.1,
                minNeighbors=self.min_neighbors,
                minSize=(min_side, min_side),
                maxSize=(max_side, max_side) if max_side else (0, 0),
                outputRejectLevels=True,
            )
        return [(tuple(int(v) for v in b), float(w)) for b, w in zip(boxes, np.ravel(weights), strict=False)]

    @staticmethod
    def _score(weight: float) -> float:
        # Haar's level weight is unbounded; squash it into 0..1 for a comparable score.
        return float(1 / (1 + np.exp(-(weight - 2.0))))

    def detect(self, bgr: np.ndarray) -> list[Detection]:
        small, scale = _downscale(bgr, self.max_side)
        gray = cv2.cvtColor(small, cv2.COLOR_BGR2GRAY)
        # The smallest face searched sets the cost: 36 px at 640 (faces below that are too small
        # to read an expression from) is 1.5x faster than Haar's 24 px floor, and finds the same faces
        # on ../shared/media.
        side = max(24, round(36 * self.max_side / 640), int(min(gray.shape) * self.min_face))
        pad = int(max(gray.shape) * self.pad)
        if pad:
            gray = cv2.copyMakeBorder(gray, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
        return [
            Detection(
                box=(round((x - pad) / scale), round((y - pad) / scale), round(w / scale), round(h / scale)),
                score=self._score(weight),
            )
            for (x, y, w, h), weight in self._cascade(gray, side)
        ]


class YuNetDetector:
    name = "yunet"

    def __init__(self, model_path: str | os.PathLike, max_side: int = 640, score_threshold: float = 0.7):
        path = Path(model_path)
        if not path.is_file():
            raise DetectorError(f"YuNet model file not found: {path}")
        try:  # a file that is not YuNet fails in OpenCV at create or at the first detect: try both now
            self.detector = cv2.FaceDetectorYN.create(str(path), "", (320, 320), score_threshold, 0.3, 5000)
            self.detector.setInputSize((64, 64))
            self.detector.detect(np.zeros((64, 64, 3), np.uint8))
        except cv2.error:
            raise DetectorError(f"{path}: not a YuNet face detection model (OpenCV cannot run it)") from None
        self.max_side = max_side
        self.lock = threading.Lock()  # setInputSize then detect: one call at a time (shared recognizers)

    def detect(self, bgr: np.ndarray) -> list[Detection]:
        small, scale = _downscale(bgr, self.max_side)
        h, w = small.shape[:2]
        with self.lock:
            self.detector.setInputSize((w, h))
            _, faces = self.detector.detect(small)
        out = []
        for f in faces if faces is not None else []:
            x, y, bw, bh = (f[:4] / scale).tolist()
            out.append(
                Detection(
                    box=(round(x), round(y), round(bw), round(bh)),
                    score=float(f[14]),
                    landmarks=(f[4:14].reshape(5, 2) / scale).astype(np.float32),
                )
            )
        return out


BLAZEFACE_OPTIONS: dict[str, dict[str, Any]] = {
    "": {},
    "full": {"kind": "full"},
    "short": {"kind": "short"},
    "tiles": {"tiles": True},
    "whole": {"tiles": False},
}


def canonical_spec(spec: str | None) -> str:
    """One spelling per detector setting, for comparing the settings of two runs: ``haar`` is
    ``haar:640``, ``blazeface:`` and ``blazeface:full`` are ``blazeface``, and ``yunet`` names the model file it takes from
    $FACIAL_EMOTION_YUNET (the same word with another file is another detector)."""
    spec = spec or settings.current().detector or DEFAULT_DETECTOR
    name, _, arg = spec.partition(":")
    if name == "haar":
        return f"haar:{arg or HaarDetector.DEFAULT_MAX_SIDE}"
    if name == "yunet":
        path = arg or settings.current().yunet_model
        return f"yunet:{Path(path).resolve()}" if path else "yunet"
    if name == "blazeface" and BLAZEFACE_OPTIONS.get(arg) == BLAZEFACE_OPTIONS["full"]:
        return "blazeface"  # the full-range model is the default
    return name if name == "blazeface" and not arg else spec


def create_detector(spec: str | FaceDetector | None = None) -> FaceDetector:
    """'blazeface[:short|full|tiles|whole]' (the default), 'haar' ('haar:320' searches a frame
    downscaled to 320 px), 'yunet' (model from $FACIAL_EMOTION_YUNET) or 'yunet:/path/model.onnx'.
    Without a spec: $FACIAL_EMOTION_DETECTOR, else DEFAULT_DETECTOR."""
    if spec is None:
        spec = settings.current().detector or DEFAULT_DETECTOR
    if not isinstance(spec, str):
        if not callable(getattr(spec, "detect", None)):
            raise TypeError(
                f"detector must be a name (blazeface, haar, yunet:FILE) or an object with detect(bgr), "
                f"not {type(spec).__name__}"
            )
        return spec
    name, _, arg = spec.partition(":")
    if name == "blazeface":
        if arg not in BLAZEFACE_OPTIONS:
            raise DetectorError(f"blazeface takes one of short, full, tiles, whole, not {arg!r}")
        from facial_emotion.inference.blazeface import BlazeFaceDetector  # it imports Detection from here

        return BlazeFaceDetector(**BLAZEFACE_OPTIONS[arg])
    if name == "haar":
        if arg and (
            not (arg.isascii() and arg.isdigit()) or not 64 <= int(arg) <= 16384
        ):  # OpenCV overflows past int32
            raise DetectorError(f"haar:N takes the frame size to search at, 64 to 16384 pixels, not {arg!r}")
        return HaarDetector(max_side=int(arg)) if arg else HaarDetector()
    if name == "yunet":
        path = arg or settings.current().yunet_model
        if not path:
            raise DetectorError(
                "the yunet detector needs its model file: --detector yunet:/path/to/model.onnx or $FACIAL_EMOTION_YUNET"
            )
        return YuNetDetector(path)
    raise DetectorError(f"unknown detector {spec!r} (choose blazeface, haar[:N] or yunet[:MODEL.onnx])")


def find_faces(detector: FaceDetector, bgr: np.ndarray) -> list[Detection]:
    """``detector``'s faces in ``bgr`` as the pipeline needs them (``usable_detections``), in
    ``reading_order``: every path that runs a detector, a custom one included, goes through here."""
    return reading_order(usable_detections(detector.detect(bgr), bgr.shape))
