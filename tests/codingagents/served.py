"""The matrix's ``spanvisor serve``: PostgreSQL (state store and audit
trail), the fake Slack with a signing secret and one approver; and what the
tests read back from it: the task's row and timeline, its control API view,
the approval buttons of its Slack parent, a signed click on one."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spanvisor_slack import actions as A
from tests.fakes.slack_sender import SignedSender
from tests.receiver.serve_proc import FakeSlackThread, ServeProcess, db_rows, message_text, slack_env
from tests.waiting import wait_until

SIGNING_SECRET = "matrix-signing-7d1e0c52b9a4f368"
APPROVER = "U0ALICE"
# The model every scripted run names, and the window serve gives it here: a
# scripted growth of a few thousand tokens crosses 70 % and 85 % of it,
# while the CLIs, which know the real window, see no reason to compact.
MODEL = "claude-sonnet-4-5"
WINDOWS = {
    MODEL: 10_000,
    "gemini-2.5-flash": 10_000,
    "gpt-5-codex": 10_000,
    "gpt-4.1": 10_000,
    "qwen3-coder-plus": 10_000,
}
# genai-prices knows no Qwen model: priced as an operator would (dollars per million tokens).
PRICES = {"qwen3-coder-plus": "1:5:0.1"}
# Sessions naming this agent (resource spanvisor.agent) have a budget set to stop: a
# tenth of a cent, passed by their first call (tests/codingagents/test_budget_stop.py).
STOPPED_AGENT, STOPPED_BUDGET_USD = "budget-stopped", 0.001
# Without the launcher a session ends by liveness: short enough that the
# tests proving "then lost" see it, and far above the silence a real CLI
# keeps between two records on a 2-core machine at load 8 (its records leave
# every second or few; a node start, a held model answer of a few seconds).
# At 4 s and 10 s a session that spoke again after 11 s of a busy machine was
# declared lost before its end arrived: the test raced the machine. At 30 s
# a session held for a person (a Cancel clicked in Slack, a permission
# prompt answered) was lost at the start of a fresh-clone run on a slower
# machine, where the CLIs, the Collector build and the framework installs
# share 2 cores: the wait is the person's, not the CLI's; at 90 s a session
# held while a Cancel went through a busy fake Slack was still lost. No CLI
# test waits for lost (serve's liveness is tests/receiver/test_live_serve.py's),
# so the window is far above any hold. Launched sessions stay live by the
# launcher's heartbeat (tests/codingagents/agents.py).
STALL_AFTER_S = 15
LOST_AFTER_S = 600


def start_serve(db_url: str, slack: FakeSlackThread, data: Path) -> ServeProcess:
    env = slack_env(
        data,
        slack.base_url,
        SLACK_SIGNING_SECRET=SIGNING_SECRET,
        SPANVISOR_SLACK_APPROVERS=APPROVER,
        SPANVISOR_DATABASE_URL=db_url,
        SPANVISOR_STATE_STORE="postgres",
        SPANVISOR_SINKS="postgres,slack",
        SPANVISOR_MODEL_CONTEXT_WINDOWS=",".join(f"{k}={v}" for k, v in WINDOWS.items()),
        SPANVISOR_MODEL_PRICES=",".join(f"{k}={v}" for k, v in PRICES.items()),
        SPANVISOR_STALL_AFTER=f"{STALL_AFTER_S}s",
        SPANVISOR_LOST_AFTER=f"{LOST_AFTER_S}s",
        SPANVISOR_HEARTBEAT="1s",
        SPANVISOR_BUDGET_TASK_USD=f"{STOPPED_AGENT}={STOPPED_BUDGET_USD}",
        SPANVISOR_BUDGET_STOP=STOPPED_AGENT,
        # Every session's thread is a Slack agent session: its status follows
        # the task on every CLI's path, and its stop button is pressed by test_stop.py.
        SPANVISOR_SLACK_AGENT_SESSIONS="on",
    )
    for leaked in ("SPANVISOR_OTLP_TOKEN", "SPANVISOR_CONTROL_TOKEN", "SLACK_APP_TOKEN", "SPANVISOR_HOOK_POLICY"):
        env.pop(leaked, None)
    serve = ServeProcess(data, env, start=False)
    serve.start(timeout=300)  # a loaded machine starts serve slowly
    return serve


@dataclass
class Matrix:
    serve: ServeProcess
    slack: FakeSlackThread
    db_url: str

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.serve.http}"

    def task(self, task_id: str) -> dict[str, Any] | None:
        rows = db_rows(self.db_url, "SELECT * FROM agent_tasks WHERE task_id = $1", task_id)
        return rows[0] if rows else None

    def tasks_of(self, agent: str) -> list[dict[str, Any]]:
        return db_rows(self.db_url, "SELECT * FROM agent_tasks WHERE agent_id = $1", agent)

    def timeline(self, task_id: str) -> list[dict[str, Any]]:
        sql = "SELECT * FROM agent_checkpoints WHERE task_id = $1 ORDER BY time_ns, seq"
        return db_rows(self.db_url, sql, task_id)

    def interventions(self, task_id: str) -> list[dict[str, Any]]:
        sql = "SELECT * FROM human_interventions WHERE task_id = $1 ORDER BY time_ns"
        return db_rows(self.db_url, sql, task_id)

    def control(self, task_id: str) -> dict[str, Any] | None:
        """The control API's view of the task (None while it knows none)."""
        try:
            with urllib.request.urlopen(f"{self.endpoint}/v1/control/tasks/{task_id}", timeout=20) as resp:
                doc: dict[str, Any] = json.loads(resp.read())
                return doc
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return None
            raise

    def pending(self, task_id: str) -> list[dict[str, Any]]:
        """Open approval requests of the task (``GET /v1/control/approvals``,
        what ``spanvisor approvals`` lists)."""
        with urllib.request.urlopen(f"{self.endpoint}/v1/control/approvals", timeout=20) as resp:
            doc = json.loads(resp.read())
        return [r for r in doc.get("approvals", []) if r.get("task_id") == task_id]

    def spanvisor(self, *args: str) -> str:
        """The spanvisor CLI as a person runs it; its stdout."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SPANVISOR_", "OTEL_", "SLACK_"))}
        env["SPANVISOR_DATA_DIR"] = str(self.serve.data_dir / "cli")
        done = subprocess.run(
            [sys.executable, "-m", "spanvisor.cli", *args],
            capture_output=True,
            text=True,
            timeout=120,
            env=env,
            check=False,
        )
        assert done.returncode == 0, f"spanvisor {' '.join(args)}: {done.returncode}\n{done.stdout}\n{done.stderr}"
        return done.stdout

    def approve_button(self, task_id: str, approval_id: str | None = None) -> tuple[Any, dict[str, Any]] | None:
        """The Approve button; with ``approval_id``, only that request's (a
        parent not yet edited may still show an earlier request's)."""
        return self.button(task_id, A.APPROVE, approval_id)

    def shown_button(self, task_id: str, action_id: str, within: float, who: str) -> tuple[Any, dict[str, Any]]:
        """:meth:`button`, waited for ``within`` seconds; a timeout says what
        there was instead (``who``'s task row, its parents, serve's log tail)."""
        try:
            found: tuple[Any, dict[str, Any]] = wait_until(
                lambda: self.button(task_id, action_id), within, f"{who}'s {action_id} button in Slack"
            )
        except AssertionError as exc:
            parents = [message_text(p) for p in self.parents_of(task_id)]
            tail = self.serve.log_text()[-3000:]
            raise AssertionError(
                f"{exc}\ntask {task_id}: {self.task(task_id)}\nits parents: {parents}\n"
                f"parents in Slack: {len(self.slack.parents())}\nserve's log, its end:\n{tail}"
            ) from None
        return found

    def button(self, task_id: str, action_id: str, approval_id: str | None = None) -> tuple[Any, dict[str, Any]] | None:
        """The task's Slack parent and its button ``action_id`` (approve, cancel …), once shown."""
        for parent in self.parents_of(task_id):
            blocks = list(parent.blocks) + [b for a in parent.attachments for b in a.get("blocks", [])]
            for block in blocks:
                for e in block.get("elements", []) if block.get("type") == "actions" else []:
                    if e.get("action_id") != action_id:
                        continue
                    if approval_id is not None and f'"a":{json.dumps(approval_id)}' not in str(e.get("value")):
                        continue
                    return parent, e
        return None

    def parents_of(self, task_id: str) -> list[Any]:
        """The task's Slack parent messages (one, when all is well)."""
        return [
            p for p in self.slack.parents() if (p.metadata or {}).get("event_payload", {}).get("task_id") == task_id
        ]

    def ever_shown(self, task_id: str) -> str:
        """Every version of the task's parent that Slack was sent (its post and
        each edit), as JSON: what the channel showed at some moment, although a
        later edit replaced it."""
        stamps = {p.ts for p in self.parents_of(task_id)}

        def sent() -> list[Any]:
            return [
                [c.args.get("blocks"), c.args.get("attachments")]
                for c in self.slack.fake.calls
                if c.method in ("chat.update", "chat.postMessage")
                and c.response.get("ok")
                and (c.args.get("ts") in stamps or c.response.get("ts") in stamps)
                and not c.args.get("thread_ts")
            ]

        return json.dumps(self.slack.on_loop(sent))

    def click(self, parent: Any, button: dict[str, Any]) -> int:
        """The approver's signed click on ``button``, posted as Slack posts it; the status."""
        payload = self.slack.on_loop(
            lambda: self.slack.fake.interactions.block_actions(
                channel_id=parent.channel,
                message_ts=parent.ts,
                action_id=button["action_id"],
                value=button["value"],
                user_id=APPROVER,
                user_name="alice",
            )
        )
        sender = SignedSender(f"http://127.0.0.1:{self.serve.admin}", SIGNING_SECRET)
        return asyncio.run(sender.interaction(dict(payload))).status

    def session(self, parent: Any) -> list[str]:
        """Every status the parent's Slack agent session was set to ([]: no session yet)."""
        found = self.slack.on_loop(lambda: self.slack.fake.agents.of(parent.channel, parent.ts))
        return list(found.statuses) if found is not None else []

    def press_stop(self, parent: Any) -> int:
        """The approver's press of Slack's stop button on the parent's agent
        session: the event Slack delivers, signed, to serve's events route; the status."""
        envelope = self.slack.on_loop(lambda: self.slack.fake.agents.stop(parent.channel, parent.ts, APPROVER))
        sender = SignedSender(f"http://127.0.0.1:{self.serve.admin}", SIGNING_SECRET)
        return asyncio.run(sender.event(dict(envelope))).status
