"""``/metrics`` for ``spanvisor serve`` when the Prometheus sink is not configured.

The pipeline's own counters (spans received, refused, dropped, sink
deliveries, queue depths) and the build info, read from
:class:`spanvisor.stats.PipelineStats` at scrape time. No sink worker and no
event reaches it: the task metrics (tasks started, finished, model calls...)
are the Prometheus sink's, which runs only when ``SPANVISOR_SINKS`` lists it
(or is ``auto``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from prometheus_client.registry import CollectorRegistry

from spanvisor.sink import AdminRoute
from spanvisor.stats import PipelineStats
from spanvisor_prometheus.collectors import BuildInfoCollector, PipelineCollector


class SelfMetrics:
    """Serves the pipeline's self-metrics on the admin port; takes no events."""

    name = "prometheus-self-metrics"

    def __init__(self, stats: PipelineStats) -> None:
        from spanvisor import __version__

        self.registry = CollectorRegistry(auto_describe=True)
        self.registry.register(PipelineCollector(stats))
        self.registry.register(BuildInfoCollector(__version__))
        self._handler: Any = None

    def admin_routes(self) -> Sequence[AdminRoute]:
        return (("GET", "/metrics", self._serve_metrics),)

    async def _serve_metrics(self, request: Any) -> Any:
        if self._handler is None:
            from prometheus_client.aiohttp import make_aiohttp_handler

            self._handler = make_aiohttp_handler(self.registry)
        return await self._handler(request)
