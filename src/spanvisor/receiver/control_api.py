"""The control API on ``spanvisor serve``'s OTLP/HTTP port (issue 11): a
stub the agent-side work fills in. ``add_routes`` adds its routes to the
OTLP/HTTP app, behind the same bearer token as ``/v1/traces``.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web


def add_routes(app: web.Application, pipeline: Any, token: str | None) -> None:
    return None


__all__ = ["add_routes"]
