"""Live through a real ``spanvisor serve``: the live channel end to end.

Agents here use only the OpenTelemetry SDK's OTLP exporters (spans through a
BatchSpanProcessor with its default 5 s delay, the helper's live records
through the OTLP log exporter it sets up aimed at the same serve), never
spanvisor's pipeline. While a task's root is still open:

* the Slack parent shows its name, progress and current step;
* a task waiting for a person stays ``awaiting_approval`` on the control
  API and open in ``spanvisor_tasks_running`` long past SPANVISOR_ROOT_HOLD;
* an agent killed mid-task is stalled after its stall time
  (SPANVISOR_STALL_AFTER_BY_AGENT: a thread line in Slack, a timeline row in
  PostgreSQL) and finished as ``lost`` after SPANVISOR_LOST_AFTER (the
  agent is started and killed as the module begins, its test comes last:
  its windows run out while the other tests run);
* one agent has one name: Slack, PostgreSQL and every Prometheus series say
  the agent's id, never the sender's service.name.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click_harness import post_decision
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExportResult
from opentelemetry.trace import SpanContext, Tracer
from prometheus_client.parser import text_string_to_metric_families
from serve_proc import FakeSlackThread, ServeProcess, db_rows, message_text, slack_env
from tests.fakes.slack_store import Message
from tests.waiting import wait_until

from spanvisor.agent import task
from spanvisor.spans import conventions as cv

pytestmark = [pytest.mark.slow, pytest.mark.timeout_s(240)]

ROOT_HOLD_S = 2
# Longer than any gap between the signs of life of a live agent here (a
# shell agent's heartbeats come a root hold and a process start apart).
STALL_AFTER_S = 6
# The agent killed mid-task goes quiet for good: it alone is stalled sooner
# (its heartbeats came every second until the kill), and every task is
# lost past the other agents' longest quiet with room to spare: the shell
# agent's first quiet is the wait for Slack's parent, a root hold and an
# emit process's start, which a loaded machine (CI) stretched past 12 s.
KILLED_AGENT = "indexer"  # live_agent.py's agent id
KILLED_STALL_AFTER_S = 3
LOST_AFTER_S = 30


@dataclass
class Served:
    serve: ServeProcess
    slack: FakeSlackThread
    db_url: str
    tracer: Tracer
    provider: TracerProvider | None = None

    def parent(self, task_id: str) -> Message | None:
        parents: list[Message] = self.slack.parents()
        for m in parents:
            if (m.metadata or {}).get("event_payload", {}).get("task_id") == task_id:
                return m
        return None

    def shown(self, task_id: str) -> str:
        m = self.parent(task_id)
        return message_text(m) if m is not None else ""

    def thread(self, task_id: str) -> list[str]:
        parent = self.parent(task_id)
        if parent is None:
            return []
        return [m.text or "" for m in self.slack.on_loop(lambda: self.slack.fake.thread(parent))]

    def control(self, task_id: str) -> dict[str, Any]:
        url = f"http://127.0.0.1:{self.serve.http}/v1/control/tasks/{task_id}"
        with urllib.request.urlopen(url, timeout=20) as resp:
            return dict(json.loads(resp.read()))

    def decide(self, task_id: str, body: dict[str, Any]) -> tuple[int, Any]:
        return post_decision(self.serve.http, task_id, body)

    def series(self, name: str) -> list[dict[str, str]]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.serve.admin}/metrics", timeout=20) as resp:
            text = resp.read().decode()
        return [
            dict(s.labels, value=str(s.value))
            for family in text_string_to_metric_families(text)
            for s in family.samples
            if s.name == name
        ]


@pytest.fixture(scope="module")
def served(pg_server: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    db_url = pg_server.database()
    slack = FakeSlackThread()
    data = tmp_path_factory.mktemp("serve-live")
    env = slack_env(
        data,
        slack.base_url,
        SPANVISOR_DATABASE_URL=db_url,
        SPANVISOR_STATE_STORE="postgres",
        SPANVISOR_SINKS="postgres,slack,prometheus",
        SPANVISOR_ROOT_HOLD=f"{ROOT_HOLD_S}s",
        SPANVISOR_STALL_AFTER=f"{STALL_AFTER_S}s",
        SPANVISOR_STALL_AFTER_BY_AGENT=f"{KILLED_AGENT}={KILLED_STALL_AFTER_S}",
        SPANVISOR_LOST_AFTER=f"{LOST_AFTER_S}s",
    )
    for leaked in ("SPANVISOR_OTLP_TOKEN", "SPANVISOR_CONTROL_TOKEN", "SLACK_APP_TOKEN"):
        env.pop(leaked, None)
    serve = ServeProcess(data, env)
    mp = pytest.MonkeyPatch()
    provider = TracerProvider(resource=Resource.create({"service.name": "worker-pod-3"}), shutdown_on_exit=False)
    try:
        mp.setenv("SPANVISOR_CONTROL_URL", f"http://127.0.0.1:{serve.http}")
        # A live agent says it is alive more often than the stall time here.
        mp.setenv("SPANVISOR_HEARTBEAT", "1s")
        mp.delenv("SPANVISOR_CONTROL_TOKEN", raising=False)
        mp.delenv("SPANVISOR_OTLP_TOKEN", raising=False)
        mp.delenv("SPANVISOR_LIVE_CHANNEL", raising=False)
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=serve.url, timeout=20)))
        yield Served(serve, slack, db_url, provider.get_tracer("agent"), provider)
    finally:
        provider.shutdown()
        mp.undo()
        serve.stop()
        slack.close()


@dataclass
class Killed:
    """The agent killed mid-task, and what went wrong before its test ran."""

    task_id: str
    failed: list[BaseException]


KILLED_TEST = "test_an_agent_killed_mid_task_is_stalled_then_lost"


@pytest.fixture(scope="module", autouse=True)
def killed(served: Served, request: pytest.FixtureRequest) -> Iterator[Killed]:
    """A real agent started as this file's serve comes up and killed mid-task
    at once, its test defined last: its stall and lost windows (idle time)
    run out while the other tests run. A failure here is kept for that test
    to raise, not charged to whichever test comes first."""
    tid = f"reindex-{uuid.uuid4().hex[:8]}"
    out = Killed(tid, [])
    if f"{request.node.nodeid}::{KILLED_TEST}" not in {item.nodeid for item in request.session.items}:
        yield out
        return
    agent = Path(__file__).with_name("live_agent.py")
    proc = subprocess.Popen(
        [sys.executable, str(agent), served.serve.url, tid], stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        try:
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == b"ready"
            wait_until(lambda: "Scanning shards" in served.shown(tid), 30, "the open task's checkpoint in Slack")
            proc.kill()  # no goodbye: its root never ends
            proc.wait(10)
        except Exception as exc:
            out.failed.append(exc)
        yield out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def test_the_parent_shows_name_progress_and_step_while_the_root_is_open_and_one_agent_name_everywhere(
    served: Served,
) -> None:
    tid = f"migrate-{uuid.uuid4().hex[:8]}"
    done = threading.Event()

    def agent() -> None:
        with task(
            "Migrate billing", agent_id="sprocket", task_id=tid, steps=["plan", "apply", "verify"], tracer=served.tracer
        ) as t:
            t.checkpoint("Planning the migration", progress=20, step="plan")
            done.wait(60)

    th = threading.Thread(target=agent, daemon=True)
    th.start()
    try:
        shown = wait_until(
            lambda: (s := served.shown(tid)) and "Migrate billing" in s and "Planning the migration" in s and s,
            30,
            "the parent to show the open task's name and checkpoint",
        )
        assert "20%" in shown or "20 %" in shown, shown
        assert "plan" in shown
        assert served.control(tid)["status"] == "working"
    finally:
        done.set()
        th.join(30)
    wait_until(lambda: "· complete" in served.shown(tid), 30, "the parent to show the task complete")
    # One agent, one name: the agent id, not the sender's service.name.
    [row] = db_rows(served.db_url, "SELECT agent_id FROM agent_tasks WHERE task_id = $1", tid)
    assert row["agent_id"] == "sprocket"
    names = ("spanvisor_tasks_started_total", "spanvisor_tasks_finished_total")
    # The Prometheus sink is a sink of its own: its counts may follow Slack's.
    wait_until(lambda: all("sprocket" in {s["agent"] for s in served.series(n)} for n in names), 30, "sprocket counted")
    for name in names:
        agents = {s["agent"] for s in served.series(name)}
        assert "sprocket" in agents and "worker-pod-3" not in agents, (name, agents)


# Slow by design: it must stay open past the root hold and the stall window, which only time shows.
def test_a_task_waiting_for_a_person_stays_open_past_the_root_hold(served: Served) -> None:
    tid = f"deploy-{uuid.uuid4().hex[:8]}"
    answers: list[Any] = []

    def agent() -> None:
        with task("Deploy to prod", agent_id="rivet", task_id=tid, tracer=served.tracer) as t:
            # Room for the request to show on a loaded machine (it took over
            # 6 s once), then four root holds, before it times out.
            answers.append(t.request_approval("Apply the fix to prod?", timeout=4 * ROOT_HOLD_S + 20))

    th = threading.Thread(target=agent, daemon=True)
    th.start()
    try:
        wait_until(lambda: served.control(tid)["status"] == "awaiting_approval", 30, "the request to show")
        # Several root holds later, the task is still open and still waiting.
        time.sleep(4 * ROOT_HOLD_S)
        state = served.control(tid)
        assert state["status"] == "awaiting_approval", state
        assert [a["approval_id"] for a in state["approvals"]] == ["a1"]
        running = [s for s in served.series("spanvisor_tasks_running") if s["agent"] == "rivet"]
        assert running and float(running[0]["value"]) >= 1.0, running
        assert not any("No activity" in line for line in served.thread(tid)), "a waiting agent is alive"
        # Then a person answers (rather than the request's timeout, 20 s more):
        # the agent still waiting gets it.
        assert served.decide(tid, {"action": "reject", "approval_id": "a1", "actor": "alice"})[0] == 200
    finally:
        th.join(60)
    assert answers and answers[0].outcome == "reject", answers


def _emit(served: Served, *args: str) -> subprocess.CompletedProcess[str]:
    endpoint = f"http://127.0.0.1:{served.serve.http}"
    return subprocess.run(
        [sys.executable, "-m", "spanvisor.cli", "emit", *args, "--endpoint", endpoint],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
        env={k: v for k, v in os.environ.items() if k != "OTEL_SERVICE_NAME"},
    )


def test_a_shell_agent_has_one_name_and_is_live_from_emit_start(served: Served) -> None:
    tid = f"shell-{uuid.uuid4().hex[:8]}"
    start = _emit(served, "start", "--task", tid, "--agent", "shell-bot", "--name", "Nightly backup")
    assert start.returncode == 0, start.stdout + start.stderr
    wait_until(lambda: "Nightly backup" in served.shown(tid), 30, "the shell task's parent, named")
    # Several root holds with only heartbeats: still open, never put aside.
    for _ in range(3):
        time.sleep(ROOT_HOLD_S)
        beat = _emit(served, "heartbeat", "--task", tid, "--agent", "shell-bot")
        assert beat.returncode == 0, beat.stdout + beat.stderr
    assert served.control(tid)["status"] in ("starting", "working"), served.control(tid)
    done = _emit(served, "finish", "--task", tid, "--agent", "shell-bot", "--name", "Nightly backup")
    assert done.returncode == 0, done.stdout + done.stderr
    wait_until(lambda: "· complete" in served.shown(tid), 30, "the shell task complete")
    wait_until(
        lambda: (
            [r["agent_id"] for r in db_rows(served.db_url, "SELECT agent_id FROM agent_tasks WHERE task_id = $1", tid)]
            == ["shell-bot"]
        ),
        30,
        "the audit trail to name the shell agent",
    )
    names = ("spanvisor_tasks_started_total", "spanvisor_tasks_finished_total")
    # The Prometheus sink is a sink of its own: its counts may follow Slack's.
    wait_until(
        lambda: all("shell-bot" in {s["agent"] for s in served.series(n)} for n in names), 30, "shell-bot counted"
    )
    for name in names:
        agents = {s["agent"] for s in served.series(name)}
        assert "shell-bot" in agents and "spanvisor-emit" not in agents, (name, agents)


def test_a_helper_task_set_to_stop_is_cancelled_by_its_budget_through_serve(served: Served) -> None:
    """The receiver's path: the root's budget and stop reach serve with the
    helper's live start record (the root's span only comes at its end); the
    call that reaches the budget arrives through the span exporter; the
    agent reads the budget's cancel back from the control API."""
    tid = f"spend-{uuid.uuid4().hex[:8]}"
    budget = {"agent.budget.usd": 0.05, "agent.budget.stop": True}
    with task("Spend", agent_id="rivet", task_id=tid, tracer=served.tracer, **budget) as t:  # type: ignore[arg-type]
        with served.tracer.start_as_current_span("chat") as call:
            call.set_attributes(
                {"gen_ai.request.model": "m", "gen_ai.usage.input_tokens": 10, "gen_ai.usage.cost": 0.06}
            )
        assert served.provider is not None and served.provider.force_flush(20_000)  # not the batch's 5 s
        wait_until(lambda: t.cancel_requested, 60, "the agent to read the budget's cancel")
        answer = t.request_approval("Go on?", timeout=10)
        assert answer.outcome == "cancelled" and answer.by == "budget", answer
    assert served.provider.force_flush(20_000)
    cancel = wait_until(lambda: served.control(tid).get("cancel"), 30, "the control API's cancel")
    assert (cancel["by"], cancel["source"], cancel["comment"]) == ("budget", "budget", "budget reached: $0.06 of $0.05")
    wait_until(lambda: any("Cancel requested by budget" in line for line in served.thread(tid)), 30, "Slack's line")
    [row] = wait_until(
        lambda: db_rows(served.db_url, "SELECT * FROM agent_tasks WHERE task_id = $1 AND ended_at IS NOT NULL", tid),
        60,
        "the task's end",
    )
    assert row["status"] == "cancelled", row


