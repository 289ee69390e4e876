"""A batch job from top to bottom: inputs -> units of work -> skip those committed by an earlier run
-> analyse them on an engine, ``commit_every`` units at a time -> commit each group (results/tables.py)
-> report. Progress: units done, frames per second, ETA."""

from __future__ import annotations

import time
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from facial_emotion.batch.sources import expand_inputs, plan_units
from facial_emotion.batch.work import AnalyzerOptions
from facial_emotion.results.tables import have_pyarrow, open_store

ENGINES = ("local", "ray")


class BatchError(Exception):
    """A job that cannot start: no inputs, a bad option, Ray missing or unreachable."""


@dataclass
class JobReport:
    out: Path
    units: int  # units of work in the inputs
    skipped: int  # committed by an earlier run
    done: int = 0
    frames: int = 0
    faces: int = 0
    seconds: float = 0.0
    errors: list[dict[str, Any]] = field(default_factory=list)

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds else 0.0


def run_batch(
    inputs: list[str],
    out: Path,
    options: AnalyzerOptions | None = None,
    engine: str = "local",
    workers: int = 1,
    address: str | None = None,
    fmt: str | None = None,
    chunk_frames: int = 0,
    overlap: int = 30,
    max_frames: int | None = None,
    commit_every: int = 64,
    progress: bool = False,
) -> JobReport:
    options = options or AnalyzerOptions()
    if engine not in ENGINES:
        raise BatchError(f"--engine must be one of {', '.join(ENGINES)}")
    if workers < 1 or commit_every < 1 or chunk_frames < 0 or overlap < 0 or (max_frames or 0) < 0:
        raise BatchError("--workers and --commit-every must be positive; --chunk-frames, --overlap >= 0")
    fmt = fmt or ("parquet" if have_pyarrow() or engine == "ray" else "csv")
    if engine == "ray":
        from facial_emotion.batch.ray_engine import RayUnavailable, import_ray

        try:
            import_ray()  # before any work: the one message naming the extra
        except RayUnavailable as e:
            raise BatchError(str(e)) from None
    elif fmt == "parquet" and not have_pyarrow():
        raise BatchError(
            "--format parquet needs pyarrow: pip install 'facial-emotion[scale]', or --format csv"
        )
    sources = expand_inputs(inputs)
    if not sources:
        raise BatchError("no input found")
    units = plan_units(sources, chunk_frames, overlap, max_frames)
    store = open_store(out, fmt)
    pending = [u for u in units if (u.source, u.chunk) not in store.done]
    report = JobReport(out, len(units), len(units) - len(pending))
    if not pending:
        return report

    from tqdm import tqdm

    bar = tqdm(total=len(pending), unit="unit", desc="batch", disable=not progress)
    t0 = time.perf_counter()

    def advance(n: int, frames: int, faces: int) -> None:
        report.done += n
        report.frames += frames
        report.faces += faces
        report.seconds = time.perf_counter() - t0
        bar.update(n)
        bar.set_postfix(fps=f"{report.fps:.1f}", faces=report.faces, errors=len(report.errors))

    groups = [pending[i : i + commit_every] for i in range(0, len(pending), commit_every)]
    from facial_emotion.inference.classifier import EmotionClassifier
    from facial_emotion.results.schema import batch_columns

    classes = EmotionClassifier(options.model).classes  # a bad --model fails here, on either engine
    try:
        if engine == "local":
            from facial_emotion.batch.local import LocalEngine

            columns = batch_columns(classes)
            local = LocalEngine(options, workers)
            try:
                for group in groups:
                    rows, sources_rows, errors = [], [], []
                    for result in local.run(group):
                        rows += result.rows
                        sources_rows += [result.summary] if result.summary else []
                        errors += [result.error] if result.error else []
                        advance(1, result.frames, len(result.rows))
                    store.commit(store.new_commit(), sources_rows, errors, rows, columns)
                    report.errors += errors
            except BrokenProcessPool:
                raise BatchError(
                    "a worker process died (out of memory?); what was committed is kept: run again to go on"
                ) from None
            finally:
                local.close()
        else:
            from facial_emotion.batch.ray_engine import RayEngine, RayUnavailable

            try:
                ray = RayEngine(options, classes, workers, address)
            except RayUnavailable as e:
                raise BatchError(str(e)) from None
            try:
                for group in groups:
                    commit = store.new_commit()
                    sources_rows, errors = ray.run(group, str(store.faces_dir(commit)), fmt, progress)
                    store.commit(commit, sources_rows, errors)
                    report.errors += errors
                    advance(
                        len(group),
                        sum(s["frames_analyzed"] for s in sources_rows),
                        sum(s["faces"] for s in sources_rows),
                    )
            finally:
                ray.close()
    finally:
        bar.close()
    return report
