"""A request head over aiohttp's limits answers 431, never an echo of its bytes.

aiohttp's parser stops at a request line or header longer than
``max_line_size``/``max_field_size`` (8190 bytes by default) or more than
``max_headers`` headers (128), and answers ``400`` with the parser's message,
which quotes the first 100 bytes of the offending line (an ``Authorization``
or cookie header is a secret). RFC 6585 names the answer: 431 Request Header
Fields Too Large. aiohttp has no setting for it, so :class:`Runner` builds
its connections with a request handler whose ``handle_error`` answers 431 for
those, and for any other parse error a 400 naming only the error's class
(:func:`spanvisor.receiver.httplog.reason`). Logging is unchanged: the error
still reaches the server's logger (``ServerLog`` counts it as malformed).
"""

from __future__ import annotations

from aiohttp import web
from aiohttp.http_exceptions import BadHttpMessage, HttpProcessingError, LineTooLong
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

from spanvisor.receiver.httplog import reason

# aiohttp's defaults (web_protocol.RequestHandler), stated for the docs.
MAX_FIELD_SIZE = 8190
MAX_HEADERS = 128
TOO_LARGE = (
    "431 Request Header Fields Too Large: a request line or header is longer than "
    f"{MAX_FIELD_SIZE} bytes, or there are more than {MAX_HEADERS} headers\n"
)


def head_too_large(exc: BaseException | None) -> bool:
    """A parse error that says the head is over a limit (not malformed)."""
    if isinstance(exc, LineTooLong):
        return True
    # "Too many headers received": the C and the Python parser say the same.
    return isinstance(exc, BadHttpMessage) and "too many headers" in exc.message.lower()


class _Handler(RequestHandler):
    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if status == 400 and head_too_large(exc):
            return super().handle_error(request, 431, exc, TOO_LARGE)
        if status == 400 and isinstance(exc, HttpProcessingError):
            return super().handle_error(request, 400, exc, f"400 Bad Request: {reason(exc)}\n")
        return super().handle_error(request, status, exc, message)


class _Server(web.Server):
    def __call__(self) -> RequestHandler:
        return _Handler(self, loop=self._loop, **self._kwargs)


class Runner(web.AppRunner):
    """``web.AppRunner`` whose connections answer an oversized head with 431."""

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        # The app builds its Server (with its handler_args and request factory);
        # only the class that makes each connection's handler changes.
        server.__class__ = _Server
        return server


__all__ = ["MAX_FIELD_SIZE", "MAX_HEADERS", "Runner", "head_too_large"]
