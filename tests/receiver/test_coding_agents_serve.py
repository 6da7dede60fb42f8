"""Coding-agent sessions through a real ``spanvisor serve`` with PostgreSQL
and the fake Slack: each CLI's records as the real SDK encodes them
(Claude Code and Codex as OTLP protobuf, Gemini CLI as OTLP/JSON), each
session one task, named from its prompt in Slack, with its tokens (once,
a batch sent twice) and its cost in the audit trail."""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from coding_sessions import Session, as_json, claude, codex, gemini, request
from serve_proc import FakeSlackThread, ServeProcess, db_rows, message_text, slack_env
from tests.waiting import wait_until

from spanvisor.receiver.codingagents.ids import session_task

pytestmark = [pytest.mark.slow, pytest.mark.timeout_s(900)]


@pytest.fixture(scope="module")
def served(
    pg_server: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[ServeProcess, FakeSlackThread, str]]:
    db_url = pg_server.database()
    slack = FakeSlackThread()
    data = tmp_path_factory.mktemp("serve-coding")
    env = slack_env(
        data,
        slack.base_url,
        SPANVISOR_DATABASE_URL=db_url,
        SPANVISOR_STATE_STORE="postgres",
        SPANVISOR_SINKS="postgres,slack",
    )
    for leaked in ("SPANVISOR_OTLP_TOKEN", "SPANVISOR_CONTROL_TOKEN", "SLACK_APP_TOKEN"):
        env.pop(leaked, None)
    serve = ServeProcess(data, env, start=False)
    serve.start(timeout=600)
    try:
        yield serve, slack, db_url
    finally:
        serve.stop()
        slack.close()


def _post(serve: ServeProcess, body: bytes, ctype: str) -> None:
    url = f"http://127.0.0.1:{serve.http}/v1/logs"
    req = urllib.request.Request(url, data=body, headers={"Content-Type": ctype}, method="POST")
    with urllib.request.urlopen(req, timeout=300) as resp:
        assert resp.status == 200


def _send(serve: ServeProcess, s: Session) -> None:
    req = request(s, None, 1_795_000_000_000_000_000)
    for _ in range(2):  # the second time: a retry after a lost answer
        if s.cli == "gemini":
            _post(serve, as_json(req), "application/json")
        else:
            _post(serve, req.SerializeToString(), "application/x-protobuf")


@pytest.mark.parametrize("make", [claude, codex, gemini], ids=["claude", "codex", "gemini"])
def test_each_cli_session_is_one_named_task_in_slack_and_postgres(
    make: Any, served: tuple[ServeProcess, FakeSlackThread, str]
) -> None:
    serve, slack, db_url = served
    s: Session = make(f"{make.__name__}-serve-1")
    task_id, _, _ = session_task(s.service, s.session_id)
    _send(serve, s)

    def row() -> dict[str, Any] | None:
        rows = db_rows(db_url, "SELECT * FROM agent_tasks WHERE task_id = $1", task_id)
        return rows[0] if rows and rows[0]["input_tokens"] >= s.input_tokens else None

    got = wait_until(row, 600, f"task {task_id} with its tokens in PostgreSQL")
    assert (got["input_tokens"], got["output_tokens"]) == (s.input_tokens, s.output_tokens)
    assert got["task_name"] == "fix the flaky test in tests/test_io.py, the key is sk-ant-****"
    if s.cost_usd is not None:  # Claude Code's own cost_usd
        assert got["cost_usd"] == pytest.approx(s.cost_usd)
    else:  # priced from the tokens
        assert got["cost_usd"] > 0

    def parent() -> Any:
        for m in slack.parents():
            if (m.metadata or {}).get("event_payload", {}).get("task_id") == task_id:
                return m
        return None

    shown = message_text(wait_until(parent, 600, "the task's Slack parent"))
    assert "fix the flaky test" in shown
    assert "SECRETSECRET" not in shown
