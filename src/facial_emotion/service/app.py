"""The FastAPI app: ``POST /v1/analyze``, ``WS /v1/stream``, ``GET /v1/model``, ``GET /healthz``
and the page at ``/``.

Safety defaults: uploads are capped in bytes and in pixels, only images are accepted, every request
has a deadline, nothing is written to disk (unless ``--feedback-dir`` turns corrections on), no CORS unless origins are given, and every error is a
short JSON ``{"error": "..."}``, never a traceback.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import os
from collections.abc import Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, Query, Request, WebSocket
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from facial_emotion import __version__
from facial_emotion.arguments import whole_number
from facial_emotion.feedback import FeedbackError, FeedbackStore
from facial_emotion.inference.decode import DETECTION_MAX_SIDE, ImageError, ImageTooLarge, NotAnImage
from facial_emotion.labels import DISPLAY_NAMES, color_rgb
from facial_emotion.model_file import ModelFileError
from facial_emotion.service import stream as stream_module
from facial_emotion.service.engine import Busy, Engine
from facial_emotion.service.settings import DEFAULT_MAX_UPLOAD, ServiceSettings
from facial_emotion.service.upload import UploadError, read_image
from facial_emotion.service.webhook import Webhook

log = logging.getLogger("facial_emotion.service")
STATIC_DIR = Path(__file__).parent / "static"


# --- response schemas (for the OpenAPI docs; responses are built as plain dicts for speed) ---------


class FaceOut(BaseModel):
    box: list[int] = Field(description="x, y, width, height in pixels of the (EXIF-upright) image")
    emotion: str
    confidence: float
    scores: dict[str, float] = Field(description="probability of every emotion; they sum to 1")
    detector_score: float
    uncertain: bool = Field(
        description="the calibrated confidence is under the model's threshold: the label is more "
        "likely wrong than right (README: Confidence)"
    )
    runner_up: str | None = Field(
        None, description="only for an uncertain face: the second most likely emotion"
    )
    track_id: int | None = Field(None, description="stream only: stable id of this face across frames")
    pose: dict[str, float] | None = Field(
        None, description="with ?landmarks=true: head yaw, pitch, roll in degrees (README: Landmarks)"
    )
    landmarks: list[list[float]] | None = Field(
        None, description="with ?landmarks=true: the 468-point face mesh, [x, y, z] in image pixels"
    )


class AnalyzeOut(BaseModel):
    faces: list[FaceOut]
    width: int
    height: int
    orientation: int = Field(
        1,
        description="the photo's EXIF orientation (1-8; 1: none), which the server applied: boxes are in "
        "the upright picture's pixels, whether or not a browser turns the file the same way",
    )
    model: dict[str, Any]
    elapsed_ms: float
    annotated_jpeg_base64: str | None = Field(
        None, description="with ?annotate=true: the image with boxes, as JPEG"
    )


class FeedbackOut(BaseModel):
    saved: str = Field(description="the saved face's file name in the feedback folder")
    emotion: str = Field(description="the emotion it was saved as")
    predicted: str = Field(description="what the model said for that face")
    face: int = Field(description="which face, from 1, in the order /v1/analyze lists them")
    model: dict[str, Any]


class ReloadOut(BaseModel):
    model: dict[str, Any] = Field(description="the model now in use: name, arch, date")


class ErrorOut(BaseModel):
    error: str


_IMAGE_BODY = {"schema": {"type": "string", "format": "binary"}}
_ANALYZE_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {"file": _IMAGE_BODY["schema"]},
                }
            },
            "image/jpeg": _IMAGE_BODY,
            "image/png": _IMAGE_BODY,
            "application/octet-stream": _IMAGE_BODY,
        },
    }
}
_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorOut, "description": text}
    for code, text in {
        400: "malformed request",
        413: "upload or image too large",
        415: "not an image",
        422: "corrupt or unreadable image",
        503: "server busy",
        504: "timed out",
    }.items()
}


def error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


class SecurityHeaders:
    """Plain ASGI middleware (works for streaming responses too): no sniffing, no referrers, no
    caching of results, and a strict CSP for our own page: it loads nothing from anywhere else."""

    PAGE_CSP = (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
        "media-src 'self' blob: mediastream:; connect-src 'self'; object-src 'none'; base-uri 'none'; "
        "form-action 'none'; frame-ancestors 'none'"
    )

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += [(b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"no-referrer")]
                if path == "/" or path.startswith("/static/"):
                    headers += [
                        (b"content-security-policy", self.PAGE_CSP.encode()),
                        (b"permissions-policy", b"camera=(self), microphone=(), geolocation=()"),
                        (b"cache-control", b"no-cache"),
                    ]
                elif path.startswith("/v1/"):
                    headers.append((b"cache-control", b"no-store"))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


def create_app(
    model: str | os.PathLike | None = None,
    detector: Any = None,
    cors_origins: str | Iterable[str] = (),
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD,
    max_pixels: int | None = None,
    request_timeout: float = 30.0,
    workers: int | None = None,
    threads: int | None = 1,
    max_side: int = DETECTION_MAX_SIDE,
    decode_slots: int = 2,
    webhook: str | None = None,
    feedback_dir: str | os.PathLike | None = None,
    admin_token: str | None = None,
) -> FastAPI:
    """The service's ASGI app. The model is loaded here, so a bad model path fails at start-up.

    ``workers``: images analysed at once (default: the number of cores, at most 4), each with its own
    face detector; ``threads``: onnxruntime threads per analysis (1 suits several workers).
    ``max_side``, ``decode_slots``: the memory budget (engine.py): uploads are decoded at most
    ``max_side`` px on the long side, at most ``decode_slots`` at a time. ``webhook``: POST every
    live-stream event to this URL (webhook.py). ``feedback_dir``: turns on ``POST /v1/feedback``,
    corrections saved there (feedback.py; checked writable here). ``POST /v1/model/reload`` swaps the
    model; it answers loopback clients only, or, with ``admin_token``, requests bearing that token.
    ``cors_origins``: the origins allowed, or one origin as a string.

    A limit that is not a positive number (a whole one for sizes and counts) is a ValueError naming
    it, raised before the model is loaded.
    """
    if admin_token is not None and not admin_token.strip():
        raise ValueError("admin_token is empty: anyone sending 'Bearer ' could reload the model")
    settings = ServiceSettings.create(  # checks the limits (ValueError), so before the model loads
        max_upload_bytes, max_pixels, request_timeout, cors_origins, max_side, decode_slots
    )
    if workers is not None:
        # checked here too: ThreadPoolExecutor would refuse 0 only after the model had loaded
        workers = whole_number("workers", workers)
    engine = Engine(
        model,
        detector,
        workers=workers,
        threads=threads,
        max_pixels=settings.max_pixels,
        max_side=settings.max_side,
        decode_slots=settings.decode_slots,
    )
    store = FeedbackStore(feedback_dir, engine.recognizer.classes) if feedback_dir else None
    hook = Webhook(webhook) if webhook else None

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        yield
        engine.close()
        if hook is not None:
            hook.close()

    app = FastAPIOffline(  # /docs with Swagger UI served from the package, not a CDN
        title="facial-emotion",
        version=__version__,
        description="Recognise the seven basic facial emotions in photos and live camera frames.",
        lifespan=lifespan,
    )
    app.state.engine = engine
    app.state.settings = settings
    app.add_middleware(SecurityHeaders)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["*"],
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return error(exc.status_code, str(exc.detail), getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(f"{'.'.join(map(str, e.get('loc', ())))}: {e.get('msg')}" for e in exc.errors())
        return error(422, f"invalid request: {problems}")

    @app.exception_handler(Exception)
    async def internal_error(_request: Request, exc: Exception) -> JSONResponse:
        log.error("unhandled error", exc_info=exc)  # the details go to the log, not to the client
        return error(500, "internal server error")

    async def answer(work: Callable[[], Awaitable[dict[str, Any]]]) -> JSONResponse:
        """Run one upload's job under the request deadline; every error a client can cause becomes
        its HTTP status with a JSON body: a bad upload, a too-large (413) or unreadable (422) image, a
        bad correction (422), a full queue (503), the deadline (504)."""
        try:
            result = await asyncio.wait_for(work(), settings.request_timeout)
        except UploadError as e:
            return error(e.status, str(e))
        except ImageTooLarge as e:
            return error(413, str(e))
        except NotAnImage as e:  # sent as image/jpeg (a browser names a file's type by its suffix)
            return error(415, str(e))
        except (ImageError, FeedbackError) as e:
            return error(422, str(e))
        except Busy as e:
            return error(503, str(e), {"retry-after": "1"})
        except asyncio.TimeoutError:
            return error(504, f"request timed out after {settings.request_timeout:g} s")
        return JSONResponse(result)  # with "model": the one that made it (Engine._call)

    @app.post(
        "/v1/analyze",
        summary="Faces and emotions in one image",
        description="Send the image as multipart field `file` or as the raw request body (image/* or "
        "application/octet-stream). Images without faces give `faces: []`.",
        response_model=None,
        responses={200: {"model": AnalyzeOut}, **_ERRORS},
        openapi_extra=_ANALYZE_BODY,
    )
    async def analyze(
        request: Request,
        annotate: bool = Query(False, description="add the annotated image as base64 JPEG"),
        landmarks: bool = Query(False, description="add each face's 468-point mesh and head pose"),
    ) -> JSONResponse:
        async def work() -> dict[str, Any]:
            data, name = await read_image(request, settings.max_upload_bytes)
            return await engine.run(engine.analyze_bytes, data, name, annotate, landmarks)

        return await answer(work)

    @app.websocket("/v1/stream")
    async def stream(ws: WebSocket) -> None:
        """Binary JPEG frames in; one JSON reply per analysed frame; stale frames are skipped. Emotion
        events come as messages of their own; ``{"type": "summary"}`` asks for the session summary."""
        await stream_module.stream(ws, engine, settings, hook)

    def feedback_on() -> None:
        """Before the query is checked: without a feedback folder the endpoint is not there (404)."""
        if store is None:
            raise StarletteHTTPException(404, "feedback is off: start the server with --feedback-dir DIR")

    def same_site(request: Request) -> None:
        """The endpoints that change the server (a correction saved, the model swapped) refuse a
        request a browser sends from another site's page (its Origin neither this server's nor a
        --cors-origin): such a page could post to a local server without the user knowing (a form or
        a no-cors fetch needs no CORS answer). Scripts send no Origin."""
        if not stream_module.origin_allowed(
            request.headers.get("origin"), request.headers.get("host"), settings.cors_origins
        ):
            raise StarletteHTTPException(403, "cross-site request refused: this page's origin is not allowed")

    @app.post(
        "/v1/feedback",
        summary="Save a correction: face N of this image is really EMOTION (only with --feedback-dir)",
        description="The image as for /v1/analyze; `face` numbers faces as /v1/analyze lists them, from 1, "
        "or `box` gives the face's box as a live-stream reply did (its faces come from the tracker: the "
        "face found here that overlaps it most is taken). "
        "The aligned face, the full-resolution crop and a JSON sidecar go into the server's feedback "
        "folder, to fine-tune on (`facial-emotion finetune`). 404 when the server has no feedback folder.",
        response_model=None,
        responses={
            200: {"model": FeedbackOut},
            404: {"model": ErrorOut, "description": "feedback is off (no --feedback-dir)"},
            **_ERRORS,
        },
        openapi_extra=_ANALYZE_BODY,
        dependencies=[Depends(feedback_on), Depends(same_site)],
    )
    async def feedback(
        request: Request,
        face: int | None = Query(None, ge=1, description="which face, from 1 (or give `box`)"),
        emotion: str = Query(..., description="the right emotion, one of the model's classes"),
        box: str | None = Query(
            None, pattern=r"^\d+,\d+,\d+,\d+$", description="x,y,w,h in pixels; decides over `face`"
        ),
    ) -> JSONResponse:
        assert store is not None  # feedback_on
        if face is None and box is None:
            return error(422, "say which face: face=N (from 1) or box=x,y,w,h")
        where = None if box is None else tuple(int(v) for v in box.split(","))

        async def work() -> dict[str, Any]:
            data, name = await read_image(request, settings.max_upload_bytes)
            return await engine.run(engine.feedback_bytes, data, name, face, emotion, store, where)

        return await answer(work)

    @app.post(
        "/v1/model/reload",
        summary="Swap the model without a restart (loopback clients, or with the admin token)",
        description="`model`: a model file on the server or a built-in name (default: the file now "
        "in use, read again). Requests already running finish on the old model.",
        response_model=None,
        responses={
            200: {"model": ReloadOut},
            403: {
                "model": ErrorOut,
                "description": "not from this machine, without the admin token, or from another site's page",
            },
            422: {"model": ErrorOut, "description": "not a usable model file (the old model stays)"},
        },
        dependencies=[Depends(same_site)],
    )
    async def reload_model(
        request: Request, model: str | None = Query(None, description="model file or built-in name")
    ) -> JSONResponse:
        if admin_token is not None:
            given = request.headers.get("authorization", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {admin_token}".encode()):
                return error(403, "reloading the model needs the admin token (Authorization: Bearer ...)")
        elif request.client is None or request.client.host not in ("127.0.0.1", "::1", "localhost"):
            return error(403, "reloading the model is allowed from this machine only (or set an admin token)")
        target = model or str(engine.recognizer.classifier.path)
        try:
            new_id = await asyncio.get_running_loop().run_in_executor(None, engine.swap_model, target)
        except ModelFileError as e:
            return error(422, f"{e} (the old model stays)")
        log.info("model swapped to %s", target)
        return JSONResponse({"model": new_id})

    @app.get("/v1/model", summary="Model card: classes, names, colours, input size, accuracy")
    async def model_card() -> dict[str, Any]:
        rec = engine.recognizer  # read per request: the model may have been swapped
        info = rec.model_info
        classes = rec.classes
        return {
            "name": rec.classifier.path.name,
            "version": __version__,
            "arch": info.get("arch"),
            "date": info.get("date"),
            "labels": info.get("labels"),
            "val_accuracy": info.get("val_accuracy"),
            "val_split": info.get("val_split"),
            "parameters": info.get("parameters"),
            "quantized": info.get("quantized"),
            "classes": classes,
            "display_names": {c: DISPLAY_NAMES.get(c, c.title()) for c in classes},
            "colors": {c: "#{:02x}{:02x}{:02x}".format(*color_rgb(c)) for c in classes},
            "input_size": {"face": rec.classifier.face_size, "crop": rec.classifier.crop, "channels": 1},
            "detector": getattr(rec.detector, "name", type(rec.detector).__name__),
            "limits": {
                "max_upload_bytes": settings.max_upload_bytes,
                "max_pixels": settings.max_pixels,
                "max_side": settings.max_side,
                "request_timeout_s": settings.request_timeout,
            },
            "finetune": info.get("finetune"),  # corrections count and before/after, for a fine-tuned model
            "feedback": {"enabled": store is not None, "dir": str(store.root.resolve()) if store else None},
        }

    @app.get("/healthz", summary="Liveness: the model is loaded")
    async def healthz() -> dict[str, Any]:
        health: dict[str, Any] = {"status": "ok", "version": __version__, "workers": engine.workers}
        health["pending"] = engine.pending
        if hook is not None:
            health["webhook"] = hook.stats()
        return health

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html")

    # HEAD beside GET on the read-only endpoints (a 405 before): health checks and uptime probes
    # often send HEAD. Out of the schema, where a second operation per path would repeat its id.
    for path, endpoint in (("/healthz", healthz), ("/v1/model", model_card), ("/", index)):
        app.add_api_route(path, endpoint, methods=["HEAD"], include_in_schema=False)

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app
