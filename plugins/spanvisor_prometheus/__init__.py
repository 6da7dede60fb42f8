"""spanvisor's Prometheus sink: task metrics, pipeline self-metrics, ``/metrics``.

Importing this package is cheap (``Config.load`` imports every sink class):
prometheus_client and aiohttp load only when a sink is built.
The alerting rules live next to it in ``rules/spanvisor-rules.yml``.
"""

from spanvisor_prometheus.sink import SHARED_REGISTRY_KEY, PrometheusSink

__all__ = ["SHARED_REGISTRY_KEY", "PrometheusSink"]
