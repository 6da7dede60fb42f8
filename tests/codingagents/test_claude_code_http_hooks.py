"""Claude Code's ``http`` hook, the real pinned CLI: its PreToolUse hook
posts each call to ``serve`` (``/v1/hooks/claude-code``) or to the
launcher's loopback listener (``SPANVISOR_LOCAL_GATE=http``), which answer
with the gate: a policy's allow and deny, a person's approval from a
signed Slack click, and, with the receiver down, a block when the hook
entry says ``"onFailure": "block"``, while without it Claude Code runs the
call (the fact the docs' setup rests on)."""

from __future__ import annotations

import json
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.codingagents import claude_code as cc
from tests.codingagents.fake_anthropic import result_text, tool_results
from tests.codingagents.fake_http import FakeModelAPI
from tests.codingagents.script import Script, text, tool
from tests.codingagents.served import (
    APPROVER,
    LOST_AFTER_S,
    SIGNING_SECRET,
    STALL_AFTER_S,
    WINDOWS,
    Matrix,
)
from tests.receiver.serve_proc import FakeSlackThread, ServeProcess, slack_env
from tests.waiting import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout_s(900)]

WAIT_S = 120.0
POLICY = """
default = "ask"
timeout = 150

[[rule]]
name = "everyday"
tool = ["Bash"]
command = ["echo *"]
decision = "allow"

[[rule]]
name = "no-deleting"
tool = ["Bash"]
command = ["rm *"]
decision = "deny"
reason = "deleting is not allowed here"
"""


@pytest.fixture(scope="module")
def served(pg_server: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Matrix]:
    """A serve of its own whose policy answers the http hook."""
    data = tmp_path_factory.mktemp("http-hook-serve")
    (data / "policy.toml").write_text(POLICY)
    slack = FakeSlackThread()
    db = pg_server.database()
    env = slack_env(
        data,
        slack.base_url,
        SLACK_SIGNING_SECRET=SIGNING_SECRET,
        SPANVISOR_SLACK_APPROVERS=APPROVER,
        SPANVISOR_DATABASE_URL=db,
        SPANVISOR_STATE_STORE="postgres",
        SPANVISOR_SINKS="postgres,slack",
        SPANVISOR_MODEL_CONTEXT_WINDOWS=",".join(f"{k}={v}" for k, v in WINDOWS.items()),
        SPANVISOR_STALL_AFTER=f"{STALL_AFTER_S}s",
        SPANVISOR_LOST_AFTER=f"{LOST_AFTER_S}s",
        SPANVISOR_HOOK_POLICY=str(data / "policy.toml"),
    )
    for leaked in ("SPANVISOR_OTLP_TOKEN", "SPANVISOR_CONTROL_TOKEN", "SLACK_APP_TOKEN"):
        env.pop(leaked, None)
    serve = ServeProcess(data, env, start=False)
    serve.start(timeout=300)
    try:
        yield Matrix(serve, slack, db)
    finally:
        serve.stop()
        slack.close()


def _settings(path: Path, url: str, on_failure: bool = True, allow_bash: bool = False) -> Path:
    entry: dict[str, Any] = {
        "type": "http",
        "url": url,
        "timeout": 120,
        "headers": {"X-Spanvisor-Task": "$SPANVISOR_TASK_ID"},
        "allowedEnvVars": ["SPANVISOR_TASK_ID"],
    }
    if on_failure:
        entry["onFailure"] = "block"
    doc: dict[str, Any] = {"hooks": {"PreToolUse": [{"matcher": "*", "hooks": [entry]}]}}
    if allow_bash:  # as with its prompt answered "always": only the hook stands between
        doc["permissions"] = {"allow": ["Bash"]}
    path.write_text(json.dumps(doc))
    return path


def _results(api: FakeModelAPI, run_id: str) -> list[str]:
    asked = [s for s in api.requests(run_id) if s.path.startswith("/v1/messages")]
    return [result_text(r) for r in tool_results(asked[-1].body)]


def _run(
    served: Matrix, cli_bin: Path, api: FakeModelAPI, tmp_path: Path, command: str, url: str | None = None, **kw: Any
) -> tuple[Path, list[str], str]:
    run_id = api.script(uuid.uuid4().hex[:12], Script([tool("Bash", command=command), text("Done.")]))
    settings = _settings(tmp_path / "settings.json", url or f"{served.endpoint}/v1/hooks/claude-code?timeout=120", **kw)
    work = tmp_path / "work"
    work.mkdir()
    (work / "keep.txt").write_text("still here")
    env = cc.env(tmp_path / "home", served, api, run_id)
    ran = cc.claude(cli_bin, work, env, f"run it ({run_id})", settings=settings)
    assert ran.code == 0, ran.said()
    return work, _results(api, run_id), cc.task_of(ran)


