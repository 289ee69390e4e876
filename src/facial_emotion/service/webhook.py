"""``serve --webhook URL``: every live-stream event is also POSTed, as JSON, to a URL of your own.

The stream never waits for it: events go into a bounded queue that one background thread empties,
one POST at a time with a timeout. When the queue is full (the receiver is slow or down) new events
are dropped and counted. A failing receiver is logged once, not once per event, and again when it
works again; the counts are in ``stats()`` (and ``GET /healthz``).
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import urllib.request
from typing import Any
from urllib.parse import urlsplit

log = logging.getLogger("facial_emotion.service")


class WebhookError(ValueError):
    """The webhook URL is not an http(s) URL."""


class Webhook:
    def __init__(self, url: str, timeout: float = 2.0, queue_size: int = 256):
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise WebhookError(f"webhook {url!r}: give an http:// or https:// URL")
        self.url = url
        self.timeout = timeout
        self.queue: queue.Queue[dict[str, Any] | None] = queue.Queue(maxsize=queue_size)
        self.sent = self.failed = self.dropped = 0
        self._failing = False
        self._thread = threading.Thread(target=self._run, name="facial-emotion-webhook", daemon=True)
        self._thread.start()

    def post(self, event: dict[str, Any]) -> None:
        """Queue ``event`` for sending; never blocks. A full queue drops it (logged once)."""
        try:
            self.queue.put_nowait(event)
        except queue.Full:
            self.dropped += 1
            if self.dropped == 1:
                log.warning("webhook %s: queue full, events are being dropped", self.url)

    def _run(self) -> None:
        while (event := self.queue.get()) is not None:
            request = urllib.request.Request(
                self.url,
                data=json.dumps(event).encode(),
                headers={"content-type": "application/json", "user-agent": "facial-emotion"},
                method="POST",
            )
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as reply:
                    reply.read()
            except Exception as e:  # refused, timed out, 4xx/5xx (HTTPError), bad TLS...
                self.failed += 1
                if not self._failing:
                    self._failing = True
                    log.warning("webhook %s failed (%s); not logged again until it works", self.url, e)
                continue
            self.sent += 1
            if self._failing:
                self._failing = False
                log.warning("webhook %s works again (%d events failed)", self.url, self.failed)

    def stats(self) -> dict[str, Any]:
        return {"url": self.url, "sent": self.sent, "failed": self.failed, "dropped": self.dropped}

    def close(self, timeout: float = 5.0) -> None:
        """Send what is queued (for at most ``timeout`` seconds), then stop the thread."""
        try:
            self.queue.put(None, timeout=timeout)
        except queue.Full:
            return  # the daemon thread dies with the process
        self._thread.join(timeout)
