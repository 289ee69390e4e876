"""Frames per second of ``facial-emotion batch``: the local process pool against Ray, at 1 and 2 workers,
on the same inputs (real photos and the first frames of the real videos in ../shared/media).

    python benchmarks/batch_scale.py [--max-frames 150] [--copies 4] [--workers 1,2]
        [--out benchmarks/results/batch_scale.json]

Each photo and video is listed ``--copies`` times (under different names, as links), so there are
more units of work than workers. Every run writes to a fresh folder; its time is the whole job's,
start-up included (process pool spawn, or Ray actors loading the model; Ray itself is started once,
before the Ray runs, and not timed). Needs the [scale] extra for Ray and Parquet.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from bench_machine import REPO, describe_machine, write_results

SHARED = Path(os.environ.get("FACIAL_EMOTION_SHARED", REPO.parent / "shared"))
MEDIA = ["justin.jpg", "two_people.jpg", "obama-720p.jpg", "woman2.mp4", "short_hamilton_clip.mp4"]


def inputs(folder: Path, copies: int) -> list[str]:
    out = []
    for i in range(copies):
        for name in MEDIA:
            link = folder / f"{i}-{name}"
            link.symlink_to(SHARED / "media" / name)
            out.append(str(link))
    return out


def run(engine: str, workers: int, sources: list[str], max_frames: int, tmp: Path) -> dict:
    from facial_emotion.batch.job import run_batch

    t0 = time.perf_counter()
    report = run_batch(
        sources, tmp / f"{engine}-{workers}", engine=engine, workers=workers, max_frames=max_frames
    )
    seconds = time.perf_counter() - t0
    assert not report.errors, report.errors
    return {
        "engine": engine,
        "workers": workers,
        "units": report.done,
        "frames": report.frames,
        "face_rows": report.faces,
        "seconds": round(seconds, 2),
        "frames_per_s": round(report.frames / seconds, 1),
    }


def markdown(results: dict) -> str:
    m = results["machine"]
    lines = [
        f"Measured {m.get('date', '')} on {m.get('cpu', '?')} ({m.get('cores', '?')} cores), load "
        f"{m.get('load_average_at_start', [0])[0]:.1f} (a shared machine: figures are noisy); {results['frames']} frames "
        f"({results['copies']} copies of 3 photos and the first {results['max_frames']} frames of 2 videos).",
        "",
        "| engine | workers | seconds | frames/s |",
        "| --- | ---: | ---: | ---: |",
    ]
    lines += [
        f"| {r['engine']} | {r['workers']} | {r['seconds']} | {r['frames_per_s']} |" for r in results["runs"]
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-frames", type=int, default=150)
    parser.add_argument("--copies", type=int, default=4)
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--engines", default="local,ray")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "batch_scale.json")
    args = parser.parse_args()
    counts = [int(w) for w in args.workers.split(",")]
    runs = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        (tmp / "in").mkdir()
        sources = inputs(tmp / "in", args.copies)
        for engine in args.engines.split(","):
            if engine == "ray":
                import ray

                ray.init(num_cpus=max(counts), include_dashboard=False, log_to_driver=False)
            try:
                for workers in counts:
                    runs.append(run(engine, workers, sources, args.max_frames, tmp))
                    print(runs[-1], file=sys.stderr)
            finally:
                if engine == "ray":
                    ray.shutdown()
    results = {
        "machine": describe_machine(),
        "command": " ".join(["python", "benchmarks/batch_scale.py", *sys.argv[1:]]),
        "max_frames": args.max_frames,
        "copies": args.copies,
        "frames": runs[0]["frames"] if runs else 0,
        "runs": runs,
    }
    md = markdown(results)
    print(md)
    write_results(args.out, results, md)


if __name__ == "__main__":
    main()
