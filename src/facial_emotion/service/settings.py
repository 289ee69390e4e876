"""The service's own settings: limits and CORS, fixed when the app is created."""

from __future__ import annotations

from dataclasses import dataclass

from facial_emotion import settings

DEFAULT_MAX_UPLOAD = 10 * 1024 * 1024


@dataclass(frozen=True)
class ServiceSettings:
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD
    max_pixels: int = settings.DEFAULT_MAX_PIXELS  # decoded image size; above it 413
    request_timeout: float = 30.0  # seconds per request (or per live frame) before a 504
    cors_origins: tuple[str, ...] = ()

    @classmethod
    def create(
        cls,
        max_upload_bytes: int = DEFAULT_MAX_UPLOAD,
        max_pixels: int | None = None,
        request_timeout: float = 30.0,
        cors_origins: tuple[str, ...] | list[str] = (),
    ) -> ServiceSettings:
        """``max_pixels`` None: the process's setting ($FACIAL_EMOTION_MAX_PIXELS)."""
        return cls(
            max_upload_bytes=int(max_upload_bytes),
            max_pixels=int(max_pixels or settings.current().max_pixels),
            request_timeout=float(request_timeout),
            cors_origins=tuple(cors_origins or ()),
        )
