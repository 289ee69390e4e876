"""Checkpoints written atomically: a run killed at any moment keeps the previous one intact."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.optim.swa_utils import AveragedModel

from facial_emotion.training.config import TrainConfig

LAST = "last.pt"  # everything --resume needs, rewritten after every epoch
BEST = "best.pt"  # the best weights so far: what the export turns into the model file
# The per-epoch log a run keeps beside its checkpoints (written by the loop, read back by export).
METRICS_JSON = "metrics.json"


def save_checkpoint(state: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        torch.save(state, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class CheckpointError(Exception):
    """A checkpoint that is missing, damaged or not one of ours."""


def load_checkpoint(path: Path) -> dict[str, Any]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: checkpoint not found") from None
    except Exception as e:  # torch raises pickle, zip and runtime errors for damaged files
        raise CheckpointError(f"{path}: not a readable checkpoint ({str(e).splitlines()[0]})") from None
    if not isinstance(state, dict) or "config" not in state or "model" not in state:
        raise CheckpointError(f"{path}: not a facial-emotion checkpoint")
    return state


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
        }
