"""The fake Slack's app manifest methods, as docs.slack.dev documents them.

``apps.manifest.validate``, ``apps.manifest.create`` and
``apps.manifest.update`` take an app configuration token (``xoxe.xoxp-…``;
any other answers ``not_allowed_token_type``, ``xoxe.xoxp-expired…``
answers ``token_expired``) and ``manifest``, a JSON manifest *as a
string*. A manifest Slack would not take answers ``invalid_manifest`` with
an ``errors`` array of ``{message, pointer}``, using the messages Slack's
page shows (interactivity and event subscriptions need a request URL or
Socket Mode), plus our reading of a few more rules (request URLs are
https, a slash command needs a URL without Socket Mode, names are 1 to 35
characters, bot scopes are known ones). ``create`` answers the app's id,
its credentials and its install link; ``update`` replaces an app's whole
manifest and says whether its scopes changed.
"""

from __future__ import annotations

import itertools
import json
import secrets
from typing import Any
from urllib.parse import urlsplit

from .slack_methods import Answer, error, ok

KNOWN_SCOPES = frozenset(
    {
        "chat:write",
        "chat:write.public",
        "chat:write.customize",
        "commands",
        "usergroups:read",
        "channels:history",
        "groups:history",
        "assistant:write",
        "code_channels:manage",
    }
)


class ManifestApps:
    METHODS = frozenset({"apps.manifest.validate", "apps.manifest.create", "apps.manifest.update"})

    def __init__(self) -> None:
        self.apps: dict[str, dict[str, Any]] = {}  # app id -> its manifest
        self._ids = itertools.count(1)

    def call(self, method: str, token: str, args: dict[str, Any]) -> Answer:
        if not token.startswith("xoxe.xoxp-"):
            return error("not_allowed_token_type")
        if token.startswith("xoxe.xoxp-expired"):
            return error("token_expired")
        raw = args.get("manifest")
        if not isinstance(raw, str):  # a string of JSON, not an object
            return error("invalid_arguments")
        try:
            m = json.loads(raw)
        except ValueError:
            return error("invalid_manifest", errors=[{"message": "The manifest is not valid JSON", "pointer": "/"}])
        problems = manifest_errors(m)
        if problems:
            return error("invalid_manifest", errors=problems)
        app_id = args.get("app_id")
        if method == "apps.manifest.validate":
            if app_id is not None and app_id not in self.apps:
                return error("app_not_found")
            return ok()
        if method == "apps.manifest.create":
            new = f"A{next(self._ids):08d}"
            self.apps[new] = m
            return ok(
                app_id=new,
                credentials={
                    "client_id": f"1111.{new}",
                    "client_secret": secrets.token_hex(16),
                    "verification_token": secrets.token_hex(12),
                    "signing_secret": secrets.token_hex(16),
                },
                oauth_authorize_url=f"https://slack.com/oauth/v2/authorize?client_id=1111.{new}&scope=chat:write",
                team_id="T0FAKE",
                team_domain="fake-workspace",
            )
        if app_id not in self.apps:
            return error("app_not_found")
        before = self.apps[app_id].get("oauth_config", {}).get("scopes", {}).get("bot", [])
        self.apps[app_id] = m
        after = m.get("oauth_config", {}).get("scopes", {}).get("bot", [])
        return ok(app_id=app_id, permissions_updated=sorted(before) != sorted(after))


def _https(url: Any) -> bool:
    return isinstance(url, str) and urlsplit(url).scheme == "https" and bool(urlsplit(url).hostname)


def manifest_errors(m: Any) -> list[dict[str, str]]:
    if not isinstance(m, dict):
        return [{"message": "The manifest must be an object", "pointer": "/"}]
    out: list[dict[str, str]] = []
    name = (m.get("display_information") or {}).get("name")
    if not isinstance(name, str) or not 1 <= len(name) <= 35:
        out.append({"message": "Name must be 1 to 35 characters", "pointer": "/display_information/name"})
    settings = m.get("settings") or {}
    socket = bool(settings.get("socket_mode_enabled"))
    inter = settings.get("interactivity") or {}
    if inter.get("is_enabled") and not socket and not _https(inter.get("request_url")):
        out.append({"message": "Interactivity requires a Request URL", "pointer": "/settings/interactivity"})
    events = settings.get("event_subscriptions")
    if events is not None and not socket and not _https(events.get("request_url")):
        out.append(
            {
                "message": "Event Subscription requires either Request URL or Socket Mode Enabled",
                "pointer": "/settings/event_subscriptions",
            }
        )
    for i, cmd in enumerate((m.get("features") or {}).get("slash_commands") or []):
        if not socket and not _https(cmd.get("url")):
            out.append({"message": "A slash command requires a URL", "pointer": f"/features/slash_commands/{i}/url"})
    code = (m.get("features") or {}).get("code_channels")
    if code is not None and (not isinstance(code, dict) or not isinstance(code.get("enabled"), bool)):
        out.append({"message": "code_channels.enabled must be a boolean", "pointer": "/features/code_channels"})
    elif code is not None and code.get("slash_command_url") is not None:
        url = code["slash_command_url"]
        if not isinstance(url, str) or len(url) > 3000 or not url.startswith(("https://", "http://")):
            out.append({"message": "Invalid slash_command_url", "pointer": "/features/code_channels/slash_command_url"})
    for i, scope in enumerate(((m.get("oauth_config") or {}).get("scopes") or {}).get("bot") or []):
        if scope not in KNOWN_SCOPES:
            out.append({"message": f"Unknown scope {scope}", "pointer": f"/oauth_config/scopes/bot/{i}"})
    return out


__all__ = ["KNOWN_SCOPES", "ManifestApps", "manifest_errors"]
