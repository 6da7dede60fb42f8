"""A channel per coding session: Slack Code's code channels (issue 67, step 1).

Opt in with ``SPANVISOR_SLACK_CODE_CHANNELS=on``, or for some sessions
only with rules on their agent or repo (``agent:claude-code,repo:acme/*``;
matched when the task's first message is due: a repo the task names later
does not move it) (the app needs the
``code_channels:manage`` scope and ``features.code_channels``, which
``spanvisor slack setup --code-channels`` puts in its manifest). A task is a
*coding session* (:func:`is_coding`) when its agent is the ``service.name``
of a registered coding-agent CLI (``claude-code``, ``codex_exec``, …: what
the launcher and the receiver give a session's task unless ``--agent`` or
``spanvisor.agent`` names another), or its task id is a CLI session's whose
trace and root ids derive from it (:func:`spanvisor.gate.taskids.is_session`).

Such a task, before its first message:

1. gets a code channel from ``agents.conversations.create``, named after
   the task, with a ``session_id`` derived from its run (:func:`session_id_of`):
   Slack returns the existing channel for a session id it knows, so two
   replicas, a retried call and a restarted process all land in one channel.
   The channel is claimed in the state store (``<ns>.codechannels``, by the
   parent key) like a parent, so replicas agree without asking Slack twice;
2. its parent message and thread go there instead of its routed channel;
3. the routed (team) channel gets one short line linking to it (``<#C…>``),
   claimed once per session (``<session id>/link``);
4. a channel made before the task had a name (named by its id) is renamed
   after the task once the name arrives (``agents.sessions.rename`` without
   ``thread_ts``, which renames the channel with its session);
5. the channel's context bar (``agents.conversations.setProperties``,
   ``code_channel.context_bar_items``) shows the repository, the agent and the
   model, set when the parent first shows them and again when one changes,
   paced at the method's tier (:mod:`.pacing`);
5a. its work-log tab (``agents.conversations.setView``, :mod:`.codetab`)
   shows the session's steps, decisions and figures from the same view,
   sent when it changed, at most once per ``TAB_INTERVAL_S`` and once at
   the end;
6. at the task's end, once everything owed is shown, the session is closed
   (``agents.sessions.setStatus`` without ``thread_ts``) and the channel
   archived (``agents.conversations.archive``, the summary reply as its
   ``summary_message_ts``), once per session (``<session id>/archive``).

A retry of the task is a new run, hence a new session id and a new channel:
Slack documents no method by which an app reopens an archived code channel.

Making channels is paced (Tier 2, about 20 a minute): a session whose
channel would wait more than :data:`CREATE_WAIT_S` for its turn (a burst
of sessions beginning at once, or a 429's pause) stays in its routed
channel, settled so every replica agrees, counted in
``slack_code_channels_total{outcome="busy"}`` and said once: its approvals
and errors are seen at once, not a minute later in a channel not yet made.

When Slack refuses ``create`` (no scope, not allowed, a bad argument) the
task stays in its routed channel (said once per kind of refusal, counted in
``slack_code_channels_total{outcome="fallback"}``), and a refusal that
needs the app's configuration changed stops asking for every later task:
no message of the task is lost to a code channel that could not be made.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from spanvisor.chat.pacing import ROUTINE, URGENT, Interrupt
from spanvisor.clis import pullrequest, registry
from spanvisor.events import TaskView
from spanvisor.gate import taskids
from spanvisor.sink import Clock
from spanvisor.stats import PipelineStats

from . import codetab
from .record import Bar, CodeState, former_key
from .sessions import REFUSED_FOR_GOOD, channel_session, title_of
from .settings import EVERY_SESSION, CodeChannelRule
from .text import safe
from .turns import PARENT

if TYPE_CHECKING:
    from spanvisor.chat.claims import Claims

    from .record import SlackTaskRecord
    from .transport import Transport

log = logging.getLogger("spanvisor.slack")

CREATE = "agents.conversations.create"
ARCHIVE = "agents.conversations.archive"
SET_PROPERTIES = "agents.conversations.setProperties"
SET_STATUS = "agents.sessions.setStatus"
RENAME = "agents.sessions.rename"
SCOPE = "code_channels:manage"
# Slack's limits on the context bar (agents.conversations.setProperties).
MAX_BAR_ITEMS = 5
MAX_KEY = 64
MAX_LABEL = 128
MAX_URL = 2_048
# How long to wait for a code channel another replica is making right now.
IN_FLIGHT_WAIT_S = 0.25
# Longest a session's first message waits for its channel's turn at
# create's pace (about 20 a minute): a burst of sessions past it stays in
# the routed channel, seen at once, instead of queueing a minute unseen.
CREATE_WAIT_S = 5.0
BUSY = "busy"
# An answer that may or may not have made the channel: asked again (create
# is idempotent on the session id) this many times before the task stays routed.
MAX_ATTEMPTS = 3
_PREFIX = b"spanvisor.code-channel.v1\x00"


def is_coding(view: TaskView) -> bool:
    """Whether ``view``'s task is a coding-agent session (see the module doc)."""
    if registry.by_service(view.agent_id) is not None:
        return True
    return bool(view.trace_id) and taskids.is_session(view.task_id, view.trace_id, view.root_span_id)


