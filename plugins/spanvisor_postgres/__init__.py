"""spanvisor's PostgreSQL audit trail and shared state store.

Its names are imported when first used (:mod:`spanvisor.lazy`), so the
configuration reads ``.settings`` without importing the sink; the sink
imports asyncpg only when it starts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from spanvisor.lazy import exports

if TYPE_CHECKING:
    from .sink import PostgresSink

__all__ = ["PostgresSink"]
__getattr__ = exports(__name__, {"PostgresSink": ".sink"})
