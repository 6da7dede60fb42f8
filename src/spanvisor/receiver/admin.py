"""The admin port: ``/metrics``, ``/healthz`` (live) and ``/readyz`` (ready).

``/readyz`` is what a load balancer or Kubernetes should route by: it is
false while the journal replays at start, while draining at shutdown, and
whenever the pipeline says a sink is not started or a durable sink (the
database) is unreachable. ``/healthz`` only says the process answers.
"""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web

from spanvisor.receiver.ingest import Ingest


def make_app(ingest: Ingest, extra_ready: Callable[[], tuple[bool, str]]) -> web.Application:
    """The admin app: health and readiness, plus the routes the running sinks
    serve (``Sink.admin_routes()``; the Prometheus sink's ``/metrics``)."""

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

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    paths = {"/healthz", "/readyz"}
    for sink in getattr(ingest.pipeline, "sinks", ()):
        routes = getattr(sink, "admin_routes", None)
        for method, path, handler in routes() if routes is not None else ():
            if path not in paths:  # the first sink to claim a path serves it
                paths.add(path)
                app.router.add_route(method, path, handler)
    if "/metrics" not in paths:
        app.router.add_get("/metrics", no_metrics)
    return app
