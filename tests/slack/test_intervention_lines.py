"""People's decisions, results and log tails in Slack, end to end: through
a real Pipeline with the OpenTelemetry SDK, or events
straight into SlackSinks, against the fake Slack server. What the fake
stores is what Slack would show."""

from __future__ import annotations

import asyncio
import json
import re
import time
from dataclasses import replace
from typing import Any

from opentelemetry.sdk.trace import TracerProvider
from slack_support import run, slack_config, slack_env, until
from tests.fakes.slack_api import FakeSlack
from tests.fakes.slack_store import Message
from tests.taskscript import TaskScript

from spanvisor.events import Decision, HumanIntervention, LogLine, ResultField
from spanvisor.otel.processor import SpanvisorSpanProcessor
from spanvisor.pipeline.pipeline import Pipeline
from spanvisor.statestores.memory import InMemoryStateStore
from spanvisor_slack import SlackSink, actions

FAST: dict[str, Any] = {
    "slack_update_interval_s": 0.2,
    "slack_reply_interval_s": 0.0,
    "slack_channel_interval_s": 0.0,
}
HOSTILE = "<!channel> <@U123>"
LIVE = re.compile(r"<!channel>|<!here>|<@U123>")
NOON = 1_763_812_980 * 1_000_000_000


def _shown(msg: Message) -> str:
    return json.dumps({"text": msg.text, "blocks": msg.blocks, "attachments": msg.attachments}, ensure_ascii=False)


def _action_ids(msg: Message) -> list[str]:
    blocks = list(msg.blocks) + [b for a in msg.attachments for b in a.get("blocks", [])]
    return [e["action_id"] for b in blocks if b["type"] == "actions" for e in b["elements"] if "value" in e]


def _parent(fake: FakeSlack, task_id: str) -> Message | None:
    found = [p for p in fake.parents() if p.metadata and p.metadata["event_payload"]["task_id"] == task_id]
    return found[0] if found else None


def _thread(fake: FakeSlack, task_id: str) -> list[str]:
    parent = _parent(fake, task_id)
    return [m.text or "" for m in fake.thread(parent)] if parent else []


def test_an_approval_through_the_pipeline_shows_buttons_then_who_approved() -> None:
    async def main() -> None:
        fake = FakeSlack(channel_rate=100.0, channel_burst=100)
        await fake.start()
        config = slack_config(fake.base_url, poll_interval_s=0.1, **FAST)
        pipeline = await asyncio.to_thread(lambda: Pipeline(config, sinks=[SlackSink()]).start())
        try:
            provider = TracerProvider()
            provider.add_span_processor(SpanvisorSpanProcessor(pipeline=pipeline))
            root = provider.get_tracer("agent").start_span(
                "migrate", attributes={"agent.task.name": "Migrate schema", "agent.task.id": "T-appr"}
            )
            root.add_event(
                "agent.approval.request",
                {"agent.approval.id": "a-7", "agent.approval.question": f"Apply 0007 to prod? {HOSTILE}"},
            )

            def asking() -> bool:
                p = _parent(fake, "T-appr")
                return p is not None and actions.APPROVE in _action_ids(p)

            await until(asking, 15, "the parent to offer Approve")
            parent = _parent(fake, "T-appr")
            assert parent is not None
            assert _action_ids(parent) == [actions.APPROVE, actions.REJECT, actions.COMMENT]
            assert "Apply 0007 to prod? &lt;!channel&gt; &lt;@U123&gt;" in _shown(parent)

            decision = Decision(
                "click-1", "T-appr", "approve", "U0ALICE", time.time_ns(), approval_id="a-7",
                comment=f"go {HOSTILE}", source="slack",
            )  # fmt: skip
            verdict = await pipeline.control.decide(decision)
            assert verdict.outcome == "applied"

            def approved() -> bool:
                p = _parent(fake, "T-appr")
                return p is not None and "✅ Approved by <@U0ALICE>" in _shown(p)

            await until(approved, 15, "the parent to say who approved")
            parent = _parent(fake, "T-appr")
            assert parent is not None
            # The approval's buttons are gone; the running task can still be cancelled.
            assert _action_ids(parent) == [actions.CANCEL]
            assert "“go &lt;!channel&gt; &lt;@U123&gt;”" in _shown(parent)

            root.add_event("agent.approval.decision", {"agent.approval.id": "a-7", "agent.approval.outcome": "approve"})
            root.end()
            await until(lambda: "complete" in _shown(_parent(fake, "T-appr")), 15, "the task to complete")  # type: ignore[arg-type]
            await asyncio.to_thread(pipeline.force_flush, 10)
            parent = _parent(fake, "T-appr")
            assert parent is not None and _action_ids(parent) == []
            assert "✅ Approved by <@U0ALICE>" in _shown(parent)
            lines = _thread(fake, "T-appr")
            assert lines[0] == "Approval needed: Apply 0007 to prod? &lt;!channel&gt; &lt;@U123&gt;"
            ask = fake.thread(parent)[0].blocks[0]["text"]["text"]
            assert ask == "✋ *Approval needed:* Apply 0007 to prod? &lt;!channel&gt; &lt;@U123&gt;"
            assert any(x.startswith("✅ Approved by <@U0ALICE>: go &lt;!channel&gt;") for x in lines)
            # The line says what was approved: the question, escaped like any agent text.
            assert any(x.endswith("\nQ: “Apply 0007 to prod? &lt;!channel&gt; &lt;@U123&gt;”") for x in lines), lines
            for m in [parent, *fake.thread(parent)]:
                assert not LIVE.search(_shown(m))
        finally:
            await asyncio.to_thread(pipeline.shutdown, 10)
            await fake.stop()

    run(main(), timeout=60)


