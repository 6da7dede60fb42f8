"""The Teams sink's settings, merged into spanvisor's config table."""

from __future__ import annotations

import re
import uuid

from spanvisor.chat.routes import Route, p_routes
from spanvisor.config import Config, Setting, is_http_url, p_duration, p_opt_str, p_pos_float

SERVICE_URL = "https://smba.trafficmanager.net/teams/"
LOGIN_URL = "https://login.microsoftonline.com"
OPENID_URL = "https://login.botframework.com/v1/.well-known/openidconfiguration"
MESSAGES_PATH = "/teams/messages"
# A channel's id as Teams gives it: 19:<something>@thread.<kind> (tacv2 today, skype before).
_CHANNEL = re.compile(r"^19:[^\s;,=]+@thread\.[a-z0-9]+$")
_TENANT = re.compile(r"^[A-Za-z0-9.-]{1,253}$")


def channel_problem(channel: str | None, where: str = "SPANVISOR_TEAMS_CHANNEL") -> str | None:
    """Why ``channel`` names no Teams channel, or None."""
    if not channel:
        return f"{where} is not set (a channel id such as 19:abc…@thread.tacv2: the channel's “Get link” shows it)"
    if not _CHANNEL.match(channel):
        return f"{where} {channel!r} is not a channel id (19:…@thread.tacv2)"
    return None


def config_problem(
    app_id: str | None,
    password: str | None,
    tenant: str,
    channel: str | None,
    urls: dict[str, str],
    routes: tuple[Route, ...] = (),
) -> str | None:
    """Why the sink cannot send with these settings, or None."""
    if not app_id:
        return "SPANVISOR_TEAMS_APP_ID is not set"
    try:
        uuid.UUID(app_id)
    except ValueError:
        return "SPANVISOR_TEAMS_APP_ID is not an app id (a GUID, as the bot's registration shows it)"
    if not password:
        return "SPANVISOR_TEAMS_APP_PASSWORD is not set (the bot's client secret)"
    if not _TENANT.match(tenant):
        return "SPANVISOR_TEAMS_TENANT must be botframework.com or the bot's Entra tenant id"
    for env, url in urls.items():
        if not is_http_url(url):
            return f"{env} must be an http(s) URL with a host"
    for route in routes:
        if route.pattern.endswith(";messageid"):  # split at the thread id's own "="
            return (
                f"SPANVISOR_TEAMS_ROUTES ({route.field}:{route.pattern}={route.channel}): a thread's id is "
                "not a channel's; name the channel (19:…@thread.tacv2, without ;messageid=…)"
            )
        if route.field == "status":
            return (
                f"SPANVISOR_TEAMS_ROUTES: {route.field}:{route.pattern} rules are Slack's only; route by agent or repo"
            )
        if (
            why := channel_problem(route.channel, f"SPANVISOR_TEAMS_ROUTES ({route.field}:{route.pattern})")
        ) is not None:
            return why
    if not channel and routes:
        return None  # tasks no rule matches are not shown (counted)
    return channel_problem(channel)


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "teams_app_id",
        "SPANVISOR_TEAMS_APP_ID",
        p_opt_str,
        None,
        "The bot's Microsoft app id (its Azure Bot registration). Setting it enables the Teams sink "
        "(docs/guides/teams.md).",
        "a GUID",
    ),
    Setting(
        "teams_app_password",
        "SPANVISOR_TEAMS_APP_PASSWORD",
        p_opt_str,
        None,
        "The bot's client secret, for its token from Microsoft Entra (client credentials). Never logged.",
        "a client secret",
        secret=True,
    ),
    Setting(
        "teams_tenant",
        "SPANVISOR_TEAMS_TENANT",
        p_opt_str,
        "botframework.com",
        "Where the bot's token comes from: botframework.com for a multi-tenant bot, else the bot's own "
        "Entra tenant id (a single-tenant bot, the only kind Azure makes now).",
        "botframework.com or a tenant id",
    ),
    Setting(
        "teams_channel",
        "SPANVISOR_TEAMS_CHANNEL",
        p_opt_str,
        None,
        "The channel every task's thread goes to: its id (19:…@thread.tacv2). The bot's app must be "
        "installed in the channel's team.",
        "a channel id",
    ),
    Setting(
        "teams_routes",
        "SPANVISOR_TEAMS_ROUTES",
        p_routes,
        (),
        "Which channel a task's thread goes to, first match wins, else SPANVISOR_TEAMS_CHANNEL (no "
        "default: a task no rule matches is not shown, counted as teams_unrouted).",
        "field:glob=channel,... with field agent or repo",
    ),
    Setting(
        "teams_service_url",
        "SPANVISOR_TEAMS_SERVICE_URL",
        p_opt_str,
        SERVICE_URL,
        "The Bot Connector's address the bot sends to (Teams' serviceUrl; a government cloud's, or a "
        "test's fake). Presses whose activity names another serviceUrl are refused.",
        "an http(s) URL",
    ),
    Setting(
        "teams_login_url",
        "SPANVISOR_TEAMS_LOGIN_URL",
        p_opt_str,
        LOGIN_URL,
        "Microsoft Entra's address for the bot's token (the public cloud's and GCC's; a test's fake). "
        "GCC High, DoD and China are not supported yet (their token scope and issuer differ).",
        "an http(s) URL",
    ),
    Setting(
        "teams_openid_url",
        "SPANVISOR_TEAMS_OPENID_URL",
        p_opt_str,
        OPENID_URL,
        "The Bot Connector's OpenID metadata, whose keys sign the presses POSTed to /teams/messages.",
        "an http(s) URL",
    ),
    Setting(
        "teams_update_interval_s",
        "SPANVISOR_TEAMS_UPDATE_INTERVAL_S",
        p_duration,
        5.0,
        "Least time between two routine edits of a task's card (a status change, a question for a person "
        "or the end are edited at once): Teams lets a bot make 30 calls a minute in one thread.",
        "seconds",
    ),
    Setting(
        "teams_timeout_s",
        "SPANVISOR_TEAMS_TIMEOUT_S",
        p_duration,
        10.0,
        "Timeout of one Bot Connector call.",
        "seconds",
    ),
    Setting(
        "teams_thread_per_minute",
        "SPANVISOR_TEAMS_THREAD_PER_MINUTE",
        p_pos_float,
        30.0,
        "Calls a minute in one thread (Teams: 1,800 an hour, with 7 a second, 8 in 2 s and 60 in 30 s). "
        "Change it only for a test.",
        "a number > 0",
    ),
    Setting(
        "teams_app_per_second",
        "SPANVISOR_TEAMS_APP_PER_SECOND",
        p_pos_float,
        50.0,
        "Calls a second in all threads (Teams: 50 for an app in a tenant). Change it only for a test.",
        "a number > 0",
    ),
)


def enabled(config: Config) -> bool:
    """Whether ``SPANVISOR_SINKS=auto`` runs this sink: with the bot's app id.
    Here, beside the settings, so that choosing the sinks imports none that
    does not run (:func:`spanvisor.sink.auto_sink_names`)."""
    return bool(config.get("teams_app_id"))
