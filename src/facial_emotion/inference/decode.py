"""Turn whatever the user hands us into a BGR uint8 image, or one clear ``ImageError``.

Accepted: a path (str / Path), encoded bytes, a numpy array (H x W gray, H x W x 3 **BGR** as
OpenCV gives, or H x W x 4 BGRA), or a PIL image. Files are decoded by Pillow so EXIF orientation,
CMYK, palette, 16-bit and alpha images are handled; OpenCV is the fallback decoder.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from facial_emotion import settings


class ImageError(Exception):
    """The input is not an image we can use: missing, unreadable, corrupt, too large."""


class ImageTooLarge(ImageError):
    """More pixels than allowed (``max_pixels``), or a decompression bomb. The service answers 413."""


ImageInput = Any  # str | Path | bytes | np.ndarray | PIL.Image.Image


def _check_size(w: int, h: int, name: str, max_pixels: int | None) -> None:
    """``max_pixels`` None: the process's setting ($FACIAL_EMOTION_MAX_PIXELS, 64 MP by default)."""
    if w <= 0 or h <= 0:
        raise ImageError(f"{name}: empty image")
    limit = max_pixels or settings.current().max_pixels
    if w * h > limit:
        raise ImageTooLarge(
            f"{name}: image too large ({w}x{h} = {w * h / 1e6:.1f} MP; limit {limit / 1e6:.1f} MP)"
        )


def _to_uint8(arr: np.ndarray) -> np.ndarray:
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == np.uint16 or (arr.dtype.kind in "iu" and arr.max(initial=0) > 255):
        return (arr.astype(np.float32) / 257.0).clip(0, 255).astype(np.uint8)
    if arr.dtype.kind == "f":
        scale = 255.0 if arr.max(initial=0) <= 1.0 else 1.0
        return (arr * scale).clip(0, 255).astype(np.uint8)
    return arr.clip(0, 255).astype(np.uint8)


def from_array(arr: np.ndarray, name: str = "array", max_pixels: int | None = None) -> np.ndarray:
    """numpy array (gray, BGR or BGRA; any integer or float depth) -> BGR uint8."""
    if not isinstance(arr, np.ndarray) or arr.ndim not in (2, 3):
        raise ImageError(f"{name}: expected an H x W or H x W x C array")
    _check_size(arr.shape[1], arr.shape[0], name, max_pixels)
    arr = _to_uint8(arr)
    if arr.ndim == 2:
        return cv2.cvtColor(arr, cv2.COLOR_GRAY2BGR)
    channels = arr.shape[2]
    if channels == 1:
        return cv2.cvtColor(arr[:, :, 0], cv2.COLOR_GRAY2BGR)
    if channels == 3:
        return np.ascontiguousarray(arr)
    if channels == 4:
        return cv2.cvtColor(arr, cv2.COLOR_BGRA2BGR)
    raise ImageError(f"{name}: unsupported number of channels {channels}")


def from_pil(img: Image.Image, name: str = "image", max_pixels: int | None = None) -> np.ndarray:
    _check_size(img.width, img.height, name, max_pixels)
    img = ImageOps.exif_transpose(img) or img
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        return from_array(np.asarray(img), name, max_pixels)
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        # Composite on white, as viewers show it; black (the default) would darken faces at the edges.
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba)
    rgb = np.asarray(img.convert("RGB"))
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)


def from_bytes(data: bytes, name: str = "upload", max_pixels: int | None = None) -> np.ndarray:
    """Encoded image bytes -> BGR uint8. The size is checked from the header, before any pixel is
    decoded: ``ImageTooLarge`` above ``max_pixels`` (default: the process's setting)."""
    if not data:
        raise ImageError(f"{name}: empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                _check_size(img.width, img.height, name, max_pixels)  # before decoding any pixel
                img.load()
                return from_pil(img, name, max_pixels)
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageTooLarge(f"{name}: image too large (decompression bomb protection)") from None
    except UnidentifiedImageError:
        pass  # not a format Pillow knows: let OpenCV try
    except Exception as e:  # Pillow's decoders raise many types (OSError, struct.error, IndexError...)
        raise ImageError(f"{name}: corrupt or truncated image ({e})") from None
    arr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if arr is None:
        raise ImageError(f"{name}: not an image (unrecognised format)")
    return from_array(arr, name, max_pixels)


def load_image(source: ImageInput, name: str | None = None, max_pixels: int | None = None) -> np.ndarray:
    """Any supported input -> BGR uint8 (H, W, 3); ``ImageTooLarge`` above ``max_pixels``."""
    if isinstance(source, (str, Path)):
        path = Path(source)
        label = name or str(path)
        if not path.exists():
            raise ImageError(f"{label}: file not found")
        if path.is_dir():
            raise ImageError(f"{label}: is a folder, not an image")
        try:
            data = path.read_bytes()
        except OSError as e:
            raise ImageError(f"{label}: cannot read ({e.strerror})") from None
        return from_bytes(data, label, max_pixels)
    if isinstance(source, (bytes, bytearray, memoryview)):
        return from_bytes(bytes(source), name or "bytes", max_pixels)
    if isinstance(source, np.ndarray):
        return from_array(source, name or "array", max_pixels)
    if isinstance(source, Image.Image):
        return from_pil(source, name or "PIL image", max_pixels)
    raise ImageError(f"unsupported input type {type(source).__name__}")
