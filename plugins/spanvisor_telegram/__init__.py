"""The Telegram sink: one message per task edited in place, its story as
replies to it, kept within Telegram's limits (docs/guides/telegram.md).

Loaded through the ``spanvisor.sinks`` entry point, as a third-party sink
would be; it talks to the Bot API's documented HTTP methods with aiohttp,
which ``serve`` already runs (no second framework or event loop)."""

from spanvisor_telegram.sink import TelegramSink

__all__ = ["TelegramSink"]
