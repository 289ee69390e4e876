"""The default engine: a local process pool, one ``Analyzer`` (one recognizer) per worker process.
Nothing to install; ``workers=1`` runs in this process."""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed

from facial_emotion.batch.sources import Unit
from facial_emotion.batch.work import Analyzer, AnalyzerOptions, UnitResult

_worker: Analyzer | None = None  # the worker process's own analyzer


def _init_worker(options: AnalyzerOptions, job: int) -> None:
    global _worker
    _watch_parent(job)
    _worker = Analyzer(options)


def _watch_parent(parent: int) -> None:
    """Exit when the job's process ``parent`` is gone (this one handed to another parent; it may be
    so already, killed while this worker started): killed (a scheduler's SIGTERM, SIGKILL, docker
    stop), it left its workers waiting on their queue for ever, a recognizer's memory each."""

    def watch() -> None:
        while os.getppid() == parent:  # an orphan is handed to another parent
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _analyze(unit: Unit) -> UnitResult:
    assert _worker is not None
    return _worker.analyze(unit)


class LocalEngine:
    def __init__(self, options: AnalyzerOptions, workers: int = 1):
        self.workers = workers
        if workers == 1:
            self.analyzer: Analyzer | None = Analyzer(options)
            self.pool = None
        else:
            self.analyzer = None
            # spawn, not fork: a forked onnxruntime (or a parent's thread pool) can deadlock. An
            # executor, not multiprocessing.Pool: a worker that dies (out of memory) raises
            # BrokenProcessPool here instead of hanging the job.
            self.pool = ProcessPoolExecutor(
                workers,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_init_worker,
                initargs=(options, os.getpid()),
            )

    def run(self, units: list[Unit]) -> Iterator[UnitResult]:
        """The units' results as they finish (not in order)."""
        if self.analyzer is not None:
            yield from map(self.analyzer.analyze, units)
        else:
            assert self.pool is not None
            for future in as_completed([self.pool.submit(_analyze, u) for u in units]):
                yield future.result()

    def close(self, now: bool = False) -> None:
        """``now``: interrupted (Ctrl-C, SIGTERM): the units running would not be committed, so they
        are stopped, not waited for (a long video held a terminated job past `docker stop`'s grace)."""
        if self.pool is None:
            return
        if now:
            for child in multiprocessing.active_children():  # this job's workers
                child.terminate()
        self.pool.shutdown(wait=not now, cancel_futures=True)
