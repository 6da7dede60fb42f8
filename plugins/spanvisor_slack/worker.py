"""The background side of the Slack sink: one coroutine per open task.

Order within a task: the parent is posted (claimed first, so a restart or a
replica continues the same thread), a status change edits it at once, thread
replies follow in order at most one per ``reply_interval_s`` (tool calls
and step changes gathered into a work log reply, :mod:`.worklog`, edited
at most once per ``update_interval_s``), and other changes edit the parent
at most once per ``update_interval_s``. What an edit
shows is the task's newest view among replicas (:class:`~.shared.SharedParent`).
The thread is :class:`~.thread.ThreadPoster`'s, failures are
:class:`~.failures.Failures`' and the search after an ambiguous post is
:class:`~.recovery.ParentFinder`'s.

A task's coroutine ends when the task is finished (or its output stopped)
and nothing is owed to Slack, when the shared view is final and shown, or
after :data:`RETIRE_S` without an event with nothing owed (a replica that
holds only some of a task's spans). A later event starts it again: the
parent, the thread lines and the shared view are in the state store.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from spanvisor.chat.claims import Claims
from spanvisor.chat.pacing import Interrupt
from spanvisor.chat.retry import Failure
from spanvisor.events import Decision, TaskView
from spanvisor.sink import Clock
from spanvisor.statestores.api import StateStore, StoreUnavailable
from spanvisor.stats import PipelineStats

from . import codetab
from .blocks import Look, parent_payload
from .board import Boards
from .codechannels import CodeChannels
from .failures import Failures
from .record import SlackTaskRecord, merge_decisions, moved_to
from .recovery import METADATA_TYPE, ParentFinder
from .remind import Reminders
from .rename import Renames
from .sessions import AgentSessions, SessionStatus, session_status
from .settings import CodeChannelRule
from .shared import SharedParent
from .thread import FOLDED_KINDS, ThreadPoster
from .transport import Transport
from .turns import FIRST, PARENT

log = logging.getLogger("spanvisor.slack")
RETIRE_S = 300.0
# How long after a coding session's last event its code channel is archived
# (.codechannels): a CLI's last records may come after its end (it
# flushes its telemetry as it exits, after its end hook has run; a
# batch waits up to its exporter's interval, 5 s for Claude Code's and
# Gemini CLI's logs), and a line for an archived channel is refused. 2 s
# lost 2 lines of 40 sessions in bench_fleet's setup (e).
ARCHIVE_GRACE_S = 10.0


@dataclass
class Deliverer:
    transport: Transport
    store: StateStore
    stats: PipelineStats
    look: Look
    owner: str
    clock: Clock
    update_interval_s: float = 5.0
    reply_interval_s: float = 0.5
    lease_s: float = 120.0
    # How long to look for a parent after an ambiguous post before giving up.
    recover_s: float = 20.0
    namespace: str = "slack"
    # Least time between two edits of a task's work log (None: the smaller
    # of 1 s and ``update_interval_s``); Slack's edit budget paces it too.
    log_interval_s: float | None = None
    flushing: Callable[[], bool] = lambda: False
    deadline: Callable[[], float | None] = lambda: None
    # Open requests asked again, None: never.
    reminders: Reminders | None = None
    # Each task's thread is a Slack agent session whose status follows the task (.sessions).
    agent_sessions: bool = False
    # Posts waiting for a channel past which its progress lines fold into a board (.board); 0: never.
    board_backlog: int = 10
    # Which coding sessions' parents and threads go to a code channel of their
    # own (.codechannels): none when empty.
    code_channels: tuple[CodeChannelRule, ...] = ()

    def __post_init__(self) -> None:
        if self.log_interval_s is None:
            self.log_interval_s = min(1.0, self.update_interval_s)
        self.claims = Claims(
            self.store, self.owner, self.clock, self.stats, self.lease_s, self.deadline, channel="slack"
        )
        self.failures = Failures(self.transport, self.stats, self.deadline)
        self.thread = ThreadPoster(
            self.transport, self.claims, self.failures, self.stats, self.look, self.clock, self.namespace, self.deadline
        )
        self.finder = ParentFinder(self.transport, self.clock, self.recover_s, self.deadline)
        self.sessions = (
            AgentSessions(self.transport, self.claims, self.stats, self.deadline) if self.agent_sessions else None
        )
        self.code = (
            CodeChannels(
                self.transport,
                self.claims,
                self.stats,
                self.clock,
                self.namespace,
                self.deadline,
                self.look.prefix,
                self.code_channels,
            )
            if self.code_channels
            else None
        )
        self.boards = Boards(
            self.transport,
            self.claims,
            self.stats,
            self.look,
            self.clock,
            self.namespace,
            self.board_backlog,
            self.deadline,
            self.flushing,
            self.finder,
        )
        self.renames = Renames(
            self.claims, self.finder, self.boards, self.clock, self.namespace, sessions=self.sessions is not None
        )
        # Searches for an earlier parent that could not finish, by parent key: the backoff's attempt.
        self._unsure: dict[str, int] = {}
        self.shared = SharedParent(
            self.claims,
            self.transport,
            self.failures,
            self.look,
            self.clock,
            self.namespace,
            self.owner,
            self.update_interval_s,
            self.flushing,
            self.deadline,
            on_shown=self._shown if self.sessions is not None or self.code is not None else None,
        )

    def _shown(self, st: SlackTaskRecord, view: TaskView) -> None:
        """The parent now shows ``view``: the session status and the code
        channel's context bar follow it."""
        if self.sessions is not None:
            self.sessions.shown(st, view)
        if self.code is not None:
            self.code.shown(st, view)

    async def run(self, st: SlackTaskRecord) -> None:
        while True:
            st.busy = True
            try:
                progressed = await self._step(st)
            except asyncio.CancelledError:
                raise
            except StoreUnavailable:
                # Only the shutdown deadline ends the retries of a state-store call.
                self.failures.give_up(
                    st, "slack_undelivered", "shutdown deadline passed while the state store was away"
                )
                progressed = True
            except Exception:  # a bug here must not kill the loop or the sink
                log.exception("Slack delivery for task %s failed; its Slack messages stop", st.task_id)
                self.failures.give_up(st, "slack_internal_error", "see the traceback above")
                progressed = True
            finally:
                st.busy = False
            if progressed:
                continue
            if st.idle and not self._held(st) and (st.finished or st.dead or st.settled or self._retired(st)):
                return
            await self._wait(st)

    def _retire_at(self, st: SlackTaskRecord) -> float:
        if st.last_event is None:  # a record the sink did not make (tests, tools): from now
            st.last_event = self.clock.now()
        return st.last_event + RETIRE_S

    def _retired(self, st: SlackTaskRecord) -> bool:
        return self.clock.now() >= self._retire_at(st)

    def _held(self, st: SlackTaskRecord) -> bool:
        """A reminder still due keeps the worker up past its idle retirement
        (it sleeps until then, never spins)."""
        return self.reminders is not None and bool(st.remind_at) and not (st.finished or st.dead)

    def _edit_due(self, st: SlackTaskRecord) -> float:
        return max(st.last_update + self.update_interval_s, st.not_before)

    async def _wait(self, st: SlackTaskRecord) -> None:
        now, due = self.clock.now(), float("inf")
        if st.dirty:
            due = self._edit_due(st)
        elif st.idle and not self._held(st):
            due = self._retire_at(st)
        if st.replies or st.alerts:
            due = min(due, st.last_reply + self.reply_interval_s)
        if st.log is not None and st.log.dirty:
            due = min(due, st.log.last_edit + self._log_interval)
        if st.behind or (self.sessions is not None and st.session_due) or self._code_now(st):
            due = now
        if self.reminders is not None and st.ref is not None:
            due = min(due, self.reminders.due(st))
        if st.code is not None and st.code.tab_owed():
            due = min(due, st.code.tab_at + self._tab_interval)
        if st.code is not None and st.code.diff_owed(st.diff):
            due = min(due, st.code.diff_at + self._tab_interval)
        if self.code is not None and self.code.close_due(st) and (at := self._archive_at(st)) > now:
            due = min(due, at)  # once passed, _code_now says whether it is due
        if due <= now:
            return
        st.wake.clear()
        waiter = asyncio.ensure_future(st.wake.wait())
        sleeper = asyncio.ensure_future(self.clock.sleep(due - now)) if due != float("inf") else None
        try:
            await asyncio.wait({f for f in (waiter, sleeper) if f}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
            if sleeper:
                sleeper.cancel()

    async def _step(self, st: SlackTaskRecord) -> bool:
        """Do the next due thing; False when nothing is due yet."""
        if st.dead:
            return False
        if st.view.former_id is not None and not st.moved:
            # Renamed by its root: its parent and state move to its new key first (.rename).
            return await self.renames.move(st)
        folding = st.channel is not None and self.boards.on
        # Whether its channel is busy is looked at whenever it has lines to
        # post: a backlog of any kind posts the board; progress lines fold.
        busy = folding and bool(st.replies) and self.boards.folded(str(st.channel))
        if busy and any(x.kind in FOLDED_KINDS for x in st.replies):
            # A busy channel: progress goes to the parent and the board, not the thread.
            if await self.thread.fold_away(st):
                self.boards.fold(st)
                self.boards.note(st)
            return True
        if st.ref is None:
            if st.orphan:
                return False
            if self.code is not None and st.code is None and not st.borrowed:
                # Where its parent goes comes first: a code channel of its own, or its routed channel.
                return await self.code.open(st)
            return await self._ensure_parent(st)
        if self.code is not None and self.code.link_due(st):
            return await self.code.link(st)
        if folding and st.folded is not None and not st.finished and not self.boards.folded(str(st.channel)):
            return await self.thread.post_folded(st)
        now, hurry = self.clock.now(), self.flushing()
        if self.reminders is not None and self.reminders.due(st) <= now:
            st.replies.extend(self.reminders.take(st, now))
            return True
        replies_due = bool(st.replies or st.alerts) and (hurry or now >= st.last_reply + self.reply_interval_s)
        # A status change edits the parent first, unless Slack's edit budget
        # makes it wait: then a due reply (a tool call, a warning) goes first.
        # A task that waits for a person or failed shows it on its parent (the
        # buttons are there) before its thread says it in a channel it shares:
        # its replies wait there for the channel's turn too. In a code channel
        # of its own the thread's line (the question, the failure) goes at once
        # and the buttons follow with the edit (bench_fleet's setup (e): the
        # question seen at p95 3.6 s, waiting for the workspace's edits).
        edit_waits = replies_due and not self.transport.edit_free()
        if st.urgent and not (edit_waits and (not st.needs_person or self._own_channel(st))):
            return await self._update_parent(st)
        if replies_due:
            if not st.replies:
                return await self.thread.post_alert(st)
            return await self.thread.post_replies(st, scarce=self.transport.edits_scarce())
        if self.sessions is not None and st.session_due:
            return await self.sessions.sync(st, lambda: self._session_shown(st), self._aside(st))
        if st.log is not None and st.log.dirty and (hurry or now >= st.log.last_edit + self._log_interval):
            return await self.thread.edit_log(st, st.log, self._aside(st))
        if st.behind:
            return await self.thread.edit_log(st, st.behind[0], self._aside(st))
        if (st.dirty or st.repair) and (hurry or st.repair or now >= self._edit_due(st)):
            return await self._update_parent(st)
        if self.code is not None and st.code is not None and st.code.bar_due():
            return await self.code.describe(st, self._aside(st))
        if self.code is not None and st.code is not None and st.code.title_due():
            return await self.code.retitle(st, self._aside(st))
        if (
            self.code is not None
            and st.code is not None
            and st.code.tab_due(now, self._tab_interval, hurry or st.finished)
        ):
            return await self.code.show_tab(st, self._aside(st))
        if (
            self.code is not None
            and st.code is not None
            and st.code.diff_owed(st.diff)
            and (hurry or st.finished or now >= st.code.diff_at + self._tab_interval)
        ):
            return await self.code.show_diff(st, self._aside(st))
        if self.code is not None and self._code_now(st):
            return await self.code.close(st)
        return False

    @staticmethod
    def _own_channel(st: SlackTaskRecord) -> bool:
        """Its parent and thread are in a code channel of its own: its posts wait for no other task."""
        return st.code is not None and st.code.channel is not None and not st.code.closed

    def _code_now(self, st: SlackTaskRecord) -> bool:
        """Its code channel has a call due now: the link line or the context
        bar, or its archiving once everything else owed is shown (the final
        parent, the summary reply, the work log)."""
        if self.code is None or not st.code_due:
            return False
        c = st.code
        assert c is not None
        if self.code.link_due(st) or c.bar_due() or c.title_due():
            return True
        if (c.tab_owed() or c.diff_owed(st.diff)) and st.finished:
            return True  # the final tabs go before the channel is archived
        owed = st.dirty or st.repair or st.replies or st.alerts or st.behind or st.session_due
        owed = owed or c.tab_owed() or c.diff_owed(st.diff)
        if not self.code.close_due(st) or owed or (st.log is not None and st.log.dirty):
            return False
        return self.deadline() is not None or self.flushing() or self.clock.now() >= self._archive_at(st)

    def _archive_at(self, st: SlackTaskRecord) -> float:
        """When its code channel may be archived: a while after its last event
        here, so a replica still posting its part of the thread is not refused
        by an archived channel (not waited for when shutting down or asked to
        flush: serve flushes only to stop, and a flush in the agent's process
        has no CLI's records still to come)."""
        if st.last_event is None:
            st.last_event = self.clock.now()
        return st.last_event + ARCHIVE_GRACE_S

    async def _session_shown(self, st: SlackTaskRecord) -> SessionStatus | None:
        """The session status the parent's shared view maps to now (None: none stored)."""
        rec = await self.shared.read(st.key)
        return session_status(rec.shown_view) if rec is not None else None

    @property
    def _tab_interval(self) -> float:
        # Never more often than the parent is edited; no pacing when the
        # parent shows every change at once (an update interval of 0).
        return max(self.update_interval_s, codetab.TAB_INTERVAL_S) if self.update_interval_s > 0 else 0.0

    @property
    def _log_interval(self) -> float:
        return self.update_interval_s if self.log_interval_s is None else self.log_interval_s

    def _interrupt(self, st: SlackTaskRecord) -> Interrupt:
        """An edit waiting for Slack's budget steps out when a reply of its task
        is due; not the edit that shows a task waiting for a person or failed,
        which :meth:`_step` sends before the replies in a shared channel:
        stepping out, it would be chosen again at once (while flushing, a busy
        loop of state-store reads until the budget refilled)."""

        def due() -> float:
            if not (st.replies or st.alerts):
                return float("inf")
            if st.urgent and st.needs_person and not (self.flushing() and self._own_channel(st)):
                return float("inf")
            return float("-inf") if self.flushing() else st.last_reply + self.reply_interval_s

        return Interrupt(st.wake, due)

    def _aside(self, st: SlackTaskRecord) -> Interrupt:
        """A call beside the parent (the work log, a tab, the diff, the context
        bar, the channel's title, the session status) waiting for its
        method's budget steps out when a reply is due, as an edit does, and
        also when the task's status changes: an approval asked or answered,
        a failure or the final state goes to the parent first, never behind
        such a call (in a code channel per session, a tab's turn at Tier 3 is
        seconds away; a change with no reply to post first, such as the
        agent coming to wait on something, waited it out). It keeps its
        place in its method's queue."""
        reply = self._interrupt(st)

        def due() -> float:
            if st.urgent:
                return float("-inf")
            return reply.due()

        return Interrupt(st.wake, due)

    def _ns(self, what: str) -> str:
        return f"{self.namespace}.{what}"

    # --- parent ----------------------------------------------------------

    def _parent_args(self, st: SlackTaskRecord) -> dict[str, Any]:
        st_version = st.version
        payload = parent_payload(st.shown_view, self.look, time.time_ns(), st.folded)
        payload["_version"] = st_version
        return payload

    async def _ensure_parent(self, st: SlackTaskRecord) -> bool:
        ns = self._ns("parent")
        claim = await self.claims.claim(ns, st.key)
        if claim.value is not None:
            self._adopt(st, claim.value)
            return True
        if not claim.won:  # another replica is posting it right now
            await self.clock.sleep(1.0)
            return True
        if st.borrowed:
            # Only a decision on a task nobody posted a parent for: never a
            # parent made of a bare view. The decision stays in the audit.
            await self.claims.release(ns, st.key)
            self._orphan(st)
            return True
        if st.channel is None:
            await self.claims.release(ns, st.key)
            self.failures.give_up(st, "slack_no_channel", "set SPANVISOR_SLACK_CHANNEL or a routing rule")
            return True
        # The conversation ID when it is known (configured as one, or learnt
        # from an earlier post's answer): a parent is then looked for, edited
        # and stored by the ID Slack's other methods need.
        channel = self.transport.channels.known(st.channel) or st.channel
        handled, earlier = await self._earlier_post(st, channel)
        if handled:
            return True
        started = time.time()
        # Said before the call: a process killed between Slack's answer and
        # the put below leaves this, and whoever takes the claim next (this
        # process restarted, or a replica) looks for that post first. From
        # the earliest attempt on: another host's clock may run ahead of ours.
        since = started if earlier is None else min(started, earlier)
        await self.claims.put_if_newer(
            self._ns("posting"), st.key, {"channel": channel, "since": since}, int(started * 1e6)
        )
        built: dict[str, int] = {}
        posted_view: list[tuple[TaskView, bool, tuple[Decision, ...]]] = []

        def build() -> Mapping[str, Any]:
            p = self._parent_args(st)
            built["v"], built["status"] = p.pop("_version"), 0
            posted_view[:] = [(st.view, st.view_final, merge_decisions(st.noted.values()))]
            return {
                "channel": channel,
                **p,
                "unfurl_links": False,
                "unfurl_media": False,
                "metadata": {
                    "event_type": METADATA_TYPE,
                    "event_payload": {"task_id": st.task_id, "run_id": st.view.run_id},
                },
            }

        # The lease is renewed while the post waits (429 pause, channel
        # bucket, slow Slack) and checked right before the HTTP call.
        async with self.claims.lease(ns, [st.key]) as lease:
            # A task's first message goes ahead of other tasks' thread replies
            # in the channel's queue (.turns): none waits behind a backlog;
            # one whose task waits for a person or failed, ahead of the others.
            def rank() -> int:
                return FIRST if st.needs_person else PARENT

            out = await self.transport.send(
                "chat.postMessage",
                build,
                deadline=self.deadline,
                before_call=lease.confirm,
                rank=rank(),
                rank_of=rank,
            )
            if out.claim_lost:  # another replica took it over; the next pass reads its ref
                return True
            if out.ok and out.data:
                mine = (str(out.data["channel"]), str(out.data["ts"]))
                await self._posted(st, *mine, built["v"])
                if st.ref == mine and posted_view:
                    # Only our own post shows our view. A parent adopted
                    # instead (ours lost the claim and was deleted) shows
                    # its poster's: our view goes on it as any edit does.
                    await self.shared.posted(st, *posted_view[0])
                return True
            if out.decision and out.decision.kind == "ambiguous":
                found = await self.finder.find(st.key, channel, started)
                if found.channel_id is not None and found.ts is not None:
                    await self._posted(st, found.channel_id, found.ts, -1)
                    return True
                # Slack may hold the message but we cannot tell: never post a
                # second one. The claim is made final so replicas agree.
                final = {"channel": found.channel_id or channel, "ts": None}
                if await self.claims.settle(ns, st.key, final):
                    self.failures.give_up(
                        st,
                        "slack_ambiguous_post",
                        f"Slack answered an error after maybe posting, and the parent was not found: {found.why}",
                    )
                return True
        await self.claims.release(ns, st.key)
        self.failures.failed(st, out)
        return True

    async def _earlier_post(self, st: SlackTaskRecord, channel: str) -> tuple[bool, float | None]:
        """A parent an earlier holder of the claim may have posted without
        storing it (killed in between): found in the channel's history by
        its metadata, it is adopted instead of posted again. (True, _) when
        the parent is settled for now: adopted, or the search could not
        finish (then it is tried again after a backoff, never posted on a
        guess); (False, the earlier attempt's time or None) when it may be
        posted."""
        said = await self.claims.get(self._ns("posting"), st.key)
        if said is None:
            return False, None
        raw = said.get("since")
        since = float(raw) if isinstance(raw, int | float) and raw > 0 else None
        where = str(said.get("channel") or channel)
        found = await self.finder.find(st.key, where, 0.0 if since is None else since)
        if found.channel_id is not None and found.ts is not None:
            self._unsure.pop(st.key, None)
            await self._posted(st, found.channel_id, found.ts, -1)
            return True, since
        if found.unsure:
            await self._search_later(st, found.why)
            return True, since
        self._unsure.pop(st.key, None)
        return False, since

    async def _search_later(self, st: SlackTaskRecord, why: str) -> None:
        """Back off before the next search (the claim stays ours meanwhile,
        so no replica posts either); at the shutdown deadline the task's
        output stops, counted, rather than risk a second parent."""
        attempt = self._unsure[st.key] = self._unsure.get(st.key, 0) + 1
        verdict = self.claims.backoff.decide(Failure("conversations.history", "http_5xx", 500, None, attempt))
        wait = verdict.delay_s if verdict is not None else 1.0
        end = self.deadline()
        if end is not None and self.clock.now() + wait > end:
            self._unsure.pop(st.key, None)
            self.failures.give_up(
                st, "slack_undelivered", f"shutdown deadline passed while looking for an earlier parent ({why})"
            )
            return
        if attempt == 1:
            log.warning(
                "task %s: could not look for a parent an earlier process may have posted (%s); "
                "it is not posted again until the search answers",
                st.task_id,
                why,
            )
        await self.clock.sleep(wait)

    async def _posted(self, st: SlackTaskRecord, channel: str, ts: str, version: int) -> None:
        # Remembered before it is stored: while the store is away this worker
        # retries the put and edits this message, and never posts another.
        st.ref = (channel, ts)
        self.boards.note(st)  # its row links to it
        st.last_update = self.clock.now()
        if version >= 0:
            st.sent_version = version
            st.sent_status = st.view.status if version == st.version else st.sent_status
        ns = self._ns("parent")
        if await self.claims.settle(ns, st.key, {"channel": channel, "ts": ts}):
            return
        # Our lease lapsed (the store was away longer than it) and another
        # replica took the task over: its parent wins, ours goes.
        stored = await self.claims.get(ns, st.key)
        st.ref, st.sent_version, st.sent_status = None, -1, None
        if stored is None or stored.get("ts") != ts:
            await self.failures.delete_duplicate(channel, ts, "parent")
        if stored is not None:
            self._adopt(st, stored)

    def _orphan(self, st: SlackTaskRecord) -> None:
        st.orphan, st.settled, st.sent_version = True, True, st.version
        if st.replies:
            self.failures.count_drop(
                "slack_no_parent", len(st.replies), "a decision on a task that has no Slack message to show it on"
            )
            st.replies.clear()

    def _adopt(self, st: SlackTaskRecord, value: Mapping[str, Any]) -> None:
        if (to := moved_to(value)) is not None and to != st.key:
            # Its run was renamed (.rename): the same message, kept under the new key.
            st.key = to
            if value.get("channel") is None:
                return  # no parent under the former key: the new key's claim says where it is
        if not value.get("ts"):
            self.failures.give_up(st, "slack_ambiguous_post", "an earlier post of this task's parent ended ambiguously")
            return
        st.ref = (str(value["channel"]), str(value["ts"]))
        self.boards.note(st)
        # Whether our view goes on the parent is the shared view's decision
        # (.shared): a replica holding only part of the task never shows it
        # over a newer or final one.
        st.sent_status = None

    async def _update_parent(self, st: SlackTaskRecord) -> bool:
        return await self.shared.update(st, self._interrupt(st))
