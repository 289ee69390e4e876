"""The service's own settings: limits and CORS, fixed when the app is created."""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable
from dataclasses import dataclass

from facial_emotion import settings
from facial_emotion.inference.decode import DETECTION_MAX_SIDE

DEFAULT_MAX_UPLOAD = 10 * 1024 * 1024


def _real(value: object) -> float | None:
    """``value`` as a float if it is a real number (not a bool: True is no limit), else None."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None
    return float(value)


def positive_number(name: str, value: object) -> float:
    """``value`` as a float, or a ValueError naming ``name``: a zero or negative deadline answered
    every request 504, and nan passes every ``<= 0`` check (and made asyncio.wait_for fail: a 500)."""
    number = _real(value)
    if number is None or not 0 < number < math.inf:
        raise ValueError(f"{name} must be a finite number above 0, not {value!r}")
    return number


def whole_number(name: str, value: object, minimum: int = 1) -> int:
    """``value`` as an int, or a ValueError naming ``name``: int() would turn 1.5 into 1 and -1 into
    a limit no image meets, and a 0 was read as 'off' or 'the default' by the code using it."""
    number = _real(value)
    if number is None or not number.is_integer() or number < minimum:
        raise ValueError(f"{name} must be a whole number of at least {minimum}, not {value!r}")
    return int(number)


def origins(value: str | Iterable[str] | None) -> tuple[str, ...]:
    """CORS origins as a tuple. A single string is one origin: tuple() would split it into characters
    and CORS would silently allow nothing."""
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    out = tuple(value)
    if not all(isinstance(o, str) for o in out):
        raise TypeError(f"cors_origins must be strings, not {out!r}")
    return out


@dataclass(frozen=True)
class ServiceSettings:
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD
    max_pixels: int = settings.DEFAULT_MAX_PIXELS  # decoded image size; above it 413
    request_timeout: float = 30.0  # seconds per request (or per live frame) before a 504
    cors_origins: tuple[str, ...] = ()
    max_side: int = DETECTION_MAX_SIDE  # uploads are decoded at most this long side (memory budget)
    decode_slots: int = 2  # images decoded at the same time (a PNG is decoded at full size first)

    def __post_init__(self) -> None:
        # Checked here, however the settings are made, so that a bad limit is a ValueError naming it
        # when the app is created (before the model loads), not a safety limit silently off later.
        checked = {
            "max_upload_bytes": whole_number("max_upload_bytes", self.max_upload_bytes),
            "max_pixels": whole_number("max_pixels", self.max_pixels),
            "request_timeout": positive_number("request_timeout", self.request_timeout),
            "cors_origins": origins(self.cors_origins),
            "max_side": whole_number("max_side", self.max_side),
            "decode_slots": whole_number("decode_slots", self.decode_slots),
        }
        for name, value in checked.items():
            object.__setattr__(self, name, value)  # frozen: the normalised value replaces the given one

    @classmethod
    def create(
        cls,
        max_upload_bytes: int = DEFAULT_MAX_UPLOAD,
        max_pixels: int | None = None,
        request_timeout: float = 30.0,
        cors_origins: str | Iterable[str] | None = (),
        max_side: int = DETECTION_MAX_SIDE,
        decode_slots: int = 2,
    ) -> ServiceSettings:
        """``max_pixels`` None: the process's setting ($FACIAL_EMOTION_MAX_PIXELS). Raises ValueError
        naming the first limit that is not a positive number (whole for sizes and counts)."""
        return cls(
            max_upload_bytes=max_upload_bytes,
            # only None means 'the default': a 0 used to become the default 64 MP without a word
            max_pixels=settings.current().max_pixels if max_pixels is None else max_pixels,
            request_timeout=request_timeout,
            cors_origins=origins(cors_origins),
            max_side=max_side,
            decode_slots=decode_slots,
        )
