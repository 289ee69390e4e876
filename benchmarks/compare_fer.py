"""facial-emotion side by side with the PyPI `fer` package, in one run, on the same data.

    bash benchmarks/run_all.sh                      # sets up the peer venv, then runs this
    python benchmarks/compare_fer.py [--seconds 2] [--rounds 3] [--dataset PATH ...] [--quick]

- accuracy: facial-emotion's built-in model (with and without ten-crop TTA) and fer's bundled classifiers
  (the TFLite model ``FER()`` uses by default, and the Keras .hdf5 of ``FER(use_tflite=False)``) on the same
  faces: FER-2013's test split from ../shared/datasets, plus every ``--dataset`` given; accuracy, macro F1
  and per-class recall.
- classifier speed: faces/s at batch 1 and 64 on 1 and 2 threads, both systems.
- end-to-end: detection + classification per frame on ../shared/media/woman2.mp4 and the photos, both
  systems with their default detectors (ours BlazeFace, fer's Haar), fps and faces found.
- training throughput of facial-emotion's recipe (benchmarks/train_speed.py): img/s and s/epoch.

fer runs in its own virtual environment (benchmarks/.peer-venv, made by setup_peer.sh) as a long-lived
JSON-lines server (benchmarks/peer_fer.py), one process per thread count. Timings alternate between the
two systems measurement by measurement (ours, theirs, then theirs, ours in the next round), each is
repeated ``--rounds`` times and the median is reported, with the ratio ours / theirs beside the
absolute figures. Both systems are timed by the same code, benchmarks/timing.py. Writes
benchmarks/results/compare_fer.json (every figure) and compare_fer.md, the summary and tables that
benchmarks/compare_fer_report.py renders from that JSON (run it alone to re-render without measuring).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import onnxruntime as ort

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import train_speed  # noqa: E402  (benchmarks/train_speed.py)
from bench_machine import describe_machine, write_results  # noqa: E402
from compare_fer_report import FER, FER_KERAS, FER_TFLITE, OURS, OURS_TTA, TRACKED, markdown  # noqa: E402
from timing import rate, video_per_frame  # noqa: E402  the timing code both systems use

from facial_emotion import EmotionRecognizer, __version__, load_image  # noqa: E402
from facial_emotion.data import load_dataset  # noqa: E402
from facial_emotion.evaluation.evaluate import default_test_split  # noqa: E402
from facial_emotion.evaluation.metrics import summarize  # noqa: E402
from facial_emotion.inference.classifier import EmotionClassifier  # noqa: E402
from facial_emotion.inference.video import analyze_video  # noqa: E402
from facial_emotion.labels import EMOTIONS  # noqa: E402

REPO = HERE.parent
SHARED = Path(os.environ.get("FACIAL_EMOTION_SHARED", REPO.parent / "shared"))
PEER_PYTHON = Path(os.environ.get("PEER_VENV", HERE / ".peer-venv")) / "bin" / "python"
RESULTS = HERE / "results"
# Faces in each file, from ../shared/media/README.md.
PHOTOS = {
    "justin.jpg": 1,
    "two_people.jpg": 2,
    "obama-720p.jpg": 1,
    "obama_partial_face.jpg": 1,
    "32bit.png": 1,
    "no-faces.jpg": 0,
}
VIDEO = "woman2.mp4"  # one face throughout
FER_MODELS = {FER_TFLITE: "tflite", FER_KERAS: "keras"}


class PeerError(RuntimeError):
    pass


class Peer:
    """benchmarks/peer_fer.py in the peer venv, one request / reply per line."""

    def __init__(self, python: Path, threads: int, log_dir: Path):
        self.log = log_dir / f"peer-threads{threads}.log"
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1"}
        env.pop("PYTHONPATH", None)
        with open(self.log, "w") as log:
            self.proc = subprocess.Popen(
                [str(python), str(HERE / "peer_fer.py"), "--threads", str(threads)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
                bufsize=1,
                env=env,
                cwd=REPO,
            )
        self.info = self.call("info")

    def call(self, cmd: str, **kw: Any) -> dict:
        assert self.proc.stdin and self.proc.stdout
        try:
            self.proc.stdin.write(json.dumps({"cmd": cmd, **kw}) + "\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            pass  # reported below with the peer's log
        line = self.proc.stdout.readline()
        if not line:
            tail = "\n".join(self.log.read_text(errors="replace").splitlines()[-20:])
            raise PeerError(f"the fer peer exited (code {self.proc.wait()}); its log:\n{tail}")
        reply = json.loads(line)
        if not reply.pop("ok", False):
            raise PeerError(f"fer peer, {cmd}: {reply.get('error')} (log: {self.log})")
        return reply

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.call("quit")
                self.proc.wait(timeout=30)
            except (PeerError, OSError, subprocess.TimeoutExpired):
                self.proc.kill()  # our own child, by its handle
                self.proc.wait()


class Peers:
    """One peer process per thread count, started on first use."""

    def __init__(self, python: Path, log_dir: Path):
        self.python, self.log_dir = python, log_dir
        self.by_threads: dict[int, Peer] = {}

    def __call__(self, threads: int) -> Peer:
        if threads not in self.by_threads:
            self.by_threads[threads] = Peer(self.python, threads, self.log_dir)
        return self.by_threads[threads]

    def close(self) -> None:
        for peer in self.by_threads.values():
            peer.close()


# ---------------------------------------------------------------- machine and versions


def machine(peer_info: dict) -> dict:
    return {
        **describe_machine(),
        "ours": {
            "facial_emotion": __version__,
            "python": platform.python_version(),
            "onnxruntime": ort.__version__,
            "opencv": cv2.__version__,
            "numpy": np.__version__,
        },
        "peer": {k: peer_info[k] for k in ("fer", "tensorflow", "keras", "opencv", "numpy", "python")},
    }


# ---------------------------------------------------------------- accuracy


def eval_set(path: Path, split: str, limit: int) -> tuple[str, np.ndarray, np.ndarray]:
    """(name, uint8 faces, labels as indices into EMOTIONS) of one dataset's test split."""
    ds = load_dataset(path)
    split = default_test_split(ds) if split == "auto" else split
    part = ds.select_split(split) if split != "all" else ds
    names = list(part.class_names or EMOTIONS)
    keep = np.array([names[y] in EMOTIONS for y in part.labels], dtype=bool)
    images = part.images[keep]
    labels = np.array([EMOTIONS.index(names[y]) for y in part.labels[keep]], dtype=np.int64)
    if limit and limit < len(labels):  # evenly spaced, so every class of a sorted folder layout is in
        pick = np.linspace(0, len(labels) - 1, limit).round().astype(int)
        images, labels = images[pick], labels[pick]
    name = f"{path.name} {split}" if path.name != "fer2013.csv.gz" else f"FER-2013 {split}"
    return name, images, labels


