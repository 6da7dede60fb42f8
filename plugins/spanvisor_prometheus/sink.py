"""The Prometheus sink: task metrics from events, plus the pipeline's self-metrics.

This module stays light (``Config.load`` imports it to read ``settings``):
prometheus_client and aiohttp are imported when a sink is built or started.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from spanvisor.events import Event
from spanvisor.sink import AdminRoute, BaseSink, SinkContext, SinkResult
from spanvisor_prometheus.settings import SETTINGS
from spanvisor_prometheus.settings import enabled as settings_enabled
from spanvisor_prometheus.state import TaskMetrics

if TYPE_CHECKING:
    from prometheus_client.registry import Collector, CollectorRegistry

    from spanvisor.config import Config, Setting
    from spanvisor.stats import PipelineStats
    from spanvisor_prometheus.selfmetrics import SelfMetrics
    from spanvisor_prometheus.server import MetricsServer

SHARED_REGISTRY_KEY = "prometheus.registry"
log = logging.getLogger("spanvisor.prometheus")


class PrometheusSink(BaseSink):
    """Counts events into task metrics and serves ``/metrics`` when a port is set.

    ``registry``: where the collectors are registered; by default a fresh
    registry per sink, never prometheus_client's global one. Under
    ``spanvisor serve`` the same registry is served on the admin port
    (``admin_routes``). When serve's ``SPANVISOR_SINKS`` names other sinks
    only, this sink does not run: the admin port serves the pipeline's
    self-metrics alone (:meth:`admin_service`), so no event is counted here.
    """

    name = "prometheus"
    settings: ClassVar[Sequence[Setting]] = SETTINGS
    serves_admin: ClassVar[bool] = True

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        super().__init__()
        if registry is None:
            from prometheus_client.registry import CollectorRegistry

            registry = CollectorRegistry(auto_describe=True)
        self.registry = registry
        self.metrics = TaskMetrics()
        self.server: MetricsServer | None = None
        # The port actually bound (differs from the setting when it is 0 in tests).
        self.bound_port: int | None = None
        self._collectors: list[Collector] = []
        self._failed_batches = 0
        self._metrics_handler: Any = None

    def admin_routes(self) -> Sequence[AdminRoute]:
        return (("GET", "/metrics", self._serve_metrics),)

    @classmethod
    def admin_service(cls, stats: PipelineStats) -> SelfMetrics:
        """``/metrics`` without this sink: the pipeline's self-metrics and
        the build info, for serve's admin port when the sink is not configured."""
        from spanvisor_prometheus.selfmetrics import SelfMetrics

        return SelfMetrics(stats)

    async def _serve_metrics(self, request: Any) -> Any:
        if self._metrics_handler is None:
            from prometheus_client.aiohttp import make_aiohttp_handler

            self._metrics_handler = make_aiohttp_handler(self.registry)
        return await self._metrics_handler(request)

    @classmethod
    def enabled(cls, config: Config) -> bool:
        return settings_enabled(config)

    def imports(self, config: Config) -> Sequence[str]:
        """What start imports (spanvisor.sink.BaseSink.imports); the server's
        only when it serves a port."""
        names = ["spanvisor_prometheus.collectors"]
        if config.get("metrics_port") is not None:
            names += ["spanvisor_prometheus.server", "prometheus_client.aiohttp"]
        return names

    async def start(self, ctx: SinkContext) -> None:
        from spanvisor import __version__
        from spanvisor_prometheus.collectors import (
            BuildInfoCollector,
            PipelineCollector,
            TaskCollector,
        )

        await super().start(ctx)
        cfg = ctx.config
        self.metrics = TaskMetrics(
            max_agents=int(cfg.get("metrics_max_agents", 50)),
            max_repos=int(cfg.get("metrics_max_repos", 50)),
            max_models=int(cfg.get("metrics_max_models", 50)),
            dedup_window=int(cfg.get("metrics_dedup_window", 100_000)),
            max_open_tasks=int(cfg.get("max_open_tasks", 10_000)),
            results=tuple(cfg.get("prometheus_results", ()) or ()),
        )
        self._collectors = [
            TaskCollector(self.metrics),
            PipelineCollector(ctx.stats),
            BuildInfoCollector(__version__),
        ]
        for c in self._collectors:
            self.registry.register(c)
        ctx.shared[SHARED_REGISTRY_KEY] = self.registry
        port = cfg.get("metrics_port")
        if port is not None:
            await self._serve(str(cfg.get("metrics_host") or "127.0.0.1"), int(port))

    async def _serve(self, host: str, port: int) -> None:
        from spanvisor_prometheus.server import MetricsServer

        server = MetricsServer(self.registry, host, port)
        try:
            self.bound_port = await server.start()
        except OSError as exc:
            # Metrics are optional to the agent: a busy port must not stop the
            # pipeline. The registry still fills and serve's admin port works.
            log.error(
                "cannot serve metrics on %s:%s: %s; set SPANVISOR_METRICS_PORT to a free port",
                host,
                port,
                exc.strerror or exc,
            )
            return
        self.server = server
        log.info("serving Prometheus metrics at http://%s:%s/metrics", host, self.bound_port)

    async def export(self, events: Sequence[Event]) -> SinkResult:
        try:
            self.metrics.absorb(tuple(events))
        except Exception as exc:  # never raise into the dispatcher
            self._failed_batches += 1
            if self.ctx is not None:
                self.ctx.stats.drop("metrics_error", len(events), sink=self.name, detail=repr(exc))
            return SinkResult.FAILURE
        return SinkResult.SUCCESS

    async def shutdown(self, timeout_s: float) -> None:
        server, self.server = self.server, None
        if server is not None:
            try:
                await asyncio.wait_for(server.stop(), timeout=max(timeout_s, 0.01))
            except (TimeoutError, OSError) as exc:
                log.warning("metrics server did not stop cleanly: %r", exc)
        for c in self._collectors:
            try:
                self.registry.unregister(c)
            except KeyError:
                pass
        self._collectors = []

    @classmethod
    async def check(cls, config: Config) -> list[tuple[str, bool, str]]:
        port = config.get("metrics_port")
        if port is None:
            return [("prometheus metrics endpoint", True, "not served in-process (SPANVISOR_METRICS_PORT unset)")]
        host = str(config.get("metrics_host") or "127.0.0.1")
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(host, int(port)), 1.0)
        except (OSError, TimeoutError):
            return [("prometheus metrics endpoint", True, f"{host}:{port} is free to bind")]
        writer.close()
        return [
            (
                "prometheus metrics endpoint",
                False,
                f"{host}:{port} is already in use (another process, or a spanvisor already "
                "running): pick another SPANVISOR_METRICS_PORT if it is not spanvisor",
            )
        ]

    def debug_state(self) -> dict[str, Any]:
        m = self.metrics
        return {
            "open_tasks": len(m.open),
            "duplicates": m.duplicates,
            "rejected_values": m.rejected_values,
            "evicted_open": m.evicted_open,
        }
