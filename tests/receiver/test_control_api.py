"""The control API on the OTLP/HTTP port: routes, auth and bad input on a
real receiver and pipeline; then end to end through ``spanvisor serve``: an
agent exporting OTLP with ``SPANVISOR_CONTROL_URL`` set is released by
``spanvisor approve`` and sees ``spanvisor cancel``."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from serve_proc import ServeProcess, console_env
from tests.receiver.conftest import RunningReceiver, local_settings, make_pipeline
from tests.waiting import wait_until

from spanvisor.testing import InMemorySink

TOKEN = "ctl-s3cret"


@pytest.fixture
def api(tmp_path: Path) -> Iterator[RunningReceiver]:
    pipeline = make_pipeline(tmp_path / "data", [InMemorySink()])
    r = RunningReceiver(pipeline, local_settings(tmp_path, token=TOKEN))
    yield r
    r.close()


def call(
    base: str, method: str, path: str, body: Any = None, token: str | None = TOKEN, raw: bytes | None = None
) -> tuple[int, dict[str, Any]]:
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(base + path, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=20) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        text = exc.read()
        return exc.code, json.loads(text) if text.startswith(b"{") else {"text": text.decode()}


def base_of(r: RunningReceiver) -> str:
    return f"http://127.0.0.1:{r.receiver.http_port}"


def start_task(base: str, task: str, token: str = TOKEN) -> None:
    """A running task on the receiver (``spanvisor emit start``), seen in the shared record."""
    from spanvisor.cli.main import main

    assert (
        main(["emit", "start", "--task", task, "--agent", "sh", "--name", "n", "--endpoint", base, "--token", token])
        == 0
    )
    path = f"/v1/control/tasks/{urllib.parse.quote(task, safe='')}"
    wait_until(lambda: call(base, "GET", path)[1].get("state") == "running", 20, "the run")


def test_a_decision_is_recorded_once_and_read_back_with_long_polling(api: RunningReceiver) -> None:
    base = base_of(api)
    task = f"T-{uuid.uuid4().hex[:8]}"
    status, doc = call(base, "GET", f"/v1/control/tasks/{task}?after=0&wait=0")
    assert status == 200 and doc["status"] == "unknown" and doc["decisions"] == [] and doc["next"] == 0
    assert doc["cancel_requested"] is False and "budget" not in doc
    # A decision on a task nobody runs: refused (404), never kept for later.
    status, doc = call(base, "POST", f"/v1/control/tasks/{task}/decisions", {"action": "cancel", "actor": "alice"})
    assert status == 404 and doc["code"] == "unknown_task", doc
    start_task(base, task)

    # A long poll started before the decision returns with it.
    got: list[tuple[int, dict[str, Any]]] = []
    poller = threading.Thread(target=lambda: got.append(call(base, "GET", f"/v1/control/tasks/{task}?wait=30")))
    poller.start()
    body = {"action": "cancel", "actor": "alice", "comment": "<b>stop</b> " + "x" * 600, "intervention_id": "i-1"}
    status, doc = call(base, "POST", f"/v1/control/tasks/{task}/decisions", body)
    assert status == 200 and doc["outcome"] == "applied" and doc["intervention_id"] == "i-1", doc
    poller.join(30)
    assert got and got[0][0] == 200
    polled = got[0][1]
    assert [d["action"] for d in polled["decisions"]] == ["cancel"] and polled["next"] == 1
    assert polled["cancel_requested"] is True
    d = polled["decisions"][0]
    assert d["actor_id"] == "alice" and d["source"] == "api" and d["comment"].startswith("<b>stop</b>")
    assert len(d["comment"]) == 500, "comments are capped"

    # The same click again: a duplicate (exit 0 for the CLI); a second cancel: refused.
    status, doc = call(base, "POST", f"/v1/control/tasks/{task}/decisions", body)
    assert status == 200 and doc["outcome"] == "duplicate"
    status, doc = call(base, "POST", f"/v1/control/tasks/{task}/decisions", {"action": "cancel", "actor": "bob"})
    assert status == 409 and doc["outcome"] == "already_decided" and "alice" in doc["reason"]
    # Read on past the cursor: nothing new, and cancel_requested still says so.
    status, doc = call(base, "GET", f"/v1/control/tasks/{task}?after=1")
    assert status == 200 and doc["decisions"] == [] and doc["next"] == 1 and doc["cancel_requested"] is True


def test_the_control_api_wants_the_otlp_token(api: RunningReceiver) -> None:
    base = base_of(api)
    for token in (None, "wrong"):
        status, doc = call(base, "GET", "/v1/control/tasks/T1", token=token)
        assert status == 401 and "token" in doc["error"]
        status, doc = call(base, "POST", "/v1/control/tasks/T1/decisions", {"action": "cancel", "actor": "x"}, token)
        assert status == 401


def test_with_a_decide_token_the_otlp_token_reads_but_cannot_decide(tmp_path: Path) -> None:
    """Every agent holds the OTLP token: with SPANVISOR_DECIDE_TOKEN set, it
    still reads its task's decisions but cannot approve its own request."""
    pipeline = make_pipeline(tmp_path / "data", [InMemorySink()], plugins=True, SPANVISOR_DECIDE_TOKEN="people-only")
    r = RunningReceiver(pipeline, local_settings(tmp_path, token=TOKEN))
    try:
        base = base_of(r)
        start_task(base, "T7")
        body = {"action": "cancel", "actor": "agent-itself"}
        status, _ = call(base, "POST", "/v1/control/tasks/T7/decisions", body, token=TOKEN)
        assert status == 401
        status, doc = call(base, "GET", "/v1/control/tasks/T7", token=TOKEN)
        assert status == 200 and doc["decisions"] == []
        status, doc = call(base, "POST", "/v1/control/tasks/T7/decisions", {**body, "actor": "alice"}, "people-only")
        assert status == 200 and doc["outcome"] == "applied", doc
        status, doc = call(base, "GET", "/v1/control/tasks/T7", token=TOKEN)
        assert [d["actor_id"] for d in doc["decisions"]] == ["alice"]
    finally:
        r.close()


