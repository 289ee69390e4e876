"""Turn whatever the user hands us into a BGR uint8 image, or one clear ``ImageError``.

Accepted: a path (str / Path), encoded bytes, a numpy array (H x W gray, H x W x 3 **BGR** as
OpenCV gives, or H x W x 4 BGRA), or a PIL image. Files are decoded by Pillow so EXIF orientation,
CMYK, palette, 16-bit, float and alpha images are handled; OpenCV is the fallback decoder.

``max_side`` decodes large images at reduced size, which bounds memory: a JPEG is decoded at 1/2, 1/4
or 1/8 scale by libjpeg itself (Pillow's draft mode: an 8000x8000 JPEG costs 12 MB instead of 192),
other formats are reduced right after decoding. Face detection needs no more than about 2,000 px on
the long side (the detector letterboxes to a few hundred pixels; tiles look at 512 px squares).

Only regular files are read: a FIFO, device or socket is refused by name, never opened (opening a
FIFO blocks until a writer appears, which would stall a whole batch).
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import os
import stat
import threading
import time
import warnings
from pathlib import Path
from typing import Any, NamedTuple

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from facial_emotion import settings
from facial_emotion.arguments import positive_number

log = logging.getLogger(__name__)


class ImageError(Exception):
    """The input is not an image we can use: missing, unreadable, corrupt, too large."""


class ImageTooLarge(ImageError):
    """More pixels than allowed (``max_pixels``), or a decompression bomb. The service answers 413."""


class NotAnImage(ImageError):
    """Bytes in no image format the decoders know (a text file named .jpg, a video). The service
    answers 415, as for an upload whose type is not an image."""


ImageInput = Any  # str | Path | bytes | np.ndarray | PIL.Image.Image

# Names of the photos we read (dataset folders, batch inputs, `analyze` folders) ...
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".pgm", ".tif", ".tiff", ".webp", ".gif"})
# ... and of the videos (OpenCV's FFmpeg backend), for every place that tells a video from a photo by
# its name: batch units, the hand-labelled media, and the message for a video given as a photo.
VIDEO_SUFFIXES = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv"})


def names_video(name: str) -> bool:
    """A path or URL whose name ends in a video suffix (a URL's query string ignored)."""
    return Path(name.split("?", 1)[0]).suffix.lower() in VIDEO_SUFFIXES


def media_files(folder: Path, suffixes: frozenset[str], seen: set[str] | None = None) -> list[str]:
    """The files named with one of ``suffixes`` in ``folder`` and its subfolders, sorted. Linked
    folders are followed (each real folder once, so a link loop ends: they were skipped without a
    word; ``seen``: the real folders walked already, shared by the calls for one list of inputs), a
    link to nothing is listed (to be reported missing, not dropped), and FIFOs, devices and sockets
    are left out (opening a FIFO blocks)."""
    found: list[str] = []
    seen = set() if seen is None else seen
    for root, dirs, files in os.walk(folder, followlinks=True):
        real = os.path.realpath(root)
        if real in seen:
            dirs[:] = []
            continue
        seen.add(real)
        for name in files:
            path = os.path.join(root, name)
            if Path(name).suffix.lower() in suffixes and (os.path.isfile(path) or not os.path.exists(path)):
                found.append(path)
    return sorted(found)


# What detection needs (see the module docstring); the service decodes uploads at this size.
DETECTION_MAX_SIDE = 2048


def _check_size(w: int, h: int, name: str, max_pixels: int | None) -> None:
    """``max_pixels`` None: the process's setting ($FACIAL_EMOTION_MAX_PIXELS, 64 MP by default)."""
    if w <= 0 or h <= 0:
        raise ImageError(f"{name}: empty image")
    limit = max_pixels or settings.current().max_pixels
    if w * h > limit:
        raise ImageTooLarge(
            f"{name}: image too large ({w}x{h} = {w * h / 1e6:.3g} MP; limit {limit / 1e6:.3g} MP)"
        )


# Integer pixels above 255 are 16-bit (uint16 files and arrays: 65535 is white), whatever the brightest
# pixel of the picture: a depth guessed per picture made a brighter frame come out darker (a peak of
# 1000 read as 10-bit, 1100 as 12-bit) and video brightness jump between frames. A 10- or 12-bit
# camera frame is the caller's to scale up (``frame << 6`` or ``<< 4``). Beyond 16 bits: stretched.
SIXTEEN_BIT_WHITE = 65535
# Floats: 0..1 is the usual convention; resampling (cubic, Lanczos) overshoots it a little, so a
# peak up to this is still 0..1 (one pixel at 1.001 made the whole image 0..255, i.e. black).
FLOAT_UNIT_PEAK = 1.5
# ... and a 0..1-sized image with values this far below 0 is a normalised -1..1 tensor.
FLOAT_SIGNED_FLOOR = -0.25


def _to_uint8(arr: np.ndarray, name: str = "array") -> np.ndarray:
    """Pixels of any numeric type -> uint8 0..255, one rule per type (README: Python API):
    bool: True is white; uint16: 16-bit; other integers: as they are when all fit 0..255, else 16-bit
    (beyond 16 bits: stretched to the peak); floats: 0..1 (peak up to 1.5, clipped), -1..1 (when also below -0.25),
    0..255, else stretched to the peak."""
    kind = arr.dtype.kind
    if arr.dtype == np.uint8:
        return arr
    if kind == "b":
        return arr.astype(np.uint8) * np.uint8(255)
    if kind in "iu":
        peak = int(arr.max(initial=0))
        sixteen_bit = kind == "u" and arr.dtype.itemsize == 2  # either byte order (I;16B TIFFs)
        if peak <= 255 and not sixteen_bit:  # uint16 is 16-bit by its type (as 16-bit files)
            return arr.clip(0, 255).astype(np.uint8)
        top = max(peak, SIXTEEN_BIT_WHITE)
        return (arr.astype(np.float32) * (255.0 / top)).clip(0, 255).astype(np.uint8)
    if kind == "f":
        arr = np.nan_to_num(arr.astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0)
        top_value, low = float(arr.max(initial=0)), float(arr.min(initial=0))
        if top_value <= FLOAT_UNIT_PEAK:
            arr = (arr + 1.0) * 0.5 if low < FLOAT_SIGNED_FLOOR else arr
            scale = 255.0
        else:  # 0..255, or anything else (HDR, a scientific camera's counts): stretched to 0..255 so
            scale = 1.0 if top_value <= 255.0 else 255.0 / top_value  # the faces show, not clipped to white
        return (arr * scale).clip(0, 255).astype(np.uint8)
    raise ImageError(f"{name}: pixels of type {arr.dtype} are not numbers an image can hold")


def from_array(
    arr: np.ndarray, name: str = "array", max_pixels: int | None = None, limit: bool = True
) -> np.ndarray:
    """numpy array (gray, BGR or BGRA; any integer or float depth) -> BGR uint8. ``limit``: refuse
    more than ``max_pixels`` (a photo), or not (a frame of a stream, which the caller already holds)."""
    if not isinstance(arr, np.ndarray) or arr.ndim not in (2, 3):
        raise ImageError(f"{name}: expected an H x W or H x W x C array")
    if limit:
        _check_size(arr.shape[1], arr.shape[0], name, max_pixels)
    elif not (arr.shape[0] and arr.shape[1]):
        raise ImageError(f"{name}: empty image")
    if arr.ndim == 3 and arr.shape[2] == 4 and arr.dtype != np.uint8:
        # the colours and the alpha each read by their own values (an opaque 16-bit alpha among
        # 8-bit colours made the colours 16-bit too, nearly black)
        arr = np.dstack([_to_uint8(arr[:, :, :3], name), _to_uint8(arr[:, :, 3], name)])
    arr = _to_uint8(arr, name)
    if arr.ndim == 2:
        return cv2.cvtColor(arr, cv2.COLOR_GRAY2BGR)
    channels = arr.shape[2]
    if channels == 1:
        return cv2.cvtColor(arr[:, :, 0], cv2.COLOR_GRAY2BGR)
    if channels == 3:
        return np.ascontiguousarray(arr)
    if channels == 4:  # composited on white, as a file with alpha is (``_from_pil``) ...
        if not arr[:, :, 3].any():  # ... but an alpha of all 0 is padding (32-bit BMPs, screen grabs)
            return np.ascontiguousarray(arr[:, :, :3])
        alpha = arr[:, :, 3:].astype(np.float32) / 255.0
        return (arr[:, :, :3] * alpha + 255.0 * (1.0 - alpha) + 0.5).astype(np.uint8)
    raise ImageError(f"{name}: unsupported number of channels {channels}")


def as_bgr(frame: np.ndarray, name: str = "frame") -> np.ndarray:
    """A frame for detection and classification: a contiguous BGR uint8 array as it is (no copy),
    anything else (gray, BGRA, float) through ``from_array``; not an array: ``ImageError``. Frames
    are never refused for their size, whatever their type (the pixel limit guards decoding a photo;
    a gray or float frame was refused where the same frame in BGR was not)."""
    bgr = isinstance(frame, np.ndarray) and frame.dtype == np.uint8 and frame.ndim == 3
    if bgr and frame.shape[2] == 3 and frame.shape[0] and frame.shape[1]:
        return np.ascontiguousarray(frame)
    return from_array(frame, name, limit=False)


def from_pil(
    img: Image.Image, name: str = "image", max_pixels: int | None = None, from_file: bool | None = None
) -> np.ndarray:
    """A PIL image -> BGR uint8. ``from_file``: the image was decoded from a file, so a mode "I" one
    is 16-bit (default: when PIL names its format; a reduced copy names none)."""
    try:
        return _from_pil(img, name, max_pixels, img.format is not None if from_file is None else from_file)
    except (OSError, ValueError) as e:  # truncated data, a closed image, a mode PIL cannot convert
        if isinstance(e, ImageError):
            raise
        raise ImageError(f"{name}: cannot decode ({e})") from None


def _from_pil(img: Image.Image, name: str, max_pixels: int | None, from_file: bool) -> np.ndarray:
    _check_size(img.width, img.height, name, max_pixels)
    img = ImageOps.exif_transpose(img) or img
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):  # F: float32 TIFFs
        pixels = np.asarray(img)
        if from_file and img.mode == "I" and pixels.min(initial=0) >= 0 and pixels.max(initial=0) <= 65535:
            pixels = pixels.astype(np.uint16)  # 16-bit PGM/PPM and PNG open as "I": 16-bit as the rest
        # an "I" image made in memory (Image.fromarray of int32, .convert("I") of a gray one) keeps
        # the integer rule of arrays: 8-bit values stay 8-bit (read as 16-bit they were near black)
        return from_array(pixels, name, max_pixels)
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        # Composite on white, as viewers show it; black (the default) would darken faces at the edges.
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba)
    rgb = np.asarray(img.convert("RGB"))
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)