def emotion_argmax(probs: np.ndarray, classes: list[str]) -> np.ndarray:
    """Predicted index into EMOTIONS, whatever order (or extra classes) a model has."""
    missing = [e for e in EMOTIONS if e not in classes]
    if missing:
        raise ValueError(f"model classes {classes} lack {missing}")
    return probs[:, [classes.index(e) for e in EMOTIONS]].argmax(axis=1)


def bench_accuracy(
    sets: list[tuple[str, np.ndarray, np.ndarray]], peer: Peer, clf: EmotionClassifier, work: Path
) -> dict:
    out = {}
    for name, images, labels in sets:
        faces_path = work / f"acc-{len(out)}.npy"
        np.save(faces_path, images)
        systems: dict[str, dict] = {}
        for label, tta in ((OURS, False), (OURS_TTA, True)):
            t0 = time.perf_counter()
            pred = emotion_argmax(clf.predict(images, tta=tta), clf.classes)
            systems[label] = {**summarize(labels, pred, list(EMOTIONS)), "seconds": time.perf_counter() - t0}
        for label, model in FER_MODELS.items():
            probs_path = work / f"probs-{model}.npy"
            reply = peer.call("predict", faces=str(faces_path), model=model, out=str(probs_path))
            pred = emotion_argmax(np.load(probs_path), peer.info["labels"])
            systems[label] = {**summarize(labels, pred, list(EMOTIONS)), "seconds": reply["seconds"]}
        out[name] = {"n": int(len(labels)), "systems": systems}
        print(
            f"accuracy on {name} ({len(labels)} faces): "
            + ", ".join(f"{k} {v['accuracy']:.3f}" for k, v in systems.items()),
            flush=True,
        )
    return out


# ---------------------------------------------------------------- timings


def interleaved(fns: dict[str, Callable[[], float]], rounds: int) -> dict[str, dict]:
    """Each round runs every measurement once, alternating the order (A B, then B A); median of rounds."""
    samples: dict[str, list[float]] = {k: [] for k in fns}
    for r in range(rounds):
        for key in list(fns) if r % 2 == 0 else list(fns)[::-1]:
            samples[key].append(fns[key]())
    return {
        k: {"median": round(statistics.median(v), 2), "samples": [round(x, 2) for x in v]}
        for k, v in samples.items()
    }


