"""Checkpoints written atomically and verified on load.

A run killed at any moment keeps the previous checkpoint intact (temp file + rename), and the one
before that too: saving last.pt first keeps the old one as last.prev.pt (a hard link, renamed into
place), so ``--resume`` can fall back to it when last.pt is damaged. Each checkpoint carries its
format version and a SHA-256 of its payload (every tensor's bytes, every value), checked on load:
flipped bytes give one clear ``CheckpointError`` naming the file, never garbage weights. The file stays
a plain ``torch.save`` dict, so ``torch.load`` still reads it.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.optim.swa_utils import AveragedModel

from facial_emotion.results.files import atomic_path
from facial_emotion.training.config import TrainConfig

log = logging.getLogger(__name__)

LAST = "last.pt"  # everything --resume needs, rewritten after every epoch
LAST_PREV = "last.prev.pt"  # the last.pt before that: --resume falls back to it if last.pt is damaged
BEST = "best.pt"  # the best weights so far: what the export turns into the model file
# The per-epoch log a run keeps beside its checkpoints (written by the loop, read back by export).
METRICS_JSON = "metrics.json"

FORMAT_VERSION = 2  # 1: no version and no checksum (read, with a warning that nothing was verified)
_INTEGRITY_KEYS = ("format_version", "sha256")
# What --resume needs from a last.pt (a best.pt holds weights only).
RESUME_KEYS = ("epoch", "model", "optimizer", "scheduler", "history", "best")


class CheckpointError(Exception):
    """A checkpoint that is missing, damaged or not one of ours."""


def _digest(value: Any, h: Any) -> None:
    """Feed a checkpoint's values into ``h`` in a fixed order: what was saved and what is loaded
    back hash the same, whatever the pickle's layout."""
    if isinstance(value, torch.Tensor):
        t = value.detach().cpu().contiguous()
        h.update(f"T{t.dtype}{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    elif isinstance(value, dict):
        h.update(f"D{len(value)}".encode())
        for k in sorted(value, key=repr):
            h.update(f"K{k!r}".encode())
            _digest(value[k], h)
    elif isinstance(value, (list, tuple)):
        h.update(f"L{len(value)}".encode())
        for v in value:
            _digest(v, h)
    elif value is None or isinstance(value, (bool, int, float, str, bytes)):
        h.update(f"V{value!r}".encode())
    else:  # anything else a scheduler may keep: its type only (a repr may hold an address)
        h.update(f"O{type(value).__qualname__}".encode())


def payload_sha256(state: dict[str, Any]) -> str:
    h = hashlib.sha256()
    _digest({k: v for k, v in state.items() if k not in _INTEGRITY_KEYS}, h)
    return h.hexdigest()


def save_checkpoint(state: dict[str, Any], path: Path) -> None:
    """Write ``state`` with its format version and checksum, atomically; a last.pt that is replaced
    is kept as last.prev.pt."""
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {**state, "format_version": FORMAT_VERSION, "sha256": payload_sha256(state)}
    if path.name == LAST and path.exists():
        _keep_previous(path, path.with_name(LAST_PREV))
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def _keep_previous(path: Path, prev: Path) -> None:
    """``path`` becomes ``prev`` as well (a hard link, renamed into place: ``path`` never goes away)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{prev.name}.", suffix=".tmp")
    os.close(fd)
    os.unlink(tmp)
    try:
        try:
            os.link(path, tmp)
        except OSError:  # a file system without hard links
            import shutil

            shutil.copyfile(path, tmp)
        os.replace(tmp, prev)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def remove_stale_temp_files(folder: Path) -> int:
    """Temp files (``.NAME.xxxx.tmp``) left by a run killed while writing; returns how many."""
    removed = 0
    for tmp in folder.glob(".*.tmp"):
        if tmp.is_file():
            with contextlib.suppress(OSError):
                tmp.unlink()
                removed += 1
    if removed:
        log.info("removed %d temp file(s) left in %s by an interrupted run", removed, folder)
    return removed


def load_checkpoint(path: Path, require: tuple[str, ...] = ("config", "model")) -> dict[str, Any]:
    """A checkpoint, verified: ``CheckpointError`` naming the file if it is missing, damaged (its
    checksum does not match), of a newer format, or lacks one of the keys in ``require``."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: checkpoint not found") from None
    except Exception as e:  # torch raises pickle, zip and runtime errors for damaged files
        if Path(path).suffix.lower() == ".onnx":
            raise CheckpointError(
                f"{path}: a model file already, not a training checkpoint (its run's best.pt is one)"
            ) from None
        first = (str(e).splitlines() or [type(e).__name__])[0]
        raise CheckpointError(f"{path}: damaged or not a checkpoint ({first})") from None
    if not isinstance(state, dict) or "config" not in state or "model" not in state:
        raise CheckpointError(f"{path}: not a facial-emotion checkpoint")
    version = state.get("format_version", 1)
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format {version!r} is newer than this version of facial-emotion reads "
            f"({FORMAT_VERSION}): upgrade facial-emotion"
        )
    if version >= 2:
        if state.get("sha256") != payload_sha256(state):
            raise CheckpointError(f"{path}: checkpoint is damaged (its SHA-256 checksum does not match)")
    else:
        log.warning("%s: written by an older facial-emotion, without a checksum: not verified", path)
    missing = [k for k in require if k not in state]
    if missing:
        if "epoch" in missing and "optimizer" in missing:
            raise CheckpointError(
                f"{path}: holds best weights only (a copy of best.pt?), not a run to resume: --resume "
                f"needs the {LAST} that training writes"
            )
        raise CheckpointError(f"{path}: not a complete checkpoint (missing {', '.join(missing)})")
    return state


