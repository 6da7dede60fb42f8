"""spanvisor's PostgreSQL audit trail and shared state store.

Kept light: ``Config.load`` imports this package to read the settings, so
asyncpg is imported only when the sink starts.
"""

from __future__ import annotations

from .sink import PostgresSink

__all__ = ["PostgresSink"]
