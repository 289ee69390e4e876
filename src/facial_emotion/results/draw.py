"""Drawing results on a BGR image: a box per face, its label, and a probability bar per emotion; and
the face mesh with the head pose where the faces have them (landmarks on)."""

from __future__ import annotations

import cv2
import numpy as np

from facial_emotion.inference.decode import ImageInput, as_bgr, load_image
from facial_emotion.inference.landmarks import CONNECTIONS
from facial_emotion.inference.pipeline import Face
from facial_emotion.labels import DISPLAY_NAMES, color_bgr


def annotate(bgr: ImageInput, faces: list[Face], bars: bool = True, fps: float | None = None) -> np.ndarray:
    """A BGR uint8 copy of the image with the faces drawn. Takes what ``analyze`` takes: a gray, BGRA
    or float array is converted first (colours drawn in 0..255 on a 0..1 float image would be lost),
    a path, bytes or PIL image decoded."""
    out = as_bgr(bgr, "image").copy() if isinstance(bgr, np.ndarray) else load_image(bgr)
    h, w = out.shape[:2]
    thick = max(1, round(min(h, w) / 300))
    font = max(0.4, min(h, w) / 900)
    for face in faces:
        x, y, bw, bh = face.box
        color = color_bgr(face.emotion)
        if face.landmarks is not None:
            _draw_mesh(out, face, color, font, thick)
        cv2.rectangle(out, (x, y), (x + bw, y + bh), color, thick + 1)
        label = f"{DISPLAY_NAMES.get(face.emotion, face.emotion)} {face.confidence:.0%}"
        if face.uncertain:  # the calibrated top label is right less than half of the time here
            label = f"uncertain: {face.emotion} / {face.runner_up}"
        if face.track_id is not None:
            label = f"#{face.track_id} {label}"
        (tw, th), base = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, font, thick)
        ty = y - 4 if y - th - base - 4 > 0 else y + bh + th + 4
        cv2.rectangle(out, (x, ty - th - base), (x + tw + 4, ty + base), color, -1)
        cv2.putText(out, label, (x + 2, ty), cv2.FONT_HERSHEY_SIMPLEX, font, (0, 0, 0), thick, cv2.LINE_AA)
        if bars:
            _draw_bars(out, face, x + bw + 6 if x + bw + 110 < w else max(0, x - 110), y, font * 0.8, thick)
    if fps is not None:
        cv2.putText(
            out, f"{fps:.1f} fps", (8, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (0, 255, 0), 2, cv2.LINE_AA
        )
    return out


def _draw_bars(out: np.ndarray, face: Face, x: int, y: int, font: float, thick: int) -> None:
    row = max(12, int(22 * font))
    for i, (name, p) in enumerate(sorted(face.scores.items(), key=lambda kv: -kv[1])):
        yy = y + i * row
        cv2.rectangle(out, (x, yy), (x + 100, yy + row - 3), (40, 40, 40), -1)
        cv2.rectangle(out, (x, yy), (x + int(100 * p), yy + row - 3), color_bgr(name), -1)
        cv2.putText(
            out,
            name,
            (x + 2, yy + row - 6),
            cv2.FONT_HERSHEY_SIMPLEX,
            font * 0.8,
            (255, 255, 255),
            1,
            cv2.LINE_AA,
        )


def _draw_mesh(out: np.ndarray, face: Face, color: tuple[int, int, int], font: float, thick: int) -> None:
    """The mesh's 468 points, the contours of eyes, brows, lips and face, and yaw/pitch/roll below."""
    assert face.landmarks is not None
    pts = np.round(face.landmarks[:, :2] * 4).astype(np.int32)  # 2 bits of sub-pixel precision
    lines = [pts[[a, b]] for a, b in CONNECTIONS]
    cv2.polylines(out, lines, False, color, 1, cv2.LINE_AA, shift=2)
    radius = max(2, round(face.box[2] / 100))  # in quarter pixels: half a pixel for a 200 px face
    for p in pts:
        cv2.circle(out, (int(p[0]), int(p[1])), radius, (255, 255, 255), -1, cv2.LINE_AA, shift=2)
    if face.pose is not None:  # inside the box, along its bottom edge (the label may be below the box)
        x, y, bw, bh = face.box
        text = f"yaw {face.pose.yaw:+.0f} pitch {face.pose.pitch:+.0f} roll {face.pose.roll:+.0f}"
        yy = min(out.shape[0], y + bh) - 6
        cv2.putText(out, text, (x + 4, yy), cv2.FONT_HERSHEY_SIMPLEX, font * 0.7, color, thick, cv2.LINE_AA)