def bench_classifier(
    peers: Peers, faces_path: Path, threads_list: list[int], batches: list[int], seconds: float, rounds: int
) -> dict:
    faces = np.load(faces_path)
    out = {}
    for threads in threads_list:
        clf = EmotionClassifier(threads=threads)
        peer = peers(threads)
        for batch in batches:
            if len(faces) < batch:
                raise SystemExit(f"need {batch} faces for batch {batch}, have {len(faces)}")
            x = faces[:batch]

            def theirs(model: str, b: int = batch, p: Peer = peer) -> Callable[[], float]:
                return lambda: p.call(
                    "classify_speed", faces=str(faces_path), model=model, batch=b, seconds=seconds
                )["faces_per_s"]

            fns = {
                OURS: lambda c=clf, x=x: rate(lambda: c.predict(x), len(x), seconds),
                FER_TFLITE: theirs("tflite"),
                OURS_TTA: lambda c=clf, x=x: rate(lambda: c.predict(x, tta=True), len(x), seconds),
                FER_KERAS: theirs("keras"),
            }
            res = interleaved(fns, rounds)
            key = f"threads={threads} batch={batch}"
            out[key] = {"threads": threads, "batch": batch, "faces_per_s": res}
            print(
                f"classifier {key:<20} " + "  ".join(f"{k} {v['median']:.0f}" for k, v in res.items()),
                flush=True,
            )
    return out


def ours_video_tracked(rec: EmotionRecognizer, path: Path, max_frames: int) -> dict:
    """facial-emotion's own video path: tracking, with a full detection on every frame (the default)."""
    t0 = time.perf_counter()
    res = analyze_video(rec, str(path), every=1, max_frames=max_frames or None)
    wall = time.perf_counter() - t0
    return {
        "frames": res.frames_read,
        "seconds": wall,
        "fps": res.frames_read / wall,
        "frames_with_faces": len({r.frame for r in res.timeline}),
        "faces": len(res.timeline),
    }


def bench_end_to_end(peers: Peers, threads: int, seconds: float, rounds: int, video_frames: int) -> dict:
    cv2.setNumThreads(threads)  # both sides: the peer sets the same at its start
    rec = EmotionRecognizer(threads=threads)
    peer = peers(threads)
    out: dict[str, Any] = {"threads": threads, "photos": {}, "video": {}}
    for name, expected in PHOTOS.items():
        path = SHARED / "media" / name
        img = load_image(path)  # each side decodes with its own loader, outside the timing
        ours_faces = len(rec.analyze_frame(img))
        peer_meta: dict = {}

        def theirs(p: str = str(path), meta: dict = peer_meta) -> float:
            reply = peer.call("image", path=p, seconds=seconds)
            meta.update(reply)
            return reply["fps"]

        res = interleaved(
            {OURS: lambda i=img: rate(lambda: rec.analyze_frame(i), 1, seconds), FER: theirs}, rounds
        )
        out["photos"][name] = {
            "size": f"{img.shape[1]}x{img.shape[0]}",
            "expected_faces": expected,
            "fps": res,
            "faces": {OURS: ours_faces, FER: peer_meta["faces"]},
        }
        print(
            f"end-to-end {name:<24} ours {res[OURS]['median']:.1f} fps (faces: {ours_faces}), "
            f"fer {res[FER]['median']:.1f} fps (faces: {peer_meta['faces']})",
            flush=True,
        )

    path = SHARED / "media" / VIDEO
    runs: dict[str, list[dict]] = {OURS: [], FER: [], TRACKED: []}
    fns = {
        OURS: lambda: video_per_frame(str(path), rec.analyze_frame, video_frames),  # the peer's loop
        FER: lambda: peer.call("video", path=str(path), max_frames=video_frames),
        TRACKED: lambda: ours_video_tracked(rec, path, video_frames),
    }

    def recorder(key: str) -> Callable[[], float]:
        def run() -> float:
            r = fns[key]()
            runs[key].append(r)
            return r["fps"]

        return run

    res = interleaved({k: recorder(k) for k in fns}, rounds)
    cap = cv2.VideoCapture(str(path))
    size = f"{int(cap.get(cv2.CAP_PROP_FRAME_WIDTH))}x{int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))}"
    cap.release()
    out["video"] = {
        "file": VIDEO,
        "size": size,
        "frames": runs[OURS][0]["frames"],
        "fps": res,
        "frames_with_faces": {k: v[0]["frames_with_faces"] for k, v in runs.items()},
        "faces": {k: v[0]["faces"] for k, v in runs.items()},
    }
    print(
        f"end-to-end {VIDEO}: " + ", ".join(f"{k} {v['median']:.1f} fps" for k, v in res.items()), flush=True
    )
    return out


