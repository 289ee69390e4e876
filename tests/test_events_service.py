"""Events and session summaries of the live stream, and the webhook: the real app on uvicorn, real
frames of woman2.mp4 over the WebSocket, and a real HTTP receiver on loopback for the webhook."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import cv2
import pytest
from conftest import need_shared

pytest.importorskip("fastapi", reason="the service needs the [serve] extra")
httpx = pytest.importorskip("httpx")
ws_client = pytest.importorskip("websockets.sync.client")

from facial_emotion.service import create_app  # noqa: E402
from facial_emotion.service.background import BackgroundServer  # noqa: E402
from facial_emotion.service.webhook import Webhook, WebhookError  # noqa: E402

pytestmark = pytest.mark.shared


class Receiver(ThreadingHTTPServer):
    """A webhook receiver on 127.0.0.1: keeps every JSON body POSTed to it; waits ``delay`` s first."""

    def __init__(self, delay: float = 0.0):
        self.received: list[dict] = []
        self.delay = delay
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (the http.server API)
                body = self.rfile.read(int(self.headers["content-length"]))
                time.sleep(owner.delay)
                owner.received.append(json.loads(body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server_address[1]}/hook"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def jpeg_frames(n: int) -> list[bytes]:
    cap = cv2.VideoCapture(str(need_shared("media", "woman2.mp4")))
    frames = [cv2.imencode(".jpg", cap.read()[1])[1].tobytes() for _ in range(n)]
    cap.release()
    return frames


def test_stream_sends_events_and_a_summary_and_posts_them(receiver: Receiver) -> None:
    frames = jpeg_frames(75)
    messages: list[dict] = []
    with (
        BackgroundServer(create_app(webhook=receiver.url, workers=1)) as server,
        ws_client.connect(f"{server.ws_url}/v1/stream?smooth=0.6") as ws,
    ):
        start = time.monotonic()
        for i, frame in enumerate(frames, 1):  # at the video's pace, one frame at a time
            time.sleep(max(0.0, start + i / 30 - time.monotonic()))
            ws.send(frame)
            while (msg := json.loads(ws.recv(timeout=60)))["type"] != "result" or msg["frame"] != i:
                messages.append(msg)
        for bad in ("abc", -5, float("nan"), True):  # each an error reply naming window_s, not a summary
            ws.send(json.dumps({"type": "summary", "window_s": bad}))
            while (msg := json.loads(ws.recv(timeout=60)))["type"] != "error":
                messages.append(msg)
            assert msg["error"].startswith("window_s must be a positive number of seconds"), msg
        ws.send(json.dumps({"type": "summary", "window_s": 30}))
        while (msg := json.loads(ws.recv(timeout=60)))["type"] != "summary":
            messages.append(msg)
        summary = msg
        health = httpx.get(f"{server.url}/healthz").json()
    events = [m for m in messages if m["type"] == "event"]
    assert events, "no event in 2.5 s of woman2.mp4 (her first emotion is confirmed after 1 s)"
    first = events[0]
    assert first["kind"] == "change" and first["previous"] is None and first["time_s"] == 0
    assert first["fired_s"] >= 1.0 and isinstance(first["track_id"], int)
    # the summary holds the same events (without the connection tag) and agrees with itself
    assert [{k: v for k, v in e.items() if k != "stream"} for e in events] == summary["events"]
    (person,) = summary["people"]
    assert person["track_id"] == first["track_id"] and person["timeline"][0]["emotion"] == first["emotion"]
    assert sum(person["share"].values()) == pytest.approx(1, abs=1e-3)
    assert sum(summary["mood"].values()) == pytest.approx(1, abs=1e-3)
    assert summary["csv"].startswith("track_id,") and summary["csv"].count("\n") == 2
    # the webhook got the same events, tagged with the same connection
    deadline = time.monotonic() + 10
    while len(receiver.received) < len(events) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert receiver.received == events
    assert health["webhook"]["failed"] == 0 and health["webhook"]["dropped"] == 0


def test_webhook_never_blocks_and_logs_a_failing_receiver_once(caplog: pytest.LogCaptureFixture) -> None:
    with pytest.raises(WebhookError):
        Webhook("ftp://example.org/x")
    # Nobody listens on a port we just released: every POST fails, the first one is logged.
    free = Receiver()
    url = free.url
    free.server_close()
    hook = Webhook(url, timeout=1.0)
    with caplog.at_level(logging.WARNING, logger="facial_emotion.service"):
        for i in range(3):
            hook.post({"n": i})
        hook.close()
    assert hook.stats()["failed"] == 3 and hook.stats()["sent"] == 0
    assert len([r for r in caplog.records if "webhook" in r.getMessage()]) == 1
    # A slow receiver: post() returns at once, the queue bound drops the excess, nothing hangs.
    slow = Receiver(delay=0.5)
    threading.Thread(target=slow.serve_forever, daemon=True).start()
    try:
        hook = Webhook(slow.url, timeout=0.2, queue_size=2)
        t0 = time.perf_counter()
        for i in range(10):
            hook.post({"n": i})
        assert time.perf_counter() - t0 < 0.1
        hook.close(timeout=3)
        stats = hook.stats()
        assert stats["dropped"] >= 7 and stats["sent"] + stats["failed"] + stats["dropped"] == 10
    finally:
        slow.shutdown()
        slow.server_close()


def test_summary_request_is_answered_before_any_frame(tmp_path: Path) -> None:
    need_shared("media", "woman2.mp4")
    with (
        BackgroundServer(create_app(workers=1)) as server,
        ws_client.connect(f"{server.ws_url}/v1/stream") as ws,
    ):
        ws.send(json.dumps({"type": "summary"}))
        msg = json.loads(ws.recv(timeout=30))
        ws.send("not json")  # other text is still an error, and the connection stays open
        err = json.loads(ws.recv(timeout=30))
    assert msg["type"] == "summary" and msg["people"] == [] and msg["events"] == [] and msg["mood"] == {}
    assert err["type"] == "error"


def test_a_summary_window_of_any_size_is_clamped_not_a_crash() -> None:
    from facial_emotion.service.stream import BadSummaryRequest, _summary_request

    huge = "1" + "0" * 400  # float() of it overflowed: the socket closed with a server traceback
    assert _summary_request('{"type": "summary", "window_s": ' + huge + "}") == 3600.0
    with pytest.raises(BadSummaryRequest, match=r"not -1000000000"):
        _summary_request('{"type": "summary", "window_s": -' + huge + "}")
    assert _summary_request('{"type": "result"}') is None
