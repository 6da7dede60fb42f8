"""spanvisor's Slack sink: one live message per task, a thread of milestones,
warnings and errors, within Slack's rate limits. See docs/reference/slack.md.

Its names are imported when first used (:mod:`spanvisor.lazy`), so the
configuration reads ``.settings`` without importing the sink; slack_sdk
and aiohttp are imported when the sink starts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from spanvisor.lazy import exports

if TYPE_CHECKING:
    from .sink import SlackSink

__all__ = ["SlackSink"]
__getattr__ = exports(__name__, {"SlackSink": ".sink"})
