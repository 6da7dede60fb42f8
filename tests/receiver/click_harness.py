"""The click flow's harness: a real ``spanvisor serve`` with the fake Slack,
the agents waiting on it, and what the tests read back from every sink
(tests/receiver/test_serve_slack_click.py)."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.trace import Tracer
from prometheus_client.parser import text_string_to_metric_families
from serve_proc import FakeSlackThread, ServeProcess, db_rows
from tests.fakes.slack_sender import Sent, SignedSender
from tests.fakes.slack_store import Message
from waiters import Waiter, end_waiters

SIGNING_SECRET = "e2e-signing-9c1f4d7a2b8e6f03a5d1"
APPROVER = "U0ALICE"


def buttons(msg: Message) -> list[dict[str, Any]]:
    """Every interactive button of a message (top-level blocks and attachments)."""
    blocks = list(msg.blocks) + [b for a in msg.attachments for b in a.get("blocks", [])]
    return [e for b in blocks if b.get("type") == "actions" for e in b["elements"] if "value" in e]


@dataclass
class Served:
    serve: ServeProcess
    slack: FakeSlackThread
    db_url: str
    tracer: Tracer
    waiters: list[Waiter] = field(default_factory=list)

    @property
    def sender(self) -> SignedSender:
        return SignedSender(f"http://127.0.0.1:{self.serve.admin}", SIGNING_SECRET)

    def agent(self, prefix: str) -> Waiter:
        """An agent asking "Apply the fix to prod?" with the default's long timeout."""
        return self.asking(f"{prefix}-{uuid.uuid4().hex[:8]}", "Apply the fix to prod?", 120.0)

    def asking(self, task_id: str, question: str, timeout: float, timed: bool = False) -> Waiter:
        w = Waiter(task_id, question, timeout).start(self.tracer, timed)
        self.waiters.append(w)
        return w

    def end_waiters(self) -> None:
        """Release the agents a test left waiting (a rejection through the
        control API, as a person would answer) and wait for their threads
        (:func:`waiters.end_waiters`)."""
        waiters, self.waiters = self.waiters, []
        end_waiters(waiters, self.decide)

    def decide(self, task_id: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """POST a decision to serve's control API: its status and answer."""
        return post_decision(self.serve.http, task_id, body)

    def parent(self, task_id: str) -> Message | None:
        parents: list[Message] = self.slack.parents()
        for m in parents:
            if (m.metadata or {}).get("event_payload", {}).get("task_id") == task_id:
                return m
        return None

    def button(self, task_id: str, action_id: str) -> tuple[Message, dict[str, Any]] | None:
        parent = self.parent(task_id)
        if parent is None:
            return None
        found = [b for b in buttons(parent) if b["action_id"] == action_id]
        return (parent, found[0]) if found else None

    def click(self, parent: Message, button: dict[str, Any], user_id: str, user_name: str) -> dict[str, Any]:
        """What Slack sends when ``user_id`` presses ``button`` on ``parent``."""
        return dict(
            self.slack.on_loop(
                lambda: self.slack.fake.interactions.block_actions(
                    channel_id=parent.channel,
                    message_ts=parent.ts,
                    action_id=button["action_id"],
                    value=button["value"],
                    user_id=user_id,
                    user_name=user_name,
                )
            )
        )

    def post(self, payload: dict[str, Any], **kw: Any) -> Sent:
        return asyncio.run(self.sender.interaction(payload, **kw))

    def answers(self) -> list[dict[str, Any]]:
        """Ephemeral answers the fake recorded: response_url posts, then chat.postEphemeral."""

        def read() -> list[dict[str, Any]]:
            i = self.slack.fake.interactions
            out = [dict(r.body) for r in i.responses]
            return out + [{"text": e.text, "blocks": e.blocks, "ephemeral_to": e.user} for e in i.ephemerals]

        return list(self.slack.on_loop(read))

    def thread(self, task_id: str) -> list[str]:
        parent = self.parent(task_id)
        if parent is None:
            return []
        return [m.text or "" for m in self.slack.on_loop(lambda: self.slack.fake.thread(parent))]

    def rows(self, task_id: str) -> list[dict[str, Any]]:
        return db_rows(self.db_url, "SELECT * FROM human_interventions WHERE task_id = $1 ORDER BY time_ns", task_id)

    def decisions(self, task_id: str) -> list[dict[str, Any]]:
        url = f"http://127.0.0.1:{self.serve.http}/v1/control/tasks/{task_id}"
        with urllib.request.urlopen(url, timeout=20) as resp:
            return list(json.loads(resp.read())["decisions"])

    def status(self, task_id: str) -> str:
        url = f"http://127.0.0.1:{self.serve.http}/v1/control/tasks/{task_id}"
        with urllib.request.urlopen(url, timeout=20) as resp:
            return str(json.loads(resp.read())["status"])

    def counter(self, action: str, outcome: str) -> float:
        """``spanvisor_interventions_total{action,outcome}`` from serve's admin port."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.serve.admin}/metrics", timeout=20) as resp:
            text = resp.read().decode()
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                if s.name == "spanvisor_interventions_total" and s.labels == {"action": action, "outcome": outcome}:
                    return float(s.value)
        return 0.0


def post_decision(port: int, task_id: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """POST a decision to the control API of the serve on ``port`` (open): its status and answer."""
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/v1/control/tasks/{task_id}/decisions",
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=20) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())
