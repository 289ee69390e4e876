"""Inference speed of the installed pipeline (no torch): classifier faces/s at batch 1 and batched on
1 and 2 threads (the model in use, then the built-in fp32 model for comparison), end-to-end fps on
640x480 frames with one face (1 thread), and a 720p video, analysed alone and with an annotated copy.

    python benchmarks/speed.py [--seconds 3] [--out benchmarks/results/speed.json]

Prints a table and writes JSON. Run it on a quiet machine: figures are wall-clock.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort
from bench_machine import describe_machine, write_results
from timing import rate  # benchmarks/timing.py, the timing compare_fer.py uses for both systems

from facial_emotion import EmotionRecognizer, __version__, load_image
from facial_emotion.inference.classifier import EmotionClassifier
from facial_emotion.inference.tracking import VideoFaceFinder
from facial_emotion.settings import DEFAULT_DETECT_EVERY

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("FACIAL_EMOTION_SHARED", REPO.parent / "shared"))


def machine() -> dict:
    return {
        **describe_machine(),
        "onnxruntime": ort.__version__,
        "opencv": cv2.__version__,
        "facial_emotion": __version__,
    }


def frame_640x480_with_face() -> np.ndarray:
    """justin.jpg's face placed on a 640x480 frame."""
    img = load_image(SHARED / "media" / "justin.jpg")
    frame = np.full((480, 640, 3), 90, np.uint8)
    h, w = img.shape[:2]
    s = min(400 / h, 400 / w)
    small = cv2.resize(img, (int(w * s), int(h * s)))
    frame[40 : 40 + small.shape[0], 120 : 120 + small.shape[1]] = small
    return frame


def read_frames(path: Path, limit: int = 10_000) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    frames: list[np.ndarray] = []
    while len(frames) < limit:
        ok, f = cap.read()
        if not ok:
            break
        frames.append(f)
    cap.release()
    return frames


