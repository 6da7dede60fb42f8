"""Three demo-like tasks, from events to the fake Slack's messages."""

from __future__ import annotations

import json

from slack_support import Env, run, slack_env
from tests.taskscript import TaskScript

# Intervals scaled down so the test takes a second; the fake's per-channel
# limit is raised to match.
FAST = {
    "slack_update_interval_s": 0.2,
    "slack_reply_interval_s": 0.0,
    "slack_channel_interval_s": 0.0,
    "channel_rate": 100.0,
}
TRACE = "https://tempo.example/trace/{trace_id}"
DASH = "https://grafana.example/d/spanvisor-task?var-task={task_id}&from={start_ms}&to={end_ms}"


def _texts(msg: object) -> str:
    return json.dumps({"text": msg.text, "blocks": msg.blocks, "attachments": msg.attachments}, ensure_ascii=False)  # type: ignore[attr-defined]


async def _demo(env: Env) -> tuple[TaskScript, TaskScript, TaskScript]:
    ok = TaskScript.new(
        "task-ok", "rivet", task_name="Diagnose F47", repo="acme/plant", steps=("triage", "route", "report")
    )
    bad = TaskScript.new("task-bad", "sprocket", task_name="Migrate schema")
    ctx = TaskScript.new("task-ctx", "cog", task_name="Summarise logs", model="claude-sonnet-4")
    await env.send(ok.started(), bad.started(), ctx.started())
    await env.send(ok.checkpoint(progress=10.0, step="triage", message="Reading the alarm"))
    await env.send(ok.checkpoint(progress=30.0, step="route", message="Routed to siemens SME"))
    await env.send(bad.checkpoint(progress=20.0, message="Dumping tables"))
    await env.send(ctx.warning("warning", 140_000, 200_000, 0.7))
    await env.send(ok.checkpoint(progress=60.0, step="report"))
    await env.send(ok.artifact("report.md", "https://files.example/report.md"))
    await env.send(ctx.warning("critical", 172_000, 200_000, 0.85))
    await env.send(
        bad.finished(
            "error",
            error_type="psycopg.OperationalError",
            error_message="connection refused",
            stacktrace='Traceback (most recent call last):\n  File "m.py", line 3\n'
            + "x\n" * 40
            + "OperationalError: connection refused",
        )
    )
    await env.send(ok.checkpoint(progress=100.0, message="Done"))
    await env.send(ok.finished("complete"))
    await env.send(ctx.checkpoint(progress=80.0, input_tokens=500_000, output_tokens=9_000))
    await env.send(ctx.finished("complete"))
    assert await env.sink.force_flush(20)
    return ok, bad, ctx


def test_three_demo_tasks_give_one_parent_and_an_ordered_thread_each() -> None:
    async def main() -> None:
        async with slack_env(slack_dashboard_url=DASH, slack_trace_url=TRACE, **FAST) as env:
            await _demo(env)
            parents = env.fake.parents("#agents")
            assert len(parents) == 3
            by_task = {p.metadata["event_payload"]["task_id"]: p for p in parents if p.metadata}
            assert set(by_task) == {"task-ok", "task-bad", "task-ctx"}

            ok = by_task["task-ok"]
            shown = _texts(ok)
            assert ":white_check_mark: rivet · complete" in shown
            assert "▰▰▰▰▰▰▰▰▰▰ 100%" in shown and "acme/plant" in shown and "report.md" in shown
            assert ok.attachments[0]["color"] == "#2e7d32"
            buttons = next(b for b in ok.attachments[0]["blocks"] if b["type"] == "actions")["elements"]
            urls = {b["text"]["text"]: b["url"] for b in buttons}
            assert urls["Dashboard"].startswith("https://grafana.example/d/spanvisor-task?var-task=task-ok&from=")
            assert urls["Trace"].startswith("https://tempo.example/trace/")
            lines = [m.text for m in env.fake.thread(ok)]
            assert [x.split(":")[0] for x in lines] == [
                "Step",
                "25% reached",
                "50% reached",
                "Artifact",
                "100% reached",
                "Complete in 0s · tokens in 0 / out 0 · 1 artifact",
            ]

            bad = by_task["task-bad"]
            assert ":x: sprocket · error" in _texts(bad) and bad.attachments[0]["color"] == "#d32f2f"
            replies = env.fake.thread(bad)
            assert replies[0].text.startswith("Failed: psycopg.OperationalError: connection refused")
            code = replies[0].blocks[1]["text"]["text"]
            assert code.startswith("```") and "OperationalError: connection refused" in code
            assert replies[1].text.startswith("Error in")

            ctx = by_task["task-ctx"]
            warnings = [m.text for m in env.fake.thread(ctx)]
            assert warnings[0].startswith("Context window 70% full (140,000 / 200,000 tokens)")
            assert warnings[1].startswith("Context window 86% full (172,000 / 200,000 tokens), past the 85% critical")
            assert "172,000 / 200,000 (86%) 🔴" in _texts(ctx)
            # Every parent was posted once and only edited afterwards.
            assert len(env.fake.calls_to("chat.postMessage", ok=True)) == 3 + sum(
                len(env.fake.thread(p)) for p in parents
            )
            assert not [c for c in env.fake.calls if not c.response.get("ok")]

    run(main())
