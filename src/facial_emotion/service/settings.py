"""The service's own settings: limits and CORS, fixed when the app is created."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from facial_emotion import settings
from facial_emotion.arguments import positive_number, whole_number
from facial_emotion.inference.decode import DETECTION_MAX_SIDE

DEFAULT_MAX_UPLOAD = 10 * 1024 * 1024


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

    @property
    def ws_max_size(self) -> int:
        """The largest WebSocket message read (uvicorn's ``ws_max_size``): twice the upload limit, at
        least uvicorn's 16 MiB, so that a frame over the limit gets the stream's error message; at
        its default a frame --max-upload-mb allowed closed the socket (1009)."""
        return max(16 * 1024 * 1024, 2 * self.max_upload_bytes)

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
