"""``WS /v1/stream``: live camera frames in, faces out, always working on the newest frame.

A receiver loop keeps only the latest frame in a one-slot mailbox; a worker loop analyses whatever is
newest when it becomes free. A slow CPU therefore answers fewer frames instead of falling ever
further behind, and each reply says how many frames were skipped since the previous one.

The connection is a session (``inference.session``): frame times are when the server received them;
each ``EmotionEvent`` is sent as a message of its own, ``{"type": "event", ...}``, right after the
result of the frame that fired it (and POSTed to the webhook, if one is set); a text message
``{"type": "summary", "window_s": 30}`` is answered with ``{"type": "summary", "people": [...],
"events": [...], "mood": {...}, "csv": "..."}``: the per-person summary, the events so far, the
share of each emotion over the last ``window_s`` seconds, and the same summary as CSV text.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import secrets
import time
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from facial_emotion.inference.decode import ImageError
from facial_emotion.inference.stream import FaceStream
from facial_emotion.results.session import session_csv, session_json
from facial_emotion.service.engine import Busy, Engine
from facial_emotion.service.settings import ServiceSettings
from facial_emotion.service.upload import looks_like_image
from facial_emotion.service.webhook import Webhook

log = logging.getLogger("facial_emotion.service")


class LatestFrame:
    """One-slot mailbox: ``put`` replaces a frame nobody has taken yet, counting it as dropped."""

    def __init__(self) -> None:
        self.frame: tuple[int, bytes, float] | None = None
        self.received = 0
        self.dropped = 0
        self._ready = asyncio.Event()

    def put(self, data: bytes) -> None:
        self.received += 1
        if self.frame is not None:
            self.dropped += 1
        self.frame = (self.received, data, time.perf_counter())
        self._ready.set()

    async def take(self) -> tuple[tuple[int, bytes, float], int]:
        await self._ready.wait()
        self._ready.clear()
        frame, dropped = self.frame, self.dropped
        self.frame, self.dropped = None, 0
        assert frame is not None
        return frame, dropped


def origin_allowed(origin: str | None, host: str | None, allowed: Iterable[str]) -> bool:
    """Browsers send Origin with every WebSocket and no CORS applies, so without this check any web
    page could use a local server's camera analysis. Same-origin and configured origins only."""
    if not origin:
        return True  # not a browser (scripts, tests)
    allowed = set(allowed)
    return "*" in allowed or origin in allowed or urlsplit(origin).netloc == (host or "")


def summary_message(faces: FaceStream, window_s: float = 30.0) -> dict[str, Any]:
    people = faces.summary()
    return {
        "type": "summary",
        **session_json(people, list(faces.session.events)),
        "mood": {k: round(v, 4) for k, v in faces.session.mood(window_s).items()},
        "csv": session_csv(people, faces.classes),
    }


class BadSummaryRequest(ValueError):
    """A summary request whose window is not a number of seconds: answered with an error."""


def _summary_request(text: str) -> float | None:
    """The window of a ``{"type": "summary"}`` request (clamped to 1 s .. 1 h), or None when the text
    is not one; ``BadSummaryRequest`` when its ``window_s`` is not a positive finite number."""
    try:
        msg = json.loads(text)
    except ValueError:
        return None
    if not (isinstance(msg, dict) and msg.get("type") == "summary"):
        return None
    window = msg.get("window_s", 30)
    if isinstance(window, bool) or not isinstance(window, int | float) or not 0 < window < math.inf:
        raise BadSummaryRequest(
            f"window_s must be a positive number of seconds, not {json.dumps(window)[:40]}"
        )
    return float(min(3600.0, max(1.0, window)))  # clamped first: float() of a 400-digit int overflows


