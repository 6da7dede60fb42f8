"""A request nobody answers is asked again: after ``SPANVISOR_WAITING_REMIND``
the Slack sink posts it once more in the task's thread, mentioning its
approvers (the request's own ``approvers_from`` where they are Slack ids,
else the configured approvers), once per request, never for one answered
in time, and the task's worker stays up for it past its idle retirement.
Against the fake Slack, on a manual clock."""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any

from slack_support import run, slack_env, until
from tests.fakes.slack_api import FakeSlack
from tests.taskscript import ManualClock, TaskScript

from spanvisor.events import ApprovalRequest, Decision, HumanIntervention
from spanvisor_slack.remind import mention
from spanvisor_slack.worker import RETIRE_S

FAST: dict[str, Any] = {
    "slack_update_interval_s": 0.0,
    "slack_reply_interval_s": 0.0,
    "slack_channel_interval_s": 0.0,
}
REMIND_S = RETIRE_S + 100  # past the worker's idle retirement: it must stay up for the reminder


def _thread(fake: FakeSlack, task_id: str) -> list[str]:
    parents = [p for p in fake.parents() if p.metadata and p.metadata["event_payload"]["task_id"] == task_id]
    return [m.text or "" for m in fake.thread(parents[0])] if parents else []


def _asking(script: TaskScript, req: ApprovalRequest) -> Any:
    return script.checkpoint("awaiting_approval", approvals=(req,))


async def _settle(clock: ManualClock, seconds: float, step: float = 5.0) -> None:
    """Move the clock ``seconds`` forward in steps, letting the sink's workers run."""
    moved = 0.0
    while moved < seconds:
        clock.advance(min(step, seconds - moved))
        moved += step
        await asyncio.sleep(0.01)


def test_an_unanswered_request_is_posted_again_once_mentioning_the_configured_approvers() -> None:
    async def main() -> None:
        clock = ManualClock()
        approvers = "U0ALICE,S0OPS,@oncall"
        async with slack_env(clock=clock, waiting_remind_s=str(REMIND_S), slack_approvers=approvers, **FAST) as env:
            script = TaskScript.new("T-remind", task_name="Migrate")
            req = ApprovalRequest("a-1", "Apply 0007 to prod? <!channel>", requested_ns=time.time_ns())
            await env.send(script.started(), _asking(script, req))
            await until(lambda: any("Approval needed" in x for x in _thread(env.fake, "T-remind")), 10, "the ask")
            await _settle(clock, RETIRE_S + 50)
            assert not any("Still waiting" in x for x in _thread(env.fake, "T-remind")), "not due yet"
            await _settle(clock, 60)
            await until(lambda: any("Still waiting" in x for x in _thread(env.fake, "T-remind")), 10, "the reminder")
            await _settle(clock, 3 * REMIND_S)
            reminders = [x for x in _thread(env.fake, "T-remind") if "Still waiting" in x]
            assert len(reminders) == 1, reminders
            [said] = reminders
            assert said.endswith("<@U0ALICE> <!subteam^S0OPS> @oncall"), said
            assert "Apply 0007 to prod? &lt;!channel&gt;" in said, "the question escaped, the mentions live"
            assert re.search(r"after \d+(\.\d+)? min", said), said

    run(main(), timeout=120)


def test_a_requests_own_approvers_are_mentioned_when_slack_knows_them() -> None:
    async def main() -> None:
        clock = ManualClock()
        async with slack_env(clock=clock, waiting_remind_s="30s", slack_approvers="U0ALICE", **FAST) as env:
            script = TaskScript.new("T-own")
            req = ApprovalRequest(
                "a-2", "Deploy?", requested_ns=time.time_ns(), approvers_from=("group:S0SRE", "bob", "U0BOB")
            )
            await env.send(script.started(), _asking(script, req))
            await until(lambda: any("Approval needed" in x for x in _thread(env.fake, "T-own")), 10, "the ask")
            await _settle(clock, 40)
            await until(lambda: any("Still waiting" in x for x in _thread(env.fake, "T-own")), 10, "the reminder")
            [said] = [x for x in _thread(env.fake, "T-own") if "Still waiting" in x]
            assert said.endswith("<!subteam^S0SRE> <@U0BOB>") and "U0ALICE" not in said, said

    run(main(), timeout=120)