def _shrink(arr: np.ndarray, max_side: int | None) -> np.ndarray:
    if not max_side or max(arr.shape[:2]) <= max_side:
        return arr
    scale = max_side / max(arr.shape[:2])
    size = (max(1, round(arr.shape[1] * scale)), max(1, round(arr.shape[0] * scale)))
    return cv2.resize(arr, size, interpolation=cv2.INTER_AREA)


def _reduce_pil(img: Image.Image, max_side: int | None) -> Image.Image:
    """Before any pixel is decoded, ask a JPEG for a reduced decode (libjpeg's DCT scaling); after
    decoding, reduce other formats by a whole factor before they are copied and converted."""
    if not max_side or max(img.size) <= max_side:
        img.load()
        return img
    # libjpeg scales by 1/2, 1/4 or 1/8 and gives at least the size asked for: asking for 3/4 of
    # max_side lets an 8000 px JPEG decode at 2000 px (1/4) instead of 4000 px then resized.
    scale = 0.75 * max_side / max(img.size)
    img.draft(None, (math.ceil(img.width * scale), math.ceil(img.height * scale)))  # JPEG only
    img.load()
    factor = max(img.size) // max_side
    if factor >= 2:
        with contextlib.suppress(ValueError):  # modes that reduce() does not take stay as they are
            return img.reduce(factor)
    return img


