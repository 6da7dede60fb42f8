"""The admin port: ``/metrics``, ``/healthz`` (live) and ``/readyz`` (ready).

``/readyz`` is what a load balancer or Kubernetes should route by: it is
false while the journal replays at start, while draining at shutdown, and
whenever the pipeline says a sink is not started or a durable sink (the
database) is unreachable. ``/healthz`` only says the process answers.

Every route checks ``Host`` and ``Origin`` (:mod:`.browser_guard`): Slack's
signed form posts come here, so no JSON content type is required, but a
page in a browser cannot reach ``/metrics`` or Slack's routes through DNS
rebinding. Behind a proxy, name the public host in SPANVISOR_ALLOWED_HOSTS.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from itertools import chain
from typing import Any

from aiohttp import web

from spanvisor.receiver import browser_guard
from spanvisor.receiver.browser_guard import HostPolicy
from spanvisor.receiver.ingest import Ingest
from spanvisor.sink import AdminHandler


def make_app(
    ingest: Ingest,
    extra_ready: Callable[[], tuple[bool, str]],
    extra: Sequence[Any] = (),
    hosts: HostPolicy | None = None,
) -> web.Application:
    """The admin app: health and readiness, plus the routes the running sinks
    serve (``Sink.admin_routes()``: the Prometheus sink's ``/metrics``, the
    Slack sink's ``/slack/interactions``, ``/slack/commands`` and ``/slack/events``), then those
    of ``extra`` (objects with ``admin_routes()`` that take no events: the
    self-metrics ``serve`` shows when the Prometheus sink does not run).
    ``hosts``: the names a request may give in ``Host`` (loopback names and
    addresses only without it)."""

    async def healthz(request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def readyz(request: web.Request) -> web.Response:
        ok, why = extra_ready()
        if ok:
            try:
                ok, why = ingest.pipeline.ready()
            except Exception as exc:  # a broken check is "not ready", never a 500
                ok, why = False, f"readiness check failed: {exc}"
        return web.Response(status=200 if ok else 503, text=f"{'ready' if ok else 'not ready'}: {why}\n")

    async def no_metrics(request: web.Request) -> web.Response:
        return web.Response(status=404, text="no metrics: no running sink serves /metrics (see SPANVISOR_SINKS)\n")

    sinks = getattr(ingest.pipeline, "sinks", ())

    def sink_route(method: str, path: str) -> AdminHandler | None:
        # Read at request time, not when the app is built: the admin port comes
        # up before the pipeline starts (for /healthz during a replay), and a
        # sink may know its routes only once started (Slack's interactivity
        # needs its config). The first sink to claim a path serves it.
        for sink in chain(sinks, extra):
            routes = getattr(sink, "admin_routes", None)
            for m, p, handler in routes() if routes is not None else ():
                if p == path and m.upper() in (method, "*"):
                    found: AdminHandler = handler
                    return found
        return None

    async def dispatch(request: web.Request) -> web.StreamResponse:
        method = "GET" if request.method == "HEAD" else request.method
        handler = sink_route(method, request.path)
        if handler is not None:
            response: web.StreamResponse = await handler(request)
            return response
        if request.path == "/metrics":
            return await no_metrics(request)
        return web.Response(status=404, text=f"no such path on the admin port: {request.path}\n")

    app = web.Application(middlewares=[browser_guard.middleware(hosts or HostPolicy())])
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_route("*", "/{tail:.*}", dispatch)
    return app
