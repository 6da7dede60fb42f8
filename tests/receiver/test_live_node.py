"""Agents in other languages through a real ``spanvisor serve``: the live
channel is plain OpenTelemetry, so any SDK can speak it.

* The Node.js example (docs/examples/node/, the OpenTelemetry JS SDK from the
  npm registry, its OTLP/HTTP span and log exporters) gets a Slack parent
  with the task's name, progress and step while its root is open, and in
  the end the very parent the Python helper gets for the same task: one
  parent, complete, under the agent's own name.
* The Node.js plain-OTel example (``plain-agent.mjs``: ``@opentelemetry/sdk-node``
  and GenAI-shaped spans, no spanvisor anything) shows its task while its
  root is open: a row, a Slack parent and its first model call's tokens,
  before the root is sent (a provisional task); the root then names it.
* A shell agent (``spanvisor emit``): ``emit start`` makes the task open and
  named while it runs, ``emit heartbeat`` keeps it alive, and once the
  heartbeats stop it is stalled after SPANVISOR_STALL_AFTER; the shell
  example (docs/examples/shell-agent.sh) reports the task to the end.

The example's npm packages are installed once per package-lock into
``~/.cache/spanvisor-tests/node/<hash>`` (outside the repository;
node_example.py, which ``make test`` also starts in the background), so
reruns cost nothing. Without node, npm or the registry the Node test skips
with the reason, and fails under CI.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import node_example
import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from serve_proc import FakeSlackThread, ServeProcess, db_rows, slack_env
from test_live_serve import Served
from tests.waiting import wait_until

from spanvisor.agent import task

# The first test's setup holds the shell task's heartbeats (a stall time and
# a bit, the shell_task fixture) as well as a first `npm ci` (up to 300 s).
pytestmark = [pytest.mark.slow, pytest.mark.timeout_s(360)]

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = node_example.EXAMPLE
SHELL_EXAMPLE = ROOT / "docs" / "examples" / "shell-agent.sh"
# Each heartbeat is a `spanvisor emit` process: on a loaded machine (the
# suite in several processes on 2 cores) one took up to 16 s to start and
# send, so a shorter stall time stalls a task that is heartbeating.
STALL_AFTER_S = 25


@pytest.fixture(scope="module")
def node_agent(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """The command that runs the Node example, its packages in place."""
    node = node_example.node()
    modules = node_example.node_modules()
    here = tmp_path_factory.mktemp("node-agent")
    for f in ("live-agent.mjs", "plain-agent.mjs", "package.json"):
        shutil.copy(EXAMPLE / f, here / f)
    (here / "node_modules").symlink_to(modules, target_is_directory=True)
    return [node, str(here / "live-agent.mjs")]


@pytest.fixture(scope="module")
def served(pg_server: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    db_url = pg_server.database()
    slack = FakeSlackThread()
    data = tmp_path_factory.mktemp("serve-node")
    env = slack_env(
        data,
        slack.base_url,
        SPANVISOR_DATABASE_URL=db_url,
        SPANVISOR_STATE_STORE="postgres",
        SPANVISOR_SINKS="postgres,slack,prometheus",
        SPANVISOR_STALL_AFTER=f"{STALL_AFTER_S}s",
    )
    for leaked in ("SPANVISOR_OTLP_TOKEN", "SPANVISOR_CONTROL_TOKEN", "SLACK_APP_TOKEN"):
        env.pop(leaked, None)
    serve = ServeProcess(data, env)
    mp = pytest.MonkeyPatch()
    # The Python helper's side: its spans over OTLP, its live records through
    # the log exporter it sets up; a heartbeat well within the stall time.
    provider = TracerProvider(resource=Resource.create({"service.name": "py-pod-1"}), shutdown_on_exit=False)
    try:
        mp.setenv("SPANVISOR_CONTROL_URL", f"http://127.0.0.1:{serve.http}")
        mp.setenv("SPANVISOR_HEARTBEAT", "1s")
        for name in ("SPANVISOR_CONTROL_TOKEN", "SPANVISOR_OTLP_TOKEN", "SPANVISOR_LIVE_CHANNEL"):
            mp.delenv(name, raising=False)
        exporter = OTLPSpanExporter(endpoint=serve.url, timeout=20)
        provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=1000))
        yield Served(serve, slack, db_url, provider.get_tracer("agent"))
    finally:
        provider.shutdown()
        mp.undo()
        serve.stop()
        slack.close()


EMIT_TEST = "test_emit_start_makes_a_shell_task_open_and_named_heartbeats_keep_it_and_silence_stalls_it"


@dataclass
class ShellTask:
    """The shell task of the emit test, and what went wrong while it beat."""

    task_id: str
    failed: list[BaseException]

    def stalled(self, served: Served) -> bool:
        return any("No activity" in line for line in served.thread(self.task_id))


# Slow by design: the shell task's heartbeats run past the stall time as the
# file begins (the first test's setup, some 30 s); its silence then overlaps
# the file's tests, and its test comes last.
@pytest.fixture(scope="module", autouse=True)
def shell_task(served: Served, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> ShellTask:
    """The emit test's first part, run as the module begins: ``emit start``,
    then heartbeats for well past the stall time, nothing else running here
    meanwhile. The test itself comes last: the silence after the heartbeats,
    a stall time long (idle time), passes while the other tests run. A
    failure here is kept for that test to raise, not charged to whichever
    test comes first."""
    out = ShellTask(f"export-{uuid.uuid4().hex[:8]}", [])
    if f"{request.node.nodeid}::{EMIT_TEST}" not in {item.nodeid for item in request.session.items}:
        return out
    tid, tmp = out.task_id, tmp_path_factory.mktemp("shell-task")
    try:
        _emit(served, tmp, "start", tid, "--name", "Nightly export")
        wait_until(lambda: "Nightly export" in served.shown(tid), 30, "the shell task's name while it runs")
        assert served.control(tid)["status"] in ("starting", "working")
        # Heartbeats for well past the stall time: the task is alive. One
        # every few seconds, as a shell agent would send them (each is a
        # Python start: one every half second kept a core busy for the whole
        # wait).
        until = time.monotonic() + STALL_AFTER_S + 3
        while time.monotonic() < until:
            _emit(served, tmp, "heartbeat", tid)
            assert not out.stalled(served), "a task saying it is alive is not stalled"
            time.sleep(STALL_AFTER_S / 6)
        assert served.control(tid)["status"] in ("starting", "working")
    except Exception as exc:
        out.failed.append(exc)
    return out


def _agent_env(served: Served, tmp: Path, **extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SPANVISOR_", "OTEL_", "SLACK_")) and k != "TEST_DATABASE_URL"
    }
    return {
        **env,
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{served.serve.http}",
        # The agent's own state (emit keeps a task's start time there).
        "SPANVISOR_DATA_DIR": str(tmp / "agent-data"),
        "SPANVISOR_HEARTBEAT": "1s",
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        **extra,
    }


# What differs between two runs of one task: trace ids, run ids, times taken.
_VARYING = (
    (r"\b[0-9a-f]{32}\b", "<trace>"),
    (r'\\?"r\\?":\\?"[0-9a-f]{12}\\?"', '"r":"<run>"'),
    (r"(\*Elapsed\*\n)[^\s*]+", r"\1<t>"),
    (r"\bin \d+(\.\d+)?\s?(ms|s|m|min)\b", "in <t>"),
)


def _same_text(text: str, task_id: str) -> str:
    for pattern, same in _VARYING:
        text = re.sub(pattern, same, text)
    return text.replace(task_id, "<task>")


def _same(served: Served, task_id: str) -> Any:
    """What a parent shows, with what differs between two runs of one task
    made equal: its ids, block ids (they count updates) and durations."""
    m = served.parent(task_id)
    assert m is not None, task_id

    def norm(v: Any) -> Any:
        if isinstance(v, dict):
            return {k: norm(x) for k, x in v.items() if k != "block_id"}
        if isinstance(v, list):
            return [norm(x) for x in v]
        return _same_text(v, task_id) if isinstance(v, str) else v

    return norm({"text": m.text, "blocks": m.blocks, "attachments": m.attachments})


def _complete(served: Served, task_id: str) -> bool:
    """The parent's header says the task is complete (a step's card may say
    "complete" long before)."""
    m = served.parent(task_id)
    return m is not None and "· complete" in (m.text or "")


def _open_and_applying(served: Served, task_id: str) -> str:
    shown = served.shown(task_id)
    ok = "Migrate billing" in shown and "Applying the migration" in shown and "60%" in shown
    return shown if ok and '"in_progress", "task_id": "step-1", "title": "apply"' in shown else ""


def _python_helper_task(served: Served, task_id: str, paused: threading.Event) -> None:
    """The Node example's task, told by the Python helper."""
    tracer = served.tracer
    with task(
        "Migrate billing", agent_id="sprocket", task_id=task_id, steps=["plan", "apply", "verify"], tracer=tracer
    ) as t:
        t.checkpoint("Planning the migration", progress=20, step="plan")
        with tracer.start_as_current_span("apply migration", attributes={"db.system.name": "postgresql"}):
            time.sleep(0.1)
        t.checkpoint("Applying the migration", progress=60, step="apply")
        paused.wait(120)
        t.checkpoint("Verified the new schema", progress=100, step="verify")
        t.result("tables_migrated", 3)


