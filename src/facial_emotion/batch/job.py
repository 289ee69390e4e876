"""A batch job from top to bottom: inputs -> units of work -> skip those committed by an earlier run
-> analyse them on an engine, ``commit_every`` units at a time -> commit each group (results/tables.py)
-> report. Progress: units done, frames per second, ETA.

A job folder is one set of rows made one way: it records the options that decide its rows and files
(``OUT/job.json``) and a re-run with any of them changed is refused, since its rows would sit beside
rows of another model or detector, or other frame ranges would repeat frames already committed.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import time
from collections.abc import Iterator
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from facial_emotion.batch.sources import Unit, expand_inputs, plan_units, source_name
from facial_emotion.batch.work import AnalyzerOptions
from facial_emotion.extras import install_hint
from facial_emotion.results.files import atomic_write_text
from facial_emotion.results.schema import former_safe_name, safe_name
from facial_emotion.results.tables import COMMIT_NAME, TABLES, Store, committed, have_pyarrow, open_store

ENGINES = ("local", "ray")
OPTIONS_FILE = "job.json"
LOCK_FILE = ".lock"  # held by the running job (job_lock)


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
    empty: list[str] = field(default_factory=list)  # folders among the inputs with no photo or video
    unread: list[str] = field(default_factory=list)  # manifest rows that name nothing
    warnings: list[str] = field(default_factory=list)  # videos with fewer frames than announced

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds else 0.0


def row_options(
    model_path: Path,
    options: AnalyzerOptions,
    fmt: str,
    chunk_frames: int,
    overlap: int,
    max_frames: int | None,
) -> dict[str, Any]:
    """The options that decide a job's rows and files, by their flag; what only changes how the work
    runs (engine, workers, address, threads, commit-every) is left out and may change between runs."""
    from facial_emotion.inference.detectors import canonical_spec

    digest = hashlib.sha256(model_path.read_bytes()).hexdigest()
    return {
        # The file itself, not the name it was asked by: a retrained or recalibrated file differs
        # (16 hex digits of its SHA-256 tell files apart and keep the message readable).
        "model": f"{model_path.name} sha256:{digest[:16]}",
        # one spelling per setting: "haar" and "haar:640" are one detector, "yunet" with another
        # $FACIAL_EMOTION_YUNET file is another
        "detector": canonical_spec(options.detector),
        # plain ints and floats: numpy scalars given through the API are not JSON
        "every": int(options.every),
        "detect-every": int(options.detect_every),
        "smoothing": float(options.smoothing),
        "max-frames": None if max_frames is None else int(max_frames),
        "chunk-frames": int(chunk_frames),
        # Only frame ranges replay frames: without them --overlap changes nothing.
        **({"overlap": int(overlap)} if chunk_frames else {}),
        "format": fmt,
    }


def is_foreign_folder(out: Path) -> bool:
    """``out``'s table folders (faces/, sources/, errors/) hold something no job wrote: the user's own
    files, which ``open_store`` would take for an interrupted commit's and delete. Files beside those
    folders are never touched, and a job's own (commit-stamped) files are its to clear, the hidden
    temp files of a commit that was being written when the job was killed among them."""
    return any(
        not COMMIT_NAME.match(entry.name.removeprefix("."))
        for table in TABLES
        if (out / table).is_dir()
        for entry in (out / table).iterdir()
    )


@contextmanager
def job_lock(out: Path) -> Iterator[None]:
    """One job at a time per folder: two at once each took the other's units (rows twice) and each
    one's start cleared the other's commit in progress. The lock dies with its process: a killed
    job leaves none behind."""
    try:
        import fcntl
    except ImportError:  # not POSIX (Windows): one job at a time is the user's to keep
        yield
        return
    with (out / LOCK_FILE).open("a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise BatchError(
                f"--out {out}: another batch job is writing there; let it end (or stop it), or choose "
                "another --out"
            ) from None
        yield


def recorded_options(out: Path) -> dict[str, Any] | None:
    """The options ``out``'s committed rows were made with; None while nothing is committed (any
    options may still start the job) and for folders written before options were recorded."""
    path = out / OPTIONS_FILE
    if not committed(out) or not path.is_file():
        return None
    try:
        return dict(json.loads(path.read_text(encoding="utf-8")))
    except (ValueError, TypeError):
        raise BatchError(f"{path} is damaged: restore it or choose a new --out") from None


def record_options(out: Path, recorded: dict[str, Any] | None, asked: dict[str, Any]) -> None:
    """A new job, or one from before options were recorded: this run's options become the job's (its
    old rows' own cannot be known), so that later re-runs are checked against them."""
    if recorded is None:
        atomic_write_text(out / OPTIONS_FILE, json.dumps(asked, indent=1) + "\n")


def check_options(out: Path, recorded: dict[str, Any] | None, asked: dict[str, Any]) -> None:
    """Refuse a re-run whose options differ from the job's, naming each. An option one side does not
    have is not compared (--overlap without ranges, one a later version adds)."""
    if recorded is None:
        return
    from facial_emotion.inference.detectors import canonical_spec

    show = lambda v: "none" if v is None else v  # noqa: E731
    if isinstance(recorded.get("detector"), str):  # jobs recorded before the spellings were one
        recorded = {**recorded, "detector": canonical_spec(recorded["detector"])}
    clashes = [
        f"--{name} {show(value)} (the job has {show(recorded[name])})"
        for name, value in asked.items()
        if name in recorded and recorded[name] != value
    ]
    if clashes:
        raise BatchError(
            f"{out} holds rows made with other options than this run's: "
            + ", ".join(clashes)
            + ". A re-run must use the job's own options (those in brackets), or choose a new --out"
        )


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
    if out.exists() and not out.is_dir():
        raise BatchError(f"--out {out} is a file: name a folder (new, empty, or an earlier batch job's)")
    if is_foreign_folder(out):
        raise BatchError(
            f"--out {out} holds files of its own in {', '.join(TABLES)}/, where a batch job writes its "
            "tables (and clears what it did not commit): name another folder"
        )
    recorded = recorded_options(out)
    # No --format: the job's own (a re-run of a CSV job need not repeat --format csv), else the default.
    fmt = fmt or (recorded or {}).get("format") or ("parquet" if have_pyarrow() or engine == "ray" else "csv")
    if engine == "ray":
        from facial_emotion.batch.ray_engine import RayUnavailable, import_ray

        try:
            import_ray()  # before any work: the one message naming the extra
        except RayUnavailable as e:
            raise BatchError(str(e)) from None
    elif fmt == "parquet" and not have_pyarrow():
        raise BatchError(f"--format parquet needs pyarrow: {install_hint('scale')}, or --format csv")
    from facial_emotion.inference.classifier import EmotionClassifier

    classifier = EmotionClassifier(options.model)  # a bad --model fails here, on either engine
    asked = row_options(classifier.path, options, fmt, chunk_frames, overlap, max_frames)
    check_options(out, recorded, asked)  # before the inputs are listed or a video opened
    found = expand_inputs(inputs)
    if not found.sources:
        said = [f"{', '.join(found.empty)}: no photos or videos"] if found.empty else []
        said += found.unread
        raise BatchError("no input found" + (f" ({'; '.join(said)})" if said else ""))
    units = plan_units(found.sources, chunk_frames, overlap, max_frames)
    out.mkdir(parents=True, exist_ok=True)
    with job_lock(out):
        # Again under the lock: a job that ended meanwhile may have recorded the folder's options.
        recorded = recorded_options(out)
        check_options(out, recorded, asked)
        record_options(out, recorded, asked)
        try:
            store = open_store(out, fmt)
        except (ValueError, KeyError, csv.Error) as e:  # pyarrow's ArrowInvalid is a ValueError
            why = (str(e) or type(e).__name__).splitlines()[0]
            raise BatchError(
                f"{out}: a committed table cannot be read ({why}): restore it, or choose a new --out"
            ) from None
        store.prune_errors(canonical_name)
        done = {(canonical_name(name), chunk) for name, chunk in store.done}
        legacy = any("\ufffd" in name for name, _ in store.done)
        pending = [u for u in units if not is_done(u, done, legacy)]
        report = JobReport(out, len(units), len(units) - len(pending), empty=found.empty, unread=found.unread)
        if pending:
            _run(
                pending,
                store,
                report,
                classifier.classes,
                options,
                engine,
                workers,
                address,
                fmt,
                commit_every,
                progress,
            )
            store.prune_errors(canonical_name)  # a source that failed before and is done now: no error
        return report


def canonical_name(name: str) -> str:
    """A committed source name as this version names sources: a folder from before names were
    absolute holds them as typed (``./a.jpg``, ``lists/../a.jpg``), relative to the folder the job
    ran in, which a re-run from there is taken to be."""
    return name if "://" in name or os.path.isabs(name) else source_name(name)


def is_done(unit: Unit, done: set[tuple[str, int]], legacy: bool) -> bool:
    """Whether ``unit`` is among the committed ``done`` (canonical source, chunk) pairs, under its
    name or, where ``legacy`` (a folder from before names kept their bytes, which named some sources
    with U+FFFD: there, and only there, since that spelling merges names), its former name."""
    if (safe_name(unit.source), unit.chunk) in done:
        return True
    return legacy and (former_safe_name(unit.source), unit.chunk) in done


def _run(
    pending: list[Unit],
    store: Store,
    report: JobReport,
    classes: list[str],
    options: AnalyzerOptions,
    engine: str,
    workers: int,
    address: str | None,
    fmt: str,
    commit_every: int,
    progress: bool,
) -> None:
    """Analyse ``pending`` on ``engine``, committing ``commit_every`` units at a time into ``store``;
    counts and errors go into ``report``."""
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
    from facial_emotion.results.schema import batch_columns

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
                    report.warnings += [s["warning"] for s in sources_rows if s["warning"]]
            except BaseException as e:  # Ctrl-C, SIGTERM, a dead worker: nothing running would be committed
                local.close(now=True)
                if isinstance(e, BrokenProcessPool):
                    raise BatchError(
                        "a worker process died (out of memory?); what was committed is kept: run again to go on"
                    ) from None
                raise
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
                    report.warnings += [s["warning"] for s in sources_rows if s["warning"]]
                    advance(
                        len(group),
                        sum(s["frames_analyzed"] for s in sources_rows),
                        sum(s["faces"] for s in sources_rows),
                    )
            finally:
                ray.close()
    finally:
        bar.close()
