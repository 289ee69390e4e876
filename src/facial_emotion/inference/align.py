"""Crop each detected face the way FER-2013 faces are framed: square, centred on the face,
eyes level when landmarks are known, 48x48 gray."""

from __future__ import annotations

import cv2
import numpy as np

from facial_emotion.inference.detectors import Detection
from facial_emotion.model_file import FACE_SIZE

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
    # The region around the face (wide enough for any rotation), borders replicated.
    region_side = int(np.ceil(side * 1.5))
    region = cv2.getRectSubPix(gray, (region_side, region_side), (cx, cy))
    # warpAffine has no area averaging (INTER_AREA falls back to bilinear there), so a big face
    # shrunk to 48 px would alias; the training faces were shrunk with INTER_AREA. Shrink first
    # to twice the final resolution with area averaging, then let the warp do the rest.
    if size / side < 0.5:
        shrunk = max(2, round(region_side * 2 * size / side))
        region = cv2.resize(region, (shrunk, shrunk), interpolation=cv2.INTER_AREA)
        side *= shrunk / region_side
        region_side = shrunk
    c = region_side / 2
    # One affine warp does rotation, crop and scale together.
    m = cv2.getRotationMatrix2D((c, c), angle, size / side)
    m[0, 2] += size / 2 - c
    m[1, 2] += size / 2 - c
    return cv2.warpAffine(region, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
