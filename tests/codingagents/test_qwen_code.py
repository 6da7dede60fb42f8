"""Qwen Code 0.24.4, the real CLI, offline against the fake Chat Completions
API, its telemetry (OTLP/JSON, chunked) to a real serve (PostgreSQL, the
fake Slack).

Alone, a session is one task named from its prompt, its model calls and
tokens counted once (cached input inside the input), priced from the
tokens (Qwen Code reports no cost; serve's SPANVISOR_MODEL_PRICES names
the model's price, which genai-prices does not know), its shell call a
step, its scripted context growth warned at 70 % and 85 %, and its end
seen by liveness (lost). Its exporter sends chunked bodies with no
Content-Length, which serve takes. Under ``spanvisor run`` it ends
complete, or failed with the API's error on a 401.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.codingagents import endhooks as eh
from tests.codingagents import qwen_code as qw
from tests.codingagents import standin
from tests.codingagents.agents import Alone
from tests.codingagents.fake_chat import fake_chat, tool_results, turns
from tests.codingagents.fake_http import FakeModelAPI
from tests.codingagents.script import Script, Usage, error, text, tool
from tests.codingagents.served import Matrix
from tests.codingagents.tap import Relay
from tests.waiting import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout_s(600)]

# Fresh input, output, cached input per call: 7,040 of the 10,000-token
# window after the first call, 9,020 after the second.
FIRST, LAST = Usage(5_500, 40, 1_500), Usage(7_000, 20, 2_000)
WAIT_S = 120.0


@pytest.fixture(scope="module")
def api() -> Iterator[FakeModelAPI]:
    fake = fake_chat()
    try:
        yield fake
    finally:
        fake.close()


def _hello(marker: str) -> Script:
    return Script([tool(qw.SHELL, FIRST, command=f"echo hello-{marker}"), text("It printed hello.", LAST)])


def _attrs(row: dict[str, Any]) -> dict[str, Any]:
    a = row["attributes"]
    return dict(json.loads(a) if isinstance(a, str) else a)


def _steps(matrix: Matrix, task_id: str) -> list[str]:
    return [_attrs(c)["tool"] for c in matrix.timeline(task_id) if c["source"] == "tool_call"]


def _row(matrix: Matrix, task_id: str, ended: bool = False, output: int = 0) -> dict[str, Any]:
    def got() -> dict[str, Any] | None:
        r = matrix.task(task_id)
        if r is None or r["output_tokens"] < output or (ended and r["ended_at"] is None):
            return None
        return r

    return dict(wait_until(got, WAIT_S, f"task {task_id}"))


@dataclass(frozen=True)
class RelayedAlone(Alone):
    """The session alone, its telemetry through a relay that sees the framing."""

    relay: Relay


@pytest.fixture(scope="module")
def alone(
    cli_bin: Path, matrix: Matrix, api: FakeModelAPI, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RelayedAlone]:
    """The session alone, shared by the test that reads it and the file's last
    test, which sees liveness end it: its window runs during the tests between."""
    tmp = tmp_path_factory.mktemp("alone")
    run_id = api.script(uuid.uuid4().hex[:12], _hello("alone"))
    relay = Relay(matrix.serve.http)
    try:
        env = qw.env(tmp / "home", matrix, api, run_id)
        settings = tmp / "home" / ".qwen" / "settings.json"
        doc = json.loads(settings.read_text())
        doc["telemetry"]["otlpEndpoint"] = relay.url  # serve, behind a relay that sees the framing
        settings.write_text(json.dumps(doc))
        prompt = f"say hello with the shell ({run_id}), the key is sk-proj-SECRETSECRET1234"
        yield RelayedAlone(run_id, qw.qwen(cli_bin, tmp / "work", env, prompt), relay)
    finally:
        relay.close()


def test_a_session_alone_is_one_named_task_with_its_calls_priced_step_and_warnings(
    matrix: Matrix, api: FakeModelAPI, alone: RelayedAlone
) -> None:
    run_id, ran = alone.run_id, alone.ran
    assert ran.code == 0, ran.said()
    session = qw.task_of(ran)
    assert "hello-alone" in json.dumps(tool_results(turns(api, run_id)[-1])), "the shell call ran"

    row = _row(matrix, session, output=60)
    assert row["task_name"] == f"say hello with the shell ({run_id}), the key is sk-proj-****"
    assert [r["task_id"] for r in matrix.tasks_of("qwen-code") if run_id in (r["task_name"] or "")] == [session]
    # Chunked, no Content-Length: serve took them (the task above is made of them).
    logs = alone.relay.requests("/v1/logs")
    assert logs and all("transfer-encoding: chunked" in h and "content-length" not in h for h in logs), logs
    calls = [c for c in matrix.timeline(session) if c["source"] == "model_call"]
    assert [(_attrs(c)["input_tokens"], _attrs(c)["output_tokens"]) for c in calls] == [(7_000, 40), (9_000, 20)]
    assert (row["input_tokens"], row["output_tokens"]) == (16_000, 60), "cached input inside the input, once"
    assert {_attrs(c)["cost_source"] for c in calls} != {"reported"}
    assert row["cost_usd"] > 0 and row["unpriced_calls"] == 0, "priced from the tokens"
    assert _steps(matrix, session) == ["run_shell_command(echo hello-alone)"]
    warned = [(c["level"], c["threshold"]) for c in matrix.timeline(session) if c["kind"] == "context_warning"]
    assert warned == [("warning", 0.7), ("critical", 0.85)]
    assert api.unexpected == []


# Slow by design: two real Qwen Code sessions under the launcher, one after the other.
def test_under_the_launcher_the_session_ends_complete_or_failed_on_a_401(
    cli_bin: Path, matrix: Matrix, api: FakeModelAPI, tmp_path: Path
) -> None:
    ok_run = api.script(uuid.uuid4().hex[:12], _hello("launched"))
    # A 401, not a 500: Qwen Code retries a 500 for 80 s and more.
    bad_run = api.script(uuid.uuid4().hex[:12], Script([error(401, "invalid_api_key", "scripted: bad key")]))
    ids = {}
    for run_id, marker in ((ok_run, "ok"), (bad_run, "bad")):
        ids[marker] = task_id = f"qwen-{marker}:{run_id}/1"
        env = qw.env(tmp_path / marker / "home", matrix, api, run_id, telemetry=False)
        env["SPANVISOR_HEARTBEAT"] = "1s"  # the launcher keeps its task live (liveness is seconds here)
        launcher = {"endpoint": matrix.endpoint, "task-id": task_id}
        # As a user starts it: no output format (the launcher asks for stream-json and prints the result).
        ran = qw.qwen(cli_bin, tmp_path / marker / "work", env, f"launched {marker} ({run_id})", launcher, fmt=None)
        assert (ran.code == 0) == (marker == "ok"), ran.said()
        if marker == "ok":
            assert ran.stdout.strip() == "It printed hello.", ran.said()
    done = _row(matrix, ids["ok"], ended=True, output=60)
    assert (done["status"], done["task_name"]) == ("complete", f"launched ok ({ok_run})")
    assert (done["agent_id"], done["input_tokens"], done["output_tokens"]) == ("qwen-code", 16_000, 60)
    assert _steps(matrix, ids["ok"]) == ["run_shell_command(echo hello-launched)"]
    assert [r["task_id"] for r in matrix.tasks_of("qwen-code") if ok_run in (r["task_name"] or "")] == [ids["ok"]]
    failed = _row(matrix, ids["bad"], ended=True)
    assert failed["status"] == "error"
    assert "401" in failed["error_message"] and "scripted: bad key" in failed["error_message"], failed


def test_under_the_launcher_the_pull_request_its_shell_call_made_is_the_tasks(
    cli_bin: Path, matrix: Matrix, api: FakeModelAPI, tmp_path: Path
) -> None:
    """Its ``gh pr create`` (a stand-in ``gh`` first on its PATH) printed the
    new request's address: the launcher reads it from Qwen Code's
    ``stream-json`` (Claude Code's shape: the ``run_shell_command`` call's
    ``tool_use`` and ``tool_result``) and says it on the task."""
    pr, tools = standin.PR, standin.gh(tmp_path)
    made = Script([tool("run_shell_command", FIRST, command="gh pr create --fill"), text("Opened.", LAST)])
    run_id = api.script(uuid.uuid4().hex[:12], made)
    task_id = f"qwen-pr:{run_id}/1"
    env = qw.env(tmp_path / "home", matrix, api, run_id, telemetry=False)
    env["SPANVISOR_HEARTBEAT"] = "1s"
    env["PATH"] = f"{tools}:{env.get('PATH', '')}"
    launcher = {"endpoint": matrix.endpoint, "task-id": task_id}
    ran = qw.qwen(cli_bin, tmp_path / "work", env, f"open a PR ({run_id})", launcher, fmt=None)
    assert ran.code == 0 and ran.stdout.strip() == "Opened.", ran.said()
    row = _row(matrix, task_id, ended=True, output=60)
    assert (row["status"], row["pull_request"]) == ("complete", pr)


# Last in the file: the session alone exited during the tests above.
def test_the_session_alone_sends_no_end_and_is_left_to_liveness(matrix: Matrix, alone: RelayedAlone) -> None:
    # Without its end hooks, no end: liveness ends it (lost), as test_claude_code.py waits for.
    row = eh.left_to_liveness(matrix, qw.task_of(alone.ran), alone.ran)
    assert row["input_tokens"] == 16_000, "counted once"
