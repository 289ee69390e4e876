"""Every text output: JSON documents, the terminal table, and CSV files, for photos and for videos.

A photo batch is a list of ``PhotoResult``; a video is a ``VideoResult``. Both are turned into text
here and nowhere else; CSV files are written atomically, and names that are not valid UTF-8 are
written with ``\\xNN`` escapes in their place (``schema.safe_name``) instead of failing the whole output.
"""

from __future__ import annotations

import csv
import io
import json
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TextIO

from facial_emotion.inference.pipeline import PhotoResult
from facial_emotion.inference.video import VideoResult
from facial_emotion.results.files import atomic_write_text
from facial_emotion.results.schema import (
    TIME_DECIMALS,
    empty_face_row,
    face_columns,
    face_json,
    face_row,
    safe_name,
)
from facial_emotion.results.session import event_json, person_json, session_lines


def print_json(obj: object, out: TextIO | None = None) -> None:
    (out or sys.stdout).write(json.dumps(obj, indent=2) + "\n")


def write_csv(path: Path, rows: Iterable[list[Any]]) -> None:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    atomic_write_text(path, buf.getvalue())


# --- photos -------------------------------------------------------------------------------------


def photos_json(results: list[PhotoResult], annotated: list[str | None] | None = None) -> list[dict]:
    """One object per photo: path, faces, error, and ``annotated[i]``, the annotated copy of
    ``results[i]``, where one was written."""
    out = []
    for i, r in enumerate(results):
        entry: dict[str, Any] = {
            "path": safe_name(r.source),
            "faces": [face_json(f) for f in r.faces],
            "error": r.error,
        }
        if annotated and annotated[i]:
            entry["annotated"] = safe_name(str(annotated[i]))
        out.append(entry)
    return out


def photos_table(results: list[PhotoResult]) -> str:
    """For the terminal: each photo's face count, then per face its box, emotion and the runners-up."""
    lines = []
    for r in results:
        name = safe_name(r.source)
        if r.error:
            error = safe_name(r.error)
            # the message names the file itself: once is enough ("x.jpg: ERROR file not found")
            lines.append(f"{name}: ERROR {error.removeprefix(name + ': ')}")
            continue
        lines.append(f"{name}: {len(r.faces)} face(s)")
        for i, f in enumerate(r.faces, 1):
            runners_up = sorted(f.scores.items(), key=lambda kv: -kv[1])[1:3]
            others = ", ".join(f"{k} {v:.0%}" for k, v in runners_up)
            flag = (
                f"  uncertain: {f.emotion} / {f.runner_up}" if f.uncertain else ""
            )  # as drawn and on the page
            lines.append(f"  #{i} box={tuple(f.box)} {f.emotion:<9}{f.confidence:>5.0%}   ({others}){flag}")
    return "\n".join(lines) + "\n" if lines else ""


def write_photos_csv(results: list[PhotoResult], path: Path, classes: list[str], pose: bool = False) -> None:
    """One row per face; a photo without faces, or that failed, gets one row with the face columns
    blank (and its error). ``pose``: add the head-pose columns (landmarks on)."""
    rows: list[list[Any]] = [["path", "face", *face_columns(classes, pose), "error"]]
    for r in results:
        name = safe_name(r.source)
        if r.error or not r.faces:
            rows.append([name, "", *empty_face_row(classes, pose), r.error or ""])
        rows += [[name, i, *face_row(f, classes, pose), ""] for i, f in enumerate(r.faces, 1)]
    write_csv(path, rows)


# --- videos -------------------------------------------------------------------------------------


def video_json(result: VideoResult) -> dict[str, Any]:
    return {
        "source": safe_name(result.source),
        "video_fps": round(result.fps, 3),
        "frames_read": result.frames_read,
        "frames_expected": result.frames_expected,
        "frames_analyzed": result.frames_analyzed,
        "processing_seconds": round(result.seconds, 3),
        "processing_fps": round(result.frames_read / result.seconds, 2) if result.seconds else None,
        "faces": [person_json(p) for p in result.summary],
        "events": [event_json(e) for e in result.events],
        "timeline": [
            {"frame": r.frame, "time_s": round(r.time_s, TIME_DECIMALS), **face_json(r.face)}
            for r in result.timeline
        ],
    }


def video_table(result: VideoResult) -> str:
    """For the terminal: frames and speed, then the session summary of each person."""
    # both rates: with --every N the frames read per second were the only figure, and read as the
    # analysis speed (890 "fps" for 94 frames analysed a second)
    rates = (
        f"{result.frames_read / result.seconds:.1f} frames read and "
        f"{result.frames_analyzed / result.seconds:.1f} analysed a second"
        if result.seconds
        else "rate unknown"
    )
    lines = [
        f"{safe_name(result.source)}: {result.frames_read} frames read, {result.frames_analyzed} analysed in "
        f"{result.seconds:.1f} s ({rates}; the video is {result.fps:.3f} fps)",
        *session_lines(result.summary),
    ]
    return "\n".join(lines) + "\n"


def write_timeline_csv(result: VideoResult, path: Path, classes: list[str], pose: bool = False) -> None:
    """One row per analysed frame and face; ``pose``: add the head-pose columns (landmarks on)."""
    rows: list[list[Any]] = [["frame", "time_s", "track_id", *face_columns(classes, pose)]]
    rows += [
        [r.frame, f"{r.time_s:.{TIME_DECIMALS}f}", r.face.track_id, *face_row(r.face, classes, pose)]
        for r in result.timeline
    ]
    write_csv(path, rows)