async def stream(
    ws: WebSocket, engine: Engine, settings: ServiceSettings, webhook: Webhook | None = None
) -> None:
    if not origin_allowed(ws.headers.get("origin"), ws.headers.get("host"), settings.cors_origins):
        await ws.close(code=1008, reason="origin not allowed")
        return
    await ws.accept()
    try:
        smoothing = float(ws.query_params.get("smooth", "0"))
    except ValueError:
        smoothing = math.nan
    if not 0 <= smoothing < 1:  # as video --smoothing: nan, 1 (never changes) and beyond are refused
        await ws.close(code=1008, reason="smooth must be a number in 0..1 (1 excluded)")
        return
    faces = engine.new_stream(smoothing)  # this connection's detect-or-track, classify, smooth
    slot = LatestFrame()
    send_lock = asyncio.Lock()  # the receiver and the worker both reply

    async def send(obj: dict[str, Any]) -> None:
        async with send_lock:
            if ws.application_state == WebSocketState.DISCONNECTED:
                # The worker's send found the client gone; another send would raise a RuntimeError
                # (starlette's WebSocketDisconnected) past the handler below, logged as a traceback.
                raise WebSocketDisconnect(1006)
            await ws.send_text(json.dumps(obj))

    events = _Events(secrets.token_hex(4), webhook)
    worker = asyncio.create_task(_work(slot, faces, send, engine, settings, events))
    try:
        while True:
            msg = await ws.receive()
            if msg["type"] == "websocket.disconnect":
                break
            data = msg.get("bytes")
            try:
                window_s = _summary_request(msg.get("text") or "") if data is None else None
            except BadSummaryRequest as e:
                await send({"type": "error", "error": str(e)})
                continue
            if window_s is not None:
                # Off the event loop: a long session's summary takes a while, and the mood panel
                # asks for one every few seconds.
                summary = await asyncio.to_thread(summary_message, faces, window_s)
                await send({**summary, "stream": events.stream_id})
            elif data is None:
                await send({"type": "error", "error": "send each camera frame as one binary message (JPEG)"})
            elif len(data) > settings.max_upload_bytes:
                await send(
                    {"type": "error", "error": f"frame too large: limit {settings.max_upload_bytes} bytes"}
                )
                await ws.close(code=1009)
                break
            elif not looks_like_image(data):
                await send({"type": "error", "frame": slot.received + 1, "error": "frame is not an image"})
                slot.received += 1
            else:
                slot.put(data)
            if worker.done():
                break
    except WebSocketDisconnect:
        pass
    finally:
        worker.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await worker


class _Events:
    """Where a connection's events go besides the socket: the webhook, tagged with the connection."""

    def __init__(self, stream_id: str, webhook: Webhook | None):
        self.stream_id = stream_id
        self.webhook = webhook

    def tag(self, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        tagged = [{**e, "stream": self.stream_id} for e in events]
        if self.webhook is not None:
            for e in tagged:
                self.webhook.post(e)
        return tagged


async def _work(
    slot: LatestFrame,
    faces: FaceStream,
    send: Any,
    engine: Engine,
    settings: ServiceSettings,
    events: _Events,
) -> None:
    dropped_total = 0
    previous: asyncio.Future | None = None
    t_first: float | None = None
    while True:
        (seq, data, t_recv), dropped = await slot.take()
        t_first = t_recv if t_first is None else t_first
        dropped_total += dropped
        reply: dict[str, Any]
        # A connection's FaceStream must see one frame at a time: a timed-out job keeps running in
        # its thread, so wait for it before starting the next one.
        if previous is not None:
            with contextlib.suppress(Exception):
                await previous
        job = asyncio.ensure_future(
            engine.run(engine.analyze_stream_frame, data, f"frame {seq}", faces, t_recv - t_first)
        )
        previous = job
        fired: list[dict[str, Any]] = []
        try:
            result = await asyncio.wait_for(asyncio.shield(job), settings.request_timeout)
            fired = events.tag(result.pop("events", []))
            reply = {"type": "result", "frame": seq, **result}  # its "model" made this frame's reply
        except (ImageError, Busy) as e:
            reply = {"type": "error", "frame": seq, "error": str(e)}
        except asyncio.TimeoutError:
            reply = {
                "type": "error",
                "frame": seq,
                "error": f"frame timed out after {settings.request_timeout:g} s",
            }
        except Exception:
            log.exception("stream frame %d failed", seq)
            reply = {"type": "error", "frame": seq, "error": "internal server error"}
        reply.update(
            dropped=dropped,
            dropped_total=dropped_total,
            latency_ms=round((time.perf_counter() - t_recv) * 1000, 1),
        )
        try:
            await send(reply)
            for event in fired:
                await send(event)
        except Exception:  # WebSocketDisconnect, or a send after close: the client went away
            return
