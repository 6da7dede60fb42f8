"""Break-glass, posted loudly: an approve that broke glass (one member of
``SPANVISOR_BREAK_GLASS_GROUP`` deciding alone, with a reason) goes to
``SPANVISOR_SLACK_BREAK_GLASS_CHANNEL`` as a message of its own, besides
the task's thread line, so the people who watch for it see it at once.

Posted once across replicas and retries: the intervention id is claimed in
the state store (namespace ``slack.breakglass``) before the post and
settled after it. ``export`` never waits: the post runs on the sink's loop.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from spanvisor.events import HumanIntervention
from spanvisor.sink import SinkContext

from . import text as t

log = logging.getLogger("spanvisor.slack")
NAMESPACE = "slack.breakglass"
LEASE_S = 120.0


def message(ev: HumanIntervention) -> dict[str, Any]:
    """The post: who broke glass, on what, why (people's and agents' text escaped)."""
    d, req, v = ev.decision, ev.request, ev.task
    who = f"<@{d.actor_id}>" if d.source == "slack" else t.safe(d.person or d.actor_name or d.actor_id, 120)
    groups = f" ({t.safe(', '.join(d.groups), 200)})" if d.groups else ""
    what = t.safe(v.task_name or v.task_id, 200)
    agent = f" · {t.safe(v.agent_id, 80)}" if v.agent_id and v.agent_id != "unknown" else ""
    asked = f"\n*Asked:* {t.safe(req.question, 500)}" if req is not None else ""
    need = ""
    if req is not None and (req.approvers > 1 or req.approvers_from):
        whom = ", ".join(w.removeprefix("group:") for w in req.approvers_from)
        need = f"\n*It needed:* {req.approvers} approval{'s' if req.approvers > 1 else ''}" + (
            f" from {t.safe(whom, 200)}" if whom else ""
        )
    line = (
        f"🚨 *Break-glass:* {who}{groups} approved alone on *{what}*{agent} "
        f"(`{t.safe(d.task_id, 80)}` {t.safe(d.approval_id or '', 40)})"
        f"{asked}{need}\n*Reason:* {t.safe(d.comment or '', 500)}"
    )
    return {
        "text": t.clip(f"Break-glass: {who} approved alone on {what}", t.FALLBACK_TEXT),
        "blocks": [
            {
                "type": "section",
                "block_id": "sv-break-glass",
                "text": {"type": "mrkdwn", "text": t.clip(line, t.SECTION_TEXT)},
            }
        ],
        "unfurl_links": False,
    }


class BreakGlassPoster:
    def __init__(self, ctx: SinkContext, transport: Any, channel: str, owner: str) -> None:
        self.ctx, self.transport, self.channel, self.owner = ctx, transport, channel, owner
        self._tasks: set[asyncio.Task[None]] = set()

    def offer(self, ev: HumanIntervention) -> None:
        if ev.outcome != "applied" or not ev.decision.break_glass:
            return
        task = asyncio.get_running_loop().create_task(self._post(ev), name="slack:break-glass")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _post(self, ev: HumanIntervention) -> None:
        store, key = self.ctx.state_store, ev.decision.intervention_id
        try:
            claim = await store.claim(NAMESPACE, key, self.owner, LEASE_S)
            if not claim.won or claim.value is not None:
                return  # another replica, or an earlier delivery, posts it
            out = await self.transport.send("chat.postMessage", lambda: {"channel": self.channel, **message(ev)})
            if out.ok:
                await store.put(NAMESPACE, key, {"ts": (out.data or {}).get("ts")}, self.owner)
                return
            await store.release(NAMESPACE, key, self.owner)
            why = getattr(out, "error", None) or "Slack refused it"
        except Exception as exc:  # a store or Slack outage: counted, logged, never raised into the sink
            why = type(exc).__name__
        self.ctx.stats.drop("slack_break_glass_not_posted", sink="slack", detail=f"break-glass post failed: {why}")

    @property
    def pending(self) -> int:
        return len(self._tasks)

    async def drain(self, timeout_s: float) -> None:
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=max(0.0, timeout_s))


__all__ = ["NAMESPACE", "BreakGlassPoster", "message"]
