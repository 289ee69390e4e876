"""Readers for FER-2013 csv(.gz), the Kaggle folder layout, FER+ votes and plain emotion folders.

``load_dataset(path)`` detects the layout from the path and returns a ``FaceDataset``. Parsed
results are cached as ``.npz`` (see ``cache.py``) so a second run skips 300 MB of text.
"""

from __future__ import annotations

import csv
import gzip
import io
import logging
from pathlib import Path

import cv2
import numpy as np

from facial_emotion.data.cache import cached, read_npz
from facial_emotion.data.dataset import FACE_SIZE, DatasetError, FaceDataset
from facial_emotion.inference.decode import IMAGE_SUFFIXES  # one list of photo names, beside the videos'
from facial_emotion.labels import (
    EMOTIONS,
    FER2013_USAGES,
    FERPLUS_COLUMNS,
    FERPLUS_TO_EMOTION,
    class_from_folder,
    emotion_from_folder,
    trained_classes,
)

log = logging.getLogger(__name__)

FERPLUS_FILENAME = "fer2013new.csv"
PIXELS = FACE_SIZE * FACE_SIZE


def _open_text(path: Path) -> io.TextIOBase:
    """UTF-8 text, with or without a byte-order mark (Excel writes one). Bytes that are not UTF-8
    come through as surrogates, so that one bad row is reported (or skipped) by its line instead
    of failing the whole file: see ``_not_utf8``."""
    if path.suffix.lower() == ".gz":  # as detect_layout reads names: FACES.CSV.GZ too
        return io.TextIOWrapper(
            gzip.open(path, "rb"), encoding="utf-8-sig", errors="surrogateescape", newline=""
        )
    return open(path, encoding="utf-8-sig", errors="surrogateescape", newline="")


def _not_utf8(row: list[str]) -> bool:
    try:
        for cell in row:
            cell.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _is_emotion_folder_root(path: Path) -> bool:
    return any(p.is_dir() and emotion_from_folder(p.name) for p in path.iterdir())


def detect_layout(path: Path) -> str:
    """'fer2013-csv', 'npz' (a parsed dataset, data/cache.py), 'folders-split' (ROOT/<split>/<emotion>/*)
    or 'folders' (ROOT/<emotion>/*)."""
    if not path.exists():
        raise DatasetError(f"dataset path not found: {path}")
    if not path.is_file() and not path.is_dir():  # /dev/null, a FIFO: nothing to read faces from
        raise DatasetError(f"{path}: not a dataset file or folder")
    if path.is_file():
        name = path.name.lower()
        if name.endswith(".npz"):
            return "npz"
        if name.endswith((".csv", ".csv.gz")):
            try:
                with _open_text(path) as f:
                    first_line = f.readline()
            except (OSError, UnicodeDecodeError, EOFError) as e:
                raise DatasetError(f"cannot read {path}: {e}") from None
            header = [h.strip() for h in first_line.split(",")]
            if header[:2] == ["emotion", "pixels"]:
                return "fer2013-csv"
            if not first_line:
                raise DatasetError(f"{path}: empty file; expected FER-2013's csv ('emotion,pixels,Usage')")
            # As text, shortened: a binary file's first "line" would be dumped byte by byte.
            shown = first_line.strip()[:60].encode("ascii", "backslashreplace").decode()
            raise DatasetError(
                f"{path}: unknown csv layout (header {shown!r}); expected FER-2013's 'emotion,pixels,Usage'"
            )
        raise DatasetError(f"{path}: unknown dataset file type (expected .csv, .csv.gz, .npz or a folder)")
    subdirs = [p for p in path.iterdir() if p.is_dir()]
    if not subdirs and any(p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES for p in path.iterdir()):
        raise DatasetError(
            f"{path}: images without emotion folders; put each in ROOT/<emotion>/ ({', '.join(EMOTIONS)})"
        )
    if _is_emotion_folder_root(path):
        return "folders"
    if any(_is_emotion_folder_root(p) for p in subdirs):
        return "folders-split"
    raise DatasetError(
        f"{path}: unknown dataset layout; expected a FER-2013 csv, ROOT/<split>/<emotion>/ images "
        f"or ROOT/<emotion>/ images with emotion folders named {', '.join(EMOTIONS)}"
    )


# --- FER-2013 csv -------------------------------------------------------------------------------


def _parse_pixels(text: str) -> np.ndarray | None:
    try:
        values = np.array(text.split(), dtype=np.int64)
    except (ValueError, OverflowError):
        return None
    if values.size != PIXELS or values.min() < 0 or values.max() > 255:
        return None
    return values.astype(np.uint8).reshape(FACE_SIZE, FACE_SIZE)


