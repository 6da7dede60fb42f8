"""What the Slack sink does when Slack says no, or when it posted twice.

Shared by the parent's worker (:mod:`.worker`) and the thread's poster
(:mod:`.thread`): a failed call either stops the task's Slack output
(``give_up``) or, for a reply, drops only that reply; every loss is counted
as ``spanvisor_dropped_total{reason="slack_<code>"}`` and logged once per
reason by the pipeline's stats. A message of ours that lost a race to
another replica is deleted again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from spanvisor.stats import PipelineStats

from .record import SlackTaskRecord
from .retry import fix_for
from .transport import CallOutcome, Transport

log = logging.getLogger("spanvisor.slack")
# Errors that end the task's output even when only a reply failed: every
# later call to that channel or with that token would fail the same way.
TASK_ENDING = frozenset(
    {
        "channel_not_found",
        "not_in_channel",
        "is_archived",
        "invalid_auth",
        "token_revoked",
        "account_inactive",
        "message_not_found",
    }
)


@dataclass
class Failures:
    transport: Transport
    stats: PipelineStats
    deadline: Callable[[], float | None] = lambda: None

    def failed(self, rec: SlackTaskRecord, out: CallOutcome, lost: int = 0, reply: bool = False) -> None:
        f = out.failure
        error = f.error if f else "unknown"
        self.stats.inc("slack_errors_total", error=error, method=f.method if f else "")
        if error == "deadline" or (out.decision and out.decision.kind in {"retry", "rate_limited"}):
            # Only a shutdown deadline ends retries: stop this task's output.
            client = self.transport.client
            away = getattr(client, "unreachable_since", None) is not None
            where = f"; Slack did not answer at {getattr(client, 'base_url', '?')}" if away else ""
            self.give_up(rec, "slack_undelivered", "shutdown deadline passed before Slack accepted it" + where, lost)
            return
        if reply and error not in TASK_ENDING:
            self.count_drop(f"slack_{error}", max(1, lost), f"Slack answered {error}: {fix_for(error)}")
            return
        self.give_up(rec, f"slack_{error}", f"Slack answered {error}: {fix_for(error)}", extra=lost)

    def give_up(self, rec: SlackTaskRecord, reason: str, detail: str, extra: int = 0) -> None:
        lost = extra + len(rec.replies) + len(rec.alerts) + (1 if rec.dirty or rec.ref is None else 0)
        rec.replies.clear()
        rec.alerts.clear()
        rec.dead = True
        self.count_drop(reason, max(1, lost), detail)

    def count_drop(self, reason: str, n: int, detail: str) -> None:
        self.stats.drop(reason, n, sink="slack", detail=detail)

    async def delete_duplicate(self, channel: str, ts: str, kind: str) -> None:
        out = await self.transport.send("chat.delete", lambda: {"channel": channel, "ts": ts}, deadline=self.deadline)
        self.stats.inc("slack_duplicates_total", kind=kind, deleted="true" if out.ok else "false")
        if out.ok:
            log.info("deleted a duplicate %s %s/%s: another replica posted it first", kind, channel, ts)
        else:
            error = out.failure.error if out.failure else "unknown"
            log.warning("a duplicate %s %s/%s stays in Slack: chat.delete answered %s", kind, channel, ts, error)
