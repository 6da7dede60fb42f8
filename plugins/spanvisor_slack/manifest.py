"""The Slack app spanvisor needs, as an app manifest: the one description
that ``spanvisor slack setup`` sends and docs/reference/slack-app.md shows.

Socket Mode (no public URL) or HTTP request URLs under ``base_url`` (the
public HTTPS address of ``serve``'s admin port, behind a reverse proxy);
the ``agent_session_stopped`` event only with agent sessions on
(:mod:`.sessions`); the ``code_channels:manage`` scope and
``features.code_channels`` only with code channels on (:mod:`.codechannels`).
Declaring the app as an agent is a setting of the app in Slack, not a
manifest field: setup says so.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

# What each bot scope is for (docs/reference/slack-app.md says the same).
BOT_SCOPES: tuple[tuple[str, str], ...] = (
    ("chat:write", "parents, thread replies, chat.postEphemeral, agent sessions"),
    ("chat:write.public", "posting to channels the bot was not invited to"),
    ("commands", "/spanvisor"),
    ("usergroups:read", "@group approvers"),
    ("channels:history", "finding a parent after an ambiguous post"),
)
# Only with code channels on (SPANVISOR_SLACK_CODE_CHANNELS): a scope the app
# does not use is one more thing a workspace admin must approve.
CODE_CHANNEL_SCOPES: tuple[tuple[str, str], ...] = (
    ("code_channels:manage", "a code channel per coding session: create, context bar, archive"),
)
MAX_NAME = 35  # Slack's limit on an app's and a bot user's name


class BadManifest(ValueError):
    """The options cannot make a manifest Slack would take (said as is)."""


def manifest(
    *, name: str = "spanvisor", base_url: str | None = None, agent_sessions: bool = False, code_channels: bool = False
) -> dict[str, Any]:
    """The app's manifest: Socket Mode without ``base_url``, else HTTP
    request URLs under it."""
    name = name.strip()
    if not name or len(name) > MAX_NAME:
        raise BadManifest(f"the app's name must be 1 to {MAX_NAME} characters")
    url = None
    if base_url is not None:
        parts = urlsplit(base_url)
        if parts.scheme != "https" or not parts.hostname:
            raise BadManifest(f"Slack posts only to https:// URLs, not {base_url!r}")
        url = base_url.rstrip("/")
    command: dict[str, Any] = {
        "command": "/spanvisor",
        "description": "What your agents are doing",
        "usage_hint": "status [agent] | task <id> | approvals | help",
        "should_escape": True,
    }
    interactivity: dict[str, Any] = {"is_enabled": True}
    if url is not None:
        command["url"] = f"{url}/slack/commands"
        interactivity["request_url"] = f"{url}/slack/interactions"
    settings: dict[str, Any] = {"interactivity": interactivity}
    if agent_sessions:
        events: dict[str, Any] = {"bot_events": ["agent_session_stopped"]}
        if url is not None:
            events["request_url"] = f"{url}/slack/events"
        settings["event_subscriptions"] = events
    settings.update(socket_mode_enabled=url is None, org_deploy_enabled=False, token_rotation_enabled=False)
    features: dict[str, Any] = {
        "bot_user": {"display_name": name, "always_online": False},
        "slash_commands": [command],
    }
    scopes = BOT_SCOPES
    if code_channels:
        # Slack Code's feature (its agent-slash-commands guide); no
        # slash_command_url: spanvisor sets no code-channel commands.
        features["code_channels"] = {"enabled": True}
        scopes += CODE_CHANNEL_SCOPES
    return {
        "display_information": {"name": name},
        "features": features,
        "oauth_config": {"scopes": {"bot": [scope for scope, _ in scopes]}},
        "settings": settings,
    }


__all__ = ["BOT_SCOPES", "CODE_CHANNEL_SCOPES", "MAX_NAME", "BadManifest", "manifest"]
