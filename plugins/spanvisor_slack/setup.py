"""``spanvisor slack setup``: the Slack app made from its manifest in one step.

With an app configuration token (api.slack.com/apps → *Your App
Configuration Tokens*; it is read from ``SLACK_CONFIG_TOKEN``, never from
the command line, where every local user could read it), the manifest of
:mod:`.manifest` is validated (``apps.manifest.validate``), then the app
created (``apps.manifest.create``) or, with ``--app-id``, updated in place
(``apps.manifest.update``). What Slack answers goes where it belongs:

* the install link and the steps only a person can take (install the app,
  copy the bot token; for Socket Mode an app-level token; for agent
  sessions, declare the app as an agent) on stdout;
* the settings spanvisor reads (the signing secret for HTTP request URLs,
  ``SPANVISOR_SLACK_AGENT_SESSIONS``, ``SPANVISOR_SLACK_CODE_CHANNELS``) in
  an environment file of mode 0600
  (``--write``, default ``spanvisor-slack.env``), never on the terminal;
* Slack's reasons when it refuses the manifest, each with where it points.

``--print-manifest`` prints the manifest as JSON and asks Slack nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .manifest import BadManifest, manifest

ENV_TOKEN = "SLACK_CONFIG_TOKEN"
ENV_BASE_URL = "SPANVISOR_SLACK_BASE_URL"
DEFAULT_FILE = "spanvisor-slack.env"


class SetupFailed(Exception):
    """Said on stderr; exit status 1."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--url",
        metavar="BASE",
        help="the public https:// address of serve's admin port (Slack posts to BASE/slack/...); "
        "without it the app uses Socket Mode",
    )
    p.add_argument("--name", default="spanvisor", help="the app's and its bot user's name (default spanvisor)")
    p.add_argument(
        "--agent-sessions",
        action="store_true",
        help="subscribe to agent_session_stopped and turn on SPANVISOR_SLACK_AGENT_SESSIONS (Slack's stop button)",
    )
    p.add_argument(
        "--code-channels",
        action="store_true",
        help="ask for code_channels:manage and turn on SPANVISOR_SLACK_CODE_CHANNELS (a channel per coding session)",
    )
    p.add_argument("--app-id", help="update this existing app instead of creating one")
    p.add_argument(
        "--write",
        metavar="FILE",
        default=DEFAULT_FILE,
        help=f"the environment file for serve (mode 0600; default {DEFAULT_FILE}); an existing one is replaced",
    )
    p.add_argument("--print-manifest", action="store_true", help="print the manifest as JSON; ask Slack nothing")


def _call(method: str, token: str, base_url: str | None, **args: Any) -> Mapping[str, Any]:
    from slack_sdk import WebClient
    from slack_sdk.errors import SlackApiError

    kwargs: dict[str, Any] = {"base_url": base_url} if base_url else {}
    client = WebClient(token=token, timeout=30, **kwargs)
    try:
        resp = client.api_call(method, json=args)
    except SlackApiError as exc:
        data = exc.response.data if isinstance(exc.response.data, dict) else {}
        raise SetupFailed(_refusal(method, data)) from None
    except Exception as exc:  # the network, a proxy: said as what it is, never a traceback
        raise SetupFailed(f"{method}: Slack could not be reached ({type(exc).__name__})") from None
    return resp.data if isinstance(resp.data, dict) else {}


def _refusal(method: str, data: Mapping[str, Any]) -> str:
    error = str(data.get("error") or "unknown error")
    lines = [f"Slack refused {method}: {error}"]
    if error in ("invalid_auth", "not_allowed_token_type", "token_expired"):
        lines.append(
            f"  {ENV_TOKEN} must be a current app configuration token (xoxe.xoxp-…, valid 12 hours; "
            "api.slack.com/apps → Your App Configuration Tokens)"
        )
    for e in data.get("errors") or ():
        if isinstance(e, Mapping):
            lines.append(f"  {e.get('pointer') or '/'}: {e.get('message') or e.get('code') or '?'}")
    return "\n".join(lines)


def _write_env(path: Path, values: Mapping[str, str], app_id: str) -> None:
    body = f"# spanvisor's Slack app {app_id}, written by `spanvisor slack setup`; keep it private.\n"
    body += "".join(f"{k}={v}\n" for k, v in values.items())
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(body)
    os.replace(tmp, path)


