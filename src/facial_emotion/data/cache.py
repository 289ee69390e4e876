"""A cache of parsed datasets as uncompressed .npz, keyed by the source's path, size and mtime."""

from __future__ import annotations

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


def cached(path: Path, variant: str, parse: Callable[[], FaceDataset]) -> FaceDataset:
    target = cache_dir() / f"{path.name}-{variant}-{_fingerprint(path)}.npz"
    if target.exists():
        try:
            with np.load(target, allow_pickle=False) as z:
                ds = FaceDataset(
                    images=z["images"],
                    labels=z["labels"],
                    split=z["split"],
                    class_names=tuple(z["class_names"].tolist()),
                    source=str(path),
                    skipped=int(z["skipped"]),
                    rows=z.get("rows", None),
                )
                return ds
        except (OSError, ValueError, KeyError):
            pass  # a damaged cache file is rebuilt below
    ds = parse()
    arrays: dict[str, Any] = dict(
        images=ds.images,
        labels=ds.labels,
        split=ds.split,
        class_names=np.array(ds.class_names),
        skipped=np.array(ds.skipped),
    )
    if ds.rows is not None:
        arrays["rows"] = ds.rows
    try:
        with atomic_path(target, suffix=".tmp.npz") as tmp, open(tmp, "wb") as f:
            np.savez(f, **arrays)  # type: ignore[arg-type]
    except OSError:
        pass  # the cache is an optimisation; a read-only home or a full disk must not stop the run
    return ds