def test_a_request_answered_in_time_or_reminders_off_is_never_posted_again() -> None:
    async def main() -> None:
        for remind, answered in (("30s", True), ("off", False)):
            clock = ManualClock()
            async with slack_env(clock=clock, waiting_remind_s=remind, slack_approvers="U0ALICE", **FAST) as env:
                task = f"T-{remind}"
                script = TaskScript.new(task)
                req = ApprovalRequest("a-3", "Deploy?", requested_ns=time.time_ns())
                await env.send(script.started(), _asking(script, req))
                await until(lambda t=task: any("Approval needed" in x for x in _thread(env.fake, t)), 10, "the ask")  # type: ignore[misc]
                if answered:
                    await env.send(script.checkpoint("working", approvals=()))
                await _settle(clock, 100)
                await asyncio.sleep(0.2)
                assert not any("Still waiting" in x for x in _thread(env.fake, task)), (remind, _thread(env.fake, task))

    run(main(), timeout=120)


def test_only_slack_ids_become_mentions() -> None:
    assert [mention(x) for x in ("U0ALICE", "W0BOB", "group:S0SRE", "S0OPS", "@oncall")] == [
        "<@U0ALICE>",
        "<@W0BOB>",
        "<!subteam^S0SRE>",
        "<!subteam^S0OPS>",
        "@oncall",
    ]
    assert [mention(x) for x in ("alice", "group:sre", "<!channel>", "U0<@", "@ALL")] == [None] * 5


def test_reminders_of_many_tasks_keep_to_slacks_limits_and_skip_a_cancelled_task() -> None:
    """On the real clock, against a fake that answers 429 past Slack's per-channel
    posting rate (1 a second, short bursts) and chat.update's Tier 3: reminders
    due together are paced like any reply, none is refused, each open request
    is asked again once, and a task cancelled while it waited is not."""

    async def main() -> None:
        fake = FakeSlack.tier3(channel_rate=1.0, channel_burst=4)
        await fake.start()
        try:
            async with slack_env(fake=fake, waiting_remind_s="1s", slack_approvers="U0ALICE") as env:
                scripts = {f"T-lim-{i}": TaskScript.new(f"T-lim-{i}") for i in range(3)}
                asked_at: dict[str, float] = {}
                for task, script in scripts.items():
                    req = ApprovalRequest(f"a-{task}", f"Deploy {task}?", requested_ns=time.time_ns())
                    asked_at[task] = time.monotonic()
                    await env.send(script.started(), _asking(script, req))
                cancelled = scripts["T-lim-0"]
                await env.send(cancelled.checkpoint("awaiting_approval", cancel_requested=True))

                def reminded(task: str) -> list[str]:
                    return [x for x in _thread(fake, task) if "Still waiting" in x]

                await until(lambda: all(reminded(t) for t in ("T-lim-1", "T-lim-2")), 30, "both reminders")
                await asyncio.sleep(2.5)  # past another interval: nothing more
                assert await env.sink.force_flush(10)
                assert [len(reminded(t)) for t in scripts] == [0, 1, 1]
                refused = [(c.method, c.response) for c in fake.calls if c.status == 429 or not c.response.get("ok")]
                assert not refused, refused
                posts = [c for c in fake.calls_to("chat.postMessage") if "Still waiting" in str(c.args)]
                assert len(posts) == 2
                for task in ("T-lim-1", "T-lim-2"):
                    [post] = [c for c in posts if f"Deploy {task}?" in str(c.args)]
                    assert post.at - asked_at[task] >= 1.0, "never before its interval"
        finally:
            await fake.stop()

    run(main(), timeout=120)


def test_a_request_decided_from_slack_after_it_was_noted_is_not_posted_again() -> None:
    """The decision reaches the sink before the task's next view (another
    replica's click, a decision on the control API): the reminder, due after
    it, is not said."""

    async def main() -> None:
        clock = ManualClock()
        async with slack_env(clock=clock, waiting_remind_s="30s", slack_approvers="U0ALICE", **FAST) as env:
            script = TaskScript.new("T-noted")
            req = ApprovalRequest("a-9", "Deploy?", requested_ns=time.time_ns())
            await env.send(script.started(), _asking(script, req))
            await until(lambda: any("Approval needed" in x for x in _thread(env.fake, "T-noted")), 10, "the ask")
            decision = Decision("i-9", "T-noted", "approve", "U0ALICE", time.time_ns(), approval_id="a-9")
            await env.send(
                HumanIntervention(
                    event_id="i-9", time_ns=time.time_ns(), task=script.view, decision=decision, known=False
                )
            )
            await _settle(clock, 100)
            await asyncio.sleep(0.2)
            assert not any("Still waiting" in x for x in _thread(env.fake, "T-noted")), _thread(env.fake, "T-noted")

    run(main(), timeout=120)
