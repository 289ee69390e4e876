"""The one schema of a face in every output: as JSON (CLI ``--json``, the service, the live stream,
the video timeline) and as a flat row (CSV files; a table of any kind).

Numbers are rounded to 4 decimals: more digits are noise from a 48x48 face, and they bloat outputs.
Source names (file paths) may hold bytes that are not UTF-8; Python keeps them as surrogate escapes,
and ``safe_name`` writes those bytes as ``\\xNN`` escapes, so that every output can be encoded and two
names that differ only in such bytes stay two names (U+FFFD made them one, and so one batch resume key).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from facial_emotion.inference.pipeline import Face

DECIMALS = 4
TIME_DECIMALS = 3  # frame times in seconds, to the millisecond, in every output
BOX_COLUMNS = ("x", "y", "w", "h")
# Head pose in degrees (inference/landmarks.py): CSV columns with --landmarks; the mesh's 468 points
# go to JSON only ("landmarks": [[x, y, z], ...] in image pixels, to 0.1 px).
POSE_COLUMNS = ("yaw", "pitch", "roll")
POSE_DECIMALS = 1


def safe_name(name: str) -> str:
    """A file name as text every writer can encode: an undecodable byte becomes ``\\xNN`` (0xe9 in a
    Latin-1 "café.jpg" gives ``caf\\xe9.jpg``), so distinct names stay distinct."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def former_safe_name(name: str) -> str:
    """How ``safe_name`` wrote a name before it kept the odd bytes (U+FFFD for each): job folders
    written then name their done sources this way, and a re-run must still find them."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def face_json(face: Face) -> dict[str, Any]:
    d: dict[str, Any] = {
        "box": list(face.box),
        "emotion": face.emotion,
        "confidence": round(face.confidence, DECIMALS),
        "uncertain": face.uncertain,
        "scores": {k: round(v, DECIMALS) for k, v in face.scores.items()},
        "detector_score": round(face.detector_score, DECIMALS),
    }
    if face.uncertain:
        d["runner_up"] = face.runner_up
    if face.track_id is not None:
        d["track_id"] = face.track_id
    if face.pose is not None:
        d["pose"] = {k: round(getattr(face.pose, k), POSE_DECIMALS) for k in POSE_COLUMNS}
    if face.landmarks is not None:
        # float64 before rounding: a float32 0.1 step prints as 184.39999389648438 (twice the JSON)
        d["landmarks"] = face.landmarks.astype(np.float64).round(1).tolist()
    return d


def face_column_types(classes: list[str], pose: bool = False) -> dict[str, type]:
    """The columns of ``face_row`` and their types: box, emotion, confidence, uncertain, one score
    column per class, then with ``pose`` (landmarks on) yaw, pitch and roll."""
    return (
        dict.fromkeys(BOX_COLUMNS, int)
        | {"emotion": str, "confidence": float, "uncertain": bool}
        | dict.fromkeys(classes, float)
        | dict.fromkeys(POSE_COLUMNS if pose else (), float)
    )


def face_columns(classes: list[str], pose: bool = False) -> list[str]:
    return list(face_column_types(classes, pose))


def face_row(face: Face, classes: list[str], pose: bool = False) -> list[Any]:
    row = [
        *face.box,
        face.emotion,
        round(face.confidence, DECIMALS),
        face.uncertain,
        *(round(face.scores[c], DECIMALS) for c in classes),
    ]
    if pose:  # blank where the mesh found no face
        row += [round(getattr(face.pose, k), POSE_DECIMALS) if face.pose else "" for k in POSE_COLUMNS]
    return row


def empty_face_row(classes: list[str], pose: bool = False) -> list[str]:
    """A row for a source with no face (or an error): the face columns left blank."""
    return [""] * len(face_columns(classes, pose))


# --- batch jobs (``facial-emotion batch``): one row per face per analysed frame -------------------

# Column -> Python type, in order; the face columns sit between "track_id" and "model". Every batch
# writer (CSV, the local Parquet writer, Ray's Parquet writer) takes its column order and types here.
BATCH_HEAD = {"source": str, "frame": int, "time_s": float, "track_id": int}
BATCH_TAIL = {"model": str}


def batch_columns(classes: list[str]) -> dict[str, type]:
    """Every column of a batch job's face table and its type (``track_id`` is empty for photos)."""
    return BATCH_HEAD | face_column_types(classes) | BATCH_TAIL


def batch_row(
    source: str, frame: int, time_s: float, face: Face, classes: list[str], model: str
) -> dict[str, Any]:
    return dict(
        zip(
            batch_columns(classes),
            [
                safe_name(source),
                frame,
                round(time_s, TIME_DECIMALS),
                face.track_id,
                *face_row(face, classes),
                model,
            ],
            strict=True,
        )
    )


# One row per unit of work (a photo, a video, or a frame range of one) that completed; a unit
# that failed goes into the errors table instead, and is tried again by the next run.
BATCH_SOURCE_COLUMNS = {
    "source": str,
    "chunk": int,  # 0 for a whole file; frame ranges of a video (--chunk-frames) count up
    "kind": str,  # "photo" or "video"
    "first_frame": int,
    "frames_analyzed": int,
    "video_fps": float,
    "frames_expected": int,  # the container's frame count; 0 where it gives none, and for a photo
    # where a unit read to the end found fewer frames than announced (``video``'s warning): the video
    # is damaged or truncated; "" otherwise
    "warning": str,
    "faces": int,  # face rows written
    "tracks": int,
    "dominant_emotion": str,  # over all face rows; empty without faces
    "seconds": float,
    "model": str,
}
BATCH_ERROR_COLUMNS = {"source": str, "chunk": int, "error": str}
