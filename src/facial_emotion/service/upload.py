"""Getting the image bytes out of a request: raw body or multipart field ``file``, in memory only.

We parse multipart ourselves (with python-multipart's streaming parser) instead of FastAPI's
``UploadFile`` because that spools uploads over 1 MB to a temporary file, and the service stores
nothing on disk. The body is read with a byte cap, so an oversized upload costs at most the cap.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from python_multipart.exceptions import FormParserError, MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import ClientDisconnect, Request

log = logging.getLogger("facial_emotion.service")


class UploadError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


# Multipart framing (boundaries, part headers) on top of the image itself.
MULTIPART_SLACK = 64 * 1024
MAX_PARTS = 16

# File signatures of the formats our decoders read; used to accept "application/octet-stream" bodies.
_SIGNATURES = (
    b"\xff\xd8\xff",  # JPEG
    b"\x89PNG\r\n\x1a\n",
    b"GIF87a",
    b"GIF89a",
    b"BM",  # BMP
    b"II*\x00",  # TIFF, little-endian
    b"MM\x00*",  # TIFF, big-endian
    b"\x00\x00\x00\x0cjP  ",  # JPEG 2000
    b"P5",  # binary PGM
    b"P6",  # binary PPM
)


def looks_like_image(data: bytes) -> bool:
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return True
    if data[4:8] == b"ftyp" and data[8:12] in (b"avif", b"avis", b"heic", b"heix", b"mif1"):
        return True
    return data.startswith(_SIGNATURES)


def _media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def check_type(content_type: str | None, data: bytes) -> None:
    """image/* is taken at its word (the decoder has the last say); octet-stream or no type is sniffed."""
    media = _media_type(content_type)
    if media.startswith("image/"):
        return
    if media in ("", "application/octet-stream"):
        if looks_like_image(data):
            return
        raise UploadError(
            415, "not an image: unrecognised file signature (send JPEG, PNG, WebP, BMP, GIF or TIFF)"
        )
    raise UploadError(415, f"unsupported content type {media!r}: send an image (image/jpeg, image/png, ...)")


async def read_body(request: Request, cap: int, slack: int = 0) -> bytes:
    """The body, refused past ``cap`` + ``slack`` bytes (a form's own fields and boundaries are the
    slack); messages name ``cap``, the limit the user set (--max-upload-mb)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > cap + slack:
        raise UploadError(413, f"upload too large: {int(declared)} bytes; limit {cap} bytes")
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > cap + slack:
                raise UploadError(413, f"upload too large: over the limit of {cap} bytes")
            chunks.append(chunk)
    except ClientDisconnect:  # one line in the log, not a traceback: nobody is left to answer
        client = f"{request.client.host}:{request.client.port}" if request.client else "a client"
        log.info("%s disconnected during its upload, after %d bytes", client, size)
        raise UploadError(400, "client disconnected during the upload") from None
    return b"".join(chunks)


@dataclass
class Part:
    headers: dict[str, str] = field(default_factory=dict)
    data: bytearray = field(default_factory=bytearray)

    @property
    def disposition(self) -> dict[str, str]:
        _, params = parse_options_header(self.headers.get("content-disposition", ""))
        return {k.decode("latin-1"): v.decode("utf-8", "replace") for k, v in params.items()}


def parse_multipart(body: bytes, content_type: str) -> list[Part]:
    _, params = parse_options_header(content_type)
    boundary = params.get(b"boundary")
    if not boundary:
        raise UploadError(400, "multipart body without a boundary")
    parts: list[Part] = []
    name = bytearray()
    value = bytearray()

    def on_part_begin() -> None:
        if len(parts) >= MAX_PARTS:
            raise UploadError(400, f"too many multipart fields (limit {MAX_PARTS})")
        parts.append(Part())

    def on_header_end() -> None:
        parts[-1].headers[name.decode("latin-1").lower()] = value.decode("latin-1")
        name.clear()
        value.clear()

    callbacks = {
        "on_part_begin": on_part_begin,
        "on_part_data": lambda d, s, e: parts[-1].data.extend(d[s:e]),
        "on_header_field": lambda d, s, e: name.extend(d[s:e]),
        "on_header_value": lambda d, s, e: value.extend(d[s:e]),
        "on_header_end": on_header_end,
    }
    try:
        parser = MultipartParser(boundary, callbacks)  # type: ignore[arg-type]
        parser.write(body)
        parser.finalize()
    except (MultipartParseError, FormParserError) as e:  # FormParserError: a boundary over 256 bytes...
        raise UploadError(400, f"malformed multipart body ({e})") from None
    except (ValueError, IndexError, UnicodeError) as e:  # anything else the parser trips on
        raise UploadError(400, f"malformed multipart body ({type(e).__name__})") from None
    return parts


async def read_image(request: Request, cap: int) -> tuple[bytes, str]:
    """The uploaded image's bytes and a name for messages. Raises ``UploadError``."""
    content_type = request.headers.get("content-type", "")
    if _media_type(content_type) == "multipart/form-data":
        body = await read_body(request, cap, MULTIPART_SLACK)
        parts = parse_multipart(body, content_type)
        part = next((p for p in parts if p.disposition.get("name") == "file"), None)
        if part is None:
            raise UploadError(422, "multipart body has no field named 'file'")
        if len(part.data) > cap:
            raise UploadError(413, f"upload too large: {len(part.data)} bytes; limit {cap} bytes")
        data = bytes(part.data)
        name = (part.disposition.get("filename") or "upload")[:100]  # it is echoed in messages
        part_type = part.headers.get("content-type")
    else:
        data = await read_body(request, cap)
        name, part_type = "upload", content_type
    if not data:
        raise UploadError(422, f"{name}: empty file (0 bytes)")
    check_type(part_type, data)
    return data, name
