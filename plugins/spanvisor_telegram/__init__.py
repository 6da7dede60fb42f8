"""The Telegram sink: one message per task edited in place, its story as
replies to it, approvals by a press, kept within Telegram's limits
(docs/guides/telegram.md).

Loaded through the ``spanvisor.sinks`` entry point, as a third-party sink
would be; it talks to the Bot API's documented HTTP methods with aiohttp,
which ``serve`` already runs (no second framework or event loop). Its names
are imported when first used (:mod:`spanvisor.lazy`), so the configuration
reads ``.settings`` without importing the sink.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from spanvisor.lazy import exports

if TYPE_CHECKING:
    from .sink import TelegramSink

__all__ = ["TelegramSink"]
__getattr__ = exports(__name__, {"TelegramSink": ".sink"})
