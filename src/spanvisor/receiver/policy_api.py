"""``GET /v1/control/policy``: the central policy this server enforces.

The answer is the version in force (``name@hash``), its files (hooks read
and evaluate them: :mod:`spanvisor.gate.centralcache`), its rules in short
(``spanvisor policy show``) and the last reload's error, if any; the
version's SHA-256 is the ``ETag``, so a hook whose copy is current gets a
``304``. A server without one answers ``404`` (``{"central": false}``).
Reads take the OTLP token, like the control API's other reads.

Here too, where ``serve``'s loop runs: the policy is reloaded when a file
changes (polled every second) and on ``SIGHUP``, each reload logged; a
reload drops the copies ``serve``'s own gate (the ``http`` hook route)
read, so it reads the new version at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from aiohttp import web

from spanvisor.gate import centralcache

ROUTE = "/v1/control/policy"
POLL_S = 1.0
Handler = Callable[[web.Request], Awaitable[web.Response]]


def add_routes(app: web.Application, pipeline: Any, guarded: Callable[..., Handler]) -> None:
    tracker = getattr(pipeline, "tracker", None)
    floor = getattr(getattr(tracker, "settings", None), "floor", None)

    async def show(request: web.Request) -> web.Response:
        if floor is None:
            doc = {"error": "this server has no central policy (SPANVISOR_POLICY is not set)", "central": False}
            return web.json_response(doc, status=404)
        document = getattr(floor, "document", None)
        if document is None:  # one that could not be read: every request is denied
            why = getattr(floor, "error", "unreadable")
            return web.json_response({"error": f"the central policy cannot be read: {why}"}, status=503)
        doc = document()
        etag = f'"{doc["sha256"]}"'
        headers = {"ETag": etag, "Cache-Control": "no-cache"}
        if etag in [t.strip() for t in request.headers.get("If-None-Match", "").split(",")]:
            return web.Response(status=304, headers=headers)
        return web.Response(text=json.dumps(doc, ensure_ascii=False), content_type="application/json", headers=headers)

    app.router.add_get(ROUTE, guarded(show, agents=True))
    if floor is not None and hasattr(floor, "reload"):
        if centralcache.forget not in floor.on_reload:
            floor.on_reload.append(centralcache.forget)  # this process's own gate reads the new version at once
        app.cleanup_ctx.append(_watching(floor))


def _watching(holder: Any) -> Callable[[web.Application], AsyncIterator[None]]:
    """Reload on SIGHUP and on a file's change while the app runs."""

    async def ctx(_app: web.Application) -> AsyncIterator[None]:
        loop = asyncio.get_running_loop()
        hup = False
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):  # not the main thread
            loop.add_signal_handler(signal.SIGHUP, lambda: holder.reload("SIGHUP"))
            hup = True
        poller = loop.create_task(_poll(holder))
        try:
            yield
        finally:
            poller.cancel()
            if hup:
                loop.remove_signal_handler(signal.SIGHUP)

    return ctx


async def _poll(holder: Any) -> None:
    while True:
        await asyncio.sleep(POLL_S)
        try:
            holder.poll()
        except Exception:  # a disk error: the next round tries again
            pass


__all__ = ["ROUTE", "add_routes"]