def test_a_failed_task_shows_its_log_tail_then_an_acknowledge_rerenders_its_parent() -> None:
    async def main() -> None:
        async with slack_env(channel_rate=100.0, **FAST) as env:
            task = TaskScript.new("T-fail", task_name="Nightly import")
            tail = tuple(
                LogLine(NOON + i * 1_000_000_000, "WARNING", f"retry {i}: {HOSTILE} ``` & done", "importer")
                for i in range(30)
            )
            await env.send(task.started(), task.checkpoint(progress=40.0))
            await env.send(task.finished("error", error_type="ImportError", error_message="boom", log_tail=tail))
            assert await env.sink.force_flush(20)
            parent = _parent(env.fake, "T-fail")
            assert parent is not None
            assert _action_ids(parent) == [actions.RETRY, actions.ACKNOWLEDGE]
            [error] = [m for m in env.fake.thread(parent) if (m.text or "").startswith("Failed: ImportError")]
            logs = next(b["text"]["text"] for b in error.blocks if b["block_id"].startswith("sv-logs"))
            assert logs.startswith("*Last log lines*\n```\n") and logs.endswith("\n```")
            assert "12:03:29 WARNING importer: retry 29: &lt;!channel&gt; &lt;@U123&gt; `\u200b`` &amp; done" in logs
            assert logs.count("```") == 2 and not LIVE.search(_shown(error))

            # Acknowledged after the task finished: not a newer view of the task.
            ack = Decision("click-ack", "T-fail", "acknowledge", "U0BOB", NOON, comment=HOSTILE, source="slack")
            await env.send(
                HumanIntervention(event_id=ack.intervention_id, time_ns=NOON, task=task.view, decision=ack, known=False)
            )

            def acknowledged() -> bool:
                p = _parent(env.fake, "T-fail")
                return p is not None and "👀 Acknowledged by <@U0BOB>" in _shown(p)

            await until(acknowledged, 10, "the parent to say who acknowledged")
            parent = _parent(env.fake, "T-fail")
            assert parent is not None and _action_ids(parent) == [actions.RETRY]
            assert not LIVE.search(_shown(parent))
            assert await env.sink.force_flush(20)
            assert any(x.startswith("👀 Acknowledged by <@U0BOB>") for x in _thread(env.fake, "T-fail"))

    run(main())


