"""What a batch job reads: inputs (files, folders, globs, manifests) -> sources -> units of work.

A manifest is a ``.txt`` (one path or URI a line, ``#`` comments) or a ``.csv`` (the column ``path``,
``source`` or ``uri``, else the first one, under a header row if the first is a bare word)
list of what the command line takes (files, folders, globs, URIs, other manifests); relative paths
in it are relative to the manifest's folder, or to the current one where only that one has the file.
A unit of work is a photo, a whole video, or (``chunk_frames``) a frame range of a video.

A local source is named by its absolute path, ``..`` and ``.`` taken out (links kept as named): the
name is the job's key for what is done, so one file has one name whatever folder the job was started
from and however ``./`` and ``..`` spell it (a path through a link is a name of its own).
"""

from __future__ import annotations

import csv
import glob
import io
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from facial_emotion.inference.decode import IMAGE_SUFFIXES, VIDEO_SUFFIXES, media_files, names_video

MEDIA_SUFFIXES = IMAGE_SUFFIXES | VIDEO_SUFFIXES  # what a batch analyses
MANIFEST_SUFFIXES = {".txt", ".csv"}
MANIFEST_COLUMNS = ("path", "source", "uri")


def kind_of(source: str) -> str:
    """ "video" or "photo", by the name's suffix (a URI's query string is ignored)."""
    return "video" if names_video(source) else "photo"


def read_manifest(path: Path) -> tuple[list[str], list[str]]:
    """(the manifest's items, each row that names nothing: "LIST line N: ..."; blank rows are no
    rows). A relative path is the manifest folder's, or the current folder's where only that one
    exists (``ls photos/*.jpg > lists/all.txt`` names the current folder's)."""
    # utf-8-sig: a CSV saved by Excel starts with a byte-order mark, which hid the `path` header
    text = path.read_text(encoding="utf-8-sig", errors="surrogateescape")
    numbered: list[tuple[int, str]] = []  # (line, item)
    unread: list[str] = []
    if path.suffix.lower() == ".csv":
        reader = csv.reader(io.StringIO(text, newline=""))
        rows = [(reader.line_num, row) for row in reader]
        if not rows:
            return [], []
        header = [h.strip().lower() for h in rows[0][1]]
        col = next((header.index(c) for c in MANIFEST_COLUMNS if c in header), None)
        # No known header: the first column, every row but a first that is a bare word ("filename",
        # a header of another name, was reported as a missing file on every run): with a suffix,
        # a folder or a scheme it is a source (a URL, a photo of any type).
        first = rows[0][1][0].strip() if rows[0][1] else ""
        titled = not any(ch in first for ch in "./\\:") and first != ""
        column = f"the {header[col]!r} column" if col is not None else "the first column"
        for line, row in rows[1:] if col is not None or titled else rows:
            cell = row[col or 0].strip() if len(row) > (col or 0) else ""
            if cell:
                numbered.append((line, cell))
            elif any(c.strip() for c in row):  # a row with cells but no path was dropped unsaid
                unread.append(f"{path} line {line}: no path in {column}")
    else:  # a .txt: "#" starts a comment line (a CSV's cells are names, "#1.jpg" one of them)
        lines = enumerate(text.splitlines(), 1)
        numbered = [
            (n, line.strip()) for n, line in lines if line.strip() and not line.strip().startswith("#")
        ]
    return [in_folder_of(path, item) for _, item in numbered], unread


def in_folder_of(manifest: Path, item: str) -> str:
    if "://" in item or Path(item).is_absolute():
        return item
    beside = manifest.parent / item
    return item if not beside.exists() and Path(item).exists() else str(beside)


def source_name(item: str) -> str:
    """A source's one name: a URI as given, a local path absolute and normalised (module docstring).
    Where ``..`` follows a linked folder, taking it out by the letters names another file: then the
    link is resolved instead."""
    if "://" in item:
        return item
    name = os.path.abspath(item)
    if ".." not in Path(item).parts or not os.path.exists(item):
        return name
    return name if os.path.exists(name) and os.path.samefile(name, item) else os.path.realpath(item)


def media_in(folder: Path, seen: set[str]) -> list[str]:
    """The photos and videos in ``folder`` and its subfolders, by name (``media_files``; ``seen``:
    the real folders the inputs walked already)."""
    return media_files(folder, MEDIA_SUFFIXES, seen)


@dataclass
class Inputs:
    sources: list[str]  # each once, in the order given
    empty: list[str]  # folders among the inputs that hold no photo or video: reported, not dropped
    unread: list[str]  # manifest rows that name nothing, and manifests that list themselves


def expand_inputs(items: list[str]) -> Inputs:
    """Files, folders (photos and videos inside, recursively), globs and manifests (whose items may
    be any of these too) -> ``Inputs``. A path that does not exist stays, to be reported as an
    error. A glob takes what a folder would: the photos and videos it matches and those in the
    folders it matches."""
    out: list[str] = []
    found = Inputs([], [], [])
    walked: set[str] = set()  # real folders, once for all the inputs (a glob's matches too)
    manifests: list[str] = []  # the manifests being read, outermost first: one may not list itself

    def visit(item: str) -> None:
        p = Path(item)
        if "://" in item:
            out.append(item)
        elif p.is_dir():
            again = os.path.realpath(p) in walked  # named twice, or inside a folder named before
            media = media_in(p, walked)
            out.extend(media)
            if not media and not again:
                found.empty.append(item)
        elif p.is_file() and p.suffix.lower() in MANIFEST_SUFFIXES:
            real = os.path.realpath(p)
            if real in manifests:
                found.unread.append(f"{item}: a manifest that lists itself (through {manifests[-1]})")
                return
            listed, unread = read_manifest(p)
            found.unread.extend(unread)
            manifests.append(real)
            for entry in listed:
                visit(entry)
            manifests.pop()
        elif any(ch in item for ch in "*?[") and not p.exists():
            matches = sorted(glob.glob(item, recursive=True))
            for m in matches:
                if Path(m).is_dir():
                    out.extend(media_in(Path(m), walked))
                elif Path(m).suffix.lower() in MEDIA_SUFFIXES:
                    out.append(m)
            if not matches:
                out.append(item)  # reported as not found
        else:
            out.append(item)

    for item in items:
        visit(item)
    found.sources = list(dict.fromkeys(source_name(s) for s in out))
    return found


@dataclass
class Unit:
    """One unit of work: frames ``start`` .. ``stop`` (None: to the end) of ``source``, after
    ``warmup`` frames before ``start`` that are analysed but not written (they bring the tracker
    and the smoothing to the state the frames before would have left them in). Counted in frame
    intervals at the container's rate (a frame's time x fps, as ``video.FrameClock``): frame numbers
    in a constant-rate file, a cut by time in a variable-rate one."""

    source: str
    kind: str
    chunk: int = 0
    start: int = 0
    stop: int | None = None
    warmup: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def video_frame_count(source: str) -> int:
    """The container's frame count (``expected_frames``), 0 where it has none."""
    import cv2

    from facial_emotion.inference.video import expected_frames

    cap = cv2.VideoCapture(source)
    try:
        return (expected_frames(cap) or 0) if cap.isOpened() else 0
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