@pytest.mark.parametrize(
    ("path", "body", "raw", "says"),
    [
        ("/v1/control/tasks/T1/decisions", None, b"{not json", "not JSON"),
        ("/v1/control/tasks/T1/decisions", [1, 2], None, "JSON object"),
        ("/v1/control/tasks/T1/decisions", {"action": "explode", "actor": "a"}, None, "action must be one of"),
        ("/v1/control/tasks/T1/decisions", {"action": "approve", "actor": "a"}, None, "approval_id"),
        ("/v1/control/tasks/T1/decisions", {"action": "cancel", "actor": ""}, None, "actor"),
        ("/v1/control/tasks/T1/decisions", {"action": "cancel", "actor": "a", "comment": 5}, None, "comment"),
        ("/v1/control/tasks/T1/decisions", {"action": "cancel", "actor": "a", "source": "slack"}, None, "source"),
        ("/v1/control/tasks/T1/decisions", {"action": "cancel", "actor": "a", "approval_id": "a1"}, None, "only for"),
        ("/v1/control/tasks/T1?wait=soon", None, None, "wait must be a number"),
        ("/v1/control/tasks/T1?after=-1", None, None, "after must be at least 0"),
        ("/v1/control/tasks/T1?after=1.5", None, None, "whole number"),
        ("/v1/control/tasks/" + "t" * 300, None, None, "task id is longer"),
        ("/v1/control/tasks/T1/decisions", {"action": "cancel", "actor": "a\u0000b"}, None, "control characters"),
    ],
)
def test_bad_input_is_a_400_that_says_what_is_wrong(
    api: RunningReceiver, path: str, body: Any, raw: bytes | None, says: str
) -> None:
    method = "POST" if path.endswith("decisions") else "GET"
    status, doc = call(base_of(api), method, path, body, raw=raw)
    assert status == 400 and says in doc["error"], doc


def test_unknown_routes_are_404_and_budgets_say_why_they_are_missing(api: RunningReceiver) -> None:
    base = base_of(api)
    status, doc = call(base, "GET", "/v1/control/nothing/here")
    assert status == 404 and "no control route" in doc["error"]
    status, doc = call(base, "GET", "/v1/control/budgets")
    spend = getattr(api.pipeline, "spend", None)
    if getattr(spend, "report", None) is None:
        assert status == 404 and "spending totals" in doc["error"]
    else:
        assert status == 200 and isinstance(doc, dict)


# -- end to end through `spanvisor serve` -------------------------------------------


def _serve_env(data_dir: Path) -> dict[str, str]:
    return console_env(data_dir, SPANVISOR_OTLP_TOKEN=TOKEN, SPANVISOR_SHUTDOWN_TIMEOUT="10s")


def cli(env: dict[str, str], *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "spanvisor.cli", *argv], check=False, env=env, capture_output=True, text=True, timeout=60
    )