def _manifest(args: argparse.Namespace) -> dict[str, Any]:
    return manifest(
        name=args.name,
        base_url=args.url,
        agent_sessions=args.agent_sessions,
        code_channels=bool(getattr(args, "code_channels", False)),
    )


def setup(args: argparse.Namespace, env: Mapping[str, str]) -> str:
    """Create or update the app; what to tell the person."""
    try:
        m = _manifest(args)
    except BadManifest as exc:
        raise SetupFailed(str(exc)) from None
    token = env.get(ENV_TOKEN)
    if not token:
        raise SetupFailed(
            f"set {ENV_TOKEN} to an app configuration token (api.slack.com/apps → Your App Configuration Tokens)"
        )
    base_url = env.get(ENV_BASE_URL)
    text = json.dumps(m)
    _call("apps.manifest.validate", token, base_url, manifest=text, **({"app_id": args.app_id} if args.app_id else {}))
    values: dict[str, str] = {}
    if args.app_id:
        got = _call("apps.manifest.update", token, base_url, app_id=args.app_id, manifest=text)
        app_id = str(got.get("app_id") or args.app_id)
        done = [f"Updated Slack app {app_id} from spanvisor's manifest."]
        if got.get("permissions_updated"):
            done.append("Its scopes changed: reinstall it (api.slack.com/apps → Install App) for them to apply.")
    else:
        got = _call("apps.manifest.create", token, base_url, manifest=text)
        app_id = str(got.get("app_id") or "?")
        creds = got.get("credentials") if isinstance(got.get("credentials"), Mapping) else {}
        secret = creds.get("signing_secret") if isinstance(creds, Mapping) else None
        if args.url and isinstance(secret, str) and secret:
            values["SLACK_SIGNING_SECRET"] = secret
        done = [f"Created Slack app {app_id}."]
        link = got.get("oauth_authorize_url")
        done.append(
            f"1. Install it in your workspace: {link}" if link else "1. Install it: api.slack.com/apps → Install App."
        )
        done.append("2. Copy its bot token (xoxb-…, OAuth & Permissions) into SLACK_BOT_TOKEN.")
    if args.url is None:
        done.append(
            "Socket Mode: create an app-level token with connections:write (Basic Information → App-Level Tokens) "
            "and put it in SLACK_APP_TOKEN."
        )
    if args.agent_sessions:
        values["SPANVISOR_SLACK_AGENT_SESSIONS"] = "on"
        done.append("Agent sessions: declare the app as an agent in its settings (this adds assistant:write).")
    if getattr(args, "code_channels", False):
        values["SPANVISOR_SLACK_CODE_CHANNELS"] = "on"
    if values:
        path = Path(args.write)
        _write_env(path, values, app_id)
        done.append(f"Settings written to {path} (mode 0600): {', '.join(values)}.")
    done.append("Then: SPANVISOR_SLACK_CHANNEL=#agents, SPANVISOR_SLACK_APPROVERS=… and `spanvisor check`.")
    return "\n".join(done)


def run(args: argparse.Namespace) -> int:
    if args.print_manifest:
        try:
            print(json.dumps(_manifest(args), indent=2))
        except BadManifest as exc:
            print(f"spanvisor slack setup: {exc}", file=sys.stderr)
            return 1
        return 0
    try:
        print(setup(args, os.environ))
    except SetupFailed as exc:
        print(f"spanvisor slack setup: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"spanvisor slack setup: the settings file cannot be written ({exc.strerror or exc})", file=sys.stderr)
        return 1
    return 0


def register(subparsers: Any) -> None:
    """``spanvisor slack setup`` (the ``spanvisor.commands`` entry point)."""
    p = subparsers.add_parser("slack", help="the Slack app: create or update it from spanvisor's manifest")
    sub = p.add_subparsers(dest="slack_command", metavar="COMMAND", required=True)
    s = sub.add_parser("setup", help="create (or update) the Slack app from its manifest with a configuration token")
    add_arguments(s)
    s.set_defaults(func=lambda args, config: run(args))


__all__ = ["ENV_TOKEN", "SetupFailed", "register", "run", "setup"]
