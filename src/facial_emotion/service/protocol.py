"""uvicorn's HTTP protocols with JSON protocol-level errors.

A request that is not valid HTTP (a bad request line, a malformed header, a broken chunked body)
never reaches the app: uvicorn answers 400 itself, in plain text. These subclasses answer it in the
same ``{"error": "..."}`` JSON as every other error of the service. ``serve`` and
``BackgroundServer`` pass ``http_protocol()`` to uvicorn.
"""

from __future__ import annotations

import asyncio
import functools
import importlib.util
import json

from uvicorn.protocols.http.h11_impl import H11Protocol


def json_400(msg: str) -> bytes:
    """The whole response, written raw: the parser's state is broken at this point."""
    body = json.dumps({"error": f"malformed HTTP request ({msg.rstrip('.').lower()})"}).encode()
    return (
        b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\nx-content-type-options: nosniff\r\n"
        b"content-length: " + str(len(body)).encode() + b"\r\nconnection: close\r\n\r\n" + body
    )


class JsonH11Protocol(H11Protocol):
    def send_400_response(self, msg: str) -> None:
        self.transport.write(json_400(msg))
        self.transport.close()


@functools.cache
def http_protocol() -> type[asyncio.Protocol]:
    """The protocol uvicorn's "auto" picks (httptools when installed, else h11), with JSON 400s."""
    if importlib.util.find_spec("httptools") is None:
        return JsonH11Protocol
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    class JsonHttpToolsProtocol(HttpToolsProtocol):
        def send_400_response(self, msg: str) -> None:
            self.transport.write(json_400(msg))
            self.transport.close()

    return JsonHttpToolsProtocol
