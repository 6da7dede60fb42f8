"""Slack's agent sessions: each task's thread is a session whose status follows the task.

An app declared as an agent (the manifest's ``agent`` section, which adds
``assistant:write``) calls ``agents.sessions.setStatus`` for a thread, and
Slack shows the session's status and, while it is ``processing``, its own
stop button; a press sends ``agent_session_stopped`` (:mod:`.intake`
cancels the task through the path every cancel takes). Opt in with
``SPANVISOR_SLACK_AGENT_SESSIONS=on``: an app not declared as an agent is
refused the method.

What a task's view says, as a session status (:func:`session_status`):

========================================  ============
the task                                  the session
========================================  ============
working (stalled too: it may go on)       processing
awaiting a person's approval              active: the person's turn, no stop button while nobody works
a cancel requested, not ended yet         suspended: stopping, the stop button gone
ended (complete, error, cancelled, lost)  closed
========================================  ============

A task in a code channel of its own (.codechannels) has the channel as its
session instead of its thread (Slack Code: ``setStatus`` without
``thread_ts``), so the channel's own stop button cancels it; Slack's
``agent_session_stopped`` for it names the channel and no thread
(UNCONFIRMED: the event's page shows ``thread_ts`` on every press).

The status is set by the replica that edited the parent, right after the
edit, from the view that edit showed (:class:`AgentSessions`), so the
session never runs ahead of the message; before each call the shared view
is read again and a call whose status the shared view no longer maps to is
not sent (the newer one is). The call is paced at the method's Tier 3. The
session's thread is remembered in the state store (namespace
``slack.sessions``, by ``channel/ts``) so a stop press on any replica finds
its task.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, Literal

from spanvisor.chat.pacing import ROUTINE, URGENT, Interrupt
from spanvisor.control.runs import cancel_of, decisions_of
from spanvisor.events import TERMINAL, TaskView
from spanvisor.stats import PipelineStats

if TYPE_CHECKING:
    from spanvisor.chat.claims import Claims

    from .record import SlackTaskRecord
    from .transport import Transport

log = logging.getLogger("spanvisor.slack")

SessionStatus = Literal["processing", "active", "suspended", "closed"]
METHOD = "agents.sessions.setStatus"
STOP_EVENT = "agent_session_stopped"
NAMESPACE = "slack.sessions"
# Slack's limit on a session's title.
MAX_TITLE = 200
# What Slack answers (a warning on an ok call) while the app does not subscribe to the stop event.
NO_STOP_SUBSCRIPTION = "missing_agent_session_stopped_event_subscription"


def status_for(*, ended: bool, cancel_requested: bool, awaiting: bool) -> SessionStatus:
    """The rule (the table in the module docstring), from what is known of the task."""
    if ended:
        return "closed"
    if cancel_requested:
        return "suspended"
    if awaiting:
        return "active"
    return "processing"


def session_status(view: TaskView) -> SessionStatus:
    """The session status a task's view shows."""
    return status_for(
        ended=view.status in TERMINAL,
        cancel_requested=view.cancel_requested,
        awaiting=view.status == "awaiting_approval",
    )


def record_status(rec: Mapping[str, Any] | None) -> SessionStatus:
    """The session status the control log's record of a run shows, by the
    same rule: ended unless it is running (no record: closed), a cancel
    asked for, an approval request open."""
    if rec is None or rec.get("state") != "running":
        return status_for(ended=True, cancel_requested=False, awaiting=False)
    reqs = rec.get("requests")
    awaiting = isinstance(reqs, Mapping) and any(
        isinstance(r, Mapping) and r.get("state") == "open" for r in reqs.values()
    )
    return status_for(ended=False, cancel_requested=cancel_of(decisions_of(rec)) is not None, awaiting=awaiting)


def session_key(channel: str, ts: str) -> str:
    """The state store key of the session in ``channel``'s thread ``ts``
    (``""``: a code channel's own session)."""
    return f"{channel}/{ts}"


def channel_session(st: SlackTaskRecord) -> bool:
    """Whether the task's session is its code channel's own (its parent is
    there): set and stopped without ``thread_ts``."""
    c = st.code
    return c is not None and c.channel is not None and st.ref is not None and st.ref[0] == c.channel


def title_of(view: TaskView) -> str:
    name = (view.task_name or view.task_id).strip() or view.task_id
    return name if len(name) <= MAX_TITLE else name[: MAX_TITLE - 1] + "…"


