"""Drawing results on a BGR image: a box per face, its label, and a probability bar per emotion."""

from __future__ import annotations

import cv2
import numpy as np

from facial_emotion.inference.pipeline import Face
from facial_emotion.labels import DISPLAY_NAMES, color_bgr


def annotate(bgr: np.ndarray, faces: list[Face], bars: bool = True, fps: float | None = None) -> np.ndarray:
    out = bgr.copy()
    h, w = out.shape[:2]
    thick = max(1, round(min(h, w) / 300))
    font = max(0.4, min(h, w) / 900)
    for face in faces:
        x, y, bw, bh = face.box
        color = color_bgr(face.emotion)
        cv2.rectangle(out, (x, y), (x + bw, y + bh), color, thick + 1)
        label = f"{DISPLAY_NAMES.get(face.emotion, face.emotion)} {face.confidence:.0%}"
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
