"""A Claude Code tool call approved from Slack: ``spanvisor hook`` asks
through a real ``spanvisor serve`` (PostgreSQL, the fake Slack), a signed
click on the parent message's Approve button answers, and the CLI gets
allow; the decision is in ``human_interventions`` with who clicked."""

from __future__ import annotations

import asyncio
import json
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from spanvisor_slack import actions as A
from tests.cli.coding_harness import CLAUDE_PRE, clean_env, hook, task_of
from tests.fakes.slack_sender import SignedSender
from tests.receiver.serve_proc import FakeSlackThread, ServeProcess, db_rows, slack_env
from tests.waiting import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout_s(900)]

SECRET = "hooks-signing-4b2d9e71c0a35f86"
APPROVER = "U0ALICE"


@pytest.fixture
def served(
    pg_server: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[ServeProcess, FakeSlackThread, str]]:
    db_url = pg_server.database()
    slack = FakeSlackThread()
    env = slack_env(
        tmp_path / "serve",
        slack.base_url,
        SLACK_SIGNING_SECRET=SECRET,
        SPANVISOR_SLACK_APPROVERS=APPROVER,
        SPANVISOR_DATABASE_URL=db_url,
        SPANVISOR_STATE_STORE="postgres",
        SPANVISOR_SINKS="postgres,slack",
    )
    for leaked in ("SPANVISOR_OTLP_TOKEN", "SPANVISOR_CONTROL_TOKEN", "SLACK_APP_TOKEN", "SPANVISOR_HOOK_POLICY"):
        env.pop(leaked, None)
    serve = ServeProcess(tmp_path / "serve", env, start=False)
    serve.start(timeout=300)  # a loaded machine starts serve slowly
    clean_env(monkeypatch, tmp_path)
    monkeypatch.setenv("SPANVISOR_OTLP_ENDPOINT", f"http://127.0.0.1:{serve.http}")
    monkeypatch.setenv("SPANVISOR_CONTROL_URL", f"http://127.0.0.1:{serve.http}")
    try:
        yield serve, slack, db_url
    finally:
        serve.stop()
        slack.close()


def _approve_button(slack: FakeSlackThread, task_id: str) -> tuple[Any, dict[str, Any]] | None:
    for parent in slack.parents():
        if (parent.metadata or {}).get("event_payload", {}).get("task_id") != task_id:
            continue
        blocks = list(parent.blocks) + [b for a in parent.attachments for b in a.get("blocks", [])]
        for block in blocks:
            for e in block.get("elements", []) if block.get("type") == "actions" else []:
                if e.get("action_id") == A.APPROVE:
                    return parent, e
    return None


def test_a_signed_slack_click_allows_the_tool_call(served: tuple[ServeProcess, FakeSlackThread, str]) -> None:
    serve, slack, db_url = served
    session = f"claude-session-{uuid.uuid4().hex[:8]}"
    payload = {**CLAUDE_PRE, "session_id": session, "tool_input": {"command": "kubectl apply -f prod.yaml"}}
    result: list[Any] = []
    asker = threading.Thread(target=lambda: result.append(hook("claude-code", payload)), daemon=True)
    asker.start()
    task = task_of("claude-code", session)
    parent, button = wait_until(lambda: _approve_button(slack, task), 300, "the Approve button in Slack")
    shown = json.dumps({"text": parent.text, "blocks": parent.blocks, "attachments": parent.attachments})
    assert "kubectl apply -f prod.yaml" in shown, "the person sees the command"
    click = slack.on_loop(
        lambda: slack.fake.interactions.block_actions(
            channel_id=parent.channel,
            message_ts=parent.ts,
            action_id=button["action_id"],
            value=button["value"],
            user_id=APPROVER,
            user_name="alice",
        )
    )
    sender = SignedSender(f"http://127.0.0.1:{serve.admin}", SECRET)
    assert asyncio.run(sender.interaction(dict(click))).status == 200
    asker.join(300)
    [(code, answer, _)] = result
    out = answer["hookSpecificOutput"]
    assert code == 0 and out["permissionDecision"] == "allow"
    assert out["permissionDecisionReason"] == "spanvisor: approved by alice"
    sql = "SELECT * FROM human_interventions WHERE task_id = $1"
    [row] = wait_until(lambda: db_rows(db_url, sql, task), 120, "the human_interventions row")
    assert (row["action"], row["outcome"], row["actor"], row["source"]) == ("approve", "applied", APPROVER, "slack")
