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

CACHE_VERSION = "1"


def cache_dir() -> Path:
    return settings.current().cache_dir / "datasets"


def _fingerprint(path: Path) -> str:
    """Path + size + mtime of the file, or of every file below a folder."""
    h = hashlib.sha1(f"{CACHE_VERSION}:{path.resolve()}".encode())
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
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
