"""SlackSink: one live message per task and a thread that tells its story.

``export`` never waits on Slack: it folds events into per-task state and
wakes that task's background worker (see :mod:`.worker`), then returns.
With replicas, what the parent shows is the task's newest view among them
(:mod:`.shared`); a replica that holds only some of a task's spans posts
its thread lines and never shows its partial view over a newer one.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any, ClassVar

from spanvisor.chat.routes import home_channel, status_channels
from spanvisor.config import Config, Setting
from spanvisor.display.thread import TOOL_FAILED, ThreadLine, ThreadPolicy
from spanvisor.events import DiffUpdated, Event, HumanIntervention, TaskFinished
from spanvisor.sink import AdminRoute, BaseSink, SinkContext, SinkResult

from .record import MAX_PENDING_REPLIES, Diff, SlackTaskRecord, former_key, is_final, parent_key
from .settings import SETTINGS
from .settings import enabled as settings_enabled
from .worklog import GATHERED

log = logging.getLogger("spanvisor.slack")
MAX_OPEN_TASKS = 10_000
DONE_MEMORY = 10_000


class SlackSink(BaseSink):
    name = "slack"
    settings: ClassVar[Sequence[Setting]] = SETTINGS

    def __init__(self, clock: Any = None, client: Any = None) -> None:
        """``clock`` and ``client`` are for tests and benchmarks: a manual
        clock, or an API client other than slack_sdk's."""
        super().__init__()
        self._clock_arg, self._client_arg = clock, client
        self._tasks: dict[str, SlackTaskRecord] = {}
        self._done: OrderedDict[str, None] = OrderedDict()
        self._flushing = 0
        self._deadline: float | None = None
        self._closed = False
        self.interactivity: Any = None  # .interactivity.Interactivity when configured
        self.break_glass: Any = None  # .breakglass.BreakGlassPoster when a channel is set
        self.reminders: Any = None  # .remind.Reminders once started

    @classmethod
    def enabled(cls, config: Config) -> bool:
        return settings_enabled(config)

    def imports(self, config: Config) -> Sequence[str]:
        """What start and the deliverer import (spanvisor.sink.BaseSink.imports):
        slack_sdk only when it posts, its interactivity only when configured."""
        names = ["spanvisor_slack.blocks", "spanvisor_slack.plan", "spanvisor_slack.retry", "spanvisor_slack.pacing"]
        names += ["spanvisor_slack.board"]
        names += ["spanvisor_slack.remind"]
        names += ["spanvisor_slack.transport", "spanvisor_slack.worker", "spanvisor_slack.breakglass"]
        dry = bool(config.get("slack_dry_run"))
        if not dry and self._client_arg is None and config.get("slack_token"):
            names += ["aiohttp", "slack_sdk.web.async_client", "slack_sdk.errors"]
        if not dry and (config.get("slack_app_token") or config.get("slack_signing_secret")):
            names += ["spanvisor_slack.interactivity", "aiohttp", "slack_sdk.web.async_client", "slack_sdk.errors"]
            names += ["slack_sdk.webhook.async_client", "slack_sdk.signature"]
            if config.get("slack_app_token"):
                names += ["slack_sdk.socket_mode.aiohttp", "slack_sdk.socket_mode.response"]
        return names

    async def start(self, ctx: SinkContext) -> None:
        from spanvisor.sink import MonotonicClock

        from .blocks import Look
        from .pacing import limits_with
        from .plan import PlanFallback, PlanSwitch
        from .remind import DEFAULT_REMIND_S, Reminders
        from .retry import default_strategies
        from .transport import DryRunClient, SlackClient, Transport
        from .worker import Deliverer

        await super().start(ctx)
        c = ctx.config
        self.config = c
        dry = bool(c.get("slack_dry_run"))
        clock = self._clock_arg or MonotonicClock()
        client = self._client_arg
        if client is None:
            token = c.get("slack_token")
            client = (
                DryRunClient()
                if dry or not token
                else SlackClient(token, c.get("slack_base_url"), c.get("slack_timeout_s", 10.0))
            )
        self.client = client
        plan = PlanSwitch(c.get("slack_plan", "auto"))
        self.transport = Transport(
            client,
            clock,
            c.get("slack_channel_interval_s", 1.0),
            on_call=lambda m: ctx.stats.inc("slack_calls_total", method=m),
            channel_burst=max(1, c.get("slack_channel_burst", 3)),
            strategies=(PlanFallback(plan), *default_strategies()),
            limits=limits_with(tuple(c.get("slack_rate_limits", ()))),
        )
        self.policy = ThreadPolicy(
            milestones=tuple(c.get("slack_milestones", (25.0, 50.0, 75.0, 100.0))),
            broadcast_errors=bool(c.get("slack_broadcast_errors")),
            broadcast_critical=bool(c.get("slack_broadcast_critical")),
        )
        self.tool_lines = str(c.get("slack_tool_lines", "all"))
        self.routes = tuple(c.get("slack_routes", ()))
        self.default_channel = c.get("slack_channel") or ("#dry-run" if dry else None)
        self.reminders = Reminders(
            float(c.get("waiting_remind_s", DEFAULT_REMIND_S)),
            tuple(c.get("slack_approvers", ())),
            dict(c.get("slack_channel_approvers", {})),
        )
        self.deliverer = Deliverer(
            transport=self.transport,
            store=ctx.state_store,
            stats=ctx.stats,
            look=Look(
                c.get("slack_prefix"),
                c.get("slack_dashboard_url"),
                c.get("slack_trace_url"),
                tuple(c.get("context_thresholds", (0.7, 0.85))),
                plan,
            ),
            owner=ctx.replica_id or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}",
            clock=clock,
            update_interval_s=c.get("slack_update_interval_s", 5.0),
            reply_interval_s=c.get("slack_reply_interval_s", 0.5),
            log_interval_s=c.get("slack_log_interval_s"),
            lease_s=c.get("slack_lease_s", 120.0),
            recover_s=2 * c.get("slack_timeout_s", 10.0),
            namespace="slack.dryrun" if dry else "slack",
            flushing=lambda: self._flushing > 0,
            deadline=lambda: self._deadline,
            reminders=self.reminders,
            agent_sessions=bool(c.get("slack_agent_sessions")) and not dry,
            board_backlog=int(c.get("slack_board_backlog", 10)),
            code_channels=() if dry else tuple(c.get("slack_code_channels") or ()),
        )
        ctx.stats.gauge("slack_open_tasks", lambda: float(len(self._tasks)))
        ctx.stats.gauge("slack_folded_channels", lambda: float(self.deliverer.boards.folded_channels()))
        if c.get("slack_break_glass_channel"):
            from .breakglass import BreakGlassPoster

            self.break_glass = BreakGlassPoster(
                ctx, self.transport, c.get("slack_break_glass_channel"), self.deliverer.owner
            )
        if not dry and (c.get("slack_app_token") or c.get("slack_signing_secret")):
            from .interactivity import Interactivity

            self.interactivity = Interactivity(ctx, self.deliverer.owner, namespace="slack")
            await self.interactivity.start()

    def admin_routes(self) -> Sequence[AdminRoute]:
        """``/slack/interactions`` and ``/slack/commands`` when a signing secret is set."""
        return self.interactivity.routes() if self.interactivity is not None else ()

    async def export(self, events: Sequence[Event]) -> SinkResult:
        for ev in events:
            try:
                self._accept(ev)
            except Exception:  # one bad event must not lose the batch
                log.exception("Slack sink could not take event %s", getattr(ev, "event_id", "?"))
        return SinkResult.SUCCESS

    def _accept(self, ev: Event) -> None:
        if isinstance(ev, HumanIntervention) and self.break_glass is not None and not self._closed:
            self.break_glass.offer(ev)
        if self._closed or parent_key(ev.task) in self._done or former_key(ev.task) in self._done:
            return
        if isinstance(ev, HumanIntervention) and not ev.known:
            self._accept_foreign(ev)
            return
        st = self._record_for(ev)
        if st is None:
            return
        if not st.first_time(ev.event_id):
            return
        if st.dead:
            return
        st.last_event = self.transport.clock.now()
        wake = not st.dirty or ev.task.status != st.view.status
        needed = st.needs_person
        # The newest view by the tracker's sequence, never by time (see SlackTaskRecord.offer);
        # a late span's correction of a finished task is final too.
        st.offer(ev.task, final=is_final(ev))
        self._track_requests(st)
        wake = self._queue_lines(st, self.policy.lines(ev)) or wake
        if st.needs_person and not needed and st.ref is None and st.channel is not None:
            # Its parent, still waiting for the channel's turn, goes ahead of other tasks' parents.
            self.transport.turns.rerank(st.channel)
        self.deliverer.boards.note(st)
        for channel in status_channels(st.view.status, self.routes):
            key = f"{st.view.status}|{channel}"
            if key not in st.alerted and channel != st.channel:
                st.alerted.add(key)
                st.alerts.append(key)
                wake = True
        if isinstance(ev, DiffUpdated) and self._keeps_diff(st) and (st.diff is None or ev.task.seq > st.diff.seq):
            st.diff = Diff(ev.task.seq, ev.digest, ev.diff, ev.files, ev.clipped)
            wake = True
        if isinstance(ev, TaskFinished):
            st.finished = wake = True
        if wake:
            st.wake.set()
        self._ensure_worker(st)

    def _keeps_diff(self, st: SlackTaskRecord) -> bool:
        """Whether the task's diff is kept for a code channel's tab: code
        channels on, and the task's own channel made or not yet decided."""
        return self.deliverer.code is not None and (st.code is None or st.code.channel is not None)

    def _track_requests(self, st: SlackTaskRecord) -> None:
        """When the task's open requests are due a reminder (.remind)."""
        if self.reminders is not None:
            self.reminders.track(st, self.transport.clock.now())

    def _record_for(self, ev: Event) -> SlackTaskRecord | None:
        """The task's record, made on its first event; None past the bound (counted)."""
        key = parent_key(ev.task)
        st = self._tasks.get(key)
        if st is None and (old := former_key(ev.task)) is not None and (st := self._tasks.get(old)) is not None:
            # Renamed by its root: the same record (its worker moves what the
            # store keeps, .rename); a replayed event under the former id finds it too.
            self._tasks[key] = st
        if st is None:
            if len(self._tasks) >= MAX_OPEN_TASKS:
                assert self.ctx is not None
                self.ctx.stats.drop(
                    "slack_too_many_tasks", sink="slack", detail=f"more than {MAX_OPEN_TASKS} open tasks"
                )
                return None
            st = self._tasks[key] = SlackTaskRecord(ev.task, home_channel(ev.task, self.routes, self.default_channel))
        return st

    def _queue_lines(self, st: SlackTaskRecord, lines: list[ThreadLine]) -> bool:
        """Queue thread lines within the per-task bound (the rest counted); True if any was queued."""
        queued = False
        for line in lines:
            if line.kind == "tool" and (
                self.tool_lines == "none" or (self.tool_lines == "failed" and line.summary != TOOL_FAILED)
            ):
                continue
            if len(st.replies) >= MAX_PENDING_REPLIES:
                assert self.ctx is not None
                self.ctx.stats.drop(
                    "slack_thread_backlog",
                    sink="slack",
                    detail=f"more than {MAX_PENDING_REPLIES} replies waiting for one task",
                )
                continue
            if line.kind in GATHERED:
                st.last_call = line.detail or line.summary  # the board's last step of the task
            st.replies.append(line)
            queued = True
        return queued

    def _ensure_worker(self, st: SlackTaskRecord) -> None:
        if st.worker is None:
            st.worker = asyncio.get_running_loop().create_task(self._run(st), name=f"slack:{st.task_id[:16]}")

    def _accept_foreign(self, ev: HumanIntervention) -> None:
        """An intervention on a task this process does not track (finished and
        forgotten, or another replica's): its ``task`` is a bare or old view,
        never offered. An applied decision is noted on the record (the parent
        shows it, see SlackTaskRecord.note_decision) and its thread lines go
        to the thread. A record made for it is *borrowed*: the worker adopts
        the task's parent from the state store and never posts one from a
        bare view (no parent anywhere: the lines are dropped, counted)."""
        if ev.code == "unknown_task":
            return  # refused: no such task, so no message to show it on (the audit keeps it)
        st = self._record_for(ev)
        if st is None:
            return
        if not st.first_time(ev.event_id) or st.dead:
            return
        if not st.offered:
            st.borrowed = True
        st.last_event = self.transport.clock.now()
        if ev.outcome == "applied":
            st.note_decision(ev.decision)
            self._track_requests(st)
        self._queue_lines(st, self.policy.lines(ev))
        st.wake.set()
        self._ensure_worker(st)

    async def _run(self, st: SlackTaskRecord) -> None:
        try:
            await self.deliverer.run(st)
        finally:
            # Under every key it was found by: its own, and its run's former one (.rename).
            keys = {st.key, parent_key(st.view), former_key(st.view)}
            for key in keys:
                if key is not None and self._tasks.get(key) is st:
                    del self._tasks[key]
            # A task whose output stopped (a permanent error, a bug) stays
            # done: a fresh state for its next event would post a second parent.
            # Other tasks start again on their next event (a late span), and
            # adopt their parent from the state store.
            if st.dead:
                for key in keys:
                    if key is not None:
                        self._done[key] = None
                while len(self._done) > DONE_MEMORY:
                    self._done.popitem(last=False)

    def pending(self) -> int:
        posts = self.break_glass.pending if self.break_glass is not None else 0
        boards = self.deliverer.boards.pending() if hasattr(self, "deliverer") else 0
        return posts + boards + sum(0 if st.idle else 1 for st in self._tasks.values())

    async def force_flush(self, timeout_s: float) -> bool:
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout_s
        self._flushing += 1
        try:
            for st in self._tasks.values():
                st.wake.set()
            if hasattr(self, "deliverer"):
                self.deliverer.boards.wake_all()
            while self.pending():
                if loop.time() >= end:
                    return False
                await asyncio.sleep(0.01)
            return True
        finally:
            self._flushing -= 1

    async def shutdown(self, timeout_s: float) -> None:
        if self.interactivity is not None:
            await self.interactivity.close(timeout_s * 0.3)
        if not hasattr(self, "transport"):
            return
        self._deadline = self.transport.clock.now() + timeout_s * 0.9
        try:
            await self.force_flush(timeout_s * 0.9)
            if self.break_glass is not None:
                await self.break_glass.drain(timeout_s * 0.3)
        finally:
            self._closed = True
            workers = [st.worker for st in self._tasks.values() if st.worker]
            left = sum(len(st.replies) + (1 if st.dirty else 0) for st in self._tasks.values() if not st.dead)
            for w in workers:
                w.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
            if hasattr(self, "deliverer"):
                await self.deliverer.boards.close()
            if left and self.ctx is not None:
                away = getattr(self.client, "unreachable_since", None) is not None
                self.ctx.stats.drop(
                    "slack_undelivered",
                    left,
                    sink="slack",
                    detail="shutdown deadline passed with Slack updates pending"
                    + (f"; Slack did not answer at {getattr(self.client, 'base_url', '?')}" if away else ""),
                )
            await self.client.close()

    @classmethod
    async def check(cls, config: Config) -> list[tuple[str, bool, str]]:
        from .check import run_check

        return await run_check(config)
