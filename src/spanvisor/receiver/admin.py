"""The admin port: ``/metrics``, ``/healthz`` (live) and ``/readyz`` (ready).

``/readyz`` is what a load balancer or Kubernetes should route by: it is
false while the journal replays at start, while draining at shutdown, and
whenever the pipeline says a sink is not started or a durable sink (the
database) is unreachable. ``/healthz`` only says the process answers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiohttp import web

from spanvisor.receiver.ingest import Ingest


def make_app(ingest: Ingest, extra_ready: Callable[[], tuple[bool, str]]) -> web.Application:
    metrics_handler: Any = None

    async def metrics(request: web.Request) -> web.StreamResponse:
        nonlocal metrics_handler
        registry = ingest.pipeline.shared.get("prometheus.registry")
        if registry is None:
            return web.Response(
                status=404,
                text="no metrics: the prometheus sink is not running (SPANVISOR_SINKS)\n",
            )
        if metrics_handler is None:
            # Imported here: the core never imports prometheus_client.
            from prometheus_client.aiohttp import make_aiohttp_handler

            metrics_handler = make_aiohttp_handler(registry)
        result: web.StreamResponse = await metrics_handler(request)
        return result

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

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    return app
