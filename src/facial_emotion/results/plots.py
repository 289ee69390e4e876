"""Charts of a video (each tracked face's emotion probabilities over time) and of a session (each
person's emotion timeline and time shares), with matplotlib."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from facial_emotion.inference.session import PersonSummary, gap_limit
from facial_emotion.inference.video import VideoResult
from facial_emotion.labels import color_rgb
from facial_emotion.results.files import atomic_write_bytes


def plot_timeline(result: VideoResult, path: Path, classes: list[str]) -> None:
    """A PNG with one panel per tracked face. Needs matplotlib (the [plot] or [train] extra)."""
    import matplotlib  # imported here: the base install does without it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ids = sorted({r.face.track_id or 0 for r in result.timeline})
    n = max(1, len(ids))
    fig, axes = plt.subplots(n, 1, figsize=(10, 2.4 * n), squeeze=False, sharex=True)
    # A face away for longer than the timeline's gap rule is a gap in its lines, not a slope across it
    # (the usual interval from the frames with faces: the result keeps no others).
    times = np.unique([r.time_s for r in result.timeline])
    gap = gap_limit(float(np.median(np.diff(times)))) if len(times) > 1 else np.inf
    for ax, tid in zip(axes[:, 0], ids, strict=False):
        rows = [r for r in result.timeline if (r.face.track_id or 0) == tid]
        t = np.array([r.time_s for r in rows])
        breaks = np.flatnonzero(np.diff(t) > gap) + 1
        for c in classes:
            color = np.array(color_rgb(c)) / 255
            scores = np.array([r.face.scores[c] for r in rows])
            ax.plot(np.insert(t, breaks, np.nan), np.insert(scores, breaks, np.nan), label=c, color=color)
        ax.set(ylabel=f"face #{tid}", ylim=(0, 1))
    # The whole video's time: a face seen once, or none, drew on a made-up axis (with a warning).
    axes[-1, 0].set_xlim(0, max(result.end_s or 0.0, float(times.max()) if len(times) else 0.0, 1e-3))
    if ids:
        axes[0, 0].legend(ncol=7, fontsize=7, loc="upper center", bbox_to_anchor=(0.5, 1.35))
    else:
        axes[0, 0].text(0.5, 0.5, "no faces found", ha="center", va="center", transform=axes[0, 0].transAxes)
        axes[0, 0].set(ylim=(0, 1))
    axes[-1, 0].set_xlabel("time (s)")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def plot_session(people: list[PersonSummary], path: Path, classes: list[str], max_people: int = 8) -> None:
    """A PNG: per person (the ``max_people`` seen longest), the timeline of their emotion as coloured
    bars over time, and beside it their time share of each emotion. Needs matplotlib."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = sorted(sorted(people, key=lambda p: -p.seconds)[:max_people], key=lambda p: p.track_id)
    n = max(1, len(shown))
    fig, axes = plt.subplots(
        n, 2, figsize=(10, 0.9 + 0.8 * n), squeeze=False, gridspec_kw={"width_ratios": [4, 1.3]}
    )
    rgb = {c: np.array(color_rgb(c)) / 255 for c in classes}
    end = max((p.timeline[-1].end_s for p in shown if p.timeline), default=1.0)
    for (line, bars), p in zip(axes, shown, strict=False):
        line.broken_barh(
            [(s.start_s, s.end_s - s.start_s) for s in p.timeline],
            (0, 1),
            facecolors=[rgb[s.emotion] for s in p.timeline],
        )
        line.set(xlim=(0, end), ylim=(0, 1), yticks=[])
        line.set_ylabel(f"#{p.track_id}", rotation=0, ha="right", va="center")
        bars.barh(range(len(classes)), [p.share[c] for c in classes], color=[rgb[c] for c in classes])
        bars.set(xlim=(0, 1), yticks=[], xticks=[0, 0.5, 1])
        bars.invert_yaxis()
        bars.set_title(f"{p.dominant_emotion}, {p.changes} changes", fontsize=8)
    axes[-1, 0].set_xlabel("time (s)")
    axes[-1, 1].set_xlabel("time share")
    handles = [plt.Rectangle((0, 0), 1, 1, color=rgb[c]) for c in classes]
    fig.legend(handles, classes, ncol=len(classes), fontsize=8, loc="upper center", frameon=False)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.35 / (0.9 + 0.8 * n)))
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
