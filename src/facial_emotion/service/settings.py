"""The service's own settings: limits and CORS, fixed when the app is created."""

from __future__ import annotations

from dataclasses import dataclass

from facial_emotion import settings
from facial_emotion.inference.decode import DETECTION_MAX_SIDE

DEFAULT_MAX_UPLOAD = 10 * 1024 * 1024


@dataclass(frozen=True)
class ServiceSettings:
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD
    max_pixels: int = settings.DEFAULT_MAX_PIXELS  # decoded image size; above it 413
    request_timeout: float = 30.0  # seconds per request (or per live frame) before a 504
    cors_origins: tuple[str, ...] = ()
    max_side: int = DETECTION_MAX_SIDE  # uploads are decoded at most this long side (memory budget)
    decode_slots: int = 2  # images decoded at the same time (a PNG is decoded at full size first)

    @classmethod
    def create(
        cls,
        max_upload_bytes: int = DEFAULT_MAX_UPLOAD,
        max_pixels: int | None = None,
        request_timeout: float = 30.0,
        cors_origins: tuple[str, ...] | list[str] = (),
        max_side: int = DETECTION_MAX_SIDE,
        decode_slots: int = 2,
    ) -> ServiceSettings:
        """``max_pixels`` None: the process's setting ($FACIAL_EMOTION_MAX_PIXELS)."""
        return cls(
            max_upload_bytes=int(max_upload_bytes),
            max_pixels=int(max_pixels or settings.current().max_pixels),
            request_timeout=float(request_timeout),
            cors_origins=tuple(cors_origins or ()),
            max_side=int(max_side),
            decode_slots=int(decode_slots),
        )
