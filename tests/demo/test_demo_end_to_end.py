"""`spanvisor demo` end to end: the main job, as `make demo` runs it, against a
real PostgreSQL, then read back with the operator's commands."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slow


def _run(args: list[str], env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "spanvisor.cli", *args],
        check=False,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _pasted(command: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """A printed command as a person pastes it into a shell."""
    return subprocess.run(command, shell=True, check=False, env=env, capture_output=True, text=True, timeout=120)


def _demo_answering_the_approval(env: dict[str, str], timeout: float = 120, *more: str) -> tuple[int, str]:
    """``demo --fast`` whose rivet waits up to 60 s for its approval, answered
    with ``spanvisor approve`` (the command the demo prints) as soon as asked."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "spanvisor.cli", "demo", "--fast", "--approval-wait", "60", *more],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout or ()), daemon=True)
    reader.start()
    deadline = time.monotonic() + timeout
    asked = None
    while asked is None and proc.poll() is None and time.monotonic() < deadline:
        asked = next((m for line in list(lines) if (m := re.search(r"see it with: ([^(]*approvals[^(]*)", line))), None)
        time.sleep(0.05)
    assert asked is not None, "".join(lines)
    # Pasted into a shell as printed (the program's name as it can be run
    # there, the --url it needs): the pending request, as `approvals` lists
    # it, answered with the command it prints.
    listed = _pasted(asked.group(1), env)
    assert listed.returncode == 0 and "Apply the fix to prod?" in listed.stdout, listed.stdout + listed.stderr
    # Under load another agent's request (ledger's, two people) may be open
    # too: answer the one this test asked about, by its task.
    task = next(line.split()[0] for line in listed.stdout.splitlines() if "Apply the fix to prod?" in line)
    command = next(
        line.split("(or:")[0] for line in listed.stdout.splitlines() if " approve " in line and f" {task} " in line
    )
    answer = _pasted(f"{command} --as alice --comment 'go ahead'", env)
    assert answer.returncode == 0 and "Approved" in answer.stdout, answer.stdout + answer.stderr
    code = proc.wait(max(1.0, deadline - time.monotonic()))
    reader.join(10)
    return code, "".join(lines)


