"""``spanvisor run``: a fake ``claude`` (the real OTel SDK exporting log
records, a stream-json result line) under the launcher against a real
receiver: the task ends complete, failed (with the result's error) or
cancelled (a forwarded SIGTERM), the user sees the usual text output, and
the CLI got its telemetry settings."""

from __future__ import annotations

import json
import os
import signal
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spanvisor.cli.main import main
from spanvisor.hook import task as ct
from spanvisor.launcher.session import prompt_of, task_name, telemetry
from tests.cli.coding_harness import TOKEN, Serve, clean_env, fake_claude
from tests.waiting import wait_until


def test_each_cli_gets_its_telemetry_settings_and_the_task_in_its_resource() -> None:
    env = {"OTEL_RESOURCE_ATTRIBUTES": "team=a b,deployment.environment=ci", "HOME": "/h"}
    resource = ct.with_resource(env, {ct.RESOURCE_TASK_ID: "T-1", ct.RESOURCE_TASK_NAME: "fix, the=tests 100%"})
    assert ct.resource_attributes({"OTEL_RESOURCE_ATTRIBUTES": resource}) == {
        "team": "a b",
        "deployment.environment": "ci",
        "spanvisor.task.id": "T-1",
        "spanvisor.task.name": "fix, the=tests 100%",
    }
    # Only what the OTel specification requires is encoded: ',', ' ' and '%'; '=' in a value is read as it is.
    assert "spanvisor.task.name=fix%2C%20the=tests%20100%25" in resource
    argv, out = telemetry("codex", ["codex", "exec", "fix it"], env, "http://sv:4318", "tok", resource)
    assert argv[:2] == ["codex", "-c"] and argv[-2:] == ["exec", "fix it"]
    logs = argv[2]
    assert logs == 'otel.exporter={ otlp-http = { endpoint = "http://sv:4318/v1/logs", protocol = "binary" } }'
    # The token in its environment, never on its command line (/proc/<pid>/cmdline is world-readable).
    assert out["OTEL_EXPORTER_OTLP_HEADERS"] == "authorization=Bearer%20tok" and not any("tok" in a for a in argv)
    assert out["OTEL_RESOURCE_ATTRIBUTES"] == resource and out["HOME"] == "/h"
    _, gem = telemetry("gemini", ["gemini", "-p", "x"], env, "http://sv:4318", None, resource)
    assert (gem["GEMINI_TELEMETRY_ENABLED"], gem["GEMINI_TELEMETRY_OTLP_PROTOCOL"]) == ("true", "http")
    assert gem["GEMINI_TELEMETRY_OTLP_ENDPOINT"] == "http://sv:4318" and "OTEL_EXPORTER_OTLP_HEADERS" not in gem
    assert prompt_of(["codex", "exec", "-m", "gpt-5", "fix the flaky test"]) == "fix the flaky test"
    assert prompt_of(["claude", "-p", "say hi", "--model", "x"]) == "say hi"
    assert task_name(None, ["claude", "-p", "use token xoxb-123-abc   now"], "claude-code") == "use token xox?-**** now"
    assert len(task_name(None, ["claude", "-p", "x" * 500], "claude-code")) == 80


def test_the_launcher_and_the_hook_name_the_task_the_receiver_derives() -> None:
    from spanvisor.receiver.codingagents.ids import launcher_task_ids, session_task

    trace_hex, root_hex = launcher_task_ids("T-1")
    assert ct.task_ids("claude-code", "T-1", launched=True) == (int(trace_hex, 16), int(root_hex, 16))
    task_id, trace_hex, root_hex = session_task("claude-code", "sess-9")
    assert ct.task_ids("claude-code", "sess-9", launched=False) == (int(trace_hex, 16), int(root_hex, 16))
    # Alone, the session's task is named in its CLI's namespace, by the receiver and the hook alike.
    assert task_id == "claude-code:sess-9" == ct.SessionTask("sess-9", "claude-code", False, None).task_id  # type: ignore[arg-type]
    assert session_task("codex_tui", "s")[0] == session_task("codex_exec", "s")[0] == "codex:s"


@settings(max_examples=200, deadline=None)
@given(
    attrs=st.dictionaries(
        st.text(min_size=1).filter(lambda k: k.strip() == k and k.strip()), st.text().filter(lambda v: v.strip() == v)
    )
)
def test_resource_attributes_round_trip_encoding_only_what_the_spec_requires(attrs: dict[str, str]) -> None:
    """Any keys and values read back as they were; a value made of baggage
    octets (a task id such as deploy:web/42) is never encoded, so a CLI that
    does not decode (Codex) reports it as it is."""
    encoded = ct.encode_resource(attrs)
    assert ct.resource_attributes({"OTEL_RESOURCE_ATTRIBUTES": encoded}) == attrs
    for v in attrs.values():
        if all(0x21 <= ord(c) < 0x7F and c not in '",;\\%' for c in v):
            assert f"={v}" in encoded
    assert ct.encode_resource({"spanvisor.task.id": "deploy:web/42"}) == "spanvisor.task.id=deploy:web/42"


@pytest.fixture
def serve(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Serve]:
    clean_env(monkeypatch, tmp_path)
    s = Serve(tmp_path / "serve")
    yield s
    s.close()


def _claude(tmp_path: Path) -> Path:
    return fake_claude(tmp_path)


def _run(serve: Serve, exe: Path, task: str, *extra: str) -> int:
    args = ["run", "--task-id", task, "--endpoint", serve.base, "--token", TOKEN, "--", str(exe), "-p", "fix the tests"]
    return main([*args, *extra])


