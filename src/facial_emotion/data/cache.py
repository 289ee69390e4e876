"""Parsed datasets as uncompressed .npz: a cache keyed by the source's path, size and mtime, and a
dataset file of its own (``train --data faces.npz``, as ``scripts/pack_faces.py`` writes one)."""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from facial_emotion import settings
from facial_emotion.data.dataset import FaceDataset
from facial_emotion.results.files import atomic_path

CACHE_VERSION = "2"  # 2: split folders in lower case, the skipped files' names kept


def cache_dir() -> Path:
    return settings.current().cache_dir / "datasets"


# A folder dataset is read to this depth (ROOT/<split>/<emotion>/<image>); its fingerprint looks as
# deep, through symbolic links as the reader goes (rglob does not follow them: files added to a
# linked emotion folder left the cache stale).
FOLDER_DEPTH = 3


def _files_below(folder: Path, depth: int) -> list[Path]:
    out: list[Path] = []
    for entry in sorted(folder.iterdir()):
        if entry.is_dir():
            if depth > 1:
                out += _files_below(entry, depth - 1)
        elif entry.is_file():
            out.append(entry)
    return out


def _fingerprint(path: Path) -> str:
    """Path + size + mtime of the file, or of every file a folder dataset is read from."""
    h = hashlib.sha1(f"{CACHE_VERSION}:{path.resolve()}".encode())
    files = [path] if path.is_file() else _files_below(path, FOLDER_DEPTH)
    for f in files:
        st = f.stat()
        h.update(f"{f}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:20]


def read_npz(path: Path, source: str | None = None) -> FaceDataset:
    """A dataset saved by ``write_npz`` (a cache file, or a dataset packed for another machine)."""
    with np.load(path, allow_pickle=False) as z:
        return FaceDataset(
            images=z["images"],
            labels=z["labels"],
            split=z["split"],
            class_names=tuple(z["class_names"].tolist()),
            source=source or str(path),
            skipped=int(z["skipped"]),
            rows=z.get("rows", None),
            warnings=z["warnings"].tolist() if "warnings" in z else [],
        )


def write_npz(ds: FaceDataset, path: Path) -> None:
    """Save ``ds`` (not its soft labels, which are derived) atomically as an uncompressed .npz."""
    arrays: dict[str, Any] = dict(
        images=ds.images,
        labels=ds.labels,
        split=ds.split,
        class_names=np.array(ds.class_names),
        skipped=np.array(ds.skipped),
    )
    if ds.rows is not None:
        arrays["rows"] = ds.rows
    if ds.warnings:  # which rows or files were skipped, said again when the cache is read
        arrays["warnings"] = np.array(ds.warnings[:20])
    with atomic_path(path, suffix=".tmp.npz") as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)  # type: ignore[arg-type]


def cached(path: Path, variant: str, parse: Callable[[], FaceDataset]) -> FaceDataset:
    target = cache_dir() / f"{path.name}-{variant}-{_fingerprint(path)}.npz"
    if target.exists():
        try:
            return read_npz(target, source=str(path))
        except (OSError, ValueError, KeyError):
            pass  # a damaged cache file is rebuilt below
    ds = parse()
    # The cache is an optimisation: a read-only home or a full disk must not stop the run.
    with contextlib.suppress(OSError):
        write_npz(ds, target)
    return ds
