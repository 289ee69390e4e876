"""Getting FER-2013: from Kaggle (with the user's credentials), or from an archive downloaded by hand.

FER-2013 may not be redistributed, so it is never bundled and never fetched without the user's own
Kaggle account. Two archives are common, and both are understood:

- the csv layout: ``fer2013.csv`` (``emotion,pixels,Usage``; maybe in a folder, maybe gzipped, maybe
  inside the competition's ``fer2013.tar.gz``), 35,887 rows: 28,709 Training, 3,589 PublicTest and
  3,589 PrivateTest (copies without the PrivateTest rows are accepted too);
- the folder layout (Kaggle dataset msambare/fer2013): ``train/<emotion>/*.jpg`` (28,709 images) and
  ``test/<emotion>/*.jpg`` (7,178 images, or 3,589 without the private half).

``import_archive`` finds the layout in a .zip, .tar(.gz) or folder, checks the counts (an incomplete
archive is refused, naming what is missing, unless ``allow_partial``), extracts only the dataset's own
files (no member may leave the target: zip-slip), and moves the result into place in one rename.
"""

from __future__ import annotations

import csv
import gzip
import io
import os
import shutil
import tarfile
import tempfile
import zipfile
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO, cast

from facial_emotion.data.readers import IMAGE_SUFFIXES, fer2013_header, fer2013_row
from facial_emotion.extras import install_hint
from facial_emotion.labels import EMOTIONS, emotion_from_folder

KAGGLE_DATASET = "msambare/fer2013"  # the folder layout; open to every Kaggle account
KAGGLE_PAGE = f"https://www.kaggle.com/datasets/{KAGGLE_DATASET}"
PIXELS = 48 * 48
# The complete dataset. A split may be larger than its minimum only where the full archive is
# bigger than the copies without the withheld PrivateTest rows.
CSV_SPLITS = {"Training": (28_709,), "PublicTest": (3_589,), "PrivateTest": (0, 3_589)}
FOLDER_SPLITS = {"train": (28_709,), "test": (3_589, 7_178)}
CSV_NAMES = ("fer2013.csv", "fer2013.csv.gz")
NESTED_ARCHIVES = (".tar.gz", ".tgz", ".tar", ".zip")


class DownloadError(Exception):
    """The dataset cannot be fetched or imported; the message says what to do."""


class NoCredentials(DownloadError):
    """No Kaggle credentials: the user has to set them up or download the archive by hand."""


def how_to_get_it() -> str:
    return (
        "FER-2013 comes from Kaggle and needs your own (free) Kaggle account. Either:\n"
        "  - create an API token (https://www.kaggle.com/settings, API, 'Create New Token'; it is saved as\n"
        f"    ~/.kaggle/kaggle.json), {install_hint('kaggle')}, and run this command again; or\n"
        f"  - download the archive by hand from {KAGGLE_PAGE}\n"
        "    (the Download button gives archive.zip; the csv archive of the original challenge works too)\n"
        "    and import it:\n"
        "      facial-emotion download fer2013 --from-zip ~/Downloads/archive.zip"
    )


@dataclass
class Imported:
    path: Path  # what to give `facial-emotion train --data`
    layout: str  # "csv" or "folders"
    counts: dict[str, int]  # rows or images per split
    per_emotion: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)  # what made it incomplete (allow_partial)

    def train_command(self) -> str:
        return f"facial-emotion train --data {self.path} --out runs/fer2013"


# --- reading an archive: a zip, a tar or a folder, as names and file objects ----------------------


def safe_member(name: str) -> PurePosixPath | None:
    """The member's path if it stays inside the target when extracted, else None (zip-slip: absolute
    paths, drive letters, '..', backslash tricks)."""
    if "\\" in name or "\0" in name:
        return None
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts or (path.parts and ":" in path.parts[0]):
        return None
    parts = [p for p in path.parts if p not in ("", ".")]
    return PurePosixPath(*parts) if parts else None


