"""Crop each detected face the way FER-2013 faces are framed: square, centred on the face,
eyes level when landmarks are known, 48x48 gray."""

from __future__ import annotations

import cv2
import numpy as np

from facial_emotion.inference.detectors import Detection

FACE_SIZE = 48
# FER-2013 crops show the whole face with a little forehead and chin; a Haar box is slightly
# tighter, so it is widened by this fraction on each side.
MARGIN = 0.08


def crop_face(gray: np.ndarray, det: Detection, size: int = FACE_SIZE, margin: float = MARGIN) -> np.ndarray:
    """gray frame + detection -> uint8 (size, size). Parts outside the frame repeat the border."""
    x, y, w, h = det.box
    cx, cy = x + w / 2, y + h / 2
    side = max(w, h) * (1 + 2 * margin)
    angle = 0.0
    if det.landmarks is not None:
        (rx, ry), (lx, ly) = det.landmarks[0], det.landmarks[1]
        angle = float(np.degrees(np.arctan2(ly - ry, lx - rx)))
    # One affine warp does rotation, crop, scale and border handling together.
    m = cv2.getRotationMatrix2D((cx, cy), angle, size / side)
    m[0, 2] += size / 2 - cx
    m[1, 2] += size / 2 - cy
    return cv2.warpAffine(gray, m, (size, size), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REPLICATE)
