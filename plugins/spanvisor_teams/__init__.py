"""The Microsoft Teams sink: one Adaptive Card per task, edited in place at
the root of its own thread in a channel, its story as replies in the
thread, approvals by a press proven by the Bot Connector's signature, kept
within Teams' limits (docs/guides/teams.md).

Loaded through the ``spanvisor.sinks`` entry point, as a third-party sink
would be; it talks to the Bot Connector's documented REST API with aiohttp
and checks the connector's tokens with PyJWT (both already spanvisor's).
Its names are imported when first used (:mod:`spanvisor.lazy`), so the
configuration reads ``.settings`` without importing the sink.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from spanvisor.lazy import exports

if TYPE_CHECKING:
    from .sink import TeamsSink

__all__ = ["TeamsSink"]
__getattr__ = exports(__name__, {"TeamsSink": ".sink"})