class Archive:
    """Regular files of a .zip, .tar(.gz), folder or bare fer2013.csv(.gz): ``names`` (safe relative
    paths) and ``open``."""

    def __init__(self, source: Path):
        self.source = source
        self._zip: zipfile.ZipFile | None = None
        self._tar: tarfile.TarFile | None = None
        self.members: dict[PurePosixPath, object] = {}
        self.unsafe: list[str] = []
        self.bare_csv: PurePosixPath | None = None
        try:
            if source.is_file() and source.name.lower().endswith((".csv", ".csv.gz")):
                # The bare csv most users have, under any name (its header and row counts are
                # checked as for any archive's).
                self.bare_csv = PurePosixPath(source.name)
                self.members[self.bare_csv] = source
            elif source.is_dir():
                for f in sorted(source.rglob("*")):
                    name = PurePosixPath(f.relative_to(source).as_posix())
                    if f.is_file() and not f.is_symlink() and not os_clutter(name):
                        self.members[name] = f
            elif zipfile.is_zipfile(source):
                self._zip = zipfile.ZipFile(source)
                for info in self._zip.infolist():
                    if not info.is_dir():
                        self._add(info.filename, info)
            elif tarfile.is_tarfile(source):
                self._tar = tarfile.open(source)  # noqa: SIM115 (closed by close())
                for member in self._tar.getmembers():
                    if member.isfile():  # links, devices and fifos are never extracted
                        self._add(member.name, member)
            else:
                raise DownloadError(
                    f"{source}: not a .zip or .tar(.gz) archive, a folder or a FER-2013 .csv(.gz)"
                )
        except (OSError, zipfile.BadZipFile, tarfile.TarError, EOFError) as e:
            raise DownloadError(
                f"{source}: cannot read the archive ({e}); is the download complete?"
            ) from None

    def _add(self, name: str, member: object) -> None:
        path = safe_member(name)
        if path is None:
            self.unsafe.append(name)
        elif not os_clutter(path):
            self.members[path] = member

    def open(self, name: PurePosixPath) -> IO[bytes]:
        member = self.members[name]
        if self._zip is not None:
            return self._zip.open(member)  # type: ignore[arg-type]
        if self._tar is not None:
            f = self._tar.extractfile(member)  # type: ignore[arg-type]
            assert f is not None
            return f
        return open(member, "rb")  # type: ignore[call-overload]

    def close(self) -> None:
        for a in (self._zip, self._tar):
            if a is not None:
                a.close()


@contextmanager
def open_archive(source: Path) -> Iterator[Archive]:
    """The archive, or the FER-2013 archive nested in it (the challenge's zip holds fer2013.tar.gz)."""
    archive = Archive(source)
    try:
        if find_csv(archive) is None and find_folders(archive) is None:
            nested = [n for n in archive.members if n.name.lower().endswith(NESTED_ARCHIVES)]
            if len(nested) == 1:
                with tempfile.TemporaryDirectory() as tmp:
                    inner = Path(tmp) / nested[0].name
                    with archive.open(nested[0]) as src, open(inner, "wb") as dst:
                        shutil.copyfileobj(src, dst)
                    inner_archive = Archive(inner)
                    try:
                        yield inner_archive
                    finally:
                        inner_archive.close()
                return
        yield archive
    finally:
        archive.close()


# --- finding the layout and counting ---------------------------------------------------------------


def os_clutter(name: PurePosixPath) -> bool:
    """What macOS adds to an archive made in its Finder: ``__MACOSX/`` copies of every file and
    ``._NAME`` resource forks (named like the photos: they doubled the counts and were imported as
    unreadable faces), and ``.DS_Store``."""
    return "__MACOSX" in name.parts or name.name.startswith("._") or name.name == ".DS_Store"


def find_csv(archive: Archive) -> PurePosixPath | None:
    if archive.bare_csv is not None:
        return archive.bare_csv
    found = [n for n in archive.members if n.name.lower() in CSV_NAMES]
    return min(found, key=lambda n: len(n.parts)) if found else None


def find_folders(archive: Archive) -> dict[PurePosixPath, tuple[str, str]] | None:
    """Image members under ``[PREFIX/]<train|test>/<emotion>/`` -> (split, emotion), when there are any."""
    out: dict[PurePosixPath, tuple[str, str]] = {}
    for name in archive.members:
        parts = [p.lower() for p in name.parts]
        if name.suffix.lower() not in IMAGE_SUFFIXES or len(parts) < 3:
            continue
        split, emotion = parts[-3], emotion_from_folder(name.parts[-2])
        if split in FOLDER_SPLITS and emotion is not None:
            out[name] = (split, emotion)
    return out or None


