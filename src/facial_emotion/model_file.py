"""The one model file format: an ONNX graph with our metadata inside, plus a JSON copy beside it.

The graph takes float32 pixels 0..255 shaped (N, 1, crop, crop) and returns logits (N, classes);
normalisation is part of the graph. ``metadata`` says how to make that input from a face:
resize the aligned face to ``face_size`` (48) gray, then take the centre ``crop`` (or ten crops
for test-time augmentation).
"""

from __future__ import annotations

import json
import os
from importlib import resources
from pathlib import Path
from typing import Any

from facial_emotion import settings
from facial_emotion.labels import EMOTIONS
from facial_emotion.results.files import atomic_write_bytes

# Preprocessing facts, used by the readers, training and inference alike: FER-2013 faces are
# 48 x 48 gray; nets see a 40 x 40 crop of them (random in training, centre or ten crops at test).
FACE_SIZE = 48
CROP = 40

METADATA_KEY = "facial_emotion"
# The metadata entry with the model's calibration (temperature, uncertain threshold): written by
# evaluation/calibration.py, applied by inference/classifier.py.
CALIBRATION_KEY = "calibration"
FORMAT_VERSION = 1
# The models shipped in the package, by the name that --model, $FACIAL_EMOTION_MODEL and the API
# take in place of a path. "default": one net (resnet-m) with int8 static quantization (about 3x the
# faces/s of fp32, same PublicTest accuracy); "fp32": the same net unquantized, the file it was made
# from (`facial-emotion quantize`, docs/training.md); "ensemble": three nets averaged in one int8
# graph (`facial-emotion ensemble`), about a point more accurate at about 3x the cost; "fast": the
# previous default (vgg-m, int8), a point less accurate at twice the faces/s of "default".
BUILTIN_MODELS = {
    "default": "emotion.onnx",
    "fp32": "emotion-fp32.onnx",
    "ensemble": "emotion-ensemble.onnx",
    "fast": "emotion-fast.onnx",
}


class ModelFileError(Exception):
    """The model file is missing, unreadable or not one of ours."""


def builtin_model_path(name: str = "default") -> Path:
    if name not in BUILTIN_MODELS:
        raise ModelFileError(f"no built-in model {name!r}; built-in models: {', '.join(BUILTIN_MODELS)}")
    return Path(str(resources.files("facial_emotion") / "weights" / BUILTIN_MODELS[name]))


def is_packaged_model(path: str | os.PathLike) -> bool:
    """Whether ``path`` is one of the model files shipped in the package's weights folder."""
    weights = Path(str(resources.files("facial_emotion") / "weights")).resolve()
    return Path(path).resolve().parent == weights


def resolve_model_path(model: str | os.PathLike | None = None) -> Path:
    """A built-in model's name (``BUILTIN_MODELS``; a name wins over a file of that name in the
    current folder: write ``./fp32`` for the file) or a model file's path; None: $FACIAL_EMOTION_MODEL
    (a name or a path) if set, else the default built-in model."""
    if model is None or str(model) == "":
        model = settings.current().model
        if model is None:
            return builtin_model_path()
    return builtin_model_path(str(model)) if str(model) in BUILTIN_MODELS else Path(model)


def default_model_path() -> Path:
    """$FACIAL_EMOTION_MODEL if set (a path or a built-in model's name), else the built-in default."""
    return resolve_model_path(None)


def make_metadata(**fields: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "classes": list(EMOTIONS),
        "face_size": FACE_SIZE,
        "crop": CROP,
        "channels": 1,
        "input": "float32 N x 1 x crop x crop, gray pixel values 0..255 (normalisation is in the graph)",
        "output": "logits N x classes",
    }
    meta.update(fields)
    return meta


def validate_metadata(meta: Any, source: str) -> dict[str, Any]:
    if not isinstance(meta, dict):  # JSON, but null or a number: a traceback before
        raise ModelFileError(f"{source}: damaged metadata (not a JSON object)")
    for key in ("classes", "face_size", "crop"):
        if key not in meta:
            raise ModelFileError(f"{source}: metadata lacks {key!r}")
    classes, face_size, crop = meta["classes"], meta["face_size"], meta["crop"]
    if (
        not isinstance(classes, list)
        or len(classes) < 2
        or not all(isinstance(c, str) and c for c in classes)
        or len(set(classes)) != len(classes)
    ):
        raise ModelFileError(f"{source}: metadata 'classes' must list two or more distinct names")
    sizes_ok = all(isinstance(v, int) and not isinstance(v, bool) for v in (face_size, crop))
    if not sizes_ok or not 1 <= crop <= face_size:
        raise ModelFileError(
            f"{source}: metadata 'face_size' and 'crop' must be whole numbers, 1 <= crop <= face_size "
            f"(they are {face_size!r}, {crop!r})"
        )
    version = meta.get("format_version", 0)
    if not isinstance(version, int) or isinstance(version, bool):
        raise ModelFileError(f"{source}: metadata 'format_version' must be a whole number, not {version!r}")
    if version > FORMAT_VERSION:
        raise ModelFileError(
            f"{source}: model format {meta['format_version']} is newer than this package supports"
        )
    return meta


def read_metadata_from_session_meta(custom: dict[str, str], source: str) -> dict[str, Any]:
    """From onnxruntime's ``get_modelmeta().custom_metadata_map``."""
    if METADATA_KEY not in custom:
        raise ModelFileError(f"{source}: not a facial-emotion model (no {METADATA_KEY!r} metadata)")
    try:
        meta = json.loads(custom[METADATA_KEY])
    except json.JSONDecodeError as e:
        raise ModelFileError(f"{source}: damaged metadata: {e}") from None
    return validate_metadata(meta, source)


def write_model(path: Path, onnx_bytes: bytes, meta: dict[str, Any]) -> None:
    """Store ``meta`` inside the ONNX file (metadata_props) and as ``<name>.json`` beside it."""
    if path.with_suffix(".json") == path:  # the description would overwrite the model
        raise ModelFileError(f"{path}: name a model file .onnx, not .json (its description goes beside it)")
    for target in (path, path.with_suffix(".json")):  # both before either: a failed second write had
        if target.is_dir():  # replaced the first file already
            raise ModelFileError(
                f"{target}: is a folder (the model goes in {path}, its description beside it)"
            )
    import onnx  # training-side dependency: only writing a model needs it

    model = onnx.load_from_string(onnx_bytes)
    del model.metadata_props[:]
    entry = model.metadata_props.add()
    entry.key = METADATA_KEY
    entry.value = json.dumps(meta, sort_keys=True)
    model.producer_name = "facial-emotion"
    atomic_write_bytes(path, model.SerializeToString())
    atomic_write_bytes(
        path.with_suffix(".json"), (json.dumps(meta, indent=2, sort_keys=True) + "\n").encode()
    )
