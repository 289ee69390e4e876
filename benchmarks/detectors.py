"""What each face detector finds on the real media, and how long it takes.

    python benchmarks/detectors.py [--detector haar --detector haar:320 --detector yunet:/path/model.onnx]

Photos: faces found and ms per image. Videos: share of frames with at least one face, mean faces per
frame, and ms per frame, with a full search on every frame (no tracking). Writes
benchmarks/results/detectors.json. YuNet is measured when its model file is given (flag or
$FACIAL_EMOTION_YUNET); it is not bundled.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import cv2
from bench_machine import write_results

from facial_emotion import load_image
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


def measure(spec: str, max_frames: int) -> dict:
    detector = create_detector(spec)
    photos = {}
    for name, expected in PHOTOS.items():
        image = load_image(SHARED / "media" / name)
        detector.detect(image)  # warm-up
        t0 = time.perf_counter()
        found = len(detector.detect(image))
        photos[name] = {
            "found": found,
            "expected": expected,
            "ms": round((time.perf_counter() - t0) * 1000, 1),
        }
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
        videos[name] = {
            "frames": len(counts),
            "with_face": round(sum(c > 0 for c in counts) / max(1, len(counts)), 3),
            "mean_faces": round(sum(counts) / max(1, len(counts)), 2),
            "ms_per_frame": round(seconds * 1000 / max(1, len(counts)), 1),
        }
    correct = sum(p["found"] == p["expected"] for p in photos.values())
    return {"photos": photos, "photos_correct": f"{correct}/{len(photos)}", "videos": videos}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--detector", action="append", help="detector spec (repeatable); default haar, haar:320")
    ap.add_argument("--max-frames", type=int, default=150)
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "detectors.json"))
    args = ap.parse_args()
    specs = args.detector or ["haar", "haar:320"] + (
        ["yunet"] if os.environ.get("FACIAL_EMOTION_YUNET") else []
    )
    results = {spec: measure(spec, args.max_frames) for spec in specs}
    print(
        "| detector | photos right | "
        + " | ".join(PHOTOS)
        + " | "
        + " | ".join(f"{v} frames with a face" for v in VIDEOS)
        + " |"
    )
    print("| --- | --- |" + " ---: |" * (len(PHOTOS) + len(VIDEOS)))
    for spec, r in results.items():
        cells = [f"{p['found']} ({p['ms']:.0f} ms)" for p in r["photos"].values()]
        cells += [f"{v['with_face']:.0%} ({v['ms_per_frame']:.0f} ms)" for v in r["videos"].values()]
        print(f"| {spec} | {r['photos_correct']} | " + " | ".join(cells) + " |")
    write_results(Path(args.out), results)


if __name__ == "__main__":
    main()
