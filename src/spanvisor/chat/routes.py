"""Routing rules every chat channel takes: where a task's message lives.

``agent:rivet=#ops, repo:acme/*=#acme`` (env, comma-separated) or a TOML
list of the same strings: the first agent or repo rule that matches a task
names its channel (Slack's channel, Telegram's chat), else the default. A
``status:error=#alerts`` rule never moves a message; the channel that takes
it posts an alert there when a task enters that status (Slack's does).
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from typing import Any, Literal

from spanvisor.config import p_list
from spanvisor.events import TaskView

RouteField = Literal["agent", "repo", "status"]
_FIELDS: tuple[RouteField, ...] = ("agent", "repo", "status")


@dataclass(frozen=True, slots=True)
class Route:
    """``field:pattern=channel``: a glob on the agent id, repo or status."""

    field: RouteField
    pattern: str
    channel: str

    def matches(self, view: TaskView) -> bool:
        value = {"agent": view.agent_id, "repo": view.repo, "status": view.status}[self.field]
        return value is not None and fnmatch.fnmatchcase(value, self.pattern)


def p_routes(v: Any) -> tuple[Route, ...]:
    """``agent:rivet=#ops, repo:acme/*=#acme, status:error=#agent-alerts``
    (env, comma-separated) or a TOML list of the same strings."""
    out: list[Route] = []
    for item in p_list(v):
        lhs, sep, channel = item.rpartition("=")
        field, colon, pattern = lhs.partition(":")
        field = field.strip().lower()
        if not sep or not colon or field not in _FIELDS or not pattern.strip() or not channel.strip():
            raise ValueError(item)
        out.append(Route(field, pattern.strip(), channel.strip()))  # type: ignore[arg-type]
    return tuple(out)


def home_channel(view: TaskView, routes: tuple[Route, ...], default: str | None) -> str | None:
    """Where a task's message lives: the first agent or repo rule that
    matches, else the default channel. Status rules never move a message."""
    for r in routes:
        if r.field != "status" and r.matches(view):
            return r.channel
    return default


def status_channels(status: str, routes: tuple[Route, ...]) -> tuple[str, ...]:
    return tuple(
        dict.fromkeys(r.channel for r in routes if r.field == "status" and fnmatch.fnmatchcase(status, r.pattern))
    )


__all__ = ["Route", "RouteField", "home_channel", "p_routes", "status_channels"]
