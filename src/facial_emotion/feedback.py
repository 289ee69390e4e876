"""Corrections: a face the model got wrong, saved with the right emotion, to fine-tune on later.

Layout of a feedback folder (a ``ROOT/<emotion>/`` dataset that ``data/readers.py`` reads as is):

    DIR/<emotion>/<timestamp>-<hash>.png            the aligned 48x48 gray face (what training reads)
    DIR/<emotion>/<timestamp>-<hash>.json           sidecar: model, its scores, source, box, time
    DIR/<emotion>/originals/<timestamp>-<hash>.png  the full-resolution crop (for a person to look at)

The aligned face is made by ``inference.align.crop_face``, the same preprocessing as inference, so a
correction trains on exactly what the model saw. Every file is written through a temp file and a
rename, the aligned face last: a half-saved correction is never read, and two pages saving at the
same moment get different names (the hash covers the pixels, the box, the source and the time).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from facial_emotion.inference.align import crop_face
from facial_emotion.inference.detectors import Detection
from facial_emotion.labels import EMOTIONS, emotion_from_folder
from facial_emotion.results.files import atomic_write_bytes, atomic_write_text
from facial_emotion.results.schema import safe_name

ORIGINALS = "originals"  # not an image suffix, so the folder readers pass over it


class FeedbackError(Exception):
    """The feedback folder cannot be used, or a correction is invalid."""


@dataclass
class Correction:
    face: Path  # the aligned 48x48 face
    original: Path  # the full-resolution crop
    sidecar: Path
    emotion: str


def _png(image: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", image)
    if not ok:
        raise FeedbackError("could not encode the face as PNG")
    return buf.tobytes()


class FeedbackStore:
    """A writable feedback folder; checked when made, so a server or command fails at start."""

    def __init__(self, root: str | os.PathLike, classes: list[str]):
        self.root = Path(root).expanduser()
        self.classes = list(classes)
        if self.root.exists() and not self.root.is_dir():
            raise FeedbackError(f"feedback folder {self.root} is a file; name a folder")
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile(dir=self.root):
                pass
        except OSError as e:
            raise FeedbackError(f"feedback folder {self.root} is not writable: {e.strerror or e}") from None

    def check_emotion(self, emotion: str, classes: list[str] | None = None) -> str:
        """The model's name for ``emotion`` (in any case, or a folder alias such as "Happiness", as
        ``finetune`` reads folders), else ``FeedbackError`` (checked before any work)."""
        allowed = classes or self.classes
        if emotion in allowed:
            return emotion
        folded = {c.lower(): c for c in allowed}
        for name in (emotion.strip().lower(), emotion_from_folder(emotion)):
            if name and name in folded:
                return folded[name]
        raise FeedbackError(f"unknown emotion {emotion!r}: the model's classes are {', '.join(allowed)}")

    def save(
        self,
        bgr: np.ndarray,
        det: Detection,
        emotion: str,
        model: dict[str, Any],
        scores: dict[str, float],
        source: str,
        classes: list[str] | None = None,
    ) -> Correction:
        """Save the face ``det`` of the BGR frame ``bgr`` as an example of ``emotion``; ``classes``:
        the model's (default: those the store was made with; a server may have swapped models)."""
        emotion = self.check_emotion(emotion, classes)
        source = safe_name(source)  # a file name that is not UTF-8 crashed the hash and the sidecar
        gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY) if bgr.ndim == 3 else bgr
        face = _png(crop_face(gray, det))
        h, w = bgr.shape[:2]
        x, y, bw, bh = (int(v) for v in det.box)
        x0, y0, x1, y1 = max(0, x), max(0, y), min(w, x + bw), min(h, y + bh)
        if x1 <= x0 or y1 <= y0:
            raise FeedbackError(f"face box {det.box} lies outside the {w}x{h} image")
        original = _png(bgr[y0:y1, x0:x1])
        now = time.time()
        digest = hashlib.sha256(face + f"{det.box}{source}{now}{os.getpid()}".encode()).hexdigest()[:12]
        stem = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now)) + f"{now % 1:.6f}"[1:].replace(".", "_")
        stem += f"-{digest}"
        folder = self.root / emotion
        out = Correction(
            folder / f"{stem}.png", folder / ORIGINALS / f"{stem}.png", folder / f"{stem}.json", emotion
        )
        sidecar = {
            "emotion": emotion,
            "predicted": max(scores, key=lambda k: scores[k]) if scores else None,
            "scores": scores,
            "model": {k: model.get(k) for k in ("name", "version", "arch", "source", "path") if k in model},
            "source": source,
            "box": [x, y, bw, bh],
            "saved_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)),
        }
        atomic_write_bytes(out.original, original)
        atomic_write_text(out.sidecar, json.dumps(sidecar, indent=2, sort_keys=True) + "\n")
        atomic_write_bytes(out.face, face)  # last: once it exists the correction is complete
        return out


# A correction's box (from a live reply, or `correct --box`) must overlap the face found this much
# (the tracker's own bar): a live frame's faces come from the tracker, whose boxes can sit a little
# off a fresh detection's.
BOX_MIN_IOU = 0.3


def face_at_box(boxes: list[tuple[int, int, int, int]], box: tuple[int, int, int, int]) -> int:
    """The number (from 1) of the face whose box overlaps ``box`` most; ``FeedbackError`` if none does
    by ``BOX_MIN_IOU``."""
    from facial_emotion.inference.tracking import iou

    overlaps = [iou(b, box) for b in boxes]
    if not overlaps or max(overlaps) < BOX_MIN_IOU:
        raise FeedbackError(f"no face at box {list(box)} in this image ({len(boxes)} found)")
    return overlaps.index(max(overlaps)) + 1


def count_corrections(root: str | os.PathLike) -> dict[str, int]:
    """Aligned faces per emotion folder (without reading them)."""
    root = Path(root)
    return {
        d.name: sum(1 for f in d.iterdir() if f.suffix.lower() == ".png" and not f.name.startswith("."))
        for d in sorted(root.iterdir())
        if d.is_dir()
    }


def load_feedback(root: str | os.PathLike, classes: tuple[str, ...] = EMOTIONS):  # -> FaceDataset
    """The corrections as a FaceDataset (split 'all'), labelled by ``classes`` (the model's: an 8-class
    model's contempt/ folder is read); unreadable files are skipped and counted in ``skipped``. Not
    cached: the folder changes with every correction."""
    from facial_emotion.data.readers import read_folders

    root = Path(root).expanduser()
    if not root.is_dir():
        raise FeedbackError(f"feedback folder {root} " + ("is a file" if root.exists() else "does not exist"))
    return read_folders(root, "folders", classes)