def count_csv(f: IO[bytes], gzipped: bool) -> tuple[Counter[str], Counter[str], int]:
    """Rows per Usage, per emotion, and the number of malformed rows, each row checked as ``train``
    and ``evaluate`` read it (``readers.fer2013_row``: a negative id, a pixel of 256 and an unknown
    Usage passed here and stopped those)."""
    raw = cast(IO[bytes], gzip.GzipFile(fileobj=f)) if gzipped else f  # closed with ``f`` by the caller
    text = io.TextIOWrapper(raw, encoding="utf-8-sig", errors="surrogateescape", newline="")
    reader = csv.reader(text)
    first = next(reader, [])
    header = fer2013_header(first)
    if header is None or header[2:3] != ["Usage"]:
        raise DownloadError(f"the header is {','.join(first)!r}; expected 'emotion,pixels,Usage'")
    splits: Counter[str] = Counter()
    emotions: Counter[str] = Counter()
    bad = 0
    for row in reader:
        if not any(cell.strip() for cell in row):
            continue
        problem, _, usage = fer2013_row(row, has_usage=True)
        if problem:
            bad += 1
            continue
        splits[usage] += 1
        emotions[EMOTIONS[int(row[0])]] += 1
    return splits, emotions, bad


def check_counts(counts: dict[str, int], expected: dict[str, tuple[int, ...]], unit: str) -> list[str]:
    """What is missing or unexpected, as sentences (empty: complete)."""
    problems = []
    for split, allowed in expected.items():
        n = counts.get(split, 0)
        if n not in allowed:
            want = " or ".join(f"{a:,}" for a in allowed if a)
            problems.append(f"{split} has {n:,} {unit}, expected {want}")
    extra = sorted(set(counts) - set(expected))
    if extra:
        problems.append(f"unexpected splits: {', '.join(extra)}")
    return problems


def in_order(counts: Counter[str], expected: dict) -> Counter[str]:
    """The counts with the expected splits first, in the dataset's order (train before test)."""
    return Counter({k: counts[k] for k in expected if counts[k]} | {k: counts[k] for k in sorted(counts)})


# --- importing -------------------------------------------------------------------------------------


def import_archive(
    source: Path,
    dest: Path,
    allow_partial: bool = False,
    force: bool = False,
    expected: dict[str, tuple[int, ...]] | None = None,
) -> Imported:
    """Check and extract FER-2013 from ``source`` (.zip, .tar(.gz) or folder) into ``dest``.

    ``expected``: counts per split to check against (default: the full dataset of the layout found).
    Nothing is written unless the archive is complete (or ``allow_partial``); ``dest`` is replaced
    only with ``force``, and then in one rename, so an interrupted import leaves no half dataset."""
    if not source.exists():
        raise DownloadError(f"{source}: not found")
    given, dest = dest, Path(os.path.abspath(dest.expanduser()))  # "--to ." has no name to rename by
    if dest.exists() and not dest.is_dir():
        raise DownloadError(f"--to {given}: a file; name a folder")
    if dest.exists() and any(dest.iterdir()):
        if not force:
            raise DownloadError(
                f"{given} already exists and is not empty; choose another --to, or add --force"
            )
        if dest == Path.cwd() or dest in Path.cwd().parents:
            raise DownloadError(
                f"--to {given} --force would replace the folder this command runs in; name another folder"
            )
    with open_archive(source) as archive:
        csv_name = find_csv(archive)
        images = None if csv_name is not None else find_folders(archive)
        if csv_name is None and images is None:
            raise DownloadError(
                f"{source}: no FER-2013 inside: neither fer2013.csv(.gz) nor train/ and test/ folders "
                f"of emotion sub-folders ({len(archive.members)} files, e.g. "
                f"{', '.join(str(n) for n in list(archive.members)[:3]) or 'none'})"
            )
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
        umask = os.umask(0)
        os.umask(umask)
        tmp.chmod(0o777 & ~umask)  # mkdtemp makes it private; the dataset folder is an ordinary one
        try:
            if csv_name is not None:
                result = _import_csv(archive, csv_name, tmp, expected or CSV_SPLITS)
            else:
                assert images is not None
                result = _import_folders(archive, images, tmp, expected or FOLDER_SPLITS)
            if archive.unsafe:
                result.problems.append(
                    f"{len(archive.unsafe)} archive members with unsafe paths were skipped "
                    f"(e.g. {archive.unsafe[0]!r})"
                )
            if result.problems and not allow_partial:
                raise DownloadError(
                    f"{source} is incomplete or damaged: {'; '.join(result.problems)}. Download it again, "
                    "or import it anyway with --allow-partial."
                )
            _move_into_place(tmp, dest)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    # as the user named it: "next: facial-emotion train --data data/fer2013", not an absolute path
    result.path = given / result.path.relative_to(tmp) if result.path != tmp else given
    return result


