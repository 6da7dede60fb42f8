"""The whole click flow in one process: one Pipeline with the
Slack sink (the fake Slack), the webhook sink (a real receiver on loopback
verifying every request with ``spanvisor_webhook.verify``), the Prometheus
sink and the PostgreSQL sink; clicks signed as Slack signs them and POSTed to
serve's own admin app (``receiver.admin.make_app``), which also serves
``/metrics``.

(a) An agent thread blocked in ``t.request_approval`` is released by a click
on the parent's Approve button. (b) A failed task's Retry button: one
verified webhook delivery with the intervention id, the row, the thread line
and the counter; the same click replayed changes nothing.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from aiohttp import ClientSession, web
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import Tracer
from prometheus_client.parser import text_string_to_metric_families
from slack_support import run, until
from tests.fakes.slack_api import FakeSlack
from tests.fakes.slack_sender import SignedSender
from tests.fakes.slack_store import Message
from tests.webhook.conftest import SECRET as WEBHOOK_SECRET
from tests.webhook.conftest import Receiver, webhook_config

from spanvisor.agent import ApprovalDecision, task
from spanvisor.canonical import approval_digest
from spanvisor.otel.processor import SpanvisorSpanProcessor
from spanvisor.pipeline.pipeline import Pipeline
from spanvisor.receiver.admin import make_app
from spanvisor_postgres import PostgresSink
from spanvisor_prometheus import PrometheusSink
from spanvisor_slack import SlackSink
from spanvisor_slack import actions as A
from spanvisor_webhook import WebhookSink

pytestmark = [pytest.mark.slow, pytest.mark.timeout_s(120)]

SIGNING_SECRET = "inproc-signing-5b2e9d41c7a8f6e0"
APPROVER = "U0ALICE"


def _buttons(msg: Message) -> list[dict[str, Any]]:
    blocks = list(msg.blocks) + [b for a in msg.attachments for b in a.get("blocks", [])]
    return [e for b in blocks if b.get("type") == "actions" for e in b["elements"] if "value" in e]


def _shown(msg: Message) -> str:
    return json.dumps({"text": msg.text, "blocks": msg.blocks, "attachments": msg.attachments}, ensure_ascii=False)


@dataclass
class Flow:
    fake: FakeSlack
    pipeline: Pipeline
    webhook: Receiver
    sender: SignedSender
    admin: str
    db_url: str
    tracer: Tracer

    def parent(self, task_id: str) -> Message | None:
        for m in self.fake.parents():
            if (m.metadata or {}).get("event_payload", {}).get("task_id") == task_id:
                return m
        return None

    def button(self, task_id: str, action_id: str) -> tuple[Message, dict[str, Any]] | None:
        parent = self.parent(task_id)
        found = [b for b in _buttons(parent) if b["action_id"] == action_id] if parent else []
        return (parent, found[0]) if parent is not None and found else None

    async def wait_button(self, task_id: str, action_id: str) -> tuple[Message, dict[str, Any]]:
        await until(lambda: self.button(task_id, action_id), 30, f"the parent of {task_id} to offer {action_id}")
        found = self.button(task_id, action_id)
        assert found is not None
        return found

    def click(self, parent: Message, button: dict[str, Any], user_id: str = APPROVER) -> dict[str, Any]:
        return self.fake.interactions.block_actions(
            channel_id=parent.channel,
            message_ts=parent.ts,
            action_id=button["action_id"],
            value=button["value"],
            user_id=user_id,
            user_name="alice",
        )

    def answers(self) -> list[str]:
        out = [str(r.body.get("text")) for r in self.fake.interactions.responses]
        return out + [str(e.text) for e in self.fake.interactions.ephemerals]

    def thread(self, task_id: str) -> list[str]:
        parent = self.parent(task_id)
        return [m.text or "" for m in self.fake.thread(parent)] if parent else []

    async def rows(self, task_id: str) -> list[dict[str, Any]]:
        import asyncpg

        conn = await asyncpg.connect(self.db_url)
        try:
            sql = "SELECT * FROM human_interventions WHERE task_id = $1 ORDER BY time_ns"
            return [dict(r) for r in await conn.fetch(sql, task_id)]
        finally:
            await conn.close()

    async def counter(self, action: str, outcome: str) -> float:
        async with ClientSession() as s, s.get(self.admin + "/metrics") as resp:
            assert resp.status == 200
            text = await resp.text()
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == "spanvisor_interventions_total" and sample.labels == {
                    "action": action,
                    "outcome": outcome,
                }:
                    return float(sample.value)
        return 0.0

    async def wait_rows(self, task_id: str, n: int) -> list[dict[str, Any]]:
        for _ in range(1500):
            rows = await self.rows(task_id)
            if len(rows) >= n:
                return rows
            await asyncio.sleep(0.02)
        raise AssertionError(f"{n} human_interventions rows of {task_id} never came")

    async def wait_counter(self, action: str, outcome: str, value: float) -> None:
        for _ in range(1500):
            if await self.counter(action, outcome) == value:
                return
            await asyncio.sleep(0.02)
        raise AssertionError(f"spanvisor_interventions_total{{{action},{outcome}}} never reached {value}")


@asynccontextmanager
async def flow(db_url: str, data_dir: Path) -> AsyncIterator[Flow]:
    fake = FakeSlack(channel_rate=100.0, channel_burst=100)
    await fake.start()
    webhook = Receiver().open()
    config = webhook_config(
        {
            "SPANVISOR_DATA_DIR": str(data_dir),
            "SLACK_BOT_TOKEN": "xoxb-click-flow",
            "SPANVISOR_SLACK_CHANNEL": "#agents",
            "SPANVISOR_SLACK_BASE_URL": fake.base_url,
            "SLACK_SIGNING_SECRET": SIGNING_SECRET,
            "SPANVISOR_SLACK_APPROVERS": APPROVER,
            "SPANVISOR_SLACK_CHANNEL_INTERVAL": "0s",
            "SPANVISOR_SLACK_UPDATE_INTERVAL": "200ms",
            "SPANVISOR_SLACK_REPLY_INTERVAL": "0s",
            "SPANVISOR_WEBHOOK_URL": webhook.url,
            "SPANVISOR_WEBHOOK_SECRET": WEBHOOK_SECRET,
            "SPANVISOR_WEBHOOK_TIMEOUT": "2s",
            "SPANVISOR_DATABASE_URL": db_url,
            "SPANVISOR_SHUTDOWN_TIMEOUT": "5s",
        }
    )
    sinks = [SlackSink(), WebhookSink(), PrometheusSink(), PostgresSink()]
    pipeline = await asyncio.to_thread(lambda: Pipeline(config, sinks=sinks).start())
    runner: web.AppRunner | None = None
    provider = TracerProvider(shutdown_on_exit=False)
    try:
        assert await asyncio.to_thread(pipeline.wait_ready, 30), "the sinks did not start"
        app = make_app(SimpleNamespace(pipeline=pipeline), lambda: (True, "ok"))
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        admin = f"http://127.0.0.1:{runner.addresses[0][1]}"
        provider.add_span_processor(SpanvisorSpanProcessor(pipeline=pipeline))
        yield Flow(
            fake, pipeline, webhook, SignedSender(admin, SIGNING_SECRET), admin, db_url, provider.get_tracer("agent")
        )
    finally:
        if runner is not None:
            await runner.cleanup()
        # In a thread: the fake Slack answers the last edits on this loop.
        await asyncio.to_thread(pipeline.shutdown, 10)
        webhook.stop()
        await fake.stop()


@pytest.fixture
def in_process(monkeypatch: pytest.MonkeyPatch) -> None:
    # The agent helper must read decisions from this process's pipeline.
    for name in ("SPANVISOR_CONTROL_URL", "SPANVISOR_CONTROL_TOKEN", "SLACK_APP_TOKEN"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.usefixtures("in_process")
def test_an_agent_blocked_in_request_approval_is_released_by_a_signed_click(pg_server: Any, tmp_path: Path) -> None:
    db_url = pg_server.database()

    async def go() -> None:
        async with flow(db_url, tmp_path) as env:
            result: list[ApprovalDecision] = []
            finish = threading.Event()

            def agent() -> None:
                with task("Migrate", agent_id="rivet", task_id="T-approve", tracer=env.tracer) as t:
                    result.append(t.request_approval("Apply migration 0007 to prod?", timeout=60))
                    finish.wait(30)

            th = threading.Thread(target=agent, name="agent", daemon=True)
            th.start()
            try:
                parent, approve = await env.wait_button("T-approve", A.APPROVE)
                value = json.loads(approve["value"])  # ids, the run and the question's digest; no agent text
                assert {k: value[k] for k in ("t", "a")} == {"t": "T-approve", "a": "a1"}
                asked = approval_digest(
                    agent="rivet",
                    task="T-approve",
                    run=value["r"],
                    approval_id="a1",
                    question="Apply migration 0007 to prod?",
                    options=("approve", "reject"),
                )
                assert len(value["r"]) == 12 and value["d"] == asked
                sent = await env.sender.interaction(env.click(parent, approve))
                assert sent.status == 200 and sent.text == ""
                await until(lambda: result, 60, "the agent to be released")
                [decision] = result
                assert decision.approved and decision.by == "alice" and decision.approval_id == "a1"

                [row] = await env.wait_rows("T-approve", 1)
                assert (row["action"], row["outcome"], row["actor"], row["source"]) == (
                    "approve",
                    "applied",
                    APPROVER,
                    "slack",
                )
                assert row["intervention_id"] == decision.intervention_id and row["known"]

                def approved() -> bool:
                    p = env.parent("T-approve")
                    return p is not None and f"✅ Approved by <@{APPROVER}>" in _shown(p)

                await until(approved, 60, "the parent to say who approved")
                shown = env.parent("T-approve")
                assert shown is not None
                assert {b["action_id"] for b in _buttons(shown)}.isdisjoint({A.APPROVE, A.REJECT, A.COMMENT})
                await until(
                    lambda: any(x.startswith(f"✅ Approved by <@{APPROVER}>") for x in env.thread("T-approve")),
                    60,
                    "the thread line",
                )
                await env.wait_counter("approve", "applied", 1.0)
                await until(env.answers, 60, "the ephemeral answer")
                assert env.answers()[0].startswith("✅ Approved `a1`")
                # SPANVISOR_WEBHOOK_ACTIONS defaults to all: the orchestrator hears of the approval too.
                await until(env.webhook.delivered, 60, "the webhook delivery of the approval")
                [seen] = env.webhook.delivered()
                assert seen.json["action"] == "approve" and seen.intervention_id == decision.intervention_id
            finally:
                finish.set()
                await asyncio.to_thread(th.join, 60)

    run(go(), 100)


@pytest.mark.usefixtures("in_process")
def test_a_retry_click_on_a_failed_task_is_delivered_once_to_the_webhook(pg_server: Any, tmp_path: Path) -> None:
    db_url = pg_server.database()

    async def go() -> None:
        async with flow(db_url, tmp_path) as env:

            def fail() -> None:
                with task("Nightly import", agent_id="importer", task_id="T-retry", tracer=env.tracer):
                    raise RuntimeError("the import failed")

            with pytest.raises(RuntimeError):
                await asyncio.to_thread(fail)
            parent, retry = await env.wait_button("T-retry", A.RETRY)
            assert json.loads(retry["value"])["t"] == "T-retry" and set(json.loads(retry["value"])) == {"t", "r"}
            payload = env.click(parent, retry)
            assert (await env.sender.interaction(payload)).status == 200

            # The audit row first: a refused click says why there, not as a missing delivery.
            [row] = await env.wait_rows("T-retry", 1)
            assert (row["action"], row["outcome"], row["actor"]) == ("retry", "applied", APPROVER), row.get("reason")
            await until(env.webhook.delivered, 60, "the webhook delivery")
            [seen] = env.webhook.delivered()
            assert seen.verified and seen.intervention_id == row["intervention_id"]
            body = seen.json
            assert (body["action"], body["task_id"], body["intervention_id"]) == (
                "retry",
                "T-retry",
                seen.intervention_id,
            )
            assert body["actor"]["id"] == APPROVER and body["source"] == "slack"
            await until(
                lambda: any(x.startswith(f"🔁 Retry requested by <@{APPROVER}>") for x in env.thread("T-retry")),
                60,
                "the thread line",
            )
            await env.wait_counter("retry", "applied", 1.0)
            await until(env.answers, 60, "the ephemeral answer")
            assert env.answers()[0].startswith("🔁 Retry requested")

            # The same click again (Slack retrying, or a replay inside the window):
            # acknowledged, dropped at its claim, nothing sent or recorded twice.
            replays = env.pipeline.stats.value("slack_interactions_total", outcome="replay")
            assert (await env.sender.interaction(payload)).status == 200
            await until(
                lambda: env.pipeline.stats.value("slack_interactions_total", outcome="replay") == replays + 1,
                60,
                "the replay to be dropped",
            )
            assert await asyncio.to_thread(env.pipeline.force_flush, 10)
            assert len(env.webhook.requests) == 1
            assert len(await env.rows("T-retry")) == 1 and len(env.answers()) == 1
            assert await env.counter("retry", "applied") == 1.0
            assert [d.intervention_id for d in await env.pipeline.control.decisions("T-retry")] == [
                seen.intervention_id
            ]

    run(go(), 100)
