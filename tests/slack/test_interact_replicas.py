"""A click taken by the replica that does not track the task.

Replica B receives the click for a task whose spans go to replica A (the
usual case behind a load balancer): B records it and its Slack sink gets a
``HumanIntervention`` with ``known=False``. That view is bare: B must not
post a parent of its own nor show the bare view; the decision reaches the
parent A posted (adopted from the shared store) and its thread.
"""

from __future__ import annotations

import asyncio
import time

from interact_support import live
from slack_support import run, until

from spanvisor.events import Decision
from spanvisor_slack import actions as A


def test_a_click_on_the_other_replica_shows_on_the_one_parent() -> None:
    async def go() -> None:
        async with live(replicas=2) as env:
            a, b = env.replicas
            env.ask("R1", "a1")  # spans go to A
            parent = await env.awaiting("R1", "a1")
            assert b.sender is not None
            await b.sender.interaction(env.click(parent, "R1", A.APPROVE, "a1", user_id="U0ALICE"))
            await until(env.answers, 10, "the answer")
            assert env.answers()[0].startswith("✅ Approved")
            await until(lambda: [e for e in b.interventions() if not e.known], 10, "B's known=False event")
            foreign = [e for e in b.interventions() if not e.known]
            assert foreign[0].task.trace_id == ""  # a bare view: never shown

            def thread_says_approved() -> bool:
                return any("Approved" in str(m.text) + str(m.blocks) for m in env.fake.thread(parent))

            await until(thread_says_approved, 15, "the decision's thread line")
            await until(lambda: "U0ALICE" in str(parent.blocks), 15, "the parent showing the decision")
            assert [m.ts for m in env.fake.parents()] == [parent.ts], "a second parent was posted"
            lines = [m for m in env.fake.thread(parent) if "Approved" in str(m.text) + str(m.blocks)]
            await asyncio.sleep(0.5)
            assert len(lines) == 1, [m.text for m in lines]
            assert len(await a.decisions("R1")) == 1

    run(go(), 90)


def test_a_decision_on_a_task_no_one_runs_is_refused_and_makes_no_parent() -> None:
    async def go() -> None:
        async with live() as env:
            d = Decision("iid-1", "NOPARENT", "cancel", "U0ALICE", time.time_ns(), source="slack")
            verdict = await env.one.pipeline.control.decide(d)
            assert (verdict.outcome, verdict.code) == ("denied", "unknown_task"), verdict
            await until(env.one.interventions, 10, "the audited refusal")
            assert [(e.outcome, e.code) for e in env.one.interventions()] == [("denied", "unknown_task")]
            await asyncio.sleep(0.5)
            stats = env.one.pipeline.stats
            assert stats.value("dropped_total", reason="slack_no_parent", sink="slack") == 0
            assert env.fake.parents() == [] and env.fake.calls_to("chat.postMessage") == []

    run(go(), 60)
