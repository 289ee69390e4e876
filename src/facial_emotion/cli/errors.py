"""What the ``facial-emotion`` command treats as the user's mistake (one line, exit code 2) rather than
a bug, and its exit codes: 0 success, 1 some inputs failed (others were still processed), 2 usage or
data error."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from facial_emotion.arguments import finite_number
from facial_emotion.extras import install_hint

EXIT_OK, EXIT_PARTIAL, EXIT_USAGE = 0, 1, 2
MODEL_HELP = (
    "ONNX model file, or a built-in model's name: default (the int8 one), fp32, ensemble, fast "
    "(default: $FACIAL_EMOTION_MODEL, else default)"
)


def at_least(minimum: int) -> Callable[[str], int]:
    """argparse type of an integer option: refused below ``minimum`` with the option named (a negative
    --max-frames meant one frame, a zero one no frame and a misleading error about the video)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, not {value}")
        return value

    return parse


def finite_float(text: str) -> float:
    """argparse type of every float option: nan and inf are refused here, since they pass every
    ``<= 0`` check after it (and then crash or time every file out)."""
    try:
        return finite_number("the value", float(text))
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


class UserError(Exception):
    """A problem the user can fix; printed as one line, exit code 2."""


def output_file(path: str, option: str, inputs: Iterable[str | Path] = ()) -> Path:
    """An output file the user named, checked before any work: a folder of that name, a file where
    its folder should be, a folder nothing can be written in, or one of the command's own ``inputs``
    (the output would replace it) is one error naming the option now, not an OS error about a temp
    file after a long video."""
    target = Path(path)
    if target.is_dir():
        raise UserError(f"{option} {path}: is a folder; name a file (in it, say)")
    folder = next((p for p in target.parents if p.exists()), None)
    if folder is not None and not folder.is_dir():
        raise UserError(f"{option} {path}: {folder} is a file, not a folder")
    if any(_same_file(target, Path(source)) for source in inputs):
        raise UserError(f"{option} {path}: is one of the inputs; writing it would replace that input")
    _check_writable(folder or Path.cwd(), option, path)  # outputs go to a temp file beside them first
    return target


def output_folder(path: str, option: str) -> Path:
    """An output folder the user named, checked before any work: a file of that name (or where a
    folder above it should be), or a place nothing can be written in, is one error naming the option."""
    target = Path(path)
    blocker = next((p for p in (target, *target.parents) if p.exists() and not p.is_dir()), None)
    if blocker is not None:
        raise UserError(f"{option} {path}: {blocker} is a file; name a folder")
    _check_writable(next((p for p in (target, *target.parents) if p.exists()), Path.cwd()), option, path)
    return target


def _check_writable(folder: Path, option: str, path: str) -> None:
    """A file can be made in ``folder`` (a read-only mount, /proc and permissions say no), else one
    error naming the option and the path the user gave."""
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as e:
        raise UserError(f"{option} {path}: cannot write in {folder} ({e.strerror})") from None


def model_output(path: str, option: str, inputs: Iterable[str | Path] = ()) -> Path:
    """An output model file: ``output_file``, named .onnx, since its description is written beside
    it as the same name in .json (a .json model path would be overwritten by its description)."""
    target = output_file(path, option, inputs)
    if target.suffix.lower() != ".onnx":
        raise UserError(
            f"{option} {path}: name the model file .onnx (its description goes beside it, as "
            f"{target.with_suffix('.json').name})"
        )
    return target


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


class MissingDependency(UserError):
    """An optional package that this command needs is not installed."""


# Every exception type that means 'bad input', not 'bug', by module. A module that was never imported
# cannot have raised, so only loaded modules are looked at: an error path never imports torch.
_USER_ERRORS = {
    "facial_emotion.settings": ("SettingsError",),
    "facial_emotion.data.dataset": ("DatasetError",),
    "facial_emotion.data.download": ("DownloadError",),
    "facial_emotion.inference.decode": ("ImageError",),
    "facial_emotion.inference.detectors": ("DetectorError",),
    "facial_emotion.inference.video": ("VideoError",),
    "facial_emotion.model_file": ("ModelFileError",),
    "facial_emotion.results.video_encoders": ("MediaError",),
    "facial_emotion.training.config": ("ConfigError",),
    "facial_emotion.training.checkpoint": ("CheckpointError",),
    "facial_emotion.service.webhook": ("WebhookError",),
    "facial_emotion.batch.job": ("BatchError",),
    "facial_emotion.feedback": ("FeedbackError",),
}


def user_errors() -> tuple[type[BaseException], ...]:
    errors: list[type[BaseException]] = [UserError]
    for module, names in _USER_ERRORS.items():
        if module in sys.modules:
            errors += [getattr(sys.modules[module], name) for name in names]
    return tuple(errors)


@contextlib.contextmanager
def needs_extra(extra: str, command: str) -> Iterator[None]:
    """An optional package that ``command`` needs is missing: one line naming the extra that brings it."""
    try:
        yield
    except ImportError as e:
        raise MissingDependency(
            f"{command} needs the [{extra}] extra ({e.name} is missing): {install_hint(extra)}"
        ) from None