def _state(served: Served, task_id: str) -> dict[str, Any]:
    try:
        return served.control(task_id)
    except urllib.error.HTTPError as exc:  # not there yet
        if exc.code == 404:
            return {}
        raise


def test_an_end_another_token_holder_sends_is_a_claim_and_the_helpers_task_is_still_cancelled(
    served: Served,
) -> None:
    """Issue 63: anyone with the OTLP token can send a helper task's root end
    (its ids are in the control API), marked complete, to dodge a cancel.
    The helper keyed its task on its live start record, so that end is a
    claim: said on the task, which stays open; a cancel is then applied,
    the agent reads it, and its own end (``cancelled``) is the one that
    counts, the claim kept in its notes."""
    tid = f"rotate-{uuid.uuid4().hex[:8]}"
    opened: dict[str, Any] = {}

    def agent() -> None:
        with task("Rotate keys", agent_id="keeper", task_id=tid, tracer=served.tracer) as t:
            opened["root"] = t.span.get_span_context()
            t.checkpoint("Rotating the signing keys", progress=40)
            wait_until(lambda: t.cancel_requested, 90, "the agent to read the cancel")
            opened["read"] = True

    th = threading.Thread(target=agent, daemon=True)
    th.start()
    try:
        wait_until(lambda: _state(served, tid).get("status") == "working", 30, "the task to show")
        root = opened["root"]
        forged = ReadableSpan(
            name="agent.task Rotate keys",
            context=SpanContext(root.trace_id, root.span_id, False),
            attributes={cv.TASK_ID: tid, cv.TASK_NAME: "Rotate keys", cv.AGENT_ID: "keeper", cv.STATUS: "complete"},
            start_time=time.time_ns() - 10**9,
            end_time=time.time_ns(),
            resource=Resource.create({"service.name": "intruder"}),
        )
        assert OTLPSpanExporter(endpoint=served.serve.url, timeout=20).export([forged]) == SpanExportResult.SUCCESS
        wait_until(lambda: "without its starter's word" in served.shown(tid), 30, "the claim said on the task")
        claimed = served.series("spanvisor_claimed_ends_total")
        assert claimed and float(claimed[0]["value"]) >= 1, claimed
        assert _state(served, tid)["status"] not in ("complete", "error", "cancelled", "lost")
        status, body = served.decide(tid, {"action": "cancel", "actor": "alice"})
        assert status == 200, body
    finally:
        th.join(90)
    assert opened.get("read"), "the agent never read the cancel"
    assert served.provider is not None and served.provider.force_flush(20_000)
    [row] = wait_until(
        lambda: db_rows(served.db_url, "SELECT * FROM agent_tasks WHERE task_id = $1 AND ended_at IS NOT NULL", tid),
        60,
        "the task's end",
    )
    assert row["status"] == "cancelled", row