def session_id_of(view: TaskView) -> str:
    """An opaque id of the task's run, the same on every replica and after a
    rename by its root (the run, and so its trace and root ids, stay), new
    for a new run: Slack keys a code channel by it."""
    h = hashlib.sha256(_PREFIX)
    for part in (view.run_id, view.trace_id, view.root_span_id) if view.run_id else (view.task_id, view.trace_id):
        b = part.encode("utf-8", "surrogatepass")
        h.update(len(b).to_bytes(4, "big") + b)
    return "spv_" + h.hexdigest()[:32]


def context_bar(view: TaskView) -> Bar:
    """The context bar's items from what the task's view says: its repository,
    branch, pull request, agent and model (empty ones left out; at most
    :data:`MAX_BAR_ITEMS`). Labels are agent text: escaped and clipped like
    every other (.text); Slack's rendering of a label is UNCONFIRMED, so
    Slack's generic escaping of ``&``, ``<`` and ``>`` applies."""
    items: list[tuple[str, str, str, str]] = []
    for key, raw, icon in (
        ("repo", view.repo, "folder"),
        ("branch", view.branch, "branch"),
        ("pull_request", view.pull_request, "link"),
        ("agent", view.agent_name or view.agent_id, "terminal"),
        ("model", view.model, "code"),
    ):
        if key == "pull_request":
            if raw and (item := pull_request_item(raw)) is not None:
                items.append(item)
            continue
        label = safe(raw, MAX_LABEL) if raw else ""
        if label.strip():
            items.append((key[:MAX_KEY], label, icon, ""))
    return tuple(items[:MAX_BAR_ITEMS])


def pull_request_item(raw: str) -> tuple[str, str, str, str] | None:
    """The pull request's item: ``PR #12 · github.com`` linking to its page.
    Only a plain ``https://`` or ``http://`` address is a link (what the
    agent wrote is never a ``javascript:`` or ``slack://`` one, nor one with
    spaces or a clipped end), and its label names the host the link goes to
    (the agent chose the address: ``https://github.com@evil.example/pull/1``
    reads ``PR #1 · evil.example``); anything else is shown as text, unlinked."""
    url = raw if _is_link(raw) else ""
    host = _host(url) if url else None
    if url and host is None:
        url = ""
    number = pullrequest.number(raw) if url else None
    if number is not None:
        label = safe(f"PR #{number} · {host}", MAX_LABEL)
    elif raw.strip().lstrip("#").isdigit() and len(raw.strip()) <= 14:
        label = f"PR #{raw.strip().lstrip('#')}"
    elif url:
        label = safe(f"Pull request · {host}", MAX_LABEL)
    else:
        label = safe(raw, MAX_LABEL)
    return ("pull_request", label, "link", url) if label.strip() else None


def _host(url: str) -> str | None:
    try:
        host = urlsplit(url).hostname
    except ValueError:
        return None
    return host or None


def _is_link(raw: str) -> bool:
    return (
        len(raw) <= MAX_URL
        and raw.startswith(("https://", "http://"))
        and raw.isascii()
        and raw.isprintable()
        and not any(c in raw for c in ' <>|"\\`')
    )


