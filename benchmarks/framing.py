"""Do the pipeline's face crops look like the FER-2013 faces the model learnt from? (#19's lever "make
the training crops match what the detector's crops look like", measured from the inference side.)

1. The detector on FER-2013 faces: each 48x48 face upscaled 4x and padded with its own border (so the
   detector has some context), detected; the box's side and centre against the FER crop's.
2. The same faces through ``align.crop_face`` at several framings (the box moved down by SHIFT x its
   side, widened by MARGIN on each side): accuracy of the default model against the 48x48 faces as
   they are.
3. The hand-labelled faces of ../shared/media (tests/media_labels.csv) through the whole pipeline at
   the same framings: does what helps on FER-2013's faces help on real photos?

    python benchmarks/framing.py [--split PublicTest] [--margins 0,0.04,0.08,0.12] [--shifts 0,0.086]

The package's framing is shift 0, margin ``align.MARGIN``; the other framings are tried by handing
``crop_face`` other arguments (part 2) and by swapping the pipeline's ``crop_face`` for the run (part 3).
"""

from __future__ import annotations

import argparse
import os
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
from bench_machine import describe_machine, write_results

import facial_emotion.inference.pipeline as pipeline
from facial_emotion.data import load_dataset
from facial_emotion.evaluation.labelled_media import read_labels, score_labelled_media
from facial_emotion.inference.align import MARGIN, crop_face
from facial_emotion.inference.classifier import EmotionClassifier
from facial_emotion.inference.detectors import Detection, create_detector

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("FACIAL_EMOTION_SHARED", REPO.parent / "shared"))
UPSCALE, PAD = 4, 96


def framed(det: Detection, shift: float) -> Detection:
    x, y, w, h = det.box
    return replace(det, box=(x, y + shift * max(w, h), w, h))


def detect_fer_faces(
    images: np.ndarray, detector: str
) -> tuple[list[np.ndarray], list[Detection], np.ndarray]:
    """Each face upscaled and padded; the frames, the best detection in each, and which faces had one."""
    det = create_detector(detector)
    frames, dets, found = [], [], []
    for i, face in enumerate(images):
        big = cv2.resize(face, (48 * UPSCALE,) * 2, interpolation=cv2.INTER_CUBIC)
        frame = cv2.copyMakeBorder(big, PAD, PAD, PAD, PAD, cv2.BORDER_REPLICATE)
        hits = det.detect(cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR))
        if hits:
            frames.append(frame)
            dets.append(max(hits, key=lambda d: d.score))
            found.append(i)
    return frames, dets, np.array(found, dtype=int)


def box_geometry(dets: list[Detection]) -> dict[str, float]:
    side = 48 * UPSCALE
    rel = np.array([max(d.box[2], d.box[3]) / side for d in dets])
    dy = np.array([(d.box[1] + d.box[3] / 2 - PAD - side / 2) / side for d in dets])
    dx = np.array([(d.box[0] + d.box[2] / 2 - PAD - side / 2) / side for d in dets])
    median = float(np.median(rel))
    return {
        "box_side_over_fer_side_median": round(median, 3),
        "box_side_over_fer_side_iqr": [round(float(v), 3) for v in np.percentile(rel, [25, 75])],
        "margin_that_gives_fer_framing": round((1 / median - 1) / 2, 3),
        "box_centre_below_fer_centre_median": round(float(np.median(dy)), 3),
        "box_centre_right_of_fer_centre_median": round(float(np.median(dx)), 3),
    }


def media_correct(shift: float, margin: float) -> tuple[int, int]:
    def crop(gray: np.ndarray, det: Detection, size: int = 48) -> np.ndarray:
        return crop_face(gray, framed(det, shift), size, margin)

    original = pipeline.crop_face
    pipeline.crop_face = crop  # the pipeline crops with this framing for the run
    try:
        scored = score_labelled_media(
            read_labels(REPO / "tests" / "media_labels.csv"), SHARED / "media", pipeline.EmotionRecognizer()
        )
    finally:
        pipeline.crop_face = original
    return sum(s.correct for s in scored), len(scored)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--split", default="PublicTest")
    ap.add_argument("--detector", default="blazeface")
    ap.add_argument("--margins", default=f"0,0.04,{MARGIN},0.12")
    ap.add_argument("--shifts", default="0,0.086")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "framing.json"))
    args = ap.parse_args()
    margins = [float(m) for m in args.margins.split(",")]
    shifts = [float(s) for s in args.shifts.split(",")]

    part = load_dataset(SHARED / "datasets" / "fer2013" / "fer2013.csv.gz").select_split(args.split)
    frames, dets, found = detect_fer_faces(part.images, args.detector)
    labels, classifier = part.labels[found], EmotionClassifier("default")
    direct = float((classifier.predict(part.images[found]).argmax(1) == labels).mean())
    results: dict = {
        "machine": describe_machine(),
        "split": args.split,
        "detector": args.detector,
        "faces": len(part.labels),
        "detected": len(found),
        "geometry": box_geometry(dets),
        "direct_accuracy": round(direct, 4),
        "framings": [],
    }
    print(
        f"{len(found)} of {len(part.labels)} {args.split} faces detected; {results['geometry']}", flush=True
    )
    for shift in shifts:
        for margin in margins:
            crops = np.stack(
                [crop_face(f, framed(d, shift), 48, margin) for f, d in zip(frames, dets, strict=True)]
            )
            acc = float((classifier.predict(crops).argmax(1) == labels).mean())
            right, total = media_correct(shift, margin)
            row = {"shift": shift, "margin": margin, "fer_accuracy": round(acc, 4), "media": [right, total]}
            results["framings"].append(row)
            print(row, flush=True)
    lines = [
        f"{results['detected']} of {results['faces']} FER-2013 {args.split} faces found by {args.detector} "
        f"(upscaled {UPSCALE}x, padded); the default model on them as they are: {direct:.2%}.",
        "",
        "| shift (x box side, down) | margin (each side) | FER faces through crop_face | media faces by hand |",
        "| ---: | ---: | ---: | ---: |",
    ]
    for r in results["framings"]:
        current = " (the package's)" if r["shift"] == 0 and r["margin"] == MARGIN else ""
        lines.append(
            f"| {r['shift']} | {r['margin']}{current} | {r['fer_accuracy']:.2%} | {r['media'][0]}/{r['media'][1]} |"
        )
    results["markdown"] = "\n".join(lines) + "\n"
    print(results["markdown"])
    write_results(Path(args.out), results, results["markdown"])


if __name__ == "__main__":
    main()