# Answers that mean the workspace will not take sessions from this app until
# someone changes its configuration: asking again would only be refused again.
REFUSED_FOR_GOOD = frozenset(
    {"missing_scope", "not_allowed", "not_allowed_token_type", "invalid_auth", "unknown_method", "not_authed"}
)


class AgentSessions:
    """Sets the session status of each task's thread; one per sink.

    :meth:`shown` is called when this replica edited (or posted) a task's
    parent with a view: the status that view maps to becomes due. The
    worker then calls :meth:`sync`, which sends it (paced at Tier 3, urgent
    for a session's first status and its close) unless the shared view has
    moved on to another status meanwhile; then the edit that shows the newer
    view makes that one due."""

    def __init__(
        self,
        transport: Transport,
        claims: Claims,
        stats: PipelineStats,
        deadline: Callable[[], float | None],
    ) -> None:
        self.transport, self.claims, self.stats, self.deadline = transport, claims, stats, deadline
        self.off: str | None = None  # why Slack refused sessions for good: none is set from then on
        self._warned = False

    def shown(self, st: SlackTaskRecord, view: TaskView) -> None:
        if self.off is None:
            st.session_want = session_status(view)

    async def sync(
        self,
        st: SlackTaskRecord,
        current: Callable[[], Awaitable[SessionStatus | None]],
        interrupt: Interrupt | None,
    ) -> bool:
        """One attempt to make the session show ``st.session_want``; True
        when a step was taken (sent, refused, or found no longer due)."""
        assert st.ref is not None and st.session_want is not None
        want, first = st.session_want, st.session_sent is None
        channel, ts = st.ref
        # A task in a code channel of its own: the channel is its session
        # (Slack Code: setStatus without thread_ts), stopped from the channel.
        thread: str | None = None if channel_session(st) else ts
        key = session_key(channel, thread or "")
        if first:
            # Before the session exists: a stop press can come the moment it does.
            await self.claims.put_if_newer(
                NAMESPACE, key, {"task_id": st.task_id, "run_id": st.view.run_id, "version": 1}, 1
            )
        title = title_of(st.view)

        def build() -> Mapping[str, Any]:
            args: dict[str, Any] = {"channel_id": channel, "status": want}
            if thread is not None:
                args["thread_ts"] = thread
            if first and thread is not None:  # a code channel's session was titled when it was made
                args["title"] = title
            return args

        async def still_wanted() -> bool:
            now = await current()
            return now is None or now == want

        out = await self.transport.send(
            METHOD,
            build,
            deadline=self.deadline,
            before_call=still_wanted,
            rank=URGENT if first or want == "closed" else ROUTINE,
            key=key,
            interrupt=interrupt,
        )
        if out.deferred:  # a reply of the task goes first; the call keeps its place
            return True
        if out.ok:
            st.session_sent = want
            self.stats.inc("slack_agent_sessions_total", outcome=want)
            warning = (out.data or {}).get("warning")
            if isinstance(warning, str) and NO_STOP_SUBSCRIPTION in warning and not self._warned:
                self._warned = True
                log.warning(
                    "Slack shows a stop button nobody can press: subscribe the app to the %s event "
                    "(docs/reference/slack-app.md)",
                    STOP_EVENT,
                )
        elif not out.claim_lost:  # claim_lost: the shared view moved on; its edit makes the next status due
            error = out.failure.error if out.failure is not None else "unknown"
            self.stats.inc("slack_agent_sessions_total", outcome="error")
            if error in REFUSED_FOR_GOOD and self.off is None:
                self.off = error
                log.warning(
                    "Slack refused agent sessions (%s): declare the app as an agent and subscribe it to %s "
                    "(docs/reference/slack-app.md), or unset SPANVISOR_SLACK_AGENT_SESSIONS; "
                    "no session status is set from now on",
                    error,
                    STOP_EVENT,
                )
            elif self.off is None:
                log.info("Slack did not take task %s's session status %s: %s", st.task_id, want, error)
        if st.session_want == want:
            st.session_want = st.session_sent  # nothing due until a newer view is shown
        return True


__all__ = [
    "MAX_TITLE",
    "METHOD",
    "NAMESPACE",
    "NO_STOP_SUBSCRIPTION",
    "STOP_EVENT",
    "AgentSessions",
    "SessionStatus",
    "channel_session",
    "record_status",
    "session_key",
    "session_status",
    "status_for",
    "title_of",
]