def test_an_allow_by_policy_runs_the_call(
    served: Matrix, cli_bin: Path, anthropic: FakeModelAPI, tmp_path: Path
) -> None:
    _, results, task = _run(served, cli_bin, anthropic, tmp_path, "echo via-http")
    assert results == ["via-http"]

    def noted() -> list[dict[str, Any]] | None:
        events = [c for c in served.timeline(task) if c["source"] == "event"]
        return events or None

    [event, *_] = wait_until(noted, WAIT_S, "the policy's note on the task")
    assert event["message"] == "Bash: echo via-http: allowed by policy:everyday"


def test_a_deny_by_policy_blocks_the_call(
    served: Matrix, cli_bin: Path, anthropic: FakeModelAPI, tmp_path: Path
) -> None:
    work, results, _ = _run(served, cli_bin, anthropic, tmp_path, "rm keep.txt")
    assert "deleting is not allowed here" in results[0]
    assert (work / "keep.txt").read_text() == "still here"


def test_a_persons_approval_from_slack_lets_the_call_run(
    served: Matrix, cli_bin: Path, anthropic: FakeModelAPI, tmp_path: Path
) -> None:
    run_id = anthropic.script(
        uuid.uuid4().hex[:12], Script([tool("Bash", command="touch approved.txt"), text("Done.")])
    )
    task_id = f"cc-http-{run_id}"
    settings = _settings(tmp_path / "settings.json", f"{served.endpoint}/v1/hooks/claude-code?timeout=120")
    env = cc.env(tmp_path / "home", served, anthropic, run_id)
    launcher = {"endpoint": served.endpoint, "task-id": task_id}
    running = cc.claude_started(cli_bin, tmp_path / "work", env, f"touch it ({run_id})", settings, launcher)
    try:

        def asked() -> list[dict[str, Any]]:
            if running.proc.poll() is not None:
                raise AssertionError(f"the CLI ended before asking:\n{running.wait().said()}")
            return served.pending(task_id)

        [req] = wait_until(asked, WAIT_S, "the request for a person, on the launcher's task", every=0.2)
        assert req["question"] == "Allow Bash: touch approved.txt?"
        parent, button = wait_until(lambda: served.approve_button(task_id), WAIT_S, "the Approve button in Slack")
        assert served.click(parent, button) == 200
        ran = running.wait()
    finally:
        running.stop()
    assert ran.code == 0, ran.said()
    assert (tmp_path / "work" / "approved.txt").exists(), "the approved call ran"
    [row] = wait_until(lambda: served.interventions(task_id), WAIT_S, "the human_interventions row")
    assert (row["action"], row["outcome"], row["source"], row["actor"]) == ("approve", "applied", "slack", APPROVER)


def _closed_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}/v1/hooks/claude-code"


@pytest.mark.parametrize("on_failure", [True, False])
def test_with_the_receiver_down_on_failure_block_blocks_and_nothing_else_does(
    served: Matrix, cli_bin: Path, anthropic: FakeModelAPI, tmp_path: Path, on_failure: bool
) -> None:
    work, results, _ = _run(
        served, cli_bin, anthropic, tmp_path, "touch ran.txt", _closed_url(), on_failure=on_failure, allow_bash=True
    )
    assert (work / "ran.txt").exists() is (not on_failure), results
    if on_failure:
        assert 'blocking because onFailure is "block"' in results[0]


@pytest.mark.parametrize(("command", "runs"), [("echo launched-http", True), ("rm -r build", False)])
def test_the_launchers_own_http_listener_answers_with_the_policy(
    served: Matrix, cli_bin: Path, anthropic: FakeModelAPI, tmp_path: Path, command: str, runs: bool
) -> None:
    """SPANVISOR_LOCAL_GATE=http: no hook in the user's settings; the
    launcher gives Claude Code its http hook, answered in its own process."""
    run_id = anthropic.script(uuid.uuid4().hex[:12], Script([tool("Bash", command=command), text("Done.")]))
    env = cc.env(
        tmp_path / "home",
        served,
        anthropic,
        run_id,
        SPANVISOR_LOCAL_GATE="http",
        SPANVISOR_HOOK_POLICY=str(served.serve.data_dir / "policy.toml"),
    )
    work = tmp_path / "work"
    (work / "build").mkdir(parents=True)
    launcher = {"endpoint": served.endpoint, "task-id": f"cc-lhttp-{run_id}"}
    ran = cc.claude(cli_bin, work, env, f"run it ({run_id})", launcher=launcher)
    assert ran.code == 0, ran.said()
    results = _results(anthropic, run_id)
    if runs:
        assert results == ["launched-http"], results
    else:
        assert (work / "build").exists() and "deleting is not allowed here" in results[0], results