# Slow by design: a real agent killed, then the stall and the lost windows of
# this file's serve run out; the agent is killed as the module begins (the
# fixture above) and this test comes last, so those windows mostly pass while
# the other tests run, and it waits for whatever is left of them.
def test_an_agent_killed_mid_task_is_stalled_then_lost(served: Served, killed: Killed) -> None:
    tid = killed.task_id
    if killed.failed:
        raise killed.failed[0]
    wait_until(lambda: any("No activity" in line for line in served.thread(tid)), 30, "the stall line")
    # The audit writer is a sink of its own: its row may follow Slack's line.
    stalled = "SELECT kind FROM agent_checkpoints WHERE task_id = $1 AND kind = 'stalled'"
    wait_until(lambda: bool(db_rows(served.db_url, stalled, tid)), 30, "the stall in the audit trail")
    wait_until(lambda: served.control(tid)["status"] == "lost", LOST_AFTER_S + 30, "the task to be finished as lost")
    wait_until(
        lambda: db_rows(served.db_url, "SELECT status FROM agent_tasks WHERE task_id = $1", tid)[0]["status"] == "lost",
        30,
        "the audit trail to say lost",
    )
    lost = [s for s in served.series("spanvisor_tasks_finished_total") if s.get("outcome") == "lost"]
    assert any(s["agent"] == KILLED_AGENT for s in lost), lost
    wait_until(lambda: "Lost (no sign of life)" in " ".join(served.thread(tid)), 30, "the lost summary")