def _import_csv(archive: Archive, name: PurePosixPath, tmp: Path, expected: dict) -> Imported:
    gzipped = name.name.lower().endswith(".gz")
    target = tmp / ("fer2013.csv.gz" if gzipped else "fer2013.csv")
    with archive.open(name) as src, open(target, "wb") as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
    with open(target, "rb") as f:
        try:
            splits, emotions, bad = count_csv(f, gzipped)
        except DownloadError as e:
            raise DownloadError(f"{name}: {e}") from None
        except (OSError, EOFError, UnicodeDecodeError, csv.Error) as e:
            raise DownloadError(f"{name}: cannot read the csv ({e})") from None
    problems = check_counts(dict(splits), expected, "rows")
    splits = in_order(splits, expected)
    if bad:
        problems.append(f"{bad:,} malformed rows (emotion id not 0-6, or not {PIXELS} pixels)")
    return Imported(target, "csv", dict(splits), dict(emotions), problems)


def _import_folders(
    archive: Archive, images: dict[PurePosixPath, tuple[str, str]], tmp: Path, expected: dict
) -> Imported:
    splits: Counter[str] = Counter()
    emotions: Counter[str] = Counter()
    for name, (split, emotion) in images.items():
        folder = tmp / split / emotion
        folder.mkdir(parents=True, exist_ok=True)
        with archive.open(name) as src, open(folder / name.name, "wb") as dst:
            shutil.copyfileobj(src, dst)
        splits[split] += 1
        emotions[emotion] += 1
    problems = check_counts(dict(splits), expected, "images")
    splits = in_order(splits, expected)
    missing = [e for e in EMOTIONS if emotions[e] == 0]
    if missing:
        problems.append(f"no images of {', '.join(missing)}")
    return Imported(tmp, "folders", dict(splits), dict(emotions), problems)


def _move_into_place(tmp: Path, dest: Path) -> None:
    """``tmp`` becomes ``dest``; an old ``dest`` is removed only once the new one is in place. An
    empty ``dest`` folder stays and receives ``tmp``'s contents: it may be the folder a shell is in
    (`mkdir data && cd data && facial-emotion download ... --to .`), which a rename would leave."""
    if dest.is_dir() and not any(dest.iterdir()):
        for child in sorted(tmp.iterdir()):
            child.rename(dest / child.name)
        return
    old = None
    if dest.exists():
        old = dest.with_name(f".{dest.name}.old-{os.getpid()}")
        dest.rename(old)
    try:
        tmp.rename(dest)
    except OSError:
        if old is not None:
            old.rename(dest)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


# --- Kaggle ----------------------------------------------------------------------------------------


def kaggle_credentials() -> str | None:
    """Where the user's Kaggle credentials are, or None. Looked at before anything touches the
    network, so that a machine without them gets the instructions at once."""
    if os.environ.get("KAGGLE_USERNAME") and os.environ.get("KAGGLE_KEY"):
        return "KAGGLE_USERNAME / KAGGLE_KEY"
    if os.environ.get("KAGGLE_API_TOKEN"):
        return "KAGGLE_API_TOKEN"
    folder = Path(os.environ.get("KAGGLE_CONFIG_DIR") or Path.home() / ".kaggle")
    for name in ("kaggle.json", "access_token"):
        if (folder / name).is_file():
            return str(folder / name)
    return None


def download_kaggle(
    dest: Path, dataset: str = KAGGLE_DATASET, allow_partial: bool = False, force: bool = False
) -> Imported:
    """Download ``dataset`` with kagglehub (into its cache), then import it like an archive."""
    if kaggle_credentials() is None:
        raise NoCredentials("no Kaggle credentials found.\n" + how_to_get_it())
    try:
        import kagglehub
    except ImportError:
        raise DownloadError(
            f"downloading from Kaggle needs the kaggle extra: {install_hint('kaggle')}.\n" + how_to_get_it()
        ) from None
    try:
        folder = Path(kagglehub.dataset_download(dataset))
    except Exception as e:  # kagglehub raises requests', its own and OS errors: all mean 'not fetched'
        raise DownloadError(f"could not download {dataset} from Kaggle ({e}).\n" + how_to_get_it()) from None
    return import_archive(folder, dest, allow_partial=allow_partial, force=force)
