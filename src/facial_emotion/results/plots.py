"""The timeline plot of a video: each tracked face's emotion probabilities over time (matplotlib)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from facial_emotion.inference.video import VideoResult
from facial_emotion.labels import COLORS_RGB
from facial_emotion.results.files import atomic_write_bytes


def plot_timeline(result: VideoResult, path: Path, classes: list[str]) -> None:
    """A PNG with one panel per tracked face. Needs matplotlib (the [plot] or [train] extra)."""
    import matplotlib  # imported here: the base install does without it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ids = sorted({r.face.track_id or 0 for r in result.timeline})
    n = max(1, len(ids))
    fig, axes = plt.subplots(n, 1, figsize=(10, 2.4 * n), squeeze=False, sharex=True)
    for ax, tid in zip(axes[:, 0], ids, strict=False):
        rows = [r for r in result.timeline if r.face.track_id == tid]
        t = [r.time_s for r in rows]
        for c in classes:
            color = np.array(COLORS_RGB.get(c, (0, 0, 0))) / 255
            ax.plot(t, [r.face.scores[c] for r in rows], label=c, color=color)
        ax.set(ylabel=f"face #{tid}", ylim=(0, 1))
    axes[0, 0].legend(ncol=7, fontsize=7, loc="upper center", bbox_to_anchor=(0.5, 1.35))
    axes[-1, 0].set_xlabel("time (s)")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