def test_a_node_agent_is_live_while_open_and_gets_the_parent_the_python_helper_gets(
    node_agent: list[str], served: Served, tmp_path: Path
) -> None:
    tid = f"node-{uuid.uuid4().hex[:8]}"
    env = _agent_env(served, tmp_path, OTEL_SERVICE_NAME="node-pod-1", OTEL_BSP_SCHEDULE_DELAY="1000")
    proc = subprocess.Popen(
        [*node_agent, "--pause", "--task-id", tid],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    py_tid = f"py-{uuid.uuid4().hex[:8]}"
    go_on = threading.Event()
    py = threading.Thread(target=_python_helper_task, args=(served, py_tid, go_on), daemon=True)
    try:
        assert proc.stdin is not None and proc.stdout is not None
        assert proc.stdout.readline().strip() == b"paused", proc.stderr.read() if proc.stderr else b""
        # The root is open (the agent waits on its stdin): all the parent
        # knows came through the live channel.
        wait_until(lambda: _open_and_applying(served, tid), 30, "the open Node task's name, progress and step")
        assert served.control(tid)["status"] == "working"
        assert proc.poll() is None, "the agent is still inside its task"
        # The Python helper, the same task, paused at the same point.
        py.start()
        wait_until(lambda: _open_and_applying(served, py_tid), 30, "the open Python task's name, progress and step")
        node_open, py_open = _same(served, tid), _same(served, py_tid)
        assert node_open == py_open, f"Node:   {node_open}\nPython: {py_open}"

        proc.stdin.write(b"go\n")
        proc.stdin.close()
        assert proc.wait(60) == 0, proc.stderr.read() if proc.stderr else b""
        go_on.set()
        py.join(60)
    finally:
        go_on.set()
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    for t in (tid, py_tid):
        wait_until(functools.partial(_complete, served, t), 30, f"{t} complete")
    wait_until(lambda: _same(served, tid) == _same(served, py_tid), 10, "the same final parent for both agents")

    # The same story in the thread, each line once, up to the summary.
    def story(t: str) -> list[str]:
        return [_same_text(line, t) for line in served.thread(t) if line]

    def summarized(t: str) -> bool:
        return any(line.startswith("Complete") for line in story(t))

    for t in (tid, py_tid):
        wait_until(functools.partial(summarized, t), 30, f"{t}'s summary")
    node_thread, py_thread = story(tid), story(py_tid)
    assert node_thread == py_thread, f"Node:   {node_thread}\nPython: {py_thread}"
    assert node_thread and "Verified the new schema" in " ".join(node_thread), node_thread
    # One parent per task, never a second one for the root's end.
    parents = [m for m in served.slack.parents() if (m.metadata or {}).get("event_payload", {}).get("task_id") == tid]
    assert len(parents) == 1
    shown = served.shown(tid)
    assert "Migrate billing" in shown and "100%" in shown and "sprocket" in shown
    # One agent, one name: agent.id, never either sender's service.name.
    rows = db_rows(served.db_url, "SELECT task_id, agent_id FROM agent_tasks WHERE task_id = ANY($1)", [tid, py_tid])
    assert {r["task_id"]: r["agent_id"] for r in rows} == {tid: "sprocket", py_tid: "sprocket"}
    names = ("spanvisor_tasks_started_total", "spanvisor_tasks_finished_total")
    # The Prometheus sink is a sink of its own: its counts may follow Slack's.
    wait_until(lambda: all("sprocket" in {s["agent"] for s in served.series(n)} for n in names), 30, "sprocket counted")
    for name in names:
        agents = {s["agent"] for s in served.series(name)}
        assert "sprocket" in agents and not agents & {"node-pod-1", "py-pod-1"}, (name, agents)


def _row(served: Served, task_id: str) -> dict[str, Any] | None:
    rows = db_rows(
        served.db_url,
        "SELECT status, task_name, agent_id, input_tokens, output_tokens FROM agent_tasks WHERE task_id = $1",
        task_id,
    )
    return rows[0] if rows else None


def test_a_plain_otel_node_agent_shows_its_task_before_its_root_is_sent(
    node_agent: list[str], served: Served, tmp_path: Path
) -> None:
    node, live = node_agent
    env = _agent_env(
        served,
        tmp_path,
        OTEL_SERVICE_NAME="plain-node-1",
        OTEL_BSP_SCHEDULE_DELAY="1000",
        OTEL_METRICS_EXPORTER="none",
        OTEL_LOGS_EXPORTER="none",
    )
    plain = str(Path(live).parent / "plain-agent.mjs")
    proc = subprocess.Popen(
        [node, plain, "--pause", "--turns", "3", "--step-ms", "50"],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert proc.stdin is not None and proc.stdout is not None
        said = proc.stdout.readline().decode().split()
        assert said[:1] == ["paused"], (said, proc.stderr.read() if proc.stderr else b"")
        ids = dict(kv.split("=", 1) for kv in said[1:])
        task_id = f"{ids['trace']}-{ids['root']}"
        # The root is open (the agent waits on its stdin): the SDK's batch
        # processor sent its first model call and tool call, nothing else.
        row = wait_until(lambda: (r := _row(served, task_id)) and r["input_tokens"] and r, 30, "the task's row")
        assert row == {
            "status": "working",
            "task_name": "plain-node-1 — running",
            "agent_id": "plain-node-1",
            "input_tokens": 1200,
            "output_tokens": 80,
        }
        wait_until(lambda: "plain-node-1 — running" in served.shown(task_id), 30, "the Slack parent while it runs")
        assert proc.poll() is None, "the agent is still inside its task"
        proc.stdin.write(b"go\n")
        proc.stdin.close()
        assert proc.wait(60) == 0, proc.stderr.read() if proc.stderr else b""
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    # The root names the task and ends it: one parent, the root's name and agent.
    wait_until(lambda: _complete(served, task_id), 30, "the plain task complete")
    assert "invoke_agent planner" in served.shown(task_id)
    parents = [
        m for m in served.slack.parents() if (m.metadata or {}).get("event_payload", {}).get("task_id") == task_id
    ]
    assert len(parents) == 1
    row = wait_until(lambda: (r := _row(served, task_id)) and r["status"] != "working" and r, 30, "the row's end")
    assert row == {
        "status": "complete",
        "task_name": "invoke_agent planner",
        "agent_id": "planner",
        "input_tokens": 1200 + 2400 + 3600,
        "output_tokens": 3 * 80,
    }


def _emit(served: Served, tmp: Path, kind: str, tid: str, *args: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "spanvisor.cli", "emit", kind, "--task", tid, "--agent", "shell-bot", *args]
    done = subprocess.run(argv, env=_agent_env(served, tmp), check=False, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, (kind, done.stdout, done.stderr)
    return done


def test_the_shell_example_reports_its_task_to_the_end(served: Served, tmp_path: Path) -> None:
    tid = f"shell-{uuid.uuid4().hex[:8]}"
    env = _agent_env(served, tmp_path, TASK_ID=tid, STEP_SECONDS="1", HEARTBEAT="1")
    done = subprocess.run(
        ["bash", str(SHELL_EXAMPLE)], env=env, check=False, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, (done.stdout, done.stderr)
    wait_until(lambda: _complete(served, tid), 30, "the shell example's task complete")
    shown = served.shown(tid)
    assert "Migrate billing" in shown and "100%" in shown and "sprocket" in shown
    thread = " ".join(served.thread(tid))
    assert "Applying the migration" in thread and "No activity" not in thread
    # The audit writer is a sink of its own: its row may follow Slack's view.
    [row] = wait_until(
        lambda: [
            r
            for r in db_rows(served.db_url, "SELECT agent_id, status FROM agent_tasks WHERE task_id = $1", tid)
            if r["status"] != "working"
        ],
        30,
        "the task's row to leave working",
    )
    assert row == {"agent_id": "sprocket", "status": "complete"}


# Slow by design: alive past the stall time, then stalled, which only time
# shows: the task's start and heartbeats (a stall time and a bit) run as the
# module begins (the shell_task fixture), this test comes last and waits for
# what is left of the silence's stall time after the other tests ran.
def test_emit_start_makes_a_shell_task_open_and_named_heartbeats_keep_it_and_silence_stalls_it(
    served: Served, shell_task: ShellTask, tmp_path: Path
) -> None:
    if shell_task.failed:
        raise shell_task.failed[0]
    tid = shell_task.task_id
    # The shell agent went silent: stalled, in Slack and in the audit trail.
    wait_until(lambda: shell_task.stalled(served), STALL_AFTER_S + 30, "the stall line once the heartbeats stopped")
    # The audit writer is a sink of its own: its row may follow Slack's view.
    wait_until(
        lambda: db_rows(
            served.db_url, "SELECT kind FROM agent_checkpoints WHERE task_id = $1 AND kind = 'stalled'", tid
        ),
        30,
        "the stall in the audit trail",
    )
    _emit(served, tmp_path, "finish", tid)
    wait_until(lambda: _complete(served, tid), 30, "the shell task complete")