@pytest.mark.parametrize("via", ["processor", "serve"])
def test_demo_shows_its_agents_and_leaves_them_in_the_audit_trail(pg_server: Any, tmp_path: Path, via: str) -> None:
    """In-process, and with ``--via-serve`` (the agents export OTLP spans and
    live-channel log records to serve's receiver): the same story."""
    url = pg_server.database()
    env = {
        **os.environ,
        "SPANVISOR_DATABASE_URL": url,
        "SPANVISOR_DATA_DIR": str(tmp_path),
        "SPANVISOR_SINKS": "console,postgres",
        "SPANVISOR_CONSOLE_COLOR": "never",
    }
    env.pop("SLACK_BOT_TOKEN", None)
    code, out = _demo_answering_the_approval(env, 120, *(["--via-serve"] if via == "serve" else []))
    assert code == 0, out
    if via == "serve":
        assert "through spanvisor serve's OTLP receiver" in out
    # A decision: rivet asked, `spanvisor approve` answered while the demo waited.
    assert "🙋 [rivet] asks: Apply the fix to prod?" in out
    # The demo's people have tokens of their own (for ledger's sign-off), so
    # a tokenless answer is an anonymous operator's, whatever --as says.
    assert "✅ [rivet] Approved by anonymous operator (go ahead): applying the fix to prod" in out
    # ledger's sign-off: an action two people approve with the real CLI, each
    # with their own token; checked where it runs, once; the chain verified.
    assert "🙋 [ledger] asks: Run migration 0007 on the orders database in prod?" in out
    assert "approve ledger-" in out and "SPANVISOR_DECIDE_TOKEN=$ALICE_TOKEN" in out
    assert "SPANVISOR_DECIDE_TOKEN=$BOB_TOKEN" in out and "--token" not in out, "no token on a command line"
    assert "Approval 1 of 2 counted" in out and "as alice (verified by your token); 1 more needed" in out
    assert "as bob (verified by your token)" in out
    assert "✅ [ledger] approved by bob: running migration 0007 (checked where it runs)" in out
    assert "a second check of the same approval: refused" in out
    assert re.search(r"decision log: .+ audit verify\n +decision log intact: \d+ links", out), out
    # The console shows what Slack would: a card per task and its thread.
    for agent in ("rivet", "sprocket", "gauge", "ledger"):
        assert f"{agent} · complete" in out or f"{agent} · error" in out
    assert "❌ sprocket · error" in out and "RuntimeError" in out
    assert "past the 70% warning level" in out and "past the 85% critical level" in out
    assert "Artifact: diagnosis-F47.md" in out
    assert "dropped 0" in out
    # Log tails: the failing agent's own log lines on its error line, the
    # password in its connection string redacted; results in the summaries.
    assert "last log lines:" in out and "postgresql://migrator:****@orders-db" in out, out
    assert "hunter2" not in out
    assert "orders_archive exists from an earlier partial run" in out
    assert "downtime_avoided: 1h 30m" in out and "sensors_correlated: 37" in out
    assert "shards_read: 11" in out
    # Cost: each task's cost, a budget warning and a context forecast.
    summaries = [line for line in out.splitlines() if "✅ [" in line or "❌ [" in line]
    for agent in ("rivet", "sprocket", "gauge"):
        assert any(f"[{agent}]" in s and " · ~$" in s for s in summaries), (agent, summaries)
    assert "💸 [rivet] 80% of this task's budget used: $" in out and "of $1.25" in out
    assert "🔮 [gauge] Context at " in out and "at this rate, 70% in about" in out
    # The forecast comes before the crossing it forecasts.
    assert out.index("at this rate, 70%") < out.index("past the 70% warning level")

    listed = _run(["tasks", "--json"], env)
    assert listed.returncode == 0, listed.stderr
    rows = [json.loads(line) for line in listed.stdout.splitlines() if line.strip()]
    by_agent = {r["agent_id"]: r for r in rows}
    assert set(by_agent) == {"rivet", "sprocket", "gauge", "ledger"}
    assert by_agent["ledger"]["status"] == "complete"
    assert by_agent["rivet"]["status"] == "complete"
    assert by_agent["sprocket"]["status"] == "error"
    assert by_agent["gauge"]["status"] == "complete"
    for row in rows:
        assert row["cost_usd"] > 0 and row["unpriced_calls"] == 0, row
    assert by_agent["rivet"]["budget_usd"] == 1.25 and by_agent["rivet"]["cost_usd"] > 1.25

    table = _run(["tasks"], env)
    assert "TASK" in table.stdout and "sprocket" in table.stdout and "error" in table.stdout
    # The demo's last hint, pasted as printed: `… tasks` and `… task <id>`.
    printed = re.search(r"audit trail: run `([^`]+)` and `([^`]+) <id>`", out)
    assert printed is not None, out
    pasted = _pasted(printed.group(1), env)
    assert pasted.returncode == 0 and "sprocket" in pasted.stdout, pasted.stdout + pasted.stderr
    one = _pasted(f"{printed.group(2)} {by_agent['gauge']['task_id'][:12]}", env)
    assert one.returncode == 0 and "gateway-30d-summary.md" in one.stdout, one.stdout + one.stderr

    gauge = by_agent["gauge"]["task_id"]
    detail = _run(["task", gauge[:12], "--json"], env)
    assert detail.returncode == 0, detail.stderr
    doc = json.loads(detail.stdout)
    text = json.dumps(doc)
    assert text.count("context_warning") >= 2, "70 % and 85 % warnings are in the timeline"
    assert "gateway-30d-summary.md" in text
    assert any(e["kind"] == "context_forecast" for e in doc["timeline"]), "the forecast is in the timeline"
    rivet = json.loads(_run(["task", by_agent["rivet"]["task_id"][:12], "--json"], env).stdout)
    budget = [e for e in rivet["timeline"] if e["kind"] == "budget_warning"]
    assert [(e["scope"], e["level"]) for e in budget] == [("task", "warning"), ("task", "critical")]
    results = {r["name"]: r["value"] for r in rivet["task"]["results"]}
    assert results == {"downtime_avoided": 5400, "sensors_correlated": 37}, rivet["task"]["results"]
    assert [i["action"] for i in rivet["interventions"]] == ["approve"], rivet["interventions"]
    ledger = json.loads(_run(["task", by_agent["ledger"]["task_id"][:12], "--json"], env).stdout)
    assert [(i["actor"], i["outcome"]) for i in ledger["interventions"]] == [("alice", "applied"), ("bob", "applied")]
    sprocket = json.loads(_run(["task", by_agent["sprocket"]["task_id"][:12], "--json"], env).stdout)
    tail = " ".join(str(line) for line in sprocket["log_tail"])
    assert "already exists" in tail and "hunter2" not in tail, sprocket["log_tail"]


