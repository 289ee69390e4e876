"""Run the service in a background thread of this process (tests, notebooks, demos).

>>> with BackgroundServer(create_app()) as server:
...     httpx.get(f"{server.url}/healthz")
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from typing import Any

import uvicorn

from facial_emotion.service.protocol import http_protocol
from facial_emotion.service.settings import ServiceSettings


class BackgroundServer:
    """uvicorn on 127.0.0.1 and a free port picked by the OS (no race: we bind the socket ourselves)."""

    def __init__(self, app: Any, host: str = "127.0.0.1", startup_timeout: float = 30.0):
        if not startup_timeout > 0:  # also refuses nan; a timeout of 0 or less always fails start()
            raise ValueError(f"startup_timeout must be above 0 seconds, not {startup_timeout!r}")
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"http://{host}:{self.port}"
        self.ws_url = f"ws://{host}:{self.port}"
        config = uvicorn.Config(
            app,
            log_level="warning",
            lifespan="on",
            # the app's own limit (any ASGI app may be served: tests serve bare FastAPI ones)
            ws_max_size=getattr(getattr(app, "state", None), "settings", ServiceSettings()).ws_max_size,
            http=http_protocol(),
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.startup_timeout = startup_timeout

    def _serve(self) -> None:
        # uvicorn says a failed start-up with sys.exit(); start() reports it, the thread just ends.
        with contextlib.suppress(SystemExit):
            self.server.run(sockets=[self.sock])

    def start(self) -> BackgroundServer:
        """Serve, and wait until the app's start-up is done; RuntimeError if it failed or took longer
        than ``startup_timeout`` seconds."""
        self.thread.start()
        deadline = time.monotonic() + self.startup_timeout
        while not self.server.started:
            failed = not self.thread.is_alive()
            if failed or time.monotonic() > deadline:
                # A slow start-up would otherwise finish later and serve for the life of the process:
                # with start() raising, ``with BackgroundServer(...)`` never calls __exit__.
                self.stop()
                if failed:
                    raise RuntimeError("the service did not start (see the log)")
                raise RuntimeError(f"the service did not start within {self.startup_timeout:g} s")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        # uvicorn looks at should_exit after its start-up too: a server still starting shuts down.
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.sock.close()

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
