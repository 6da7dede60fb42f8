"""Thread replies and status alerts of one task.

Used by :class:`~.worker.Deliverer`, which hands it what it needs; every
reply line and alert is claimed (``slack.reply/<task>/<key>``,
``slack.alert/<task>/<status|channel>``) with the same lease renewal and
conditional store as the parent.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from spanvisor.chat.claims import Claims
from spanvisor.chat.pacing import LOG, Interrupt
from spanvisor.display.thread import ThreadLine
from spanvisor.sink import Clock
from spanvisor.statestores.api import Claim
from spanvisor.stats import PipelineStats

from .blocks import Look, alert_payload, reply_payload
from .failures import Failures
from .record import SlackTaskRecord
from .transport import Transport
from .turns import PARENT, PRIORITY, REPLY
from .worklog import FOLD_MAX, GATHERED, WorkLog

# Lines that say an approval, a decision, an error or a final state: they go
# ahead of progress in the channel's queue (.turns) and never fold (.board).
PRIORITY_KINDS = frozenset({"approval", "unanswered", "error", "summary", "intervention", "denied"})
# Progress lines a busy channel folds into the parent and its board (.board).
FOLDED_KINDS = frozenset({"tool", "step", "milestone", "artifact", "forecast"})

MERGEABLE = frozenset({"step", "tool", "artifact"})
MERGE_MAX = 10
# How long to wait for a line another replica is posting before looking again.
IN_FLIGHT_WAIT_S = 0.25


@dataclass
class ThreadPoster:
    transport: Transport
    claims: Claims
    failures: Failures
    stats: PipelineStats
    look: Look
    clock: Clock
    namespace: str
    deadline: Callable[[], float | None] = lambda: None

    def _ns(self, what: str) -> str:
        return f"{self.namespace}.{what}"

    async def _claim(self, ns: str, st: SlackTaskRecord, what: str) -> Claim:
        """Claim a line or alert of the task (``<task id>/<what>``). A run
        renamed by its root (.rename) says it under its new id; one said
        under its former id (before the rename, or by a process that saw only
        that) counts as said: it is settled under the new id too, never said again."""
        key = f"{st.task_id}/{what}"
        claim = await self.claims.claim(ns, key)
        former = st.view.former_id
        if claim.won and claim.value is None and former is not None:
            said = await self.claims.get(ns, f"{former}/{what}")
            if said is not None:
                await self.claims.settle(ns, key, said)
                return Claim(won=False, value=said)
        return claim

    def _same_run(self, first: ThreadLine, nxt: ThreadLine) -> bool:
        """``nxt`` goes in the same reply as ``first``: a run of one kind, or
        tool and step lines together (a work log's first post)."""
        if first.kind in GATHERED:
            return nxt.kind in GATHERED
        return first.kind in MERGEABLE and nxt.kind == first.kind

    async def post_replies(self, st: SlackTaskRecord, scarce: bool = False) -> bool:
        """The next run of replies. ``scarce``: edits cannot keep up
        (:meth:`~.transport.Transport.edits_scarce`), so tool and step lines
        are not folded into the open work log, whose edit would wait, but
        posted now as a new log of all those waiting (its count and newest
        lines); the older log is edited later if it owes lines (``behind``)."""
        assert st.ref is not None
        gathered = st.replies[0].kind in GATHERED
        if gathered and st.log is not None and st.log.open and not scarce:
            return await self._fold(st, st.log)
        most = FOLD_MAX if gathered and scarce else MERGE_MAX
        group = [st.replies.popleft()]
        while st.replies and len(group) < most and self._same_run(group[0], st.replies[0]):
            group.append(st.replies.popleft())
        ns = self._ns("reply")
        todo: list[ThreadLine] = []
        for i, line in enumerate(group):
            claim = await self._claim(ns, st, line.reply_key)
            if claim.won and claim.value is None:
                todo.append(line)
            elif not claim.won and claim.value is None:
                # Another replica is posting this line right now: a later
                # line must not pass it in the thread, so it and what follows
                # wait for the next pass.
                st.replies.extendleft(reversed(group[i:]))
                if not todo:
                    await self.clock.sleep(IN_FLIGHT_WAIT_S)
                    return True
                break
        if not todo:
            return True
        keys = [f"{st.task_id}/{line.reply_key}" for line in todo]
        channel, ts = st.ref
        async with self.claims.lease(ns, keys) as lease:
            out = await self.transport.send(
                "chat.postMessage",
                lambda: {
                    "channel": channel,
                    "thread_ts": ts,
                    **reply_payload(WorkLog.posted("", todo, 0.0).view() if gathered and scarce else todo, self.look),
                    "reply_broadcast": any(x.broadcast for x in todo),
                    "unfurl_links": False,
                    "unfurl_media": False,
                },
                deadline=self.deadline,
                before_call=lease.confirm,
                rank=PRIORITY if any(x.kind in PRIORITY_KINDS for x in todo) else REPLY,
            )
            if out.claim_lost:
                # Claimed again on the next pass: the lines another replica
                # now holds are skipped there, ours are posted.
                st.replies.extendleft(reversed(todo))
                return True
            st.last_reply = self.clock.now()
            value: dict[str, Any] = {"ts": out.data.get("ts")} if out.ok and out.data else {"ts": None}
            self._logged(st, todo, value["ts"] if out.ok else None)
            if out.ok or (out.decision and out.decision.kind == "ambiguous"):
                # Posted, or maybe posted: either way never post it again.
                won = [await self.claims.settle(ns, key, value) for key in keys]
                if not any(won) and out.ok and value["ts"]:
                    await self.failures.delete_duplicate(channel, str(value["ts"]), "reply")
                elif not all(won):
                    self.stats.inc("slack_duplicates_total", kind="reply", deleted="false")
                if not out.ok:
                    self.failures.count_drop(
                        "slack_ambiguous_reply",
                        len(todo),
                        "Slack answered an error after maybe posting a reply; it is not resent",
                    )
                return True
        for key in keys:
            await self.claims.release(ns, key)
        self.failures.failed(st, out, lost=len(todo), reply=True)
        return True

    def _logged(self, st: SlackTaskRecord, posted: list[ThreadLine], ts: Any) -> None:
        """After a reply: a run of tool and step lines opens the task's work log."""
        if posted[0].kind in GATHERED and isinstance(ts, str) and ts:
            if st.log is not None and st.log.open and st.log.dirty:
                st.behind.append(st.log)  # lines folded into it still to show
            st.log = WorkLog.posted(ts, posted, self.clock.now())

    async def _fold(self, st: SlackTaskRecord, log: WorkLog) -> bool:
        """Tool and step lines into the open work log: claimed and settled as
        replies (never posted again, here or by a replica), shown by its next
        edit. No post, so the channel's next reply does not wait for them."""
        if log.lines - log.shown >= FOLD_MAX:
            # A backlog as long as one edit should show: edit now, fold after.
            return await self.edit_log(st)
        ns = self._ns("reply")
        while st.replies and st.replies[0].kind in GATHERED and log.lines - log.shown < FOLD_MAX:
            line = st.replies.popleft()
            key = f"{st.task_id}/{line.reply_key}"
            claim = await self._claim(ns, st, line.reply_key)
            if claim.won and claim.value is None:
                if await self.claims.settle(ns, key, {"ts": log.ts, "logged": True}):
                    log.add(line)
            elif not claim.won and claim.value is None:
                # Another replica is posting it: it and what follows wait.
                st.replies.appendleft(line)
                await self.clock.sleep(IN_FLIGHT_WAIT_S)
                break
        return True

    async def fold_away(self, st: SlackTaskRecord) -> int:
        """A busy channel (.board): the task's progress lines leave its reply
        queue for its parent and the channel's board. Each is claimed and
        settled as a reply (``folded``), so no replica or restart posts it
        later; one another replica is posting right now is left to it. The
        other lines keep their order. How many were folded."""
        ns = self._ns("reply")
        out = [line for line in st.replies if line.kind in FOLDED_KINDS]
        kept = [line for line in st.replies if line.kind not in FOLDED_KINDS]
        st.replies.clear()
        st.replies.extend(kept)
        n = 0
        for line in out:
            key = f"{st.task_id}/{line.reply_key}"
            claim = await self._claim(ns, st, line.reply_key)
            if claim.won and claim.value is None and await self.claims.settle(ns, key, {"ts": None, "folded": True}):
                if st.folded is None:
                    st.folded = WorkLog("", line.event_id, title="Folded while the channel was busy")
                st.folded.add(line)
                n += 1
        if n:
            self.stats.inc("slack_folded_lines_total", n)
        return n

    async def post_folded(self, st: SlackTaskRecord) -> bool:
        """The channel caught up: one reply says what folded while it was busy
        (counts and the newest lines), and it becomes the task's work log, so
        its next calls are folded into it as usual."""
        folded, st.folded = st.folded, None
        assert st.ref is not None and folded is not None
        channel, ts = st.ref
        out = await self.transport.send(
            "chat.postMessage",
            lambda: {
                "channel": channel,
                "thread_ts": ts,
                **reply_payload(folded.view(headed=True), self.look),
                "unfurl_links": False,
                "unfurl_media": False,
            },
            deadline=self.deadline,
            rank=REPLY,
        )
        st.last_reply = self.clock.now()
        if out.ok and out.data and out.data.get("ts"):
            if st.log is not None and st.log.open and st.log.dirty:
                st.behind.append(st.log)
            folded.ts, folded.shown, folded.last_edit = str(out.data["ts"]), folded.lines, self.clock.now()
            folded.title = "Work log"
            st.log = folded
        elif not out.ok:
            # Nothing is lost: the lines are in the audit trail, and the parent said their count.
            why = out.failure.error if out.failure else "unknown"
            self.failures.count_drop("slack_folded_summary", 1, f"the reply of what a busy channel folded: {why}")
        return True

    async def edit_log(
        self, st: SlackTaskRecord, log: WorkLog | None = None, interrupt: Interrupt | None = None
    ) -> bool:
        """Show a work log's folded lines (the open one unless ``log``): one
        ``chat.update`` of its reply, built when its turn comes, so what was
        folded while it waited goes in the same call."""
        log = log or st.log
        assert log is not None and st.ref is not None
        channel = st.ref[0]
        count = [log.lines]

        def build() -> dict[str, Any]:
            count[0] = log.lines
            return {"channel": channel, "ts": log.ts, **reply_payload(log.view(), self.look)}

        out = await self.transport.send(
            "chat.update", build, deadline=self.deadline, rank=LOG, key=f"{channel}/{log.ts}", interrupt=interrupt
        )
        if out.deferred:
            return True  # a reply goes first; the edit keeps its place
        log.last_edit = self.clock.now()
        if out.ok:
            log.shown = count[0]
            self._caught_up(st, log)
            return True
        if out.decision is not None and out.decision.kind in ("retry", "ambiguous"):
            return True  # the next pass edits it again
        # A permanent error (the reply deleted, say): the log is closed and
        # the next tool call starts another; what it held stays counted.
        why = out.failure.error if out.failure else "?"
        self.failures.count_drop("slack_worklog_edit", log.lines - log.shown, f"editing a work log failed: {why}")
        log.shown, log.open = log.lines, False
        self._caught_up(st, log)
        return True

    @staticmethod
    def _caught_up(st: SlackTaskRecord, log: WorkLog) -> None:
        if log is not st.log and not log.dirty and log in st.behind:
            st.behind.remove(log)

    async def post_alert(self, st: SlackTaskRecord) -> bool:
        target = st.alerts.popleft()
        ns, key = self._ns("alert"), f"{st.task_id}/{target}"
        claim = await self._claim(ns, st, target)
        if not claim.won or claim.value is not None or st.ref is None:
            return True
        channel = target.partition("|")[2]
        async with self.claims.lease(ns, [key]) as lease:
            link = await self.transport.send(
                "chat.getPermalink",
                lambda: {"channel": st.ref[0], "message_ts": st.ref[1]} if st.ref else {},
                deadline=self.deadline,
            )
            permalink = (
                str(link.data.get("permalink")) if link.ok and link.data and link.data.get("permalink") else None
            )
            out = await self.transport.send(
                "chat.postMessage",
                lambda: {
                    "channel": channel,
                    **alert_payload(st.view, permalink, self.look),
                    "unfurl_links": False,
                },
                deadline=self.deadline,
                before_call=lease.confirm,
                # Top level in its channel, like a parent: not behind thread replies.
                rank=PARENT,
            )
            if out.claim_lost:  # another replica posts this alert
                return True
            st.last_reply = self.clock.now()
            if out.ok:
                posted = (out.data or {}).get("ts")
                if not await self.claims.settle(ns, key, {"ts": posted}) and posted:
                    await self.failures.delete_duplicate(
                        str((out.data or {}).get("channel") or channel), str(posted), "alert"
                    )
                return True
        await self.claims.release(ns, key)
        self.failures.failed(st, out, lost=1, reply=True)
        return True