class Decoded(NamedTuple):
    bgr: np.ndarray  # BGR uint8, at most ``max_side`` on its long side
    full: tuple[int, int]  # (width, height) of the full upright image
    orientation: int  # the EXIF orientation applied (1: none)


def _orientation(img: Image.Image) -> int:
    value = img.getexif().get(0x0112, 1)
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def decode_reduced(
    data: bytes, name: str = "upload", max_pixels: int | None = None, max_side: int | None = None
) -> tuple[np.ndarray, tuple[int, int]]:
    """Encoded image bytes -> (BGR uint8 at most ``max_side`` on its long side, the (width, height) of
    the full upright image). The size is checked from the header, before any pixel is decoded:
    ``ImageTooLarge`` above ``max_pixels`` (default: the process's setting)."""
    bgr, full, _ = decode_upright(data, name, max_pixels, max_side)
    return bgr, full


def decode_upright(
    data: bytes, name: str = "upload", max_pixels: int | None = None, max_side: int | None = None
) -> Decoded:
    """``decode_reduced``, with the EXIF orientation it applied (the service tells the page)."""
    if not data:
        raise ImageError(f"{name}: empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter(
                "ignore", UserWarning
            )  # Pillow's "Corrupt EXIF data": not the user's concern
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                _check_size(img.width, img.height, name, max_pixels)  # before decoding any pixel
                full = img.size
                orientation = _orientation(img)
                if orientation in (5, 6, 7, 8):  # a quarter turn
                    full = (full[1], full[0])
                _warn_blank_first_frame(img, name)
                bgr = from_pil(_reduce_pil(img, max_side), name, max_pixels, from_file=True)
                return Decoded(_shrink(bgr, max_side), full, orientation)
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageTooLarge(f"{name}: image too large (decompression bomb protection)") from None
    except UnidentifiedImageError:
        pass  # not a format Pillow knows: let OpenCV try
    except Exception as e:  # Pillow's decoders raise many types (OSError, struct.error, IndexError...)
        raise ImageError(f"{name}: corrupt or truncated image ({e})") from None
    arr = _imdecode_quietly(data)
    if arr is None:
        if Path(name).suffix.lower() in VIDEO_SUFFIXES:
            raise NotAnImage(f"{name}: a video, not a photo (facial-emotion video reads videos)")
        raise NotAnImage(f"{name}: not an image (unrecognised format)")
    full = (arr.shape[1], arr.shape[0])
    return Decoded(_shrink(from_array(arr, name, max_pixels), max_side), full, 1)