# The demo's tool calls per agent (src/spanvisor/cli/demo.py).
_DEMO_TOOL_CALLS = {"rivet": 12, "sprocket": 1, "gauge": 11, "ledger": 0}


def _calls_in(blocks: list[dict[str, Any]]) -> int:
    """The tool calls a thread reply holds: a work log's count line, or its tool lines."""
    texts = [str((b.get("text") or {}).get("text", "")) for b in blocks]
    for text in texts:
        if text.startswith("🗒️ *Work log: "):
            counted = re.match(r"🗒️ \*Work log: (\d+) tool calls?", text)
            return int(counted.group(1)) if counted else 0
    return sum(1 for text in texts if text.startswith("🔧 *Tool*"))


# Slow by design (~35 s): the whole demo, four agents and a two-person approval, against the fake Slack at its real pace.
def test_demo_against_the_fake_slack_gives_one_live_message_and_thread_per_task(tmp_path: Path) -> None:
    """`spanvisor demo` with a token and the fake Slack's
    base URL posts one parent per task, edits it to the final state, and tells
    each task's story in its thread. The fake holds Slack's real limit (about
    one post per second per channel, bursts of 4) and the sink its default
    pacing: the demo used to end "some sinks did not flush in time" (exit 1)
    with 43 posts, most of them tool-call replies; their work logs now gather
    them, each call shown once."""
    import asyncio
    import threading

    from tests.fakes.slack_api import FakeSlack

    fake = FakeSlack()  # 1 post/s per channel, as Slack
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    base_url = asyncio.run_coroutine_threadsafe(fake.start(), loop).result(10)
    try:
        env = {
            **os.environ,
            "SLACK_BOT_TOKEN": "xoxb-demo",
            "SPANVISOR_SLACK_CHANNEL": "#agents",
            "SPANVISOR_SLACK_BASE_URL": base_url,
            "SPANVISOR_SINKS": "slack",
            "SPANVISOR_DATA_DIR": str(tmp_path),
            "SPANVISOR_SLACK_UPDATE_INTERVAL": "200ms",
        }
        demo = _run(["demo", "--fast"], env)
        assert demo.returncode == 0, demo.stdout + demo.stderr
        # Nobody answers here: rivet goes on after its short wait.
        assert "⌛ [rivet] No answer within 1s (timed out)" in demo.stdout
        parents = fake.parents()
        assert len(parents) == 4, [p.text for p in parents]  # rivet, sprocket, gauge, ledger
        final = {p.text or "" for p in parents}
        assert any("complete" in t and "rivet" in t for t in final), final
        assert any("error" in t and "sprocket" in t for t in final), final
        for parent in parents:
            replies = fake.thread(parent)
            assert replies, f"no thread for {parent.text}"
            # Every tool call is in the thread once, gathered into work logs
            # (one reply each while edits keep up; when Slack's edit budget is
            # used up, the calls waiting are posted as a new log instead of
            # waiting for an edit: .thread.post_replies, scarce).
            held = [_calls_in(r.blocks or []) for r in replies]
            agent = next(a for a in _DEMO_TOOL_CALLS if a in (parent.text or ""))
            assert sum(held) == _DEMO_TOOL_CALLS[agent], [r.text for r in replies]
            assert len([n for n in held if n]) < max(2, _DEMO_TOOL_CALLS[agent]), [r.text for r in replies]
        gauge = next(p for p in parents if "gauge" in (p.text or ""))
        story = " ".join(r.text or "" for r in fake.thread(gauge))
        assert "70%" in story and "85%" in story, story
        assert "at this rate" in story, story  # the context forecast
        rivet = next(p for p in parents if "rivet" in (p.text or ""))
        assert "of this task's budget used" in " ".join(r.text or "" for r in fake.thread(rivet))
        # Its approval asked in the thread, results in its summary; sprocket's
        # log tail on its error line.

        def told(parent: Any) -> str:
            return json.dumps([(r.text, r.blocks) for r in fake.thread(parent)], ensure_ascii=False)

        assert "Approval needed" in told(rivet) and "downtime_avoided" in told(rivet), told(rivet)
        sprocket = next(p for p in parents if "sprocket" in (p.text or ""))
        assert "orders_archive exists" in told(sprocket) and "hunter2" not in told(sprocket), told(sprocket)
        assert not [c for c in fake.calls if c.response.get("ok") is False], "Slack rejected a call"
    finally:
        asyncio.run_coroutine_threadsafe(fake.stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
