"""What each face detector finds on the real media, how long it takes, and what levelling the eyes
does to the labels.

    python benchmarks/detectors.py [--detector blazeface --detector haar ...]

Photos: faces found (the right count is known by looking) and ms per image. A made-up group photo:
24 faces of about 70 px pasted on a 1920x1080 background (justin.jpg's face), found / 24. Videos: share
of frames with at least one face, and for woman2.mp4 (one face throughout) the frames with exactly
one, with a full search on every frame (no tracking), and ms per frame. Levelling: for BlazeFace's
faces on the photos and every 5th frame of both videos, how many labels change when the face crop is
rotated to level the eyes (the default) against an upright crop, and how often the label changes
from one frame to the next on woman2.mp4 either way (no ground truth: steadiness is the measure). 1 thread. Writes
benchmarks/results/detectors.json and .md. YuNet is measured when its model file is given
(``--detector yunet:/path/model.onnx`` or $FACIAL_EMOTION_YUNET); it is not bundled.
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
from bench_machine import describe_machine, write_results

from facial_emotion import EmotionRecognizer, load_image
from facial_emotion.inference.detectors import create_detector

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("FACIAL_EMOTION_SHARED", REPO.parent / "shared"))
PHOTOS = {  # the right answers, by looking at the photos
    "two_people.jpg": 2,
    "justin.jpg": 1,
    "obama-720p.jpg": 1,
    "obama_partial_face.jpg": 1,
    "32bit.png": 1,
    "no-faces.jpg": 0,
}
VIDEOS = ("woman2.mp4", "short_hamilton_clip.mp4")
DEFAULT_SPECS = ["blazeface", "blazeface:short", "haar", "haar:320"]


def group_photo() -> tuple[np.ndarray, int]:
    face = load_image(SHARED / "media" / "justin.jpg")[60:320, 60:320]
    face = cv2.resize(face, (100, 100), interpolation=cv2.INTER_AREA)
    group = np.full((1080, 1920, 3), 110, np.uint8)
    for r in range(4):
        for c in range(6):
            group[120 + r * 260 : 220 + r * 260, 160 + c * 300 : 260 + c * 300] = face
    return group, 24


def timed(detector, image: np.ndarray, calls: int = 5) -> tuple[int, float]:
    """Faces found and the median of ``calls`` timed calls in ms (after one warm-up call): one
    timing alone moved with whatever else the machine did at that moment."""
    found = len(detector.detect(image))  # warm-up
    times = []
    for _ in range(calls):
        t0 = time.perf_counter()
        detector.detect(image)
        times.append(time.perf_counter() - t0)
    return found, round(float(np.median(times)) * 1000, 1)


def measure(spec: str, max_frames: int) -> dict:
    detector = create_detector(spec)
    photos = {}
    for name, expected in PHOTOS.items():
        found, ms = timed(detector, load_image(SHARED / "media" / name))
        photos[name] = {"found": found, "expected": expected, "ms": ms}
    group, expected = group_photo()
    found, ms = timed(detector, group)
    videos = {}
    for name in VIDEOS:
        cap = cv2.VideoCapture(str(SHARED / "media" / name))
        counts, seconds = [], 0.0
        while len(counts) < max_frames:
            ok, frame = cap.read()
            if not ok:
                break
            t0 = time.perf_counter()
            counts.append(len(detector.detect(frame)))
            seconds += time.perf_counter() - t0
        cap.release()
        n = max(1, len(counts))
        videos[name] = {
            "frames": len(counts),
            "with_face": round(sum(c > 0 for c in counts) / n, 3),
            "exactly_one": round(sum(c == 1 for c in counts) / n, 3),
            "mean_faces": round(sum(counts) / n, 2),
            "ms_per_frame": round(seconds * 1000 / n, 1),
        }
    correct = sum(p["found"] == p["expected"] for p in photos.values())
    return {
        "photos": photos,
        "photos_correct": f"{correct}/{len(photos)}",
        "group_photo": {"found": found, "expected": expected, "ms": ms},
        "videos": videos,
    }


def levelling() -> dict:
    """Labels with the eyes levelled (BlazeFace's keypoints) against the same faces cropped upright."""
    rec = EmotionRecognizer(detector="blazeface", threads=1)
    frames = [load_image(SHARED / "media" / name) for name in PHOTOS]
    for name in VIDEOS:
        cap = cv2.VideoCapture(str(SHARED / "media" / name))
        index = 0
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            if index % 5 == 0:
                frames.append(frame)
            index += 1
        cap.release()
    faces = changed = 0
    angles, confidence_shift = [], []
    for frame in frames:
        dets = rec.detect(frame)
        if not dets:
            continue
        levelled = rec.analyze_frame(frame, dets)
        upright = rec.analyze_frame(frame, [replace(d, landmarks=None) for d in dets])
        for d, a, b in zip(dets, levelled, upright, strict=True):
            (rx, ry), (lx, ly) = d.landmarks[:2]
            angles.append(abs(float(np.degrees(np.arctan2(ly - ry, lx - rx)))))
            faces += 1
            changed += a.emotion != b.emotion
            confidence_shift.append(abs(a.scores[a.emotion] - b.scores[a.emotion]))
    flips = {"levelled": 0, "upright": 0}  # unsmoothed label changes between consecutive frames
    cap = cv2.VideoCapture(str(SHARED / "media" / "woman2.mp4"))
    previous: dict[str, str] = {}
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        dets = rec.detect(frame)
        if len(dets) != 1:
            previous = {}
            continue
        labels = {
            "levelled": rec.analyze_frame(frame, dets)[0].emotion,
            "upright": rec.analyze_frame(frame, [replace(dets[0], landmarks=None)])[0].emotion,
        }
        for mode, label in labels.items():
            flips[mode] += mode in previous and previous[mode] != label
        previous = labels
    cap.release()
    return {
        "faces": faces,
        "labels_changed": changed,
        "woman2_label_flips": flips,
        "median_tilt_degrees": round(float(np.median(angles)), 1),
        "faces_tilted_over_10_degrees": int(sum(a > 10 for a in angles)),
        "mean_abs_change_of_top_probability": round(float(np.mean(confidence_shift)), 3),
    }


def markdown(results: dict) -> str:
    lines = [
        "| detector | photos right | "
        + " | ".join(PHOTOS)
        + " | group photo (24 faces) | "
        + " | ".join(f"{v}: frames with a face" for v in VIDEOS)
        + " | woman2.mp4: frames with exactly one |",
        "| --- | --- |" + " ---: |" * (len(PHOTOS) + len(VIDEOS) + 2),
    ]
    for spec, r in results["detectors"].items():
        cells = [f"{p['found']} ({p['ms']:.0f} ms)" for p in r["photos"].values()]
        g = r["group_photo"]
        cells.append(f"{g['found']} ({g['ms']:.0f} ms)")
        cells += [f"{v['with_face']:.0%} ({v['ms_per_frame']:.1f} ms)" for v in r["videos"].values()]
        cells.append(f"{r['videos']['woman2.mp4']['exactly_one']:.1%}")
        lines.append(f"| {spec} | {r['photos_correct']} | " + " | ".join(cells) + " |")
    lv = results["levelling"]
    lines += [
        "",
        f"Levelling the eyes (BlazeFace keypoints) on {lv['faces']} faces of the photos and of every 5th "
        f"video frame: {lv['labels_changed']} labels change against an upright crop; median tilt "
        f"{lv['median_tilt_degrees']}°, {lv['faces_tilted_over_10_degrees']} faces tilted over 10°; the top "
        f"probability moves by {lv['mean_abs_change_of_top_probability']:.3f} on average. Frame to frame on "
        f"woman2.mp4 (no smoothing), the levelled labels change {lv['woman2_label_flips']['levelled']} times, "
        f"the upright ones {lv['woman2_label_flips']['upright']}: levelling gives steadier labels.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--detector", action="append", help=f"detector spec (repeatable); default {DEFAULT_SPECS}"
    )
    ap.add_argument("--max-frames", type=int, default=500)
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "detectors.json"))
    args = ap.parse_args()
    cv2.setNumThreads(1)
    specs = args.detector or DEFAULT_SPECS + (["yunet"] if os.environ.get("FACIAL_EMOTION_YUNET") else [])
    results = {
        "machine": describe_machine(),
        "detectors": {spec: measure(spec, args.max_frames) for spec in specs},
        "levelling": levelling(),
    }
    md = markdown(results)
    print(md)
    write_results(Path(args.out), results, md)


if __name__ == "__main__":
    main()
