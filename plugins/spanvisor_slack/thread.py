"""Thread replies and status alerts, and deleting a duplicate of ours.

Mixed into :class:`~.worker.Deliverer`; every reply line and alert is claimed
(``slack.reply/<task>/<key>``, ``slack.alert/<task>/<status|channel>``) with
the same lease renewal and conditional store as the parent.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from spanvisor.presentation import ThreadLine
from spanvisor.stats import PipelineStats

from .blocks import Look, alert_payload, reply_payload
from .claims import Claims
from .state import TaskState
from .transport import Clock, Outcome, Transport

log = logging.getLogger("spanvisor.slack")
MERGEABLE = frozenset({"step", "artifact"})
MERGE_MAX = 10


class ThreadPoster:
    transport: Transport
    stats: PipelineStats
    look: Look
    clock: Clock
    claims: Claims
    deadline: Callable[[], float | None]

    def _ns(self, what: str) -> str:
        raise NotImplementedError

    def _failed(self, st: TaskState, out: Outcome, lost: int = 0, reply: bool = False) -> None:
        raise NotImplementedError

    def _count_drop(self, reason: str, n: int, detail: str) -> None:
        raise NotImplementedError

    async def _delete_duplicate(self, channel: str, ts: str, kind: str) -> None:
        out = await self.transport.send("chat.delete", lambda: {"channel": channel, "ts": ts}, deadline=self.deadline)
        self.stats.inc("slack_duplicates_total", kind=kind, deleted="true" if out.ok else "false")
        if out.ok:
            log.info("deleted a duplicate %s %s/%s: another replica posted it first", kind, channel, ts)
        else:
            error = out.failure.error if out.failure else "unknown"
            log.warning("a duplicate %s %s/%s stays in Slack: chat.delete answered %s", kind, channel, ts, error)

    async def _post_replies(self, st: TaskState) -> bool:
        assert st.ref is not None
        group = [st.replies.popleft()]
        while (
            group[0].kind in MERGEABLE and st.replies and st.replies[0].kind == group[0].kind and len(group) < MERGE_MAX
        ):
            group.append(st.replies.popleft())
        ns = self._ns("reply")
        todo: list[ThreadLine] = []
        for line in group:
            claim = await self.claims.claim(ns, f"{st.task_id}/{line.reply_key}")
            if claim.won and claim.value is None:
                todo.append(line)
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
                    **reply_payload(todo, self.look),
                    "reply_broadcast": any(x.broadcast for x in todo),
                    "unfurl_links": False,
                    "unfurl_media": False,
                },
                deadline=self.deadline,
                before_call=lease.confirm,
            )
            if out.claim_lost:
                # Claimed again on the next pass: the lines another replica
                # now holds are skipped there, ours are posted.
                st.replies.extendleft(reversed(todo))
                return True
            st.last_reply = self.clock.now()
            value: dict[str, Any] = {"ts": out.data.get("ts")} if out.ok and out.data else {"ts": None}
            if out.ok or (out.decision and out.decision.kind == "ambiguous"):
                # Posted, or maybe posted: either way never post it again.
                won = [await self.claims.settle(ns, key, value) for key in keys]
                if not any(won) and out.ok and value["ts"]:
                    await self._delete_duplicate(channel, str(value["ts"]), "reply")
                elif not all(won):
                    self.stats.inc("slack_duplicates_total", kind="reply", deleted="false")
                if not out.ok:
                    self._count_drop(
                        "slack_ambiguous_reply",
                        len(todo),
                        "Slack answered an error after maybe posting a reply; it is not resent",
                    )
                return True
        for key in keys:
            await self.claims.release(ns, key)
        self._failed(st, out, lost=len(todo), reply=True)
        return True

    async def _post_alert(self, st: TaskState) -> bool:
        target = st.alerts.popleft()
        ns, key = self._ns("alert"), f"{st.task_id}/{target}"
        claim = await self.claims.claim(ns, key)
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
            )
            if out.claim_lost:  # another replica posts this alert
                return True
            st.last_reply = self.clock.now()
            if out.ok:
                posted = (out.data or {}).get("ts")
                if not await self.claims.settle(ns, key, {"ts": posted}) and posted:
                    await self._delete_duplicate(str((out.data or {}).get("channel") or channel), str(posted), "alert")
                return True
        await self.claims.release(ns, key)
        self._failed(st, out, lost=1, reply=True)
        return True
