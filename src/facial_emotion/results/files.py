"""Atomic file writing: every output file (results, models, benchmark JSON) is written to a temp file
beside its target and renamed over it, so a crash or a full disk never leaves half a file.

Imports nothing of ours, so every layer (model files, results, benchmarks) can use it.
"""

from __future__ import annotations

import errno
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_path(path: Path, suffix: str = ".tmp") -> Iterator[Path]:
    """A temp path beside ``path`` to write to (by any writer: OpenCV, matplotlib, torch...); it is
    renamed to ``path`` when the block ends without an error and removed when it raises."""
    path = Path(path)
    if path.is_dir():  # else the rename fails naming the temp file, after the work was done
        raise IsADirectoryError(errno.EISDIR, "is a folder, not a file", str(path))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    except OSError as e:  # name the file the caller asked for, not the hidden temp one
        raise OSError(e.errno, f"cannot write here ({e.strerror})", str(path)) from None
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; outputs are ordinary readable files
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temp file and a rename."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: Path, text: str) -> None:
    """UTF-8 text; characters that cannot be encoded (file names with undecodable bytes, kept by
    Python as surrogate escapes) are written back as their original bytes."""
    atomic_write_bytes(path, text.encode("utf-8", "surrogateescape"))
