"""What a batch job reads: inputs (files, folders, globs, manifests) -> sources -> units of work.

A manifest is a ``.txt`` (one path or URI a line, ``#`` comments) or a ``.csv`` (the column ``path``,
``source`` or ``uri``, else the first one) list; relative paths in it are relative to the manifest.
A unit of work is a photo, a whole video, or (``chunk_frames``) a frame range of a video.
"""

from __future__ import annotations

import csv
import glob
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from facial_emotion.data.readers import IMAGE_SUFFIXES
from facial_emotion.inference.decode import VIDEO_SUFFIXES

MANIFEST_SUFFIXES = {".txt", ".csv"}
MANIFEST_COLUMNS = ("path", "source", "uri")


def kind_of(source: str) -> str:
    """ "video" or "photo", by the name's suffix (a URI's query string is ignored)."""
    suffix = Path(source.split("?", 1)[0]).suffix.lower()
    return "video" if suffix in VIDEO_SUFFIXES else "photo"


def read_manifest(path: Path) -> list[str]:
    text = path.read_text(encoding="utf-8", errors="surrogateescape")
    if path.suffix.lower() == ".csv":
        rows = list(csv.reader(text.splitlines()))
        if not rows:
            return []
        header = [h.strip().lower() for h in rows[0]]
        col = next((header.index(c) for c in MANIFEST_COLUMNS if c in header), None)
        body = rows[1:] if col is not None else rows  # no known header: the first column, every row
        items = [r[col or 0].strip() for r in body if r and len(r) > (col or 0)]
    else:
        items = [line.strip() for line in text.splitlines()]
    items = [i for i in items if i and not i.startswith("#")]
    return [i if "://" in i or Path(i).is_absolute() else str(path.parent / i) for i in items]


def expand_inputs(items: list[str]) -> list[str]:
    """Files, folders (photos and videos inside, recursively), globs and manifests -> sources, each
    once, in the order given. A path that does not exist stays, to be reported as an error."""
    media = IMAGE_SUFFIXES | VIDEO_SUFFIXES
    out: list[str] = []
    for item in items:
        p = Path(item)
        if "://" in item:
            out.append(item)
        elif p.is_dir():
            out += sorted(str(f) for f in p.rglob("*") if f.is_file() and f.suffix.lower() in media)
        elif p.is_file() and p.suffix.lower() in MANIFEST_SUFFIXES:
            out += read_manifest(p)
        elif any(ch in item for ch in "*?[") and not p.exists():
            matches = sorted(glob.glob(item, recursive=True))
            out += [m for m in matches if Path(m).is_file()] if matches else [item]
        else:
            out.append(item)
    return list(dict.fromkeys(out))


@dataclass
class Unit:
    """One unit of work: frames ``start`` .. ``stop`` (None: to the end) of ``source``, after
    ``warmup`` frames before ``start`` that are analysed but not written (they bring the tracker
    and the smoothing to the state the frames before would have left them in)."""

    source: str
    kind: str
    chunk: int = 0
    start: int = 0
    stop: int | None = None
    warmup: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def video_frame_count(source: str) -> int:
    import cv2

    cap = cv2.VideoCapture(source)
    try:
        return int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0) if cap.isOpened() else 0
    finally:
        cap.release()


def plan_units(
    sources: list[str], chunk_frames: int = 0, overlap: int = 0, max_frames: int | None = None
) -> list[Unit]:
    """Photos and videos -> units of work; with ``chunk_frames`` a video of more frames is cut into
    ranges of that many, each with ``overlap`` warm-up frames (a video whose length the container
    does not tell stays whole)."""
    units: list[Unit] = []
    for source in sources:
        kind = kind_of(source)
        if kind == "photo" or not chunk_frames:
            units.append(Unit(source, kind, stop=max_frames if kind == "video" else None))
            continue
        total = video_frame_count(source)
        if max_frames:
            total = min(total, max_frames) if total else max_frames
        if total <= chunk_frames:
            units.append(Unit(source, kind, stop=max_frames))
            continue
        for chunk, start in enumerate(range(0, total, chunk_frames)):
            # The last range reads to the end: a container's frame count is an estimate.
            stop = start + chunk_frames if start + chunk_frames < total else max_frames
            units.append(Unit(source, kind, chunk, start, stop, warmup=min(overlap, start)))
    return units
