"""The output folder of a batch job: three tables (faces, sources, errors) as Parquet or CSV, written
in commits so that a job killed at any moment can be run again without losing or repeating rows.

    OUT/faces/COMMIT/*.parquet   one row per face per analysed frame (results/schema.py: batch_columns)
    OUT/sources/COMMIT.parquet   one row per completed unit of work (BATCH_SOURCE_COLUMNS)
    OUT/errors/COMMIT.parquet    one row per failed unit (BATCH_ERROR_COLUMNS)
    OUT/commits/COMMIT.json      written last: the commit is complete
    OUT/job.json                 the options that decide the rows (batch/job.py refuses others)

A commit's files count only once its marker exists; ``open_store`` deletes the files of commits
that have none (a job interrupted mid-commit), so their units run again and no row appears twice
(and so one job at a time may write to a folder).
Readers take every ``faces/*/*`` file of a committed folder: pandas, DuckDB, Spark and Ray read
``faces/`` as one partitioned dataset once the uncommitted folders are gone.
"""

from __future__ import annotations

import csv
import io
import json
import re
import shutil
import time
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from facial_emotion.results.files import atomic_path, atomic_write_text
from facial_emotion.results.schema import BATCH_ERROR_COLUMNS, BATCH_SOURCE_COLUMNS

FORMATS = ("parquet", "csv")
TABLES = ("faces", "sources", "errors")
# A commit's name (``Store.new_commit``: time, random, count), which its files in the tables start with.
COMMIT_NAME = re.compile(r"\d{8}T\d{6}-[0-9a-f]{8}-\d{5}(\.|$)")


def have_pyarrow() -> bool:
    import importlib.util

    return importlib.util.find_spec("pyarrow") is not None


def arrow_schema(columns: dict[str, type]):
    """results/schema.py's Python types -> an Arrow schema (every column nullable)."""
    import pyarrow as pa

    types = {str: pa.string(), int: pa.int64(), float: pa.float64(), bool: pa.bool_()}
    return pa.schema([(name, types[t]) for name, t in columns.items()])


def arrow_table(rows: list[dict[str, Any]], columns: dict[str, type]):
    import pyarrow as pa

    return pa.Table.from_pylist(rows, schema=arrow_schema(columns))


def write_rows(path: Path, rows: list[dict[str, Any]], columns: dict[str, type], fmt: str) -> None:
    """One table file, atomically: Parquet (pyarrow) or CSV (header row, blank for missing)."""
    if fmt == "parquet":
        import pyarrow.parquet as pq

        with atomic_path(path) as tmp:
            pq.write_table(arrow_table(rows, columns), tmp)
        return
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(columns), lineterminator="\n")
    writer.writeheader()
    # Booleans as Ray's (pyarrow's) CSV writer spells them: one job may be resumed on the other engine,
    # and its table read "True" in some rows and "false" in others.
    bools = [name for name, kind in columns.items() if kind is bool]
    writer.writerows({**r, **{b: _csv_bool(r.get(b)) for b in bools}} for r in rows)
    atomic_write_text(path, buf.getvalue())


def _csv_bool(value: Any) -> Any:
    return value if value is None or isinstance(value, str) else ("true" if value else "false")


class Store:
    """The output folder; ``done`` holds the (source, chunk) units committed by earlier runs."""

    def __init__(self, out: Path, fmt: str):
        self.out, self.fmt = out, fmt
        self.done: set[tuple[str, int]] = set()
        # Time for order, random for uniqueness: two runs started in the same second (a re-run
        # right after a kill) must not write over each other's commits.
        self._stamp = f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}"
        self._count = 0

    def new_commit(self) -> str:
        self._count += 1
        return f"{self._stamp}-{self._count:05d}"

    def faces_dir(self, commit: str) -> Path:
        return self.out / "faces" / commit

    def commit(
        self,
        commit: str,
        sources: list[dict[str, Any]],
        errors: list[dict[str, Any]],
        faces_rows: list[dict[str, Any]] | None = None,
        face_columns: dict[str, type] | None = None,
    ) -> None:
        """Write the small tables (and the face rows, unless an engine wrote them into
        ``faces_dir(commit)`` already), then the marker that makes them count."""
        if faces_rows is not None and face_columns is not None and faces_rows:
            write_rows(self.faces_dir(commit) / f"part-0.{self.fmt}", faces_rows, face_columns, self.fmt)
        if sources:
            write_rows(self.out / "sources" / f"{commit}.{self.fmt}", sources, BATCH_SOURCE_COLUMNS, self.fmt)
        if errors:
            write_rows(self.out / "errors" / f"{commit}.{self.fmt}", errors, BATCH_ERROR_COLUMNS, self.fmt)
        marker = {"commit": commit, "units": len(sources), "errors": len(errors), "format": self.fmt}
        atomic_write_text(self.out / "commits" / f"{commit}.json", json.dumps(marker) + "\n")
        self.done.update((s["source"], int(s["chunk"])) for s in sources)

    def prune_errors(self, name: Callable[[str], str] = str) -> None:
        """``errors/`` as it stands: a unit's latest failure, none for a unit done since (a file fixed
        and run again). Each run added its failures, so a unit failed twice had two rows, and one
        fixed kept its old error beside its new rows. Each file is rewritten whole (atomically) or
        removed: a kill half-way leaves some pruned and the rest to the next run. ``name``: a source's
        name as the job compares them (older folders' relative names made absolute)."""
        files = table_files(self.out, "errors")  # in commit order: the names start with the time
        later = {(name(s), c) for s, c in self.done}  # a unit failed in a later commit, or done
        for path in reversed(files):
            rows = list(_read_rows(path))
            keep = [r for r in rows if (name(r["source"]), int(r["chunk"])) not in later]
            later.update((name(r["source"]), int(r["chunk"])) for r in rows)
            if not keep:
                path.unlink()
            elif len(keep) < len(rows):
                write_rows(path, keep, BATCH_ERROR_COLUMNS, path.suffix[1:])


def committed(out: Path) -> set[str]:
    return {p.stem for p in (out / "commits").glob("*.json")}


def open_store(out: Path, fmt: str) -> Store:
    """The output folder, cleared of uncommitted files, with the units its commits completed."""
    out.mkdir(parents=True, exist_ok=True)
    done = committed(out)
    for table in TABLES:
        for path in (out / table).glob("*"):
            if path.name.split(".")[0] not in done:
                shutil.rmtree(path) if path.is_dir() else path.unlink()
    store = Store(out, fmt)
    for row in read_table(out, "sources"):
        store.done.add((row["source"], int(row["chunk"])))
    return store


def table_files(out: Path, table: str) -> list[Path]:
    done = committed(out)
    pattern = "*/*" if table == "faces" else "*"
    return sorted(
        p
        for p in (out / table).glob(pattern)
        if p.suffix[1:] in FORMATS
        and not p.name.startswith(".")
        and (p.parent.name if table == "faces" else p.stem) in done
    )


def read_table(out: Path, table: str) -> Iterable[dict[str, Any]]:
    """Every committed row of a table, as dicts (CSV cells as text). For tests and small outputs:
    big ones are for pandas / DuckDB / Ray on ``OUT/faces``."""
    for path in table_files(out, table):
        yield from _read_rows(path)


def _read_rows(path: Path) -> Iterable[dict[str, Any]]:
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        yield from pq.read_table(path).to_pylist()
    else:
        with path.open(newline="", encoding="utf-8") as f:
            yield from csv.DictReader(f)
