"""What the face mesh (--landmarks) costs per face, against the emotion classifier it runs beside.

    python benchmarks/landmarks.py [--seconds 2]

For every face BlazeFace finds in the photos of ../shared/media and in every 10th frame of woman2.mp4:
ms per face of the classifier (one aligned 48x48 crop, batch of one, no TTA) and of the mesh (crop,
model, mapping back, pose), both on 1 onnxruntime thread, each the median over the faces of its mean
over ``--seconds``. Writes benchmarks/results/landmarks.json and .md.
"""

from __future__ import annotations

import argparse
import os
import statistics
from functools import partial
from pathlib import Path

import cv2
import numpy as np
from bench_machine import describe_machine, write_results
from timing import rate

from facial_emotion import EmotionRecognizer
from facial_emotion.inference.align import crop_face
from facial_emotion.inference.detectors import Detection

SHARED = Path(os.environ.get("FACIAL_EMOTION_SHARED", Path(__file__).resolve().parents[2] / "shared"))
OUT = Path(__file__).resolve().parent / "results" / "landmarks.json"


def frames() -> list[np.ndarray]:
    media = SHARED / "media"
    out = [cv2.imread(str(p)) for p in sorted(media.glob("*.jpg"))]
    cap = cv2.VideoCapture(str(media / "woman2.mp4"))
    i = 0
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        if i % 10 == 0:
            out.append(frame)
        i += 1
    return [f for f in out if f is not None]


def classify_one(rec: EmotionRecognizer, gray: np.ndarray, det: Detection) -> np.ndarray:
    """What the classifier does per face: the aligned crop, then the model on a batch of one."""
    return rec.classify(crop_face(gray, det, rec.classifier.face_size)[None])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=0.5, help="timing per face and model")
    args = ap.parse_args()
    rec = EmotionRecognizer(threads=1)
    classifier_ms, mesh_ms, found = [], [], 0
    for frame in frames():
        gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
        for det in rec.detect(frame):
            classify = partial(classify_one, rec, gray, det)
            classifier_ms.append(1000 / rate(classify, 1, args.seconds))
            mesh_ms.append(1000 / rate(partial(rec.mesh.run, frame, det), 1, args.seconds))
            found += rec.mesh.run(frame, det) is not None
    results = {
        "machine": describe_machine(),
        "faces": len(mesh_ms),
        "faces_with_mesh": found,
        "classifier_ms_per_face": round(statistics.median(classifier_ms), 2),
        "mesh_ms_per_face": round(statistics.median(mesh_ms), 2),
    }
    md = (
        f"| per face, 1 thread ({results['faces']} faces) | ms |\n| --- | ---: |\n"
        f"| emotion classifier (crop + model) | {results['classifier_ms_per_face']} |\n"
        f"| face mesh + head pose (--landmarks) | {results['mesh_ms_per_face']} |\n"
    )
    print(md)
    write_results(OUT, results, md)


if __name__ == "__main__":
    main()
