"""A real pipeline with the Slack sink, the fake Slack and the admin app:
what the interaction tests click on.

The agent is the real OpenTelemetry SDK with spanvisor's processor; a task
asks for approval with an ``agent.approval.request`` event on its root. The
admin app is spanvisor serve's own (``receiver.admin.make_app``) with the
sink's routes; the fake Slack signs and posts the clicks to it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from aiohttp import web
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import Span, Tracer
from slack_support import slack_config, until
from tests.fakes.slack_api import FakeSlack, Message
from tests.fakes.slack_sender import SignedSender

from spanvisor.events import Decision, HumanIntervention
from spanvisor.otel.processor import SpanvisorSpanProcessor
from spanvisor.pipeline.pipeline import Pipeline
from spanvisor.receiver.admin import make_app
from spanvisor.spans import conventions as cv
from spanvisor.statestores.memory import InMemoryStateStore
from spanvisor.testing import InMemorySink
from spanvisor_slack import SlackSink
from spanvisor_slack.actions import button_value

SECRET = "8f742231b10e8888abcd99yyyzzz85a5"


@dataclass
class Replica:
    pipeline: Pipeline
    sink: SlackSink
    memory: InMemorySink
    sender: SignedSender | None
    runner: web.AppRunner | None

    async def decisions(self, task_id: str) -> list[Decision]:
        return await self.pipeline.control.decisions(task_id)

    def interventions(self) -> list[HumanIntervention]:
        return [e for e in self.memory.events if isinstance(e, HumanIntervention)]


@dataclass
class Live:
    fake: FakeSlack
    store: InMemoryStateStore
    replicas: list[Replica]
    tracer: Tracer
    roots: list[Span] = field(default_factory=list)

    @property
    def one(self) -> Replica:
        return self.replicas[0]

    def ask(self, task_id: str, approval_id: str, question: str = "Apply migration 0007 to prod?") -> Span:
        """A running task (on the first replica) that asks for approval."""
        root = self.tracer.start_span("deploy", attributes={cv.TASK_NAME: "deploy", cv.TASK_ID: task_id})
        root.add_event(cv.EVENT_APPROVAL_REQUEST, {cv.APPROVAL_ID: approval_id, cv.APPROVAL_QUESTION: question})
        self.roots.append(root)
        return root

    async def awaiting(self, task_id: str, approval_id: str) -> Message:
        """Wait until the task's request is open and its parent is posted."""
        control = self.one.pipeline.control
        for _ in range(500):
            view = await control.task(task_id)
            if view is not None and any(a.approval_id == approval_id for a in view.approvals):
                break
            await asyncio.sleep(0.02)
        else:
            raise AssertionError(f"the approval {approval_id} of {task_id} never opened")
        await until(lambda: self.parent(task_id) is not None, 10, f"the parent of {task_id}")
        parent = self.parent(task_id)
        assert parent is not None
        return parent

    def parent(self, task_id: str) -> Message | None:
        for m in self.fake.parents():
            if (m.metadata or {}).get("event_payload", {}).get("task_id") == task_id:
                return m
        return None

    def click(
        self,
        parent: Message,
        task_id: str,
        action_id: str,
        approval_id: str | None = None,
        *,
        user_id: str = "U0ALICE",
        user_name: str = "alice",
        action_ts: str | None = None,
    ) -> dict[str, Any]:
        return self.fake.interactions.block_actions(
            channel_id=parent.channel,
            message_ts=parent.ts,
            action_id=action_id,
            value=button_value(task_id, approval_id),
            user_id=user_id,
            user_name=user_name,
            action_ts=action_ts,
        )

    def answers(self) -> list[str]:
        """Ephemeral answers so far: response_url posts and chat.postEphemeral."""
        out = [str(r.body.get("text")) for r in self.fake.interactions.responses]
        return out + [str(e.text) for e in self.fake.interactions.ephemerals]


async def _serve(pipeline: Pipeline) -> tuple[web.AppRunner, str]:
    app = make_app(SimpleNamespace(pipeline=pipeline), lambda: (True, "ok"))  # type: ignore[arg-type]
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}"


@asynccontextmanager
async def live(replicas: int = 1, *, http: bool = True, **overrides: Any) -> AsyncIterator[Live]:
    """``replicas`` pipelines sharing one state store and the fake Slack; each
    serves the admin routes when ``http``. ``overrides``: Slack settings
    (e.g. ``slack_approvers``, ``slack_app_token``)."""
    fake = FakeSlack()
    await fake.start()
    store = InMemoryStateStore()
    values = {"slack_signing_secret": SECRET} if http else {}
    config = slack_config(fake.base_url, **{**values, **overrides}).with_values(shutdown_timeout_s=3.0)
    started: list[Replica] = []
    provider = TracerProvider(shutdown_on_exit=False)
    try:
        for _ in range(replicas):
            sink, memory = SlackSink(), InMemorySink()
            p = Pipeline(config, sinks=[sink, memory], state_store=store).start()
            rep = Replica(p, sink, memory, None, None)
            started.append(rep)
            assert await asyncio.to_thread(p.wait_ready, 10), "the pipeline did not start"
            if http:
                rep.runner, base = await _serve(p)
                rep.sender = SignedSender(base, SECRET)
        provider.add_span_processor(SpanvisorSpanProcessor(pipeline=started[0].pipeline))
        env = Live(fake, store, started, provider.get_tracer("agent"))
        yield env
        for root in env.roots:
            root.end()
    finally:
        for rep in started:
            if rep.runner is not None:
                await rep.runner.cleanup()
            # In a thread: the fake Slack answers the last edits on this loop.
            await asyncio.to_thread(rep.pipeline.shutdown, 3)
        await fake.stop()
