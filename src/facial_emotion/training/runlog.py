"""What a run tells as it goes: one log line per epoch with an ETA, and beside the checkpoints its
metrics (metrics.csv, metrics.json, rewritten after every epoch) and learning curves (curves.png, at
most once a minute and after the last epoch)."""

from __future__ import annotations

import json
import logging
import statistics
import time
from collections import deque
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

from facial_emotion.data import FaceDataset
from facial_emotion.evaluation.plots import plot_training_curves
from facial_emotion.results.files import atomic_write_bytes
from facial_emotion.training.checkpoint import METRICS_JSON

log = logging.getLogger(__name__)


CURVES_EVERY_S = 60.0  # a plot takes ~0.3 s: every epoch on a CPU (~1 min), every ~30 epochs on a GPU


def write_metrics(out: Path, history: list[dict[str, Any]], curves: bool = True) -> None:
    if not history:
        return
    keys = list(history[0].keys())
    lines = [",".join(keys)] + [",".join(str(h[k]) for k in keys) for h in history]
    atomic_write_bytes(out / "metrics.csv", ("\n".join(lines) + "\n").encode())
    atomic_write_bytes(out / METRICS_JSON, json.dumps(history, indent=1).encode())
    if curves:
        plot_training_curves(history, out / "curves.png")


def eta_minutes(epochs_left: int, recent_epoch_s: Iterable[float]) -> float:
    """Minutes until the run ends, from the median of the recent epochs' times: one epoch that took
    an hour because the process was stopped (``kill -STOP``, a paused container) must not make the
    next five ETAs say days, as their mean did."""
    return epochs_left * statistics.median(recent_epoch_s) / 60


class RunLog:
    """The log of one run in ``out``: ``start_epoch`` as an epoch begins, ``end_epoch`` once its
    checkpoints are saved."""

    def __init__(self, out: Path, epochs: int) -> None:
        self.out, self.epochs = out, epochs
        # Whole-epoch wall times (training, validation, checkpoint) for the ETA; the training steps
        # alone (epoch_s) gave an ETA about 10 % short.
        self.recent_wall_s: deque[float] = deque(maxlen=5)
        self.epoch_started = time.monotonic()
        self.curves_drawn = -CURVES_EVERY_S  # the first epoch draws them

    def start(self, arch: str, train: FaceDataset, val: FaceDataset | None, precision: str) -> None:
        """The run's opening line: what trains on which faces, and how."""
        log.info(
            "training %s on %d faces (%s), validating on %s, precision %s, %d threads",
            arch,
            len(train),
            ",".join(train.splits),
            f"{len(val)} faces" if val else "nothing",
            precision,
            torch.get_num_threads(),
        )
        counts = train.class_counts()
        log.info(
            "training faces per class: %s",
            ", ".join(f"{name} {n}" for name, n in zip(train.class_names, counts, strict=True)),
        )
        missing = [name for name, n in zip(train.class_names, counts, strict=True) if n == 0]
        if missing:  # a class absent from the data is never learnt: its output stays at chance
            log.warning(
                "no training faces of %s: the model cannot learn %s",
                ", ".join(missing),
                "it" if len(missing) == 1 else "them",
            )

    def start_epoch(self) -> None:
        self.epoch_started = time.monotonic()

    def end_epoch(self, history: list[dict[str, Any]], improved: bool) -> None:
        """Rewrite the metrics files and log the epoch's row (``*`` where it saved new best weights)."""
        row = history[-1]
        curves = time.monotonic() - self.curves_drawn >= CURVES_EVERY_S or row["epoch"] >= self.epochs
        write_metrics(self.out, history, curves)
        if curves:
            self.curves_drawn = time.monotonic()
        self.recent_wall_s.append(time.monotonic() - self.epoch_started)
        eta_min = eta_minutes(self.epochs - row["epoch"], self.recent_wall_s)
        log.info(
            "epoch %d/%d %s%s | eta %.0f min",
            row["epoch"],
            self.epochs,
            " ".join(f"{k}={v}" for k, v in row.items() if k != "epoch"),
            " *" if improved else "",
            eta_min,
        )