# ---------------------------------------------------------------- main


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=2.0, help="time per speed measurement")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved repetitions of every timing")
    ap.add_argument("--dataset", action="append", default=[], help="another dataset to score (repeatable)")
    ap.add_argument("--split", default="auto", help="split of --dataset ('auto': test split, 'all')")
    ap.add_argument("--limit", type=int, default=0, help="score N evenly spaced faces of each dataset")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 64])
    ap.add_argument("--e2e-threads", type=int, default=1, help="threads for the end-to-end timings")
    ap.add_argument("--video-frames", type=int, default=0, help="stop the video after N frames (0: all)")
    ap.add_argument("--train-steps", type=int, default=40)
    ap.add_argument("--train-warmup", type=int, default=5)
    ap.add_argument("--train-val-limit", type=int, default=0)
    ap.add_argument(
        "--skip", nargs="*", default=[], choices=["accuracy", "classifier", "end-to-end", "training"]
    )
    ap.add_argument(
        "--quick",
        action="store_true",
        help="a smoke run: 200 faces, 0.3 s timings, 1 round, 20 video frames, 2 training steps",
    )
    ap.add_argument("--peer-python", default=str(PEER_PYTHON))
    ap.add_argument("--out", default=None, help="JSON path (default benchmarks/results/compare_fer.json)")
    args = ap.parse_args()
    if args.quick:  # options given explicitly win
        quick = dict(limit=200, seconds=0.3, rounds=1, video_frames=20, train_steps=2, train_warmup=1)
        for key, value in {**quick, "train_val_limit": 128}.items():
            if getattr(args, key) == ap.get_default(key):
                setattr(args, key, value)
    stem = "compare_fer-quick" if args.quick else "compare_fer"
    out = Path(args.out) if args.out else RESULTS / f"{stem}.json"
    fer_csv = SHARED / "datasets" / "fer2013" / "fer2013.csv.gz"
    for need in (SHARED / "media", fer_csv):
        if not need.exists():
            sys.exit(f"{need} not found: set FACIAL_EMOTION_SHARED")
    if not Path(args.peer_python).exists():
        sys.exit(f"{args.peer_python} not found: run `bash benchmarks/setup_peer.sh` first")

    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="compare_fer-") as tmp:
        work = Path(tmp)
        peers = Peers(Path(args.peer_python), work)
        try:
            e2e = args.e2e_threads
            first = peers(args.threads[0] if "classifier" not in args.skip else e2e)
            res: dict[str, Any] = {
                "machine": machine(first.info),
                "settings": {k: v for k, v in vars(args).items() if k != "peer_python"},
            }
            sets = [eval_set(fer_csv, "PublicTest", args.limit)]
            sets += [eval_set(Path(p), args.split, args.limit) for p in args.dataset]
            if "accuracy" not in args.skip:
                clf = EmotionClassifier(threads=max(args.threads))
                res["accuracy"] = bench_accuracy(sets, peers(max(args.threads)), clf, work)
            if "classifier" not in args.skip:
                faces_path = work / "speed-faces.npy"
                np.save(faces_path, np.resize(sets[0][1], (max(args.batches), 48, 48)))  # repeats if few
                res["classifier"] = bench_classifier(
                    peers, faces_path, args.threads, args.batches, args.seconds, args.rounds
                )
            if "end-to-end" not in args.skip:
                res["end_to_end"] = bench_end_to_end(peers, e2e, args.seconds, args.rounds, args.video_frames)
        except PeerError as err:
            sys.exit(str(err))
        finally:
            peers.close()
    if "training" not in args.skip:
        print("training throughput ...", flush=True)
        res["training"] = train_speed.measure(
            fer_csv, args.train_steps, args.train_warmup, val_limit=args.train_val_limit
        )
    res["wall_seconds"] = round(time.perf_counter() - t_start, 1)
    res["machine"]["load_average_at_end"] = list(os.getloadavg())

    res["command"] = shlex.join(["python", *sys.argv])  # before the table, which quotes it
    table = markdown(res)
    print()
    print(table)
    write_results(out, res, markdown=table)
    print(f"compare_fer took {res['wall_seconds']:.0f} s")


if __name__ == "__main__":
    main()
