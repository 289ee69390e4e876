"""facial-emotion: the seven basic facial emotions in photos, videos and cameras, offline on a CPU.

>>> from facial_emotion import EmotionRecognizer
>>> faces = EmotionRecognizer().analyze("photo.jpg")
>>> [(f.box, f.emotion, f.confidence) for f in faces]
"""

from facial_emotion.inference.decode import ImageError, load_image
from facial_emotion.inference.pipeline import EmotionRecognizer, Face
from facial_emotion.labels import EMOTIONS

__version__ = "0.1.0"

_default: EmotionRecognizer | None = None


def analyze(image) -> list[Face]:
    """Faces and emotions of one image with the built-in model (the recognizer is created once)."""
    global _default
    if _default is None:
        _default = EmotionRecognizer()
    return _default.analyze(image)


__all__ = ["EMOTIONS", "EmotionRecognizer", "Face", "ImageError", "analyze", "load_image", "__version__"]
