"""spanvisor's Prometheus sink: task metrics, pipeline self-metrics, ``/metrics``.

Its names are imported when first used (:mod:`spanvisor.lazy`), so the
configuration reads ``.settings`` without importing the sink; prometheus_client
and aiohttp load only when a sink is built.
The alerting rules live next to it in ``rules/spanvisor-rules.yml``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from spanvisor.lazy import exports

if TYPE_CHECKING:
    from .sink import SHARED_REGISTRY_KEY, PrometheusSink

__all__ = ["SHARED_REGISTRY_KEY", "PrometheusSink"]
__getattr__ = exports(__name__, {"SHARED_REGISTRY_KEY": ".sink", "PrometheusSink": ".sink"})
