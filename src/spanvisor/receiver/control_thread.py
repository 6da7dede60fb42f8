"""The control API on its own thread, for a process that is not ``spanvisor
serve`` (the demo: so ``spanvisor approve`` can answer its agent).

``spanvisor serve`` needs none of this: its OTLP/HTTP app carries the same
routes (:func:`spanvisor.receiver.control_api.add_routes`).
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from aiohttp import web

from spanvisor.receiver.control_api import make_app


class ControlApiThread:
    """``start()`` listens on ``host``:``port`` (0: any free port; the
    preferred ``port`` when taken falls back to a free one) and returns the
    port; ``stop()`` closes it."""

    def __init__(self, pipeline: Any, host: str = "127.0.0.1", port: int = 0, token: str | None = None) -> None:
        self.pipeline = pipeline
        self.host = host
        self.port = port
        self.token = token
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="spanvisor-control-api", daemon=True)
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout_s: float = 10.0) -> int:
        self._thread.start()
        self.port = asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(timeout_s)
        return self.port

    async def _start(self) -> int:
        self._runner = web.AppRunner(make_app(self.pipeline, self.token), access_log=None)
        await self._runner.setup()
        for port in (self.port, 0) if self.port else (0,):
            site = web.TCPSite(self._runner, self.host, port, reuse_address=True)
            try:
                await site.start()
            except OSError:
                continue
            server = site._server
            sockets = getattr(server, "sockets", None) or []
            return int(sockets[0].getsockname()[1]) if sockets else port
        raise OSError(f"could not listen on {self.host}")

    def stop(self, timeout_s: float = 5.0) -> None:
        if self._runner is not None:
            try:
                asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(timeout_s)
            except Exception:
                pass  # stopping: nothing left to tell anyone
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout_s)


__all__ = ["ControlApiThread"]