def fer2013_row(row: list[str], has_usage: bool) -> tuple[str | None, np.ndarray | None, str]:
    """One data row of FER-2013's csv -> (what is wrong with it or None, its 48x48 pixels, its Usage):
    the one check of a row, for the reader and for ``download --from-zip``'s count alike."""
    if _not_utf8(row):
        return "not UTF-8 text", None, ""
    if len(row) < (3 if has_usage else 2):
        return ("expected 'emotion,pixels,Usage'" if has_usage else "expected 'emotion,pixels'"), None, ""
    pixels = _parse_pixels(row[1])
    usage = row[2].strip() if len(row) > 2 else "Training"
    if not row[0].strip().isdecimal() or int(row[0]) >= len(EMOTIONS):
        return f"unknown emotion label {row[0]!r} (expected 0-6)", None, usage
    if pixels is None:
        return f"pixels must be {PIXELS} integers 0-255", None, usage
    if usage not in FER2013_USAGES:
        return f"unknown Usage {usage!r} (expected {', '.join(FER2013_USAGES)})", None, usage
    return None, pixels, usage


def fer2013_header(header: list[str] | None) -> list[str] | None:
    """The header's cells, spaces around them dropped ('emotion, pixels, Usage' too), if it is
    FER-2013's; None otherwise."""
    cells = [h.strip() for h in header or []]
    return cells if cells[:2] == ["emotion", "pixels"] else None


def read_fer2013_csv(path: Path, skip_bad: bool = False) -> FaceDataset:
    """Rows ``emotion,pixels,Usage``; a bad row raises naming its line, or is skipped with skip_bad."""
    images: list[np.ndarray] = []
    labels: list[int] = []
    usages: list[str] = []
    rows: list[int] = []  # 0-based data-row index, to align FER+ votes
    skipped = 0
    warnings: list[str] = []
    try:
        with _open_text(path) as f:
            reader = csv.reader(f)
            header = fer2013_header(next(reader, None))
            if header is None:
                raise DatasetError(f"{path}: missing header 'emotion,pixels,Usage'")
            has_usage = len(header) > 2  # without the column every face is a Training face
            row_index = -1  # data rows only: a blank line (a file's last, say) is none
            for row in reader:
                if not any(cell.strip() for cell in row):
                    continue
                row_index += 1
                line = reader.line_num
                problem, pixels, usage = fer2013_row(row, has_usage)
                if problem:
                    if not skip_bad:
                        raise DatasetError(
                            f"{path}: line {line}: {problem} (use --skip-bad to skip such rows)"
                        )
                    skipped += 1
                    if len(warnings) < 20:
                        warnings.append(f"line {line}: {problem}")
                    continue
                assert pixels is not None
                images.append(pixels)
                labels.append(int(row[0]))
                usages.append(usage)
                rows.append(row_index)
    except (OSError, EOFError, UnicodeDecodeError, csv.Error) as e:
        raise DatasetError(f"cannot read {path}: {e}") from None
    if not images:
        raise DatasetError(f"{path}: no usable rows")
    return FaceDataset(
        images=np.stack(images),
        labels=np.array(labels, dtype=np.int64),
        split=np.array(usages),
        rows=np.array(rows, dtype=np.int64),
        class_names=EMOTIONS,
        source=str(path),
        skipped=skipped,
        warnings=warnings,
    )


# --- FER+ votes ---------------------------------------------------------------------------------


