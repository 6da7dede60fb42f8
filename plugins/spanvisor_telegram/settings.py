"""The Telegram sink's settings, merged into spanvisor's config table."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from spanvisor.chat.routes import Route, p_routes
from spanvisor.config import (
    Config,
    Setting,
    is_http_url,
    p_bool,
    p_choice,
    p_duration,
    p_opt_str,
    p_pos_float,
    url_origin,
)

API = "https://api.telegram.org"
# What logs show of the Bot API's address (never the token, which is in the path).
where = url_origin


def chat_problem(chat: str | None) -> str | None:
    """Why ``chat`` names no chat the Bot API takes, or None: a chat id (an
    integer, negative for groups and channels) or a public ``@username``."""
    if not chat:
        return "SPANVISOR_TELEGRAM_CHAT is not set (a chat id such as -1001234567890, or @channel)"
    if chat.startswith("@"):
        name = chat[1:]
        if 5 <= len(name) <= 32 and name.replace("_", "").isalnum():
            return None
        return f"SPANVISOR_TELEGRAM_CHAT {chat!r} is not a @username (5 to 32 letters, digits or _)"
    try:
        int(chat)
    except ValueError:
        return f"SPANVISOR_TELEGRAM_CHAT {chat!r} is neither a chat id (an integer) nor a @username"
    return None


def config_problem(token: str | None, chat: str | None, base_url: str, routes: tuple[Route, ...] = ()) -> str | None:
    """Why the sink cannot send with these settings, or None."""
    if not token:
        return "TELEGRAM_BOT_TOKEN is not set"
    bot, _, secret = token.partition(":")
    if (
        not bot.isdigit()
        or not secret
        or not secret.replace("_", "").replace("-", "").isalnum()
        or not secret.isascii()
    ):
        return "TELEGRAM_BOT_TOKEN is not a bot token (<bot id>:<secret>, as BotFather gives it)"
    if not is_http_url(base_url):
        return "SPANVISOR_TELEGRAM_BASE_URL must be an http(s) URL with a host"
    for route in routes:
        if route.field == "status":
            return f"SPANVISOR_TELEGRAM_ROUTES: {route.field}:{route.pattern} rules are Slack's only; route by agent or repo"
        if (why := chat_problem(route.channel)) is not None:
            return why.replace("SPANVISOR_TELEGRAM_CHAT", f"SPANVISOR_TELEGRAM_ROUTES ({route.field}:{route.pattern})")
    if not chat and routes:
        return None  # tasks no rule matches are not shown (counted)
    return chat_problem(chat)


WEBHOOK_PATH = "/telegram/updates"
_SECRET = re.compile(r"^[A-Za-z0-9_-]{1,256}$")


def webhook_problem(url: str | None, secret: str | None) -> str | None:
    """Why presses cannot come by webhook with these settings, or None."""
    if not url or not is_http_url(url):
        return "SPANVISOR_TELEGRAM_WEBHOOK_URL must be the https address Telegram POSTs to"
    parts = urlsplit(url)
    if parts.scheme != "https" and parts.hostname not in ("127.0.0.1", "localhost", "::1"):
        return "SPANVISOR_TELEGRAM_WEBHOOK_URL must be https (Telegram sends updates to https only)"
    if not secret or not _SECRET.match(secret):
        return "SPANVISOR_TELEGRAM_WEBHOOK_SECRET must be 1-256 of A-Z a-z 0-9 _ - (openssl rand -hex 32)"
    return None


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "telegram_token",
        "TELEGRAM_BOT_TOKEN",
        p_opt_str,
        None,
        "The bot's token from BotFather. Setting it enables the Telegram sink (docs/guides/telegram.md).",
        "<bot id>:<secret>",
        secret=True,
    ),
    Setting(
        "telegram_chat",
        "SPANVISOR_TELEGRAM_CHAT",
        p_opt_str,
        None,
        "The chat every task's message goes to: a group's or channel's id (negative), a person's id, or "
        "a public channel's @username. The bot must be a member (an admin of a channel).",
        "a chat id or @username",
    ),
    Setting(
        "telegram_routes",
        "SPANVISOR_TELEGRAM_ROUTES",
        p_routes,
        (),
        "Which chat a task's message goes to, first match wins, else SPANVISOR_TELEGRAM_CHAT (no default: "
        "a task no rule matches is not shown, counted as telegram_unrouted).",
        "field:glob=chat,... with field agent or repo",
    ),
    Setting(
        "telegram_base_url",
        "SPANVISOR_TELEGRAM_BASE_URL",
        p_opt_str,
        API,
        "The Bot API's address: Telegram's, a local Bot API server, or a test's fake.",
        "an http(s) URL",
    ),
    Setting(
        "telegram_updates",
        "SPANVISOR_TELEGRAM_UPDATES",
        p_choice("poll", "webhook", "off"),
        "poll",
        "How people's presses on Approve and Reject reach spanvisor: poll (long polling with getUpdates, "
        "no public address needed; one replica polls at a time), webhook (Telegram POSTs them to "
        "SPANVISOR_TELEGRAM_WEBHOOK_URL, serve's /telegram/updates, with the secret token) or off (no "
        "buttons; the message shows the command that answers). Presses decide only for people the "
        "deciders file names by telegram_user.",
        "poll, webhook or off",
    ),
    Setting(
        "telegram_webhook_url",
        "SPANVISOR_TELEGRAM_WEBHOOK_URL",
        p_opt_str,
        None,
        "With SPANVISOR_TELEGRAM_UPDATES=webhook: the public https address Telegram POSTs presses to, "
        "reaching serve's admin port at /telegram/updates (through your proxy).",
        "an https URL",
    ),
    Setting(
        "telegram_webhook_secret",
        "SPANVISOR_TELEGRAM_WEBHOOK_SECRET",
        p_opt_str,
        None,
        "With SPANVISOR_TELEGRAM_UPDATES=webhook: the secret token Telegram sends back with every update "
        "(X-Telegram-Bot-Api-Secret-Token); a POST without it is refused. Never logged.",
        "1-256 of A-Z a-z 0-9 _ -, e.g. `openssl rand -hex 32`",
        secret=True,
    ),
    Setting(
        "telegram_topics",
        "SPANVISOR_TELEGRAM_TOPICS",
        p_bool,
        True,
        "In a forum group (topics on), give each task a topic of its own, its message and story in it; "
        "off: every task in the General topic.",
        "true or false",
    ),
    Setting(
        "telegram_update_interval_s",
        "SPANVISOR_TELEGRAM_UPDATE_INTERVAL_S",
        p_duration,
        5.0,
        "Least time between two routine edits of a task's message (a status change, a question for a "
        "person or the end are edited at once): Telegram lets a group have 20 messages and edits a minute.",
        "seconds",
    ),
    Setting(
        "telegram_timeout_s",
        "SPANVISOR_TELEGRAM_TIMEOUT_S",
        p_duration,
        10.0,
        "Timeout of one Bot API call.",
        "seconds",
    ),
    Setting(
        "telegram_chat_per_minute",
        "SPANVISOR_TELEGRAM_CHAT_PER_MINUTE",
        p_pos_float,
        60.0,
        "Messages and edits a minute in one chat (Telegram: about one a second). Change it only for a "
        "local Bot API server or a test.",
        "a number > 0",
    ),
    Setting(
        "telegram_group_per_minute",
        "SPANVISOR_TELEGRAM_GROUP_PER_MINUTE",
        p_pos_float,
        20.0,
        "Messages and edits a minute in one group (Telegram: 20). Change it only for a local Bot API server or a test.",
        "a number > 0",
    ),
    Setting(
        "telegram_global_per_second",
        "SPANVISOR_TELEGRAM_GLOBAL_PER_SECOND",
        p_pos_float,
        30.0,
        "Messages and edits a second in all chats (Telegram: about 30). Change it only for a local Bot "
        "API server or a test.",
        "a number > 0",
    ),
)


def enabled(config: Config) -> bool:
    """Whether ``SPANVISOR_SINKS=auto`` runs this sink: with a bot token. Here,
    beside the settings, so that choosing the sinks imports none that does
    not run (:func:`spanvisor.sink.auto_sink_names`)."""
    return bool(config.get("telegram_token"))
