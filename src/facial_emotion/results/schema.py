"""The one schema of a face in every output: as JSON (CLI ``--json``, the service, the live stream,
the video timeline) and as a flat row (CSV files; a table of any kind).

Numbers are rounded to 4 decimals: more digits are noise from a 48x48 face, and they bloat outputs.
Source names (file paths) may hold bytes that are not UTF-8; Python keeps them as surrogate escapes,
and ``safe_name`` turns those into U+FFFD so that every output can be encoded.
"""

from __future__ import annotations

from typing import Any

from facial_emotion.inference.pipeline import Face

DECIMALS = 4
BOX_COLUMNS = ("x", "y", "w", "h")


def safe_name(name: str) -> str:
    """A file name as text every writer can encode: undecodable bytes become U+FFFD."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def face_json(face: Face) -> dict[str, Any]:
    d: dict[str, Any] = {
        "box": list(face.box),
        "emotion": face.emotion,
        "confidence": round(face.confidence, DECIMALS),
        "scores": {k: round(v, DECIMALS) for k, v in face.scores.items()},
        "detector_score": round(face.detector_score, DECIMALS),
    }
    if face.track_id is not None:
        d["track_id"] = face.track_id
    return d


def face_columns(classes: list[str]) -> list[str]:
    """The columns of ``face_row``: box, emotion, confidence, then one score column per class."""
    return [*BOX_COLUMNS, "emotion", "confidence", *classes]


def face_row(face: Face, classes: list[str]) -> list[Any]:
    return [
        *face.box,
        face.emotion,
        round(face.confidence, DECIMALS),
        *(round(face.scores[c], DECIMALS) for c in classes),
    ]


def empty_face_row(classes: list[str]) -> list[str]:
    """A row for a source with no face (or an error): the face columns left blank."""
    return [""] * len(face_columns(classes))