def read_ferplus_votes(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Votes (rows, 10) in FERPLUS_COLUMNS order, Usage per row, and whether the row names an image."""
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:
            reader = csv.reader(f)
            header = next(reader, None)
            if not header or [h.strip() for h in header[2:12]] != list(FERPLUS_COLUMNS):
                raise DatasetError(
                    f"{path}: not a FER+ votes file (expected columns Usage,Image name,{','.join(FERPLUS_COLUMNS)})"
                )
            votes, usage, has_image = [], [], []
            for line, row in enumerate(reader, start=2):
                try:
                    votes.append([int(v) for v in row[2:12]])
                except ValueError:
                    raise DatasetError(f"{path}: line {line}: vote counts must be integers") from None
                if len(row) < 12:
                    raise DatasetError(f"{path}: line {line}: expected 12 columns")
                usage.append(row[0].strip())
                has_image.append(bool(row[1].strip()))
    except (OSError, UnicodeDecodeError) as e:
        raise DatasetError(f"cannot read {path}: {e}") from None
    return np.array(votes, dtype=np.float32), np.array(usage), np.array(has_image)


def apply_ferplus(ds: FaceDataset, votes_path: Path, classes: int = 7) -> FaceDataset:
    """Replace FER-2013 labels by FER+ votes: soft = vote distribution, label = majority.

    Rows without an image name, or with no vote for any kept class, are dropped.
    With ``classes=7`` contempt votes are dropped; with 8 it is kept as an extra class.
    """
    votes, usage, has_image = read_ferplus_votes(votes_path)
    rows = ds.rows
    if rows is None or rows.max(initial=-1) >= len(votes):
        raise DatasetError(f"{votes_path}: has {len(votes)} rows, not row-aligned with {ds.source}")
    if not np.array_equal(usage[rows], ds.split):
        raise DatasetError(f"{votes_path}: Usage column differs from {ds.source}: files are not row-aligned")
    class_names = trained_classes(classes)
    columns = [
        FERPLUS_COLUMNS.index(c)
        for c in FERPLUS_COLUMNS
        if c in FERPLUS_TO_EMOTION or (classes == 8 and c == "contempt")
    ]
    target = np.zeros((len(rows), len(class_names)), dtype=np.float32)
    for col in columns:
        name = FERPLUS_COLUMNS[col]
        target[:, class_names.index(FERPLUS_TO_EMOTION.get(name, name))] = votes[rows, col]
    total = target.sum(axis=1)
    keep = has_image[rows] & (total > 0)
    soft = target[keep] / total[keep, None]
    dropped = {str(u): int(n) for u, n in zip(*np.unique(ds.split[~keep], return_counts=True), strict=True)}
    warnings = list(ds.warnings)
    if dropped:  # said per split: the count of the whole file alone overstated a test split's loss
        per_split = ", ".join(f"{u} {n}" for u, n in dropped.items())
        warnings.insert(
            0, f"{sum(dropped.values())} faces have no FER+ label (no image name or no vote): {per_split}"
        )
    out = FaceDataset(
        images=ds.images[keep],
        labels=soft.argmax(axis=1).astype(np.int64),
        split=ds.split[keep],
        soft=soft,
        rows=rows[keep],
        class_names=class_names,
        source=f"{ds.source} + {votes_path.name}",
        skipped=ds.skipped + int((~keep).sum()),
        warnings=warnings,
    )
    return out


# --- image folders ------------------------------------------------------------------------------


def _read_face(path: Path) -> np.ndarray | None:
    data = np.fromfile(str(path), dtype=np.uint8)
    img = cv2.imdecode(data, cv2.IMREAD_GRAYSCALE) if data.size else None
    if img is None:
        return None
    if img.shape != (FACE_SIZE, FACE_SIZE):
        img = cv2.resize(img, (FACE_SIZE, FACE_SIZE), interpolation=cv2.INTER_AREA)
    return img


def read_emotion_folders(
    root: Path,
    split_name: str,
    images: list,
    labels: list,
    splits: list,
    warnings: list,
    classes: tuple[str, ...] = EMOTIONS,
) -> int:
    """Append every image of ROOT/<class>/* (labels: indices into ``classes``); return how many were
    unreadable."""
    bad = 0
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        emotion = class_from_folder(folder.name, classes)
        if emotion is None:
            continue  # ignored_folders() names it, on every load
        for file in sorted(folder.iterdir()):
            if file.is_dir() or file.suffix.lower() not in IMAGE_SUFFIXES:
                continue  # a sub-folder (ignored_folders() names it), or not an image by its name
            try:  # a dangling link or a folder named x.jpg stopped the whole run
                face = _read_face(file) if file.is_file() else None
            except OSError:
                face = None
            if face is None:
                bad += 1
                log.warning("unreadable image skipped: %s", file)
                warnings.append(f"unreadable image skipped: {file}")
                continue
            images.append(face)
            labels.append(classes.index(emotion))
            splits.append(split_name)
    return bad


def read_folders(path: Path, layout: str, classes: tuple[str, ...] = EMOTIONS) -> FaceDataset:
    """A folder dataset; ``classes``: the folders read and the labels' order (a model's own: an
    8-class model's corrections include contempt/)."""
    images: list[np.ndarray] = []
    labels: list[int] = []
    splits: list[str] = []
    warnings: list[str] = []
    if layout == "folders":
        bad = read_emotion_folders(path, "all", images, labels, splits, warnings, classes)
    else:
        bad = 0
        for sub in sorted(p for p in path.iterdir() if p.is_dir() and _is_emotion_folder_root(p)):
            bad += read_emotion_folders(sub, split_name(sub.name), images, labels, splits, warnings, classes)
    if not images:
        raise DatasetError(f"{path}: no readable images found")
    return FaceDataset(
        images=np.stack(images),
        labels=np.array(labels, dtype=np.int64),
        split=np.array(splits),
        class_names=tuple(classes),
        source=str(path),
        skipped=bad,
        warnings=warnings,
    )


# Split folders named in another case are the same split: "Train" and "Test" were two unknown
# splits, both trained on, with 10 % of them held out (test faces in training).
KNOWN_SPLITS = ("train", "test", "val")


def split_name(folder: str) -> str:
    return folder.lower() if folder.lower() in KNOWN_SPLITS else folder


def ignored_folders(path: Path, layout: str, classes: tuple[str, ...] = EMOTIONS) -> list[Path]:
    """Folders of a folder dataset that are not read: not an emotion name, inside an emotion folder
    (only its own images are read), or, in a split layout, a split without emotion folders. Said
    every time, not only when the cache is built."""
    out: list[Path] = []
    if layout == "folders":
        for p in sorted(path.iterdir()):
            if not p.is_dir():
                continue
            if class_from_folder(p.name, classes) is None:
                out.append(p)
            else:
                out += [q for q in sorted(p.iterdir()) if q.is_dir()]
        return out
    for sub in sorted(p for p in path.iterdir() if p.is_dir()):
        if _is_emotion_folder_root(sub):
            out += ignored_folders(sub, "folders", classes)
        else:
            out.append(sub)
    return out


# --- entry point --------------------------------------------------------------------------------


# (file, labels, rows skipped) already warned about in this process: see load_dataset.
_SAID_SKIPPED: set[tuple[str, str, int]] = set()


def load_dataset(
    path: str | Path,
    labels: str = "fer2013",
    skip_bad: bool = False,
    ferplus_path: str | Path | None = None,
    ferplus_classes: int = 7,
    use_cache: bool = True,
) -> FaceDataset:
    """Load any supported dataset. ``labels='ferplus'`` needs a FER-2013 csv plus the FER+ votes
    (``ferplus_path``, default: ``fer2013new.csv`` beside the csv)."""
    path = Path(path).expanduser()
    layout = detect_layout(path)
    if labels not in ("fer2013", "ferplus"):
        raise DatasetError(f"unknown label source {labels!r} (expected fer2013 or ferplus)")
    if labels == "ferplus" and layout not in ("fer2013-csv", "npz"):
        raise DatasetError("FER+ labels need the FER-2013 csv they are row-aligned with")

    def parse() -> FaceDataset:
        if layout == "fer2013-csv":
            return read_fer2013_csv(path, skip_bad=skip_bad)
        if layout == "npz":
            try:
                return read_npz(path)
            except (OSError, ValueError, KeyError) as e:
                # numpy calls any file that is not a zip archive "pickled data" and suggests
                # allow_pickle, which would run code from the file: never done here, never advised.
                why = "not a NumPy .npz archive" if "pickle" in str(e) else str(e)
                raise DatasetError(f"{path}: not a dataset .npz ({why})") from None
        return read_folders(path, layout)

    ds = cached(path, f"{layout}-skip{int(skip_bad)}", parse) if use_cache and layout != "npz" else parse()
    if layout.startswith("folders"):
        ignored = ignored_folders(path, layout)
        if ignored:
            log.warning(
                "%s: ignored %d folder(s): only images directly inside a folder named after an emotion "
                "(%s) are read: %s",
                path,
                len(ignored),
                ", ".join(EMOTIONS),
                ", ".join(str(p) for p in ignored[:10]) + (" ..." if len(ignored) > 10 else ""),
            )
        # ROOT, and each split folder of ROOT/<split>/<emotion>/ (ROOT/test/x.jpg went unmentioned)
        roots = [path] + ([p for p in path.iterdir() if p.is_dir()] if layout == "folders-split" else [])
        for root in roots:
            loose = [p for p in root.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()]
            if loose:  # an image's emotion is its folder's name: these have none
                log.warning(
                    "%s: ignored %d image(s) lying directly in it (put them in a folder named after "
                    "their emotion): %s",
                    root,
                    len(loose),
                    ", ".join(p.name for p in sorted(loose)[:5]) + (" ..." if len(loose) > 5 else ""),
                )
    if labels == "ferplus":
        votes = Path(ferplus_path) if ferplus_path else path.parent / FERPLUS_FILENAME
        if not votes.exists():
            raise DatasetError(f"FER+ votes file not found: {votes} (it must lie beside the FER-2013 csv)")
        ds = apply_ferplus(ds, votes, classes=ferplus_classes)
    if len(ds) == 0:
        raise DatasetError(f"{path}: dataset is empty")
    said = (str(path), labels, ds.skipped)
    if ds.skipped and said not in _SAID_SKIPPED:
        _SAID_SKIPPED.add(said)  # once a process: `quantize` read one file five times, and said it five
        shown = "; ".join(ds.warnings[:3])
        log.warning(
            "%s: skipped %d unusable row(s) or file(s)%s",
            path,
            ds.skipped,
            f" ({shown}{' ...' if len(ds.warnings) > 3 else ''})" if shown else "",
        )
    return ds
