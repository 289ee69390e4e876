"""Accuracy on faces labelled by hand in ordinary photos and videos: faces the model was never tuned
for, seen through the whole pipeline (detector, alignment, classifier) as a user's files are.

The labels are a CSV with one row per face: ``file,frame,x,y,emotion``, where (x, y) is a point
inside the face (its centre) in frame ``frame`` of the video (0 for a photo). The face the pipeline
finds around that point is the one scored; a labelled face it does not find counts as missed.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from facial_emotion.inference.decode import VIDEO_SUFFIXES
from facial_emotion.inference.pipeline import EmotionRecognizer, Face
from facial_emotion.inference.video import frames


@dataclass(frozen=True)
class LabelledFace:
    file: str
    frame: int
    x: int
    y: int
    emotion: str


@dataclass(frozen=True)
class Scored:
    label: LabelledFace
    face: Face | None  # None: the pipeline found no face at the labelled point

    @property
    def correct(self) -> bool:
        return self.face is not None and self.face.emotion == self.label.emotion


def read_labels(path: Path) -> list[LabelledFace]:
    with path.open(newline="") as f:
        return [
            LabelledFace(r["file"], int(r["frame"]), int(r["x"]), int(r["y"]), r["emotion"].strip())
            for r in csv.DictReader(f)
        ]


def _images(folder: Path, file: str, wanted: set[int]) -> dict[int, np.ndarray]:
    """The frames of ``file`` that are labelled (a photo is frame 0)."""
    path = folder / file
    if path.suffix.lower() not in VIDEO_SUFFIXES:
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise FileNotFoundError(f"cannot read {path}")
        return {0: image}
    cap = cv2.VideoCapture(str(path))
    try:
        found = {i: f for i, f in enumerate(frames(cap)) if i in wanted}
    finally:
        cap.release()
    return found


def _face_at(faces: list[Face], x: int, y: int) -> Face | None:
    inside = [f for f in faces if f.box[0] <= x < f.box[0] + f.box[2] and f.box[1] <= y < f.box[1] + f.box[3]]
    return min(inside, key=lambda f: f.box[2] * f.box[3], default=None)


def score_labelled_media(
    labels: list[LabelledFace], folder: Path, recognizer: EmotionRecognizer
) -> list[Scored]:
    """Each labelled face with the face the pipeline found there (each photo or frame analysed once)."""
    scored: list[Scored] = []
    for file in dict.fromkeys(lab.file for lab in labels):
        mine = [lab for lab in labels if lab.file == file]
        images = _images(folder, file, {lab.frame for lab in mine})
        faces = {i: recognizer.analyze(image) for i, image in images.items()}
        scored += [Scored(lab, _face_at(faces.get(lab.frame, []), lab.x, lab.y)) for lab in mine]
    return scored
