"""aiohttp's own error log on ``serve``'s HTTP ports, without a traceback per bad request.

aiohttp answers a request it cannot parse (a malformed request line, a bad
header, a broken chunked body, TLS or another protocol on a plain port) with
400 itself, and logs each one at ERROR with a full traceback: a scanner or a
misconfigured client writes hundreds of lines a minute. :class:`ServerLog`
is the logger ``serve`` gives aiohttp instead: such a request is counted,
the first of a quiet spell is logged at once in one line, and the rest once
per :data:`INTERVAL_S` as a count with the last reason. A reason is the
parser's error class and what it means, never the request's bytes (a
mangled ``Authorization`` header is still a secret). Anything else aiohttp
logs (an exception in a handler: a bug) goes to ``aiohttp.server`` as before.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any, TypeAlias

from aiohttp import http_exceptions as hx
from aiohttp.log import server_logger

log = logging.getLogger("spanvisor.receiver")

INTERVAL_S = 60.0
_ExcInfo: TypeAlias = (
    bool
    | BaseException
    | tuple[type[BaseException], BaseException, TracebackType | None]
    | tuple[None, None, None]
    | None
)
# Most specific first.
_MEANINGS: tuple[tuple[type[BaseException], str], ...] = (
    (hx.BadHttpMethod, "not an HTTP method (TLS or another protocol on a plain HTTP port?)"),
    (hx.BadStatusLine, "malformed request line"),
    (hx.LineTooLong, "a line or header too long"),
    (hx.InvalidHeader, "malformed header"),
    (hx.TransferEncodingError, "malformed chunked body"),
    (hx.ContentLengthError, "body shorter than its Content-Length"),
    (hx.HttpProcessingError, "malformed HTTP"),
)


def reason(exc: BaseException) -> str:
    """What was wrong, from the error's class alone (never its message: it quotes the request)."""
    meaning = next((m for cls, m in _MEANINGS if isinstance(exc, cls)), "malformed HTTP")
    return f"{type(exc).__name__}: {meaning}"


def _exception(exc_info: _ExcInfo) -> BaseException | None:
    if isinstance(exc_info, BaseException):
        return exc_info
    if isinstance(exc_info, tuple):
        return exc_info[1]
    return None


class MalformedRequests:
    """Counts malformed requests on one port and logs them once per interval."""

    def __init__(
        self, port: str, interval_s: float = INTERVAL_S, on_malformed: Callable[[], None] | None = None
    ) -> None:
        self.port = port
        self.interval_s = interval_s
        self.on_malformed = on_malformed
        self.total = 0
        self._pending = 0  # counted since the last line
        self._last = ""
        self._timer: asyncio.TimerHandle | None = None

    def note(self, exc: BaseException) -> None:
        self.total += 1
        self._last = reason(exc)
        if self.on_malformed is not None:
            self.on_malformed()
        if self._timer is not None:
            self._pending += 1
            return
        log.warning(
            "malformed HTTP request on the %s port: %s; more within %g s are counted and logged as one line",
            self.port,
            self._last,
            self.interval_s,
        )
        self._timer = asyncio.get_running_loop().call_later(self.interval_s, self._tick)

    def _tick(self) -> None:
        self._timer = None
        if self._pending:
            self._flush()
            # Another quiet interval before the next one is logged at once.
            self._timer = asyncio.get_running_loop().call_later(self.interval_s, self._tick)

    def _flush(self) -> None:
        log.warning(
            "%d malformed HTTP requests on the %s port in the last %g s; last: %s",
            self._pending,
            self.port,
            self.interval_s,
            self._last,
        )
        self._pending = 0

    def close(self) -> None:
        """Log what is still counted (the process is stopping)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._pending:
            self._flush()


class ServerLog(logging.LoggerAdapter):  # type: ignore[type-arg]
    """The ``logger`` an aiohttp server of ``serve`` gets: parse errors go to
    :class:`MalformedRequests`, everything else to ``aiohttp.server``."""

    def __init__(self, malformed: MalformedRequests, logger: logging.Logger = server_logger) -> None:
        super().__init__(logger, {})
        self.malformed = malformed

    def log(
        self,
        level: int,
        msg: object,
        *args: object,
        exc_info: _ExcInfo = None,
        stack_info: bool = False,
        stacklevel: int = 1,
        extra: Mapping[str, object] | None = None,
        **kwargs: Any,
    ) -> None:
        exc = _exception(exc_info)
        if isinstance(exc, hx.HttpProcessingError):
            self.malformed.note(exc)
            return
        self.logger.log(
            level, msg, *args, exc_info=exc_info, stack_info=stack_info, stacklevel=stacklevel, extra=extra, **kwargs
        )
