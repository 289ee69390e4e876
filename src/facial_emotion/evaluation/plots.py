"""Plots as PNG files (matplotlib, headless)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np


def _figure():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> None:
    from facial_emotion.results.files import atomic_write_bytes

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    atomic_write_bytes(path, buf.getvalue())


def plot_training_curves(history: list[dict[str, Any]], path: Path) -> None:
    plt = _figure()
    epochs = [h["epoch"] for h in history]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    ax1.plot(epochs, [h["train_loss"] for h in history], label="train")
    if "val_loss" in history[0]:
        ax1.plot(epochs, [h["val_loss"] for h in history], label="validation")
    ax1.set(title="Loss", xlabel="epoch")
    ax1.legend()
    ax2.plot(epochs, [h["train_acc"] for h in history], label="train (augmented)")
    if "val_acc" in history[0]:
        ax2.plot(epochs, [h["val_acc"] for h in history], label="validation")
    if "val_acc_ema" in history[0]:
        ax2.plot(epochs, [h["val_acc_ema"] for h in history], label="validation (EMA)")
    if "val_acc_swa" in history[0]:
        ax2.plot(epochs, [h["val_acc_swa"] for h in history], label="validation (SWA)")
    ax2.set(title="Accuracy", xlabel="epoch")
    ax2.legend()
    ax2.grid(alpha=0.3)
    _save(fig, path)
    plt.close(fig)


def plot_confusion_matrix(
    cm: np.ndarray, classes: list[str], path: Path, normalize: bool, title: str
) -> None:
    plt = _figure()
    data = cm.astype(float)
    empty = cm.sum(axis=1) == 0  # a class with no faces: its row is empty, not 0 (as the tables say)
    if normalize:
        data = data / np.maximum(data.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    im = ax.imshow(np.ma.masked_array(data, np.repeat(empty[:, None], len(classes), axis=1)), cmap="Blues")
    fig.colorbar(im, ax=ax, fraction=0.046)
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    ax.set(xlabel="predicted", ylabel="true", title=title)
    for i in range(len(classes)):
        for j in range(len(classes)):
            text = "—" if empty[i] else f"{data[i, j]:.2f}" if normalize else f"{int(cm[i, j])}"
            ax.text(
                j,
                i,
                text,
                ha="center",
                va="center",
                fontsize=8,
                color="white" if data[i, j] > data.max() / 2 else "black",
            )
    _save(fig, path)
    plt.close(fig)


def plot_mistakes(faces: np.ndarray, captions: list[str], path: Path, title: str) -> None:
    plt = _figure()
    n = len(faces)
    cols = 8
    rows = max(1, (n + cols - 1) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 1.6, rows * 1.9))
    for ax in np.atleast_1d(axes).ravel():
        ax.axis("off")
    for ax, face, cap in zip(np.atleast_1d(axes).ravel(), faces, captions, strict=False):
        ax.imshow(face, cmap="gray", vmin=0, vmax=255)
        ax.set_title(cap, fontsize=7)
    fig.suptitle(title)
    _save(fig, path)
    plt.close(fig)


RELIABLE_BIN_FACES = 20


def plot_reliability(curves: dict[str, list[dict[str, float]]], path: Path, title: str) -> None:
    """Reliability diagram: accuracy against mean confidence per confidence bin (the bins of
    ``calibration.reliability``), one line per curve, the diagonal where confidence means what it says,
    and the share of faces in each bin of the first curve as bars."""
    plt = _figure()
    fig, ax = plt.subplots(figsize=(5.5, 5))
    first = next(iter(curves.values()))
    total = sum(b["faces"] for b in first) or 1
    ax.bar(
        [(b["from"] + b["to"]) / 2 for b in first],
        [b["faces"] / total for b in first],
        width=[b["to"] - b["from"] for b in first],
        color="0.88",
        edgecolor="0.7",
        label=f"share of faces ({next(iter(curves)).split(',')[0]})",  # the curve's name, its ECE left out
    )
    ax.plot([0, 1], [0, 1], "--", color="0.4", lw=1, label="perfectly calibrated")
    for name, bins in curves.items():
        (line,) = ax.plot([b["confidence"] for b in bins], [b["accuracy"] for b in bins], "-", label=name)
        # A bin of a few faces says little: its point hollow, so that one face at accuracy 0 is not
        # read as a measured failure.
        for filled in (True, False):
            few = [b for b in bins if (b["faces"] >= RELIABLE_BIN_FACES) == filled]
            ax.plot(
                [b["confidence"] for b in few],
                [b["accuracy"] for b in few],
                "o",
                color=line.get_color(),
                markerfacecolor=line.get_color() if filled else "none",
            )
    ax.plot(
        [],
        [],
        "o",
        color="0.3",
        markerfacecolor="none",
        label=f"bin of fewer than {RELIABLE_BIN_FACES} faces",
    )
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="confidence (top probability)", ylabel="accuracy", title=title)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize=8)
    _save(fig, path)
    plt.close(fig)
