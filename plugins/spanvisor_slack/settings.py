"""The Slack sink's settings (no Slack imports here: ``Config.load()``
imports this through the sink class). Its routing rules are every chat
channel's (:mod:`spanvisor.chat.routes`)."""

from __future__ import annotations

import difflib
import fnmatch
import re
import string
from dataclasses import dataclass
from typing import Any, Literal

from spanvisor.chat.routes import p_routes
from spanvisor.config import (
    Config,
    Setting,
    Unaccepted,
    p_bool,
    p_choice,
    p_duration,
    p_int,
    p_list,
    p_opt_str,
    p_percents,
)
from spanvisor.events import TaskView


@dataclass(frozen=True)
class CodeChannelRule:
    """``field:pattern``: which coding sessions get a code channel, by a glob
    on the task's agent id or repo (:mod:`.codechannels`)."""

    field: Literal["agent", "repo"]
    pattern: str

    def matches(self, view: TaskView) -> bool:
        value = view.agent_id if self.field == "agent" else view.repo
        return value is not None and fnmatch.fnmatchcase(value, self.pattern)


# ``on``: every coding session.
EVERY_SESSION = (CodeChannelRule("agent", "*"),)


def p_code_channels(v: Any) -> tuple[CodeChannelRule, ...]:
    """``on`` (every coding session), ``off`` (none, the default), or rules
    ``agent:GLOB`` / ``repo:GLOB`` (comma-separated, or a TOML list): only a
    session one of them matches."""
    try:
        return EVERY_SESSION if p_bool(v) else ()
    except ValueError:
        pass
    out: list[CodeChannelRule] = []
    for item in p_list(v):
        field, colon, pattern = item.partition(":")
        field = field.strip().lower()
        if not colon or field not in ("agent", "repo") or not pattern.strip():
            raise ValueError(item)
        out.append(CodeChannelRule(field, pattern.strip()))  # type: ignore[arg-type]
    return tuple(out)


def p_remind(v: Any) -> float:
    """A duration (``10m``, ``90s``), or ``off`` (or 0): no reminders."""
    if isinstance(v, str) and v.strip().lower() in ("off", "none", "no", "false"):
        return 0.0
    seconds = p_duration(v)
    if seconds < 0:
        raise ValueError(v)
    return seconds


_APPROVER = re.compile(r"[UWS][A-Z0-9]{2,}|@[a-z0-9][a-z0-9._-]{0,79}")


def p_approvers(v: Any) -> tuple[str, ...]:
    """User ids (``U…``/``W…``), user-group ids (``S…``) and group handles
    (``@oncall``), comma- or space-separated."""
    out: list[str] = []
    for item in p_list(v):
        for word in item.split():
            if not _APPROVER.fullmatch(word):
                raise ValueError(word)
            out.append(word)
    return tuple(dict.fromkeys(out))


def p_channel_approvers(v: Any) -> dict[str, tuple[str, ...]]:
    """``#ops=U012 @oncall, C0123=S0ABC`` (env) or a TOML table of the same:
    the approvers of clicks on messages in that channel (ID or #name)."""
    pairs = v.items() if isinstance(v, dict) else (i.partition("=")[::2] for i in p_list(v))
    out: dict[str, tuple[str, ...]] = {}
    for raw_channel, approvers in pairs:
        channel = str(raw_channel).strip()
        who = p_approvers(approvers if isinstance(approvers, str) else " ".join(map(str, approvers)))
        if not channel or not who:
            raise ValueError(v)
        out[channel] = who
    return out


def p_app_token(v: Any) -> str | None:
    s = p_opt_str(v)
    if s is not None and not s.startswith("xapp-"):
        raise ValueError("an app-level token starts with xapp-")
    return s


