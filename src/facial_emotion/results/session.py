"""Session summaries and events as text: JSON (CLI, the live stream, the webhook), CSV and the
terminal lines. The same functions serve ``video``, ``webcam`` and the service, so they agree.

JSON of a person: ``track_id``, ``frames``, ``first_s``, ``last_s``, ``seconds`` (time seen),
``dominant_emotion``, ``share`` (time share per emotion, sums to 1), ``changes`` and ``timeline``
(``[{"emotion", "start_s", "end_s"}]``). CSV: one row per person, the shares as columns and the
timeline as ``emotion start-end`` items separated by ``; ``.
"""

from __future__ import annotations

import csv
import io
from dataclasses import asdict
from pathlib import Path
from typing import Any

from facial_emotion.inference.session import EmotionEvent, PersonSummary
from facial_emotion.results.files import atomic_write_text
from facial_emotion.results.schema import DECIMALS


def _r(x: float) -> float:
    return round(x, 3)  # times: a millisecond is plenty


def person_json(p: PersonSummary) -> dict[str, Any]:
    return {
        "track_id": p.track_id,
        "frames": p.frames,
        "first_s": _r(p.first_s),
        "last_s": _r(p.last_s),
        "seconds": _r(p.seconds),
        "dominant_emotion": p.dominant_emotion,
        "share": {k: round(v, DECIMALS) for k, v in p.share.items()},
        "changes": p.changes,
        "timeline": [
            {"emotion": s.emotion, "start_s": _r(s.start_s), "end_s": _r(s.end_s)} for s in p.timeline
        ],
    }


def event_json(event: EmotionEvent) -> dict[str, Any]:
    """An event as the stream and the webhook send it: ``type`` 'event', then its fields (those that
    do not apply to its kind left out)."""
    fields = {k: (_r(v) if isinstance(v, float) else v) for k, v in asdict(event).items()}
    if event.kind == "change":
        fields.pop("held_s")
    else:
        fields.pop("previous"), fields.pop("previous_s")
    return {"type": "event", **fields}


def session_json(people: list[PersonSummary], events: list[EmotionEvent] | None = None) -> dict[str, Any]:
    doc: dict[str, Any] = {"people": [person_json(p) for p in people]}
    if events is not None:
        doc["events"] = [event_json(e) for e in events]
    return doc


def session_csv(people: list[PersonSummary], classes: list[str]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(
        ["track_id", "frames", "first_s", "last_s", "seconds", "dominant_emotion", "changes"]
        + [f"share_{c}" for c in classes]
        + ["timeline"]
    )
    for p in people:
        timeline = "; ".join(f"{s.emotion} {s.start_s:.3f}-{s.end_s:.3f}" for s in p.timeline)
        w.writerow(
            [p.track_id, p.frames, _r(p.first_s), _r(p.last_s), _r(p.seconds), p.dominant_emotion, p.changes]
            + [round(p.share[c], DECIMALS) for c in classes]
            + [timeline]
        )
    return buf.getvalue()


def session_lines(people: list[PersonSummary], limit: int = 8) -> list[str]:
    """For the terminal: per person, time seen, dominant emotion, shares over 5 %, changes and the
    first ``limit`` segments of the timeline."""
    lines = []
    for p in people:
        share = ", ".join(
            f"{k} {v:.0%}" for k, v in sorted(p.share.items(), key=lambda kv: -kv[1]) if v >= 0.05
        )
        lines.append(
            f"  person #{p.track_id}: {p.seconds:.1f} s seen ({p.frames} frame{'' if p.frames == 1 else 's'}), mostly "
            f"{p.dominant_emotion} ({share}), {p.changes} change{'' if p.changes == 1 else 's'}"
        )
        segments = [f"{s.emotion} {s.start_s:.1f}-{s.end_s:.1f}s" for s in p.timeline[:limit]]
        more = f" ... (+{len(p.timeline) - limit})" if len(p.timeline) > limit else ""
        lines.append(f"    timeline: {', '.join(segments)}{more}")
    return lines or ["  no faces found"]


def write_session(
    path: Path, people: list[PersonSummary], classes: list[str], events: list[EmotionEvent]
) -> None:
    """By suffix: .json (summary and events), .csv (one row per person) or .png (the chart; needs
    matplotlib)."""
    suffix = path.suffix.lower()
    if suffix == ".json":
        import json

        atomic_write_text(path, json.dumps(session_json(people, events), indent=2) + "\n")
    elif suffix == ".csv":
        atomic_write_text(path, session_csv(people, classes))
    elif suffix == ".png":
        from facial_emotion.results.plots import plot_session

        plot_session(people, path, classes)
    else:
        raise ValueError(f"{path}: a session summary is written as .json, .csv or .png")