def _imdecode_quietly(data: bytes) -> np.ndarray | None:
    """OpenCV's decoders log every problem of a damaged file to stderr ("TIFF_Error ..."); we report
    the file once, as an ``ImageError``."""
    level = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    try:
        return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    finally:
        cv2.utils.logging.setLogLevel(level)


def _warn_blank_first_frame(img: Image.Image, name: str) -> None:
    """An animation (GIF, WebP, APNG) is analysed by its first frame; say so when that frame is blank
    (a fade-in, say), instead of quietly reporting no face."""
    if img.format not in ("GIF", "WEBP", "PNG") or getattr(img, "n_frames", 1) <= 1:
        return  # not an animation (a camera's MPO JPEG has frames too, but it is not checked here)
    gray = np.asarray(img.convert("L"))
    if int(gray.max(initial=0)) - int(gray.min(initial=255)) < 8:
        log.warning(
            "%s: the first of its %d frames is blank; only the first frame is analysed",
            name,
            img.n_frames,  # type: ignore[attr-defined]
        )


def exif_orientation(data: bytes) -> int:
    """The EXIF orientation tag of encoded image bytes (1: none, or unreadable), from the header only
    (``decode_upright`` gives it too, with the picture)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data)) as img:
                return _orientation(img)
    except Exception:  # noqa: BLE001 - not an image Pillow knows, or a damaged header: nothing turned
        return 1


def from_bytes(
    data: bytes, name: str = "upload", max_pixels: int | None = None, max_side: int | None = None
) -> np.ndarray:
    """Encoded image bytes -> BGR uint8 (at most ``max_side`` on its long side, if given). The size is
    checked from the header, before any pixel is decoded: ``ImageTooLarge`` above ``max_pixels``."""
    return decode_reduced(data, name, max_pixels, max_side)[0]


def check_regular_file(path: Path, label: str) -> None:
    """Refuse what is not a regular file, by name, without opening it (a FIFO would block)."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise ImageError(f"{label}: file not found") from None
    except OSError as e:
        raise ImageError(f"{label}: cannot read ({e.strerror})") from None
    if stat.S_ISDIR(mode):
        raise ImageError(f"{label}: is a folder, not an image")
    if not stat.S_ISREG(mode):
        kind = (
            "a FIFO (named pipe)"
            if stat.S_ISFIFO(mode)
            else "a socket"
            if stat.S_ISSOCK(mode)
            else "a device"
            if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
            else "not a regular file"
        )
        raise ImageError(f"{label}: is {kind}, not an image file")