@pytest.mark.slow
@pytest.mark.timeout_s(900)
def test_a_run_that_succeeds_is_complete_and_shows_the_usual_output(
    serve: Serve, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    record = tmp_path / "record.json"
    monkeypatch.setenv("FAKE_RECORD", str(record))
    monkeypatch.setenv("FAKE_MODE", "ok")
    task = f"claude-code-{uuid.uuid4().hex[:8]}"
    assert _run(serve, _claude(tmp_path), task) == 0
    assert capsys.readouterr().out == "All tests pass.\n", "what claude -p prints, not the stream-json lines"
    seen: dict[str, Any] = json.loads(record.read_text())
    assert seen["argv"][1:] == ["--output-format", "stream-json", "--verbose", "-p", "fix the tests"]
    env = seen["env"]
    assert env["CLAUDE_CODE_ENABLE_TELEMETRY"] == "1" and env["OTEL_LOGS_EXPORTER"] == "otlp"
    # Its telemetry goes through the launcher's relay, with the relay's own
    # token: serve's is nowhere in the CLI's environment.
    relay = env["OTEL_EXPORTER_OTLP_ENDPOINT"]
    assert relay.startswith("http://127.0.0.1:") and relay != serve.base
    assert env["OTEL_EXPORTER_OTLP_PROTOCOL"] == "http/protobuf"
    assert env["OTEL_EXPORTER_OTLP_HEADERS"].startswith("authorization=Bearer%20")
    assert TOKEN not in json.dumps(seen), "serve's token reached the CLI"
    attrs = ct.resource_attributes(env)
    assert attrs["spanvisor.task.id"] == task and attrs["spanvisor.task.name"] == "fix the tests"
    assert env["SPANVISOR_OTLP_ENDPOINT"] == serve.base, "the CLI's hooks know where to ask"
    done = wait_until(lambda: serve.finished(task), 240, "the task's end")
    assert done.outcome == "complete" and done.task.task_name == "fix the tests", done


@pytest.mark.slow
@pytest.mark.timeout_s(900)
def test_a_failed_result_fails_the_task_with_its_error(
    serve: Serve, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FAKE_RECORD", str(tmp_path / "record.json"))
    monkeypatch.setenv("FAKE_MODE", "error")
    task = f"claude-code-{uuid.uuid4().hex[:8]}"
    assert _run(serve, _claude(tmp_path), task) == 1
    assert capsys.readouterr().out == "API Error: 529 overloaded\n"
    done = wait_until(lambda: serve.finished(task), 240, "the task's end")
    assert done.outcome == "error"
    assert done.error_message is not None and "api_error" in done.error_message and "529" in done.error_message


@pytest.mark.slow
@pytest.mark.timeout_s(900)
def test_a_sigterm_is_forwarded_and_the_task_is_cancelled(
    serve: Serve, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    record = tmp_path / "record.json"
    monkeypatch.setenv("FAKE_RECORD", str(record))
    monkeypatch.setenv("FAKE_MODE", "hang")
    task = f"claude-code-{uuid.uuid4().hex[:8]}"
    running = Path(str(record) + ".running")

    def stop_us() -> None:
        wait_until(running.exists, 300, "the CLI to run")
        os.kill(os.getpid(), signal.SIGTERM)  # as a CI job's timeout would stop the launcher

    killer = threading.Thread(target=stop_us, daemon=True)
    killer.start()
    assert _run(serve, _claude(tmp_path), task) == 128 + signal.SIGTERM
    killer.join(10)
    done = wait_until(lambda: serve.finished(task), 240, "the task's end")
    assert done.outcome == "cancelled"


@pytest.mark.slow
@pytest.mark.timeout_s(900)
@pytest.mark.parametrize("how", ["--agent", "resource"])
def test_the_agent_named_for_a_session_is_its_tasks_agent_from_start_to_end(
    serve: Serve, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    """``--agent``, or ``spanvisor.agent`` in the user's
    OTEL_RESOURCE_ATTRIBUTES: the launcher's start and end, and the CLI's
    own records (its resource), name the same agent; the task used to flip
    back to ``claude-code`` at its end (Slack routes and budgets by agent
    then missed it)."""
    monkeypatch.setenv("FAKE_RECORD", str(tmp_path / "record.json"))
    monkeypatch.setenv("FAKE_MODE", "ok")
    task = f"claude-code-{uuid.uuid4().hex[:8]}"
    if how == "--agent":
        exe = _claude(tmp_path)
        args = ["run", "--agent", "billing-bot", "--task-id", task, "--endpoint", serve.base, "--token", TOKEN]
        assert main([*args, "--", str(exe), "-p", "fix the tests"]) == 0
    else:
        monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "team=payments,spanvisor.agent=billing-bot")
        assert _run(serve, _claude(tmp_path), task) == 0
    done = wait_until(lambda: serve.finished(task), 240, "the task's end")
    env = json.loads((tmp_path / "record.json").read_text())["env"]
    assert ct.resource_attributes(env)["spanvisor.agent"] == "billing-bot", "the CLI's records name it"
    assert env["SPANVISOR_TASK_AGENT"] == "billing-bot", "and its hooks know it"
    events = serve.sink.for_task(task)
    assert len(events) > 2 and {e.task.agent_id for e in events} == {"billing-bot"}, [
        (type(e).__name__, e.task.agent_id) for e in events
    ]
    assert done.outcome == "complete"