def load_resume_checkpoint(out: Path) -> dict[str, Any]:
    """The run in ``out`` to resume: its last.pt, or last.prev.pt (one epoch back) if last.pt is
    damaged, saying so. ``CheckpointError`` about last.pt if neither is usable."""
    try:
        return load_checkpoint(out / LAST, RESUME_KEYS)
    except CheckpointError as e:
        if not (out / LAST_PREV).is_file():
            raise
        try:
            prev = load_checkpoint(out / LAST_PREV, RESUME_KEYS)
        except CheckpointError:
            raise e from None
        log.warning(
            "%s; resuming from %s instead (epoch %d, one epoch back)", e, LAST_PREV, prev["epoch"] + 1
        )
        return prev


@dataclass
class TrainingState:
    """Everything a run changes as it trains, and so everything last.pt keeps for ``--resume``."""

    cfg: TrainConfig
    num_classes: int
    machine: str  # CPU, cores and precision, reported in the exported model's metadata
    model: torch.nn.Module
    ema: AveragedModel | None
    swa: AveragedModel | None
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    history: list[dict[str, Any]] = field(default_factory=list)  # one metrics row per epoch
    best: dict[str, Any] = field(default_factory=lambda: {"val_acc": -1.0, "epoch": -1})
    splits: dict[str, str] = field(default_factory=dict)  # {"train": ..., "val": ...} as the run used them
    faces: dict[str, Any] = field(default_factory=dict)  # loop.faces_fingerprint: --resume checks it

    def restore(self, last: dict[str, Any]) -> int:
        """Take up the run saved in ``last`` (a last.pt); returns the epoch to go on with."""
        self.model.load_state_dict(last["model"])
        if self.ema is not None and last.get("ema"):
            self.ema.load_state_dict(last["ema"])
        if self.swa is not None and last.get("swa"):
            self.swa.load_state_dict(last["swa"])
        self.optimizer.load_state_dict(last["optimizer"])
        self.scheduler.load_state_dict(last["scheduler"])
        self.history, self.best = last["history"], last["best"]
        return last["epoch"] + 1

    def last_checkpoint(self, epoch: int) -> dict[str, Any]:
        """The last.pt of the run at the end of (0-based) ``epoch``."""
        return {
            "config": self.cfg.to_dict(),
            "epoch": epoch,
            "model": self.model.state_dict(),
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "swa": self.swa.state_dict() if self.swa is not None else None,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "history": self.history,
            "best": self.best,
            "num_classes": self.num_classes,
            "machine": self.machine,
            "splits": self.splits,
            "faces": self.faces,
        }

    def best_checkpoint(self) -> dict[str, Any]:
        """The best.pt of the run: the weights ``best["weights"]`` names (model, ema or swa)."""
        averaged = {"ema": self.ema, "swa": self.swa}.get(self.best["weights"])
        weights = averaged.module if averaged is not None else self.model
        return {
            "config": self.cfg.to_dict(),
            "model": weights.state_dict(),
            "best": self.best,
            "num_classes": self.num_classes,
            "history": self.history,  # a later --init-from stage reports this stage's time from it
            "machine": self.machine,
            "splits": self.splits,
        }