def test_two_replicas_merge_decisions_on_a_finished_task() -> None:
    async def main() -> None:
        fake, store = FakeSlack(channel_rate=100.0, channel_burst=100), InMemoryStateStore()
        await fake.start()
        try:
            task = TaskScript.new("T-two", task_name="Report")
            res = (ResultField("ARR gain (1h)", 4820, "usd"), ResultField("PRs opened", 3))
            async with slack_env(fake=fake, store=store, **FAST) as a, slack_env(fake=fake, store=store, **FAST) as b:
                await a.send(task.started(), task.checkpoint(progress=90.0, results=res))
                await a.send(task.finished("error", error_type="Timeout"))
                assert await a.sink.force_flush(20)
                # Replica b never saw the task: a click there names only ids.
                bare = TaskScript.new("T-two").view
                ack = Decision("click-a", "T-two", "acknowledge", "U0BOB", NOON, source="slack")
                await b.send(HumanIntervention(event_id="click-a", time_ns=NOON, task=bare, decision=ack, known=False))
                retry = Decision("click-r", "T-two", "retry", "U0ALICE", NOON + 1, source="slack")
                await a.send(
                    HumanIntervention(event_id="click-r", time_ns=NOON, task=task.view, decision=retry, known=False)
                )

                def both() -> bool:
                    p = _parent(fake, "T-two")
                    text = _shown(p) if p else ""
                    return "Acknowledged by <@U0BOB>" in text and "Retry requested by <@U0ALICE>" in text

                await until(both, 10, "the parent to show both decisions")
                assert await a.sink.force_flush(20) and await b.sink.force_flush(20)
            parent = _parent(fake, "T-two")
            assert parent is not None and len(fake.parents()) == 1
            assert _action_ids(parent) == []
            # The final view stayed: results and status are the task's, not the bare view's.
            shown = _shown(parent)
            assert ":x: rivet · error" in shown and "*ARR gain (1h)*\\n$4,820" in shown
            # The completion summary: its text inline, its results as fields.
            [summary] = [m for m in fake.thread(parent) if (m.text or "").startswith("Error in")]
            assert summary.text.endswith("· ARR gain (1h): $4,820 · PRs opened: 3")
            assert summary.blocks[0]["text"]["text"] == "❌ *Error in 0s · tokens in 0 / out 0*"
            fields = [f["text"] for f in summary.blocks[1]["fields"]]
            assert fields == ["*ARR gain (1h)*\n$4,820", "*PRs opened*\n3"]
        finally:
            await fake.stop()

    run(main())


def test_a_cancel_on_a_running_task_is_shown_without_waiting_for_the_interval() -> None:
    async def main() -> None:
        # An edit interval far beyond the wait below: only urgency can show it in time.
        slow = {**FAST, "slack_update_interval_s": 120.0}
        async with slack_env(channel_rate=100.0, **slow) as env:
            task = TaskScript.new("T-cancel", task_name="Crawl")
            await env.send(task.started(), task.checkpoint(progress=10.0))
            await until(lambda: _parent(env.fake, "T-cancel") is not None, 10, "the parent")
            await until(lambda: _action_ids(_parent(env.fake, "T-cancel")) == [actions.CANCEL], 10, "Cancel")  # type: ignore[arg-type]
            d = Decision("click-c", "T-cancel", "cancel", "U0ALICE", NOON, source="slack")
            task.seq += 1
            view = replace(task.view, seq=task.seq, cancel_requested=True, decisions=(d,))
            await env.send(HumanIntervention(event_id="click-c", time_ns=NOON, task=view, decision=d))

            def asked() -> bool:
                p = _parent(env.fake, "T-cancel")
                return p is not None and "🛑 Cancel requested by <@U0ALICE>" in _shown(p)

            await until(asked, 10, "the parent to say who asked to cancel")
            assert _action_ids(_parent(env.fake, "T-cancel")) == []  # type: ignore[arg-type]

    run(main())


def test_an_error_line_with_a_long_stack_and_log_tail_keeps_the_newest_lines_within_limits() -> None:
    from tests.fakes.slack_blocks import message_error

    from spanvisor.display.thread import ThreadPolicy
    from spanvisor_slack.blocks import Look, problems, reply_payload

    task = TaskScript.new("T-long")
    task.started()
    tail = tuple(LogLine(NOON + i * 1_000_000_000, "ERROR", f"line {i} " + "<x>" * 400, "app") for i in range(20))
    finished = task.finished(
        "error", error_type="E", error_message="m" * 5000, stacktrace="frame\n" * 10_000, log_tail=tail
    )
    [error, _] = ThreadPolicy().lines(finished)
    payload = reply_payload([error], Look())
    assert problems(payload) == [] and message_error(dict(payload), 4000) is None
    logs = next(b["text"]["text"] for b in payload["blocks"] if b["block_id"] == "sv-logs-0")
    assert len(logs) <= 3000 and "line 19 " in logs and "line 0 " not in logs
    assert logs.count("```") == 2 and "<x>" not in logs
