"""``--engine ray``: the same units of work on Ray Data. An actor pool holds one ``Analyzer`` (one
recognizer) per worker; each unit is one row of the input dataset; the face rows are written by Ray's
own Parquet (or CSV) writer, in parallel, straight from the workers. A worker that dies mid-unit is
restarted and its unit retried by Ray (actors with unlimited restarts and task retries).

Needs the [scale] extra (ray[data], pyarrow).
"""

from __future__ import annotations

import logging
import socket
from dataclasses import asdict
from typing import Any

from facial_emotion.batch.sources import Unit
from facial_emotion.batch.work import Analyzer, AnalyzerOptions
from facial_emotion.extras import install_hint
from facial_emotion.results.schema import BATCH_ERROR_COLUMNS, BATCH_SOURCE_COLUMNS

CONNECT_TIMEOUT_S = 10.0
KIND = "_table"  # which table a row of the actors' output belongs to: faces, sources or errors


class RayUnavailable(Exception):
    """Ray cannot be imported, or its cluster cannot be reached."""


def import_ray():
    try:
        import pyarrow  # noqa: F401
        import ray
        import ray.data  # noqa: F401
    except ImportError as e:
        raise RayUnavailable(
            f"--engine ray needs the [scale] extra ({e.name} is missing): {install_hint('scale')}"
        ) from None
    return ray


def _check_reachable(address: str) -> None:
    """Fail in seconds, not after Ray's minute of retries, where nothing listens at ``address``."""
    hostport = address.removeprefix("ray://")
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise RayUnavailable(f"--address {address}: expected auto, HOST:PORT or ray://HOST:PORT")
    try:
        socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as e:
        raise RayUnavailable(
            f"cannot reach the Ray cluster at {address} ({e.strerror or e}); is `ray start --head` running there?"
        ) from None


def connect(address: str | None) -> bool:
    """Join the cluster at ``address`` (None: start a local Ray here). Returns whether this call
    started the connection (and so should end it)."""
    ray = import_ray()
    if ray.is_initialized():  # a caller (a notebook, a test) connected already
        return False
    if address not in (None, "auto"):
        _check_reachable(address)
    try:
        ray.init(address=address, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
    except ConnectionError as e:
        raise RayUnavailable(
            f"cannot connect to Ray (--address {address}): {str(e).splitlines()[0]}"
        ) from None
    return True


class RayAnalyzer:
    """The actor: rows of units in, rows of the three tables out (one Arrow table, ``_table`` says which)."""

    def __init__(self, options: dict[str, Any], columns: dict[str, type]):
        from facial_emotion.results.tables import arrow_schema

        self.analyzer = Analyzer(AnalyzerOptions(**options))
        self.schema = arrow_schema(columns | {KIND: str})

    def __call__(self, batch: Any) -> Any:  # pyarrow.Table in and out
        import pyarrow as pa

        rows: list[dict[str, Any]] = []
        for unit in batch.to_pylist():
            result = self.analyzer.analyze(Unit(**unit))
            rows += [r | {KIND: "faces"} for r in result.rows]
            if result.summary is not None:
                rows.append(result.summary | {KIND: "sources"})
            if result.error is not None:
                rows.append(result.error | {KIND: "errors"})
        return pa.Table.from_pylist(rows, schema=self.schema)


def _rows(kind: str, columns: list[str], keep: bool = True):
    """A batch function: the rows of ``kind`` (``keep=False``: the others), these columns only."""

    def select(table):
        import pyarrow.compute as pc

        match = pc.equal(table[KIND], kind)
        return table.filter(match if keep else pc.invert(match)).select(columns)

    return select


class RayEngine:
    def __init__(
        self, options: AnalyzerOptions, classes: list[str], workers: int = 2, address: str | None = None
    ):
        from facial_emotion.results.schema import batch_columns

        self.ray = import_ray()
        self.options, self.workers = options, workers
        self.face_columns = batch_columns(classes)
        self.columns = self.face_columns | BATCH_SOURCE_COLUMNS | BATCH_ERROR_COLUMNS
        self.started = connect(address)

    def run(self, units: list[Unit], faces_dir: str, fmt: str, progress: bool) -> tuple[list, list]:
        """Analyse ``units``; the face rows go to ``faces_dir`` (Ray's writer); returns the
        (sources, errors) rows, one per unit, for the driver to commit."""
        ray = self.ray
        ray.data.DataContext.get_current().enable_progress_bars = progress
        logging.getLogger("ray.data").setLevel(logging.INFO if progress else logging.WARNING)
        ds = ray.data.from_items([u.to_dict() for u in units], override_num_blocks=len(units))
        out = ds.map_batches(
            RayAnalyzer,
            fn_constructor_kwargs={"options": asdict(self.options), "columns": self.columns},
            batch_size=1,  # one unit (a photo, a video or a frame range) per call
            batch_format="pyarrow",
            compute=ray.data.ActorPoolStrategy(size=self.workers),
            num_cpus=1,
            # Ray Data's actor pools restart a dead actor and retry its unit (max_restarts and
            # max_task_retries default to -1 there); tests/test_batch.py kills one to check.
        ).materialize()  # one run of the actors feeds the three tables
        faces = out.map_batches(_rows("faces", list(self.face_columns)), batch_format="pyarrow")
        getattr(faces, f"write_{fmt}")(faces_dir)  # no face at all: no file
        small = out.map_batches(
            _rows("faces", [*self.columns, KIND], keep=False), batch_format="pyarrow"
        ).take_all()
        sources = [{k: r[k] for k in BATCH_SOURCE_COLUMNS} for r in small if r[KIND] == "sources"]
        errors = [{k: r[k] for k in BATCH_ERROR_COLUMNS} for r in small if r[KIND] == "errors"]
        return sources, errors

    def close(self) -> None:
        if self.started:
            self.ray.shutdown()