class CodeChannels:
    """Makes, links, describes and archives the code channels of a sink's tasks."""

    def __init__(
        self,
        transport: Transport,
        claims: Claims,
        stats: PipelineStats,
        clock: Clock,
        namespace: str,
        deadline: Callable[[], float | None],
        prefix: str | None = None,
        rules: tuple[CodeChannelRule, ...] = EVERY_SESSION,
    ) -> None:
        self.transport, self.claims, self.stats, self.clock = transport, claims, stats, clock
        self.rules = rules
        self.ns, self.deadline, self.prefix = f"{namespace}.codechannels", deadline, prefix
        self.parent_ns = f"{namespace}.parent"
        self.reply_ns = f"{namespace}.reply"
        self.off: str | None = None  # why Slack refused code channels for good: none is asked for from then on
        self._told: set[str] = set()
        # The CLIs' adapters and the installed ones' entry points, read now
        # (once per process) rather than by a task's first step on the loop.
        registry.by_service("")

    def wanted(self, view: TaskView) -> bool:
        """Whether the task gets a code channel: a coding session one of the
        setting's rules matches (agent or repo, as its first message is due)."""
        return is_coding(view) and any(r.matches(view) for r in self.rules)

    # --- before the parent ---------------------------------------------

    async def open(self, st: SlackTaskRecord) -> bool:
        """Decide where the task's parent goes; one step (True: taken)."""
        if not self.wanted(st.view):
            st.code = CodeState(None)
            return True
        sid = session_id_of(st.view)
        claim = await self.claims.claim(self.ns, st.key)
        if claim.value is not None:
            self._adopt(st, claim.value, sid)
            return True
        if not claim.won:  # another replica is making it right now
            await self.clock.sleep(IN_FLIGHT_WAIT_S)
            return True
        old = former_key(st.view)
        before = await self.claims.get(self.ns, old) if old is not None and old != st.key else None
        if before is not None:
            # Renamed by its root (.rename): the run's channel, kept under its new key too.
            await self.claims.settle(self.ns, st.key, before)
            self._adopt(st, before, sid)
            return True
        parent = await self.claims.get(self.parent_ns, st.key)
        if self.off is not None or (parent is not None and parent.get("ts")):
            # Refused for good, or a parent already in the routed channel (the
            # setting turned on mid-task): the task stays where it is.
            await self.claims.settle(self.ns, st.key, {"channel": None, "session_id": sid})
            st.code = CodeState(None, sid)
            if self.off is not None:
                self.stats.inc("slack_code_channels_total", outcome="fallback")
            return True
        if self._create_wait() > CREATE_WAIT_S:
            # Settled, as a refusal is: every replica and a restart keep it routed.
            await self.claims.settle(self.ns, st.key, {"channel": None, "session_id": sid, "error": BUSY})
            st.code = CodeState(None, sid)
            self.stats.inc("slack_code_channels_total", outcome=BUSY)
            if BUSY not in self._told:
                self._told.add(BUSY)
                log.warning(
                    "Slack makes code channels at about %.0f a minute and more sessions began at once: a session "
                    "whose channel would wait over %.0f s stays in its routed channel (slack_code_channels_total"
                    '{outcome="busy"} counts them)',
                    self.transport.pacer.limits[CREATE].per_minute if self.transport.pacer.limited(CREATE) else 0,
                    CREATE_WAIT_S,
                )
            return True
        name = title_of(st.view)

        def build() -> Mapping[str, Any]:
            # Channel-name rules of code channels are UNCONFIRMED: the name is
            # a "friendly display name", so the task's title goes as it is,
            # within agents.sessions.rename's 200 characters (which renames the
            # channel too). No origin: the parent is posted in the channel itself.
            return {"name": name, "session_id": sid}

        async with self.claims.lease(self.ns, [st.key]) as lease:
            out = await self.transport.send(
                CREATE, build, deadline=self.deadline, before_call=lease.confirm, rank=URGENT
            )
        if out.claim_lost:
            return True
        if out.ok and out.data and out.data.get("channel_id"):
            cid = str(out.data["channel_id"])
            value = {"channel": cid, "session_id": sid, "team": st.channel, "title": name}
            if not await self.claims.settle(self.ns, st.key, value):
                stored = await self.claims.get(self.ns, st.key)
                if stored is not None:
                    self._adopt(st, stored, sid)
                    return True
            self.stats.inc("slack_code_channels_total", outcome="created")
            self._adopt(st, value, sid)
            return True
        error = out.failure.error if out.failure is not None else "unknown"
        if out.decision is not None and out.decision.kind in ("retry", "rate_limited"):
            # Only the shutdown deadline ends retries: nothing is said for good
            # (a restarted process asks again); this process's last posts go routed.
            await self.claims.release(self.ns, st.key)
            st.code = CodeState(None, sid)
            return True
        st.code_attempts += 1
        if out.decision is not None and out.decision.kind == "ambiguous" and st.code_attempts < MAX_ATTEMPTS:
            # Maybe made: asking again with the same session id returns it.
            await self.claims.release(self.ns, st.key)
            return True
        self._refused(error)
        await self.claims.settle(self.ns, st.key, {"channel": None, "session_id": sid, "error": error})
        st.code = CodeState(None, sid)
        return True

    def _create_wait(self) -> float:
        """About how long a create asked now would wait: its queue at its
        tier's pace, or a pause Slack asked for (a 429)."""
        pause = self.transport.paused_until.get(CREATE, 0.0) - self.transport.clock.now()
        return max(pause, self.transport.pacer.wait_estimate(CREATE, URGENT))

    def _adopt(self, st: SlackTaskRecord, value: Mapping[str, Any], sid: str) -> None:
        cid = value.get("channel")
        team = value.get("team")
        st.code = CodeState(str(cid) if cid else None, str(value.get("session_id") or sid))
        # The name it was made with (unknown for one made before names were
        # kept: then the title is sent once, which changes nothing if equal).
        st.code.title_sent = str(value["title"]) if value.get("title") else None
        if st.code.channel is not None:
            st.code.team = str(team) if team else st.channel
            st.channel = st.code.channel

    def _refused(self, error: str) -> None:
        self.stats.inc("slack_code_channels_total", outcome="fallback")
        if error in REFUSED_FOR_GOOD and self.off is None:
            self.off = error
        if error not in self._told:
            self._told.add(error)
            log.warning(
                "Slack did not make a code channel (%s): the task's messages go to its routed channel%s",
                error,
                f"; add the {SCOPE} scope and features.code_channels to the app (spanvisor slack setup "
                "--code-channels), or unset SPANVISOR_SLACK_CODE_CHANNELS; none is asked for from now on"
                if self.off == error
                else "",
            )

    # --- once the parent is there ---------------------------------------

    def shown(self, st: SlackTaskRecord, view: TaskView) -> None:
        """The parent now shows ``view``: its context bar is due if it
        changed, and its channel's name once the task has one other than it
        was made with (a channel made before the task's name arrived is
        named by its id)."""
        if st.code is not None and st.code.channel is not None and not st.code.closed:
            st.code.bar_want = context_bar(view)
            if view.task_name and view.task_name.strip():
                st.code.title_want = title_of(view)
            st.code.tab_want = codetab.tab_text(view)

    @staticmethod
    def link_due(st: SlackTaskRecord) -> bool:
        c = st.code
        return c is not None and c.channel is not None and not c.linked and c.team is not None

    async def link(self, st: SlackTaskRecord) -> bool:
        """The team channel's one line for the session (claimed once per session)."""
        c = st.code
        assert c is not None and c.channel is not None and c.team is not None
        key = f"{c.session_id}/link"
        claim = await self.claims.claim(self.ns, key)
        if claim.value is not None or not claim.won:
            # Posted (or being posted) by another record of the session.
            c.linked = True
            return True
        team, cid = c.team, c.channel
        agent = safe(st.view.agent_name or st.view.agent_id, 80)
        text = f"💻 {safe(title_of(st.view), 200)} ({agent}): <#{cid}>"
        if self.prefix:
            text = f"{safe(self.prefix, 80)} {text}"
        async with self.claims.lease(self.ns, [key]) as lease:
            out = await self.transport.send(
                "chat.postMessage",
                lambda: {"channel": team, "text": text, "unfurl_links": False, "unfurl_media": False},
                deadline=self.deadline,
                before_call=lease.confirm,
                rank=PARENT,
            )
        if out.claim_lost:
            return True
        c.linked = True
        if out.ok or (out.decision is not None and out.decision.kind == "ambiguous"):
            # Posted, or maybe posted: never posted again.
            await self.claims.settle(self.ns, key, {"ts": (out.data or {}).get("ts")})
            self.stats.inc("slack_code_channels_total", outcome="linked" if out.ok else "link_unsure")
            return True
        error = out.failure.error if out.failure is not None else "unknown"
        await self.claims.settle(self.ns, key, {"ts": None, "error": error})
        self.stats.drop(
            f"slack_{error}",
            1,
            sink="slack",
            detail=f"the team channel's line to a code channel: Slack answered {error}",
        )
        return True

    async def describe(self, st: SlackTaskRecord, interrupt: Interrupt | None) -> bool:
        """Send the context bar the parent's last shown view maps to."""
        c = st.code
        assert c is not None and c.channel is not None and c.bar_want is not None
        want, cid = c.bar_want, c.channel
        if not want:  # nothing known yet: Slack wants at least one property
            c.bar_sent = want
            return True
        items = [
            {"key": k, "label": label, "icon": icon, **({"url": url} if url else {})} for k, label, icon, url in want
        ]
        args = {"channel_id": cid, "code_channel": {"context_bar_items": items}}
        if await self._describe(st, SET_PROPERTIES, args, interrupt, "context bar", "bar_error"):
            c.bar_sent = want  # a refusal is not asked again until the bar changes
        return True

    async def retitle(self, st: SlackTaskRecord, interrupt: Interrupt | None) -> bool:
        """Rename the code channel after the task's title (``agents.sessions.rename``
        without ``thread_ts``, which "also renames the channel"): once per
        title, a refusal not asked again until the title changes."""
        c = st.code
        assert c is not None and c.channel is not None and c.title_want is not None
        want, cid = c.title_want, c.channel
        args = {"channel_id": cid, "title": want}
        if await self._describe(st, RENAME, args, interrupt, "channel name", "rename_error", ok="renamed"):
            c.title_sent = want  # a refusal is not asked again until the title changes
        return True

    async def show_tab(self, st: SlackTaskRecord, interrupt: Interrupt | None) -> bool:
        """Send the work-log tab the parent's last shown view gives (an
        upsert by its view key: replicas and retries update one tab)."""
        c = st.code
        assert c is not None and c.channel is not None and c.tab_want is not None
        want, cid = c.tab_want, c.channel
        args = {
            "channel_id": cid,
            "type": "block_kit",
            "view_key": codetab.VIEW_KEY,
            "name": codetab.NAME,
            "blocks": json.loads(want),
        }
        if await self._describe(st, codetab.SET_VIEW, args, interrupt, "work-log tab", "tab_error", ok="tab"):
            c.tab_sent, c.tab_at = want, self.clock.now()  # a refusal is not asked again until the tab changes
        return True

    async def show_diff(self, st: SlackTaskRecord, interrupt: Interrupt | None) -> bool:
        """Send the task's newest diff to the channel's diff tab (Slack keeps
        one diff tab a channel: each send replaces it); an empty diff removes
        the tab, so it never shows work the task has undone."""
        c, diff = st.code, st.diff
        assert c is not None and c.channel is not None and diff is not None
        cid = c.channel
        if not diff.text.strip():
            if c.diff_view is None:
                c.diff_sent = diff.digest  # no tab to remove
                return True
            args: dict[str, Any] = {"channel_id": cid, "view_id": c.diff_view}
            if await self._describe(st, codetab.REMOVE_VIEW, args, interrupt, "diff tab", "diff_error"):
                c.diff_sent, c.diff_view = diff.digest, None
            return True
        name = codetab.DIFF_NAME + (" (clipped)" if diff.clipped else "")
        args = {"channel_id": cid, "type": "diff", "content": diff.text, "name": name}
        out = await self.transport.send(
            codetab.SET_VIEW, lambda: args, deadline=self.deadline, rank=ROUTINE, key=cid, interrupt=interrupt
        )
        if out.deferred:  # a reply of the task goes first; the call keeps its place
            return True
        if out.ok:
            view = (out.data or {}).get("view_id")
            c.diff_view = view if isinstance(view, str) and view else c.diff_view
            self.stats.inc("slack_code_channels_total", outcome="diff")
        else:
            self.stats.inc("slack_code_channels_total", outcome="diff_error")
            error = out.failure.error if out.failure is not None else "unknown"
            log.info("Slack did not take task %s's diff tab: %s", st.task_id, error)
        c.diff_sent, c.diff_at = diff.digest, self.clock.now()  # a refusal is not asked again until it changes
        return True

    async def _describe(
        self,
        st: SlackTaskRecord,
        method: str,
        args: Mapping[str, Any],
        interrupt: Interrupt | None,
        what: str,
        refused: str,
        ok: str | None = None,
    ) -> bool:
        """One routine call that describes the channel: whether it was
        answered (taken or refused), False when deferred for later."""
        out = await self.transport.send(
            method, lambda: args, deadline=self.deadline, rank=ROUTINE, key=args["channel_id"], interrupt=interrupt
        )
        if out.deferred:
            return False
        if out.ok:
            if ok is not None:
                self.stats.inc("slack_code_channels_total", outcome=ok)
        else:
            error = out.failure.error if out.failure is not None else "unknown"
            self.stats.inc("slack_code_channels_total", outcome=refused)
            log.info("Slack did not take task %s's %s: %s", st.task_id, what, error)
        return True

    # --- at the end ------------------------------------------------------

    @staticmethod
    def close_due(st: SlackTaskRecord) -> bool:
        c = st.code
        return c is not None and c.channel is not None and not c.closed and st.finished

    async def close(self, st: SlackTaskRecord) -> bool:
        """Close the session and archive its channel, once per session."""
        c = st.code
        assert c is not None and c.channel is not None
        key = f"{c.session_id}/archive"
        claim = await self.claims.claim(self.ns, key)
        c.closed = True
        if claim.value is not None or not claim.won:
            return True  # archived (or being archived) by another record of the session
        cid = c.channel
        said = await self.claims.get(self.reply_ns, f"{st.task_id}/summary")
        summary = said.get("ts") if said is not None else None
        async with self.claims.lease(self.ns, [key]) as lease:
            if st.session_sent == "closed" and channel_session(st):
                status = None  # agent sessions closed the channel's session already
            else:
                status = await self.transport.send(
                    SET_STATUS,
                    lambda: {"channel_id": cid, "status": "closed"},  # no thread_ts: the channel's own session
                    deadline=self.deadline,
                    before_call=lease.confirm,
                    rank=URGENT,
                    key=cid,
                )
                if status.claim_lost:
                    return True
            args: dict[str, Any] = {"channel_id": cid}
            if isinstance(summary, str) and summary:
                args["summary_message_ts"] = summary
            out = await self.transport.send(
                ARCHIVE, lambda: args, deadline=self.deadline, before_call=lease.confirm, rank=ROUTINE
            )
        if out.claim_lost:
            return True
        error = out.failure.error if out.failure is not None else None
        if status is not None and not status.ok:
            log.info("Slack did not close task %s's code channel session: %s", st.task_id, status.failure)
        if out.ok or error == "already_archived":
            self.stats.inc("slack_code_channels_total", outcome="archived")
        else:
            self.stats.inc("slack_code_channels_total", outcome="archive_error")
            log.warning("Slack did not archive task %s's code channel %s: %s", st.task_id, cid, error)
        await self.claims.settle(self.ns, key, {"archived": out.ok or error == "already_archived", "error": error})
        return True


__all__ = [
    "ARCHIVE",
    "CREATE",
    "MAX_BAR_ITEMS",
    "MAX_KEY",
    "MAX_LABEL",
    "SCOPE",
    "SET_PROPERTIES",
    "CodeChannels",
    "CodeState",
    "context_bar",
    "is_coding",
    "session_id_of",
]
