"""uvicorn's HTTP/1.1 protocol with deadlines against slow clients (slowloris).

uvicorn cuts idle keep-alive connections (``timeout_keep_alive``) but waits
for ever for a request's headers or body to arrive. Here a connection that
has not sent a request's complete headers within ``header_timeout`` seconds
(from the connection, or from the first byte of the next request), or its
whole body within ``body_timeout`` seconds after the headers, is closed. A
client trickling a byte a second thus holds a connection for at most that
long, and memory stays bounded by the connections open at once. A request
line and headers over ``max_header_bytes`` (64 KiB by default) are answered
431 and the connection closed.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

__all__ = ["guarded_protocol"]


class _Guarded(HttpToolsProtocol):
    header_timeout = 10.0
    body_timeout = 30.0
    max_header_bytes = 65_536
    _deadline: asyncio.TimerHandle | None = None
    _header_bytes: int | None = 0  # bytes of the request line and headers so far; None once they are complete

    def data_received(self, data: bytes) -> None:
        if self._header_bytes is None:  # headers done: the body (its bound is the body limit's)
            super().data_received(data)
            return
        # Feed at most what the header bound has room for; a chunk may carry headers and body at once.
        room = self.max_header_bytes - self._header_bytes
        first, rest = data[:room], data[room:]
        if first:
            self._header_bytes += len(first)
            super().data_received(first)
        if not rest or self.transport.is_closing():
            return
        if self._header_bytes is None:  # the headers ended within ``first``: the rest is body
            super().data_received(rest)
            return
        self._refuse_headers()  # still no end of headers, and no room left

    def _refuse_headers(self) -> None:
        self._answer_and_close(
            b"431 Request Header Fields Too Large",
            {
                "error": "resource_exhausted",
                "message": f"request headers exceed the limit of {self.max_header_bytes} bytes",
            },
        )

    def send_400_response(self, msg: str) -> None:
        """What the parser refuses (a control character in a header, a broken request line), in Muster's shape."""
        self._answer_and_close(
            b"400 Bad Request",
            {
                "error": "invalid_argument",
                "message": "request: not valid HTTP/1.1 (a malformed request line, header name or header value)",
                "field": "request",
            },
        )

    def _answer_and_close(self, status: bytes, body: dict[str, str]) -> None:
        """Answer before any app runs, and close: the connection cannot be trusted to frame another request."""
        encoded = orjson.dumps(body)
        head = b"HTTP/1.1 " + status + b"\r\ncontent-type: application/json\r\nconnection: close\r\n"
        head += b"content-length: " + str(len(encoded)).encode() + b"\r\n\r\n"
        if not self.transport.is_closing():
            self.transport.write(head + encoded)
            self.transport.close()

    def _arm(self, seconds: float) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(seconds, self._too_slow)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _too_slow(self) -> None:
        self._deadline = None
        if not self.transport.is_closing():
            self.transport.close()

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        self._arm(self.header_timeout)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm(self.header_timeout)
        if self._header_bytes is None:  # the next request on this connection
            self._header_bytes = 0

    def on_headers_complete(self) -> None:
        self._header_bytes = None
        self._arm(self.body_timeout)
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)


def guarded_protocol(
    header_timeout: float, body_timeout: float, max_header_bytes: int = 65_536, base: type[Any] = _Guarded
) -> type[Any]:
    """The protocol class to hand uvicorn (``Config(http=...)``), with these deadlines and header bound."""
    if not issubclass(base, _Guarded):
        base = type(f"Guarded{base.__name__}", (_Guarded, base), {})
    limits = {"header_timeout": header_timeout, "body_timeout": body_timeout, "max_header_bytes": max_header_bytes}
    return type("MusterHttpProtocol", (base,), limits)