def read_regular_file(path: Path, label: str) -> bytes:
    """The bytes of a regular file, opened with O_NONBLOCK so that a file swapped for a FIFO between
    the check and the open cannot block us either."""
    check_regular_file(path, label)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as e:
        raise ImageError(f"{label}: cannot read ({e.strerror})") from None
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ImageError(f"{label}: is not a regular file, not an image file")
        try:
            return f.read()
        except OSError as e:
            raise ImageError(f"{label}: cannot read ({e.strerror})") from None


def load_image(source: ImageInput, name: str | None = None, max_pixels: int | None = None) -> np.ndarray:
    """Any supported input -> BGR uint8 (H, W, 3); ``ImageTooLarge`` above ``max_pixels``."""
    if isinstance(source, (str, os.PathLike)):
        if not os.fspath(source):  # "" would be read as Path(".") and called a folder
            raise ImageError("empty file name")
        path = Path(source)
        label = name or str(path)
        return from_bytes(read_regular_file(path, label), label, max_pixels)
    if isinstance(source, (bytes, bytearray, memoryview)):
        return from_bytes(bytes(source), name or "bytes", max_pixels)
    if isinstance(source, np.ndarray):
        return from_array(source, name or "array", max_pixels)
    if isinstance(source, Image.Image):
        return from_pil(source, name or "PIL image", max_pixels)
    raise ImageError(f"unsupported input type {type(source).__name__}")


def check_timeout(timeout: float) -> float:
    """A per-file timeout: a positive, finite number of seconds (nan would time every file out)."""
    return positive_number("timeout (seconds)", timeout)


def load_image_within(source: ImageInput, timeout: float, name: str | None = None) -> np.ndarray:
    """``load_image`` with a deadline: ``ImageError`` after ``timeout`` seconds. The read runs in a
    daemon thread, which is left behind if it hangs (a thread cannot be killed; a daemon one does not
    keep the process alive), so one input can never stall a batch."""
    timeout = check_timeout(timeout)
    box: list[Any] = []
    done = threading.Event()

    def work() -> None:
        try:
            box.append(load_image(source, name))
        except BaseException as e:  # handed to the caller's thread
            box.append(e)
        box.append(time.monotonic())  # when the read ended, whenever the caller gets to look
        done.set()

    started = time.monotonic()
    threading.Thread(target=work, daemon=True, name="facial-emotion-read").start()
    finished = done.wait(timeout)
    if finished and isinstance(box[0], BaseException):
        raise box[0]  # a broken file says what is wrong with it, late or not
    # The limit is on the time the read took, measured by the reading thread: on a busy machine the
    # waiting thread may get the CPU only after the read ended, on time or late.
    if not finished or box[1] - started > timeout:
        label = name or (str(source) if isinstance(source, (str, os.PathLike)) else type(source).__name__)
        raise ImageError(f"{label}: timed out after {timeout:g} s reading or decoding it")
    return box[0]