@pytest.mark.slow
def test_an_agent_of_serve_is_released_by_spanvisor_approve_and_sees_spanvisor_cancel(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    from spanvisor.agent import ApprovalDecision, task

    # rivet's default task budget: serve knows it before the root ends.
    env = {**_serve_env(tmp_path / "serve"), "SPANVISOR_BUDGET_TASK_USD": "rivet=1.5"}
    serve = ServeProcess(tmp_path / "serve", env)
    try:
        base = f"http://127.0.0.1:{serve.http}"
        monkeypatch.setenv("SPANVISOR_CONTROL_URL", base)
        monkeypatch.setenv("SPANVISOR_CONTROL_TOKEN", TOKEN)
        provider = TracerProvider()
        exporter = OTLPSpanExporter(endpoint=serve.url, headers={"authorization": f"Bearer {TOKEN}"}, timeout=20)
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        tracer = provider.get_tracer("agent")
        task_id = f"deploy-{uuid.uuid4().hex[:8]}"
        result: list[ApprovalDecision] = []
        budgets: list[Any] = []
        cancelled = threading.Event()
        finish = threading.Event()

        def agent() -> None:
            with task("Deploy", agent_id="rivet", task_id=task_id, tracer=tracer) as t:
                t.on_cancel(cancelled.set)
                result.append(t.request_approval("Apply the fix to prod?", timeout=120))
                # From the control API: the pipeline is serve's. A read that
                # takes past its 2 s is None, as documented; a loaded machine
                # can make it so, so the agent asks again.
                ends = time.monotonic() + 30
                budget = t.budget
                while budget is None and time.monotonic() < ends:
                    time.sleep(0.5)
                    budget = t.budget
                budgets.append(budget)
                finish.wait(60)

        th = threading.Thread(target=agent, daemon=True)
        th.start()

        def open_request() -> bool:
            status, doc = call(base, "GET", f"/v1/control/tasks/{task_id}")
            return status == 200 and doc["status"] == "awaiting_approval" and bool(doc["approvals"])

        wait_until(open_request, 30, "serve to show the open approval request")
        _, doc = call(base, "GET", f"/v1/control/tasks/{task_id}")
        assert doc["approvals"][0]["approval_id"] == "a1"
        assert doc["approvals"][0]["question"] == "Apply the fix to prod?"

        cli_env = {k: v for k, v in env.items() if k != "SPANVISOR_OTLP_TOKEN"}
        wrong = cli(cli_env, "approve", task_id, "a1", "--url", base, "--token", "nope")
        assert wrong.returncode == 1 and "token" in wrong.stderr, wrong
        ok = cli(cli_env, "approve", task_id, "a1", "--url", base, "--token", TOKEN, "--as", "alice")
        assert ok.returncode == 0 and "Approved" in ok.stdout, ok
        wait_until(lambda: result, 30, "the agent to be released")
        assert result[0].approved and result[0].by == "alice"
        wait_until(lambda: budgets, 45, "the agent to read its budget")
        assert budgets[0] is not None and budgets[0].budget_usd == 1.5 and not budgets[0].over, budgets
        again = cli(cli_env, "reject", task_id, "a1", "--url", base, "--token", TOKEN, "--as", "bob")
        assert again.returncode == 1 and "already approved by alice" in again.stderr, again

        # The agent's note of the answer and the click both closed the request.
        wait_until(lambda: call(base, "GET", f"/v1/control/tasks/{task_id}")[1]["status"] == "working", 30, "working")

        stop = cli(cli_env, "cancel", task_id, "--url", base, "--token", TOKEN, "--as", "carol")
        assert stop.returncode == 0, stop
        assert cancelled.wait(30), "on_cancel fired in the agent"
        finish.set()
        th.join(30)
        unreachable = cli(cli_env, "ack", task_id, "--url", "http://127.0.0.1:9", "--timeout", "2")
        assert unreachable.returncode == 2, unreachable
    finally:
        serve.stop()


def test_a_task_id_with_a_colon_and_a_slash_is_one_task_its_cancel_read_back(api: RunningReceiver) -> None:
    """A launcher's task id may hold ':' and '/' (``deploy:web/42``): the
    routes take it percent-encoded, and its cancel reads back with who and
    why, as a hook reads it before each tool call."""
    from spanvisor.control.client import HttpSource

    base = base_of(api)
    task = f"deploy:web/{uuid.uuid4().hex[:8]}"
    start_task(base, task)
    client = HttpSource(base, TOKEN)
    status, doc = client.get_task(task)
    assert (status, doc["task_id"], doc["state"], doc["cancel"]) == (200, task, "running", None)
    sent = client.decide(task, "cancel", "alice", comment="wrong branch")
    assert sent.ok, sent
    status, doc = client.get_task(task)
    assert doc["cancel_requested"] is True and doc["cancel"]["by"] == "alice"
    assert (doc["cancel"]["comment"], doc["cancel"]["source"]) == ("wrong branch", "cli")
    # Another task whose id only begins like it knows nothing of that cancel.
    assert client.get_task(task + "/decisions")[1]["cancel_requested"] is False
