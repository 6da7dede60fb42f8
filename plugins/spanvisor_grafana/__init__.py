"""spanvisor's Grafana annotation sink: one region annotation per task.

Kept light on purpose: ``Config.load()`` imports every sink class to collect
its settings, so aiohttp is only imported when the sink starts.
"""

from spanvisor_grafana.sink import GrafanaAnnotationSink

__all__ = ["GrafanaAnnotationSink"]
