"""Checkpoints written atomically: a run killed at any moment keeps the previous one intact."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch

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