def video_720p_minute(path: Path, seconds: int = 60) -> Path:
    """A 1-minute 1280x720 30 fps video made by looping woman2.mp4, scaled to 720p."""
    frames = [cv2.resize(f, (1280, 720)) for f in read_frames(SHARED / "media" / "woman2.mp4")]
    out = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), 30, (1280, 720))
    for i in range(seconds * 30):
        out.write(frames[i % len(frames)])
    out.release()
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=3.0, help="time per measurement")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "speed.json"))
    ap.add_argument("--skip-video", action="store_true")
    args = ap.parse_args()
    if not (SHARED / "media").is_dir():
        sys.exit(f"{SHARED / 'media'} not found: set FACIAL_EMOTION_SHARED")

    results: dict = {"machine": machine(), "end_to_end": {}}
    faces = np.random.default_rng(0).integers(0, 256, (64, 48, 48), dtype=np.uint8)
    # The model in use (the built-in int8 one unless $FACIAL_EMOTION_MODEL says otherwise), then the
    # built-in fp32 model it was quantized from, then the built-in ensemble and the fast model.
    for section, model in (
        ("classifier", None),
        ("classifier_fp32", "fp32"),
        ("classifier_ensemble", "ensemble"),
        ("classifier_fast", "fast"),
    ):
        results[section] = {}
        for threads in (1, 2):
            clf = EmotionClassifier(model, threads=threads)
            results["machine"].setdefault(f"{section}_model", clf.path.name)
            for batch in (1, 64):
                for tta in (False, True):
                    key = f"threads={threads} batch={batch}{' tta' if tta else ''}"
                    results[section][key] = round(
                        rate(lambda b=batch, t=tta, c=clf: c.predict(faces[:b], tta=t), batch, args.seconds),
                        1,
                    )
                    print(f"{section} {key:<28} {results[section][key]:>9.1f} faces/s", flush=True)

    # "1 thread" end to end means the detector and OpenCV too, not only the classifier.
    cv2.setNumThreads(1)
    frame = frame_640x480_with_face()
    for spec in ("blazeface", "blazeface:short", "haar"):
        rec = EmotionRecognizer(threads=1, detector=spec)
        n_faces = len(rec.analyze_frame(frame))
        fps = rate(lambda r=rec: r.analyze_frame(frame), 1, args.seconds)
        key = f"single 640x480 photo, 1 face, 1 thread, {spec}"
        results["end_to_end"][key] = {"fps": round(fps, 1), "faces": n_faces}
        print(f"end-to-end {key:<62} {fps:>7.1f} fps ({n_faces} face)", flush=True)

    # A stream of 640x480 frames (woman2.mp4, decoded beforehand) as video/webcam process it: the
    # default searches every frame; following the face in between (--detect-every 15) is faster.
    clip = [cv2.resize(f, (640, 480)) for f in read_frames(SHARED / "media" / "woman2.mp4", 300)]
    for spec, detect_every in (("blazeface", DEFAULT_DETECT_EVERY), ("blazeface", 15), ("haar", 15)):
        rec = EmotionRecognizer(threads=1, detector=spec)
        finder = VideoFaceFinder(rec.detector, refresh=detect_every)
        found = 0
        t0 = time.perf_counter()
        for f in clip:
            found += len(rec.analyze_frame(f, finder.detect(f))) > 0
        fps = len(clip) / (time.perf_counter() - t0)
        key = f"640x480 video frames, 1 thread, {spec}, full search every {detect_every}"
        results["end_to_end"][key] = {"fps": round(fps, 1), "frames_with_face": f"{found}/{len(clip)}"}
        print(f"end-to-end {key:<62} {fps:>7.1f} fps (face in {found}/{len(clip)} frames)", flush=True)

    if not args.skip_video:
        import tempfile

        from facial_emotion.inference.video import analyze_video

        with tempfile.TemporaryDirectory() as d:
            path = video_720p_minute(Path(d) / "minute720p.mp4")
            rec = EmotionRecognizer(threads=1)  # as the `video` command: its defaults
            t0 = time.perf_counter()
            res = analyze_video(rec, str(path), every=1)
            wall = time.perf_counter() - t0
            results["video_720p_60s"] = {
                "frames": res.frames_read,
                "detect_every": DEFAULT_DETECT_EVERY,  # analyze_video's default, as the CLI's
                "seconds": round(wall, 1),
                "x_realtime": round(60 / wall, 2),
                "fps": round(res.frames_read / wall, 1),
                "faces_found_in_frames": len({r.frame for r in res.timeline}),
            }
            print(
                f"1-minute 720p video, every frame, 1 thread: {wall:.1f} s ({60 / wall:.1f}x real time)",
                flush=True,
            )
            # the same with an annotated copy, as `video --out copy.mp4` writes it (the encoder's own
            # threads beside the one the analysis uses)
            from facial_emotion.results.media import AnnotatedVideo, with_sound

            copy = Path(d) / "copy.mp4"
            t0 = time.perf_counter()
            with AnnotatedVideo(copy) as video:
                analyze_video(
                    rec,
                    str(path),
                    every=1,
                    on_open=video.set_fps,
                    on_timed_frame=lambda i, t, frame, faces, _fps: video.write(frame, faces, i, t),
                )
            wall = time.perf_counter() - t0
            codec = "H.264 (PyAV)" if with_sound() else "MPEG-4 Part 2 (OpenCV)"
            results["video_720p_60s_annotated_copy"] = {
                "codec": codec,
                "seconds": round(wall, 1),
                "x_realtime": round(60 / wall, 2),
                "copy_mb": round(copy.stat().st_size / 2**20, 1),
            }
            print(
                f"the same with an annotated copy ({codec}): {wall:.1f} s ({60 / wall:.1f}x real time), "
                f"{copy.stat().st_size / 2**20:.1f} MB",
                flush=True,
            )

    write_results(Path(args.out), results)


if __name__ == "__main__":
    main()
