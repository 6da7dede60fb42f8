"""spanvisor's Grafana annotation sink: one region annotation per task.

Its names are imported when first used (:mod:`spanvisor.lazy`), so the
configuration reads ``.settings`` without importing the sink; aiohttp is
imported only when the sink starts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from spanvisor.lazy import exports

if TYPE_CHECKING:
    from .sink import GrafanaAnnotationSink

__all__ = ["GrafanaAnnotationSink"]
__getattr__ = exports(__name__, {"GrafanaAnnotationSink": ".sink"})
