"""Every setting that comes from the environment, read in one place.

``current()`` reads the ``FACIAL_EMOTION_*`` variables once per process and keeps them; code takes
its defaults from there instead of calling ``os.environ`` itself. ``reload()`` reads them again
(tests, long-lived programs whose environment changed). Imports nothing heavy: the CLI's ``--help``
uses the defaults below.

| variable | meaning | default |
| --- | --- | --- |
| ``FACIAL_EMOTION_MODEL`` | emotion model file | the built-in model |
| ``FACIAL_EMOTION_DETECTOR`` | face detector spec (``blazeface[:short]``, ``haar[:N]``, ``yunet[:FILE]``) | ``blazeface`` |
| ``FACIAL_EMOTION_YUNET`` | YuNet ONNX file for ``--detector yunet`` | none |
| ``FACIAL_EMOTION_MAX_PIXELS`` | largest image decoded, in pixels | 64,000,000 |
| ``FACIAL_EMOTION_CACHE`` | cache of parsed datasets | ``~/.cache/facial-emotion`` |
| ``FACIAL_EMOTION_SHARED`` | the real-data folder (``datasets/``, ``media/``): ``finetune`` mixes in its FER-2013 | none |
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

# 64 megapixels: well above any phone photo, far below a decompression bomb's size.
DEFAULT_MAX_PIXELS = 64_000_000

# The face detector of every path (photos, videos, webcam, service): BlazeFace, full-range model, with
# tiles for group photos (inference/blazeface.py says when); benchmarks/detectors.py measures it.
DEFAULT_DETECTOR = "blazeface"

# Full-frame face searches in a sequence of frames (video, webcam, live stream): every frame. With
# BlazeFace at a few ms a frame, 640x360 video still runs at about 100-165 fps on one core, and on
# short_hamilton_clip.mp4 following faces between searches every 15th frame missed 49 faces and kept
# 23 stale ones (against a search on every frame). --detect-every N trades that for speed.
DEFAULT_DETECT_EVERY = 1
# Each face's scores in a video: an exponential moving average, 0.6 of the last frame's weight kept
# (0 = raw per-frame scores). One default for the video, webcam and batch commands and the Python API.
DEFAULT_SMOOTHING = 0.6


class SettingsError(ValueError):
    """An environment variable holds a value we cannot use."""


@dataclass(frozen=True)
class Settings:
    model: Path | None = None  # None: the built-in model
    detector: str | None = None  # None: DEFAULT_DETECTOR
    yunet_model: str = ""
    max_pixels: int = DEFAULT_MAX_PIXELS
    cache_dir: Path = Path.home() / ".cache" / "facial-emotion"
    shared: Path | None = None  # the real-data folder (datasets/, media/); finetune mixes in its FER-2013

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> Settings:
        def get(name: str) -> str:
            return environ.get(f"FACIAL_EMOTION_{name}", "").strip()

        max_pixels = get("MAX_PIXELS")
        if max_pixels and (not max_pixels.isdigit() or int(max_pixels) < 1):
            raise SettingsError(f"FACIAL_EMOTION_MAX_PIXELS must be a positive integer, not {max_pixels!r}")
        return cls(
            model=Path(get("MODEL")) if get("MODEL") else None,
            detector=get("DETECTOR") or None,
            yunet_model=get("YUNET"),
            max_pixels=int(max_pixels) if max_pixels else DEFAULT_MAX_PIXELS,
            cache_dir=Path(get("CACHE")) if get("CACHE") else cls.cache_dir,
            shared=Path(get("SHARED")) if get("SHARED") else None,
        )


_current: Settings | None = None


def current() -> Settings:
    """The process's settings, read from the environment on first use."""
    global _current
    if _current is None:
        _current = Settings.from_env()
    return _current


def reload() -> Settings:
    """Read the environment again (tests, or after the environment changed)."""
    global _current
    _current = Settings.from_env()
    return _current