def p_rate_limits(v: Any) -> tuple[tuple[str, float, int], ...]:
    """``chat.update=50/4, conversations.list=20`` (calls a minute, optional burst),
    comma-separated or a TOML list; ``method=0`` turns the pacing of a method off."""
    out: list[tuple[str, float, int]] = []
    for item in p_list(v):
        method, sep, rhs = item.partition("=")
        rate, _, burst = rhs.partition("/")
        per_minute = float(rate)
        n = int(burst) if burst.strip() else max(1, int(per_minute) // 12)  # as .pacing.tier
        if not sep or not method.strip() or per_minute < 0 or n < 1:
            raise ValueError(item)
        out.append((method.strip(), per_minute, n))
    return tuple(out)


def p_backlog(v: Any) -> int:
    """A number of posts, or ``off`` (or 0): never fold."""
    if isinstance(v, str) and v.strip().lower() in ("off", "none", "no", "false"):
        return 0
    return p_int(v)


def p_opt_duration(v: Any) -> float | None:
    return None if v is None or (isinstance(v, str) and not v.strip()) else p_duration(v)


def p_template(v: Any) -> str | None:
    s = p_opt_str(v)
    if s is not None and not s.startswith(("https://", "http://")):
        raise ValueError(v)
    return s


# The placeholders of a button's URL template (blocks.link fills them).
LINK_FIELDS = ("task_id", "trace_id", "agent_id", "repo", "start_ms", "end_ms")


def p_link_template(v: Any) -> str | None:
    """An http(s) URL whose placeholders are all :data:`LINK_FIELDS`: a typo
    (``{taskid}``) would make the button silently disappear."""
    s = p_template(v)
    if s is None:
        return None
    try:
        parts = list(string.Formatter().parse(s))
    except ValueError as exc:
        raise Unaccepted(f"{exc} (a literal brace is written twice: {{{{ or }}}})") from None
    for _, field, spec, conversion in parts:
        if field is None:
            continue
        if field not in LINK_FIELDS:
            near = difflib.get_close_matches(field, LINK_FIELDS, 1)
            hint = f" (did you mean {{{near[0]}}}?)" if near else ""
            known = " ".join(f"{{{f}}}" for f in LINK_FIELDS)
            raise Unaccepted(f"unknown placeholder {{{field[:40]}}}{hint}; the placeholders are {known}")
        if spec or conversion:
            raise Unaccepted(f"{{{field}}} takes no format or conversion (its value is URL-encoded as it is)")
    return s


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "slack_token",
        "SLACK_BOT_TOKEN",
        p_opt_str,
        None,
        "Bot token (xoxb-…) with the chat:write scope. Setting it enables the Slack sink.",
        "a bot token",
        secret=True,
    ),
    Setting(
        "slack_channel",
        "SPANVISOR_SLACK_CHANNEL",
        p_opt_str,
        None,
        "Default channel for task messages (an ID like C0123 is best; #name works for posting).",
        "a channel ID or #name",
    ),
    Setting(
        "slack_base_url",
        "SPANVISOR_SLACK_BASE_URL",
        p_template,
        None,
        "Web API base URL, for an enterprise proxy or the fake server. Default: https://slack.com/api/.",
        "an http(s) URL",
    ),
    Setting(
        "slack_routes",
        "SPANVISOR_SLACK_ROUTES",
        p_routes,
        (),
        "Routing rules, first match wins for the parent's channel; status rules post an alert "
        "with a link to the thread when a task enters that status.",
        "field:glob=channel,... with field agent, repo or status",
    ),
    Setting(
        "slack_prefix",
        "SPANVISOR_SLACK_PREFIX",
        p_opt_str,
        None,
        "Text put before every message, e.g. [auto-ops].",
        "short text",
    ),
    Setting(
        "slack_update_interval_s",
        "SPANVISOR_SLACK_UPDATE_INTERVAL",
        p_duration,
        5.0,
        "Least time between two edits of a task's parent message (status changes go at once).",
        "a duration, e.g. 5s",
    ),
    Setting(
        "slack_log_interval_s",
        "SPANVISOR_SLACK_LOG_INTERVAL",
        p_opt_duration,
        None,
        "Least time between two edits of a task's work log reply. Default: 1s, or the update interval if shorter.",
        "a duration",
    ),
    Setting(
        "slack_rate_limits",
        "SPANVISOR_SLACK_RATE_LIMITS",
        p_rate_limits,
        (),
        "Calls a minute (and burst) the sink allows itself per method, before sending, instead of Slack's "
        "documented tiers (chat.update, chat.delete, conversations.history 50/4; conversations.list 20/1; "
        "chat.getPermalink 100/8; agents.sessions.setStatus, agents.sessions.rename, "
        "agents.conversations.setProperties, agents.conversations.setView 50/4; "
        "agents.conversations.create, agents.conversations.archive 20/1). method=0 turns a method's pacing off.",
        "method=per_minute[/burst],... e.g. chat.update=50/4",
    ),
    Setting(
        "slack_reply_interval_s",
        "SPANVISOR_SLACK_REPLY_INTERVAL",
        p_duration,
        0.5,
        "Least time between two thread replies of one task.",
        "a duration",
    ),
    Setting(
        "slack_channel_interval_s",
        "SPANVISOR_SLACK_CHANNEL_INTERVAL",
        p_duration,
        1.0,
        "Least time between two posts to one channel (Slack allows about one per second).",
        "a duration",
    ),
    Setting(
        "slack_channel_burst",
        "SPANVISOR_SLACK_CHANNEL_BURST",
        p_int,
        3,
        "Posts one channel may take at once before the per-channel interval applies.",
        "a positive integer",
    ),
    Setting(
        "slack_board_backlog",
        "SPANVISOR_SLACK_BOARD_BACKLOG",
        p_backlog,
        10,
        "Posts waiting for one channel (Slack takes about one a second) past which the channel folds: tool calls, "
        "steps and other progress show on each task's message and on one board message for the channel, edited "
        "in place, instead of queueing as thread replies; approvals, decisions, errors and results still get "
        "their replies, first. It unfolds once calm. off: never fold, no board.",
        "a number of posts, or off",
    ),
    Setting(
        "slack_milestones",
        "SPANVISOR_SLACK_MILESTONES",
        p_percents,
        (25.0, 50.0, 75.0, 100.0),
        "Progress percentages that get a thread reply.",
        "percentages, e.g. 25,50,75,100",
    ),
    Setting(
        "slack_tool_lines",
        "SPANVISOR_SLACK_TOOLS",
        p_choice("all", "failed", "none"),
        "all",
        "Which tool calls go in the task's work log (one thread reply, edited in place): all, only failed ones, or none.",
        "all, failed or none",
    ),
    Setting(
        "slack_broadcast_errors",
        "SPANVISOR_SLACK_BROADCAST_ERRORS",
        p_bool,
        False,
        "Also show error replies in the channel (reply_broadcast).",
        "true or false",
    ),
    Setting(
        "slack_broadcast_critical",
        "SPANVISOR_SLACK_BROADCAST_CRITICAL",
        p_bool,
        False,
        "Also show critical context-window warnings in the channel.",
        "true or false",
    ),
    Setting(
        "slack_agent_sessions",
        "SPANVISOR_SLACK_AGENT_SESSIONS",
        p_bool,
        False,
        "Make each task's thread a Slack agent session: its status follows the task and Slack's own stop "
        "button cancels it. The app must be declared as an agent and subscribed to agent_session_stopped.",
        "true or false",
    ),
    Setting(
        "slack_code_channels",
        "SPANVISOR_SLACK_CODE_CHANNELS",
        p_code_channels,
        (),
        "Give each coding-agent session (a task whose agent is a coding CLI's service, e.g. claude-code, or a CLI "
        "session's task id) a Slack code channel of its own: its message and thread go there, its routed channel "
        "gets one line linking to it, and the channel is archived when the task ends. on: every session; rules "
        "(agent:GLOB, repo:GLOB): only the sessions one matches when their first message is due. Needs the "
        "code_channels:manage scope; refused, the task stays in its routed channel.",
        "on, off, or field:glob,... with field agent or repo",
    ),
    Setting(
        "slack_dry_run",
        "SPANVISOR_SLACK_DRY_RUN",
        p_bool,
        False,
        "Build and validate every payload and log it instead of sending it.",
        "true or false",
    ),
    Setting(
        "slack_dashboard_url",
        "SPANVISOR_SLACK_DASHBOARD_URL",
        p_link_template,
        None,
        "Dashboard button URL template; placeholders {task_id} {trace_id} {agent_id} {repo} "
        "{start_ms} {end_ms} (URL-encoded).",
        "an http(s) URL template",
    ),
    Setting(
        "slack_trace_url",
        "SPANVISOR_SLACK_TRACE_URL",
        p_link_template,
        None,
        "Trace button URL template, same placeholders, e.g. a Tempo or Jaeger link.",
        "an http(s) URL template",
    ),
    Setting(
        "slack_plan",
        "SPANVISOR_SLACK_PLAN",
        p_choice("auto", "on", "off"),
        "auto",
        "The parent's steps as Slack's native plan block (a task card per step). auto: tried, and text from then on "
        "for the workspace if Slack answers invalid_blocks; on: always; off: the steps as a line of text.",
        "auto, on or off",
    ),
    Setting(
        "slack_timeout_s", "SPANVISOR_SLACK_TIMEOUT", p_duration, 10.0, "Timeout of one Web API call.", "a duration"
    ),
    Setting(
        "slack_lease_s",
        "SPANVISOR_SLACK_LEASE",
        p_duration,
        120.0,
        "How long a claim on a parent or reply holds before another replica may take it over.",
        "a duration",
    ),
    Setting(
        "slack_app_token",
        "SLACK_APP_TOKEN",
        p_app_token,
        None,
        "App-level token (xapp-…, scope connections:write): receive button clicks and /spanvisor over Socket Mode "
        "(no public URL needed).",
        "an app-level token",
        secret=True,
    ),
    Setting(
        "slack_signing_secret",
        "SLACK_SIGNING_SECRET",
        p_opt_str,
        None,
        "Signing secret of the Slack app: serve /slack/interactions and /slack/commands on the admin port, "
        "every request verified (5-minute window).",
        "the app's signing secret",
        secret=True,
    ),
    Setting(
        "slack_approvers",
        "SPANVISOR_SLACK_APPROVERS",
        p_approvers,
        (),
        "Who may approve, reject, cancel, retry or acknowledge from Slack: user IDs (U…/W…), user-group IDs (S…) "
        "or handles (@oncall). Empty: anyone who can see the message.",
        "user and group IDs or @handles, comma-separated",
    ),
    Setting(
        "slack_channel_approvers",
        "SPANVISOR_SLACK_CHANNEL_APPROVERS",
        p_channel_approvers,
        {},
        "Approvers for clicks on messages in one channel (e.g. a route's), instead of SPANVISOR_SLACK_APPROVERS.",
        "channel=approvers ..., e.g. #ops=U012 @oncall, C0123=S0ABC",
    ),
    Setting(
        "waiting_remind_s",
        "SPANVISOR_WAITING_REMIND",
        p_remind,
        600.0,
        "How long an approval request may stay unanswered before it is posted again in its task's thread, "
        "mentioning its approvers (once per request); off: never.",
        "a duration (e.g. 10m, 90s), or off",
    ),
    Setting(
        "slack_group_ttl_s",
        "SPANVISOR_SLACK_GROUP_TTL",
        p_duration,
        300.0,
        "How long a user group's members (usergroups.users.list) are cached.",
        "a duration",
    ),
    Setting(
        "slack_break_glass_channel",
        "SPANVISOR_SLACK_BREAK_GLASS_CHANNEL",
        p_opt_str,
        None,
        "Where every break-glass approval is posted (who, on what, why), besides the task's thread. "
        "Unset: only the thread line.",
        "a channel ID or #name",
    ),
)


def enabled(config: Config) -> bool:
    """Whether ``SPANVISOR_SINKS=auto`` runs this sink: with a bot token, or in
    dry-run mode. Here, beside the settings, so that choosing the sinks
    imports none that does not run (:func:`spanvisor.sink.auto_sink_names`)."""
    return bool(config.get("slack_token") or config.get("slack_dry_run"))
