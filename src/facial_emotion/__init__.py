"""facial-emotion: the seven basic facial emotions in photos, videos and cameras, offline on a CPU.

>>> from facial_emotion import EmotionRecognizer
>>> faces = EmotionRecognizer().analyze("photo.jpg")
>>> [(f.box, f.emotion, f.confidence) for f in faces]

The names below are loaded on first use (PEP 562), so ``import facial_emotion`` and the command's
``--help`` stay fast: OpenCV and onnxruntime load only when something is analysed.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS = {
    "EMOTIONS": "facial_emotion.labels",
    "EmotionRecognizer": "facial_emotion.inference.pipeline",
    "Face": "facial_emotion.inference.pipeline",
    "FaceStream": "facial_emotion.inference.stream",
    "ImageError": "facial_emotion.inference.decode",
    "ImageTooLarge": "facial_emotion.inference.decode",
    "DetectorError": "facial_emotion.inference.detectors",
    "VideoError": "facial_emotion.inference.video",
    "ModelFileError": "facial_emotion.model_file",
    "load_image": "facial_emotion.inference.decode",
    "analyze_video": "facial_emotion.inference.video",
}

if TYPE_CHECKING:
    from facial_emotion.inference.decode import ImageError, ImageTooLarge, load_image
    from facial_emotion.inference.detectors import DetectorError
    from facial_emotion.inference.pipeline import EmotionRecognizer, Face
    from facial_emotion.inference.stream import FaceStream
    from facial_emotion.inference.video import VideoError, analyze_video
    from facial_emotion.labels import EMOTIONS
    from facial_emotion.model_file import ModelFileError

_default: EmotionRecognizer | None = None


def analyze(image: Any) -> list[Face]:
    """Faces and emotions of one image with the built-in model (the recognizer is created once)."""
    global _default
    if _default is None:
        _default = import_module("facial_emotion.inference.pipeline").EmotionRecognizer()
    return _default.analyze(image)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(import_module(_EXPORTS[name]), name)
        globals()[name] = value  # once loaded, a plain attribute
        return value
    raise AttributeError(f"module 'facial_emotion' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])


__all__ = [
    "EMOTIONS",
    "DetectorError",
    "EmotionRecognizer",
    "Face",
    "FaceStream",
    "ImageError",
    "ImageTooLarge",
    "ModelFileError",
    "VideoError",
    "analyze",
    "analyze_video",
    "load_image",
    "__version__",
]
