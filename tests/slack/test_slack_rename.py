"""A task shown before its root arrived (a derived id D) that its root then
names X (issue 66): from the first view with ``former_id`` D on, the task's
ONE parent message is edited in place to show X and its thread goes on, in
one process, after a restart (the state store, no memory), with two
replicas, and for a decision that comes under D after the rename."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace

from slack_support import run, slack_env, tool
from tests.fakes.slack_api import FakeSlack, Message
from tests.taskscript import TaskScript

from spanvisor.events import Decision, HumanIntervention, TaskView
from spanvisor.statestores.memory import InMemoryStateStore

FAST = {"slack_update_interval_s": 0.0, "slack_reply_interval_s": 0.0, "slack_channel_interval_s": 0.0}
DERIVED = "0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331"
NAMED = "job-42"
RUN = "run-1"


def _script() -> TaskScript:
    return TaskScript.new(DERIVED, run_id=RUN, task_name="Provisional")


def _rename(script: TaskScript) -> None:
    """The root arrives: the same run (trace, root span, run id), its own id from now on."""
    script.view = replace(script.view, task_id=NAMED, former_id=DERIVED, task_name="Nightly build")


def _shows(m: Message) -> str:
    return f"{m.text} {json.dumps(m.blocks)}"


def _one_parent(fake: FakeSlack) -> Message:
    parents = fake.parents()
    assert len(parents) == 1, [_shows(p)[:200] for p in parents]
    return parents[0]


def test_renamed_task_keeps_its_one_message_and_thread() -> None:
    async def main() -> None:
        async with slack_env(**FAST) as env:
            s = _script()
            await env.send(s.started(), s.checkpoint(step="compile"), tool(s, "make"))
            assert await env.sink.force_flush(10)
            parent = _one_parent(env.fake)
            assert DERIVED in _shows(parent)
            before = len(env.fake.thread(parent))
            assert before >= 1
            _rename(s)
            await env.send(s.checkpoint(step="link", progress=60.0), s.finished())
            assert await env.sink.force_flush(10)
            same = _one_parent(env.fake)
            assert same.ts == parent.ts
            shown = _shows(same)
            assert "Nightly build" in shown and "complete" in shown, shown[:400]
            assert len(env.fake.thread(same)) > before  # the thread goes on under the same message
            stored = await env.store.get("slack.parent", f"{NAMED}/{RUN}")
            assert stored is not None and stored["ts"] == parent.ts
            alias = await env.store.get("slack.parent", f"{DERIVED}/{RUN}")
            assert alias is not None and alias["ts"] == parent.ts and alias["moved_to"] == f"{NAMED}/{RUN}"

    run(main())


def test_after_a_restart_two_replicas_edit_the_same_message() -> None:
    """Process 1 posted D and stopped; two replicas with no memory of it get
    the renamed views: neither posts, the one message shows X."""

    async def main() -> None:
        fake, store = FakeSlack(), InMemoryStateStore()
        await fake.start()
        try:
            s = _script()
            async with slack_env(fake=fake, store=store, **FAST) as env:
                await env.send(s.started(), s.checkpoint(step="compile"))
                assert await env.sink.force_flush(10)
            parent = _one_parent(fake)
            _rename(s)
            later = [s.checkpoint(step="link"), s.finished()]
            async with slack_env(fake=fake, store=store, **FAST) as a, slack_env(fake=fake, store=store, **FAST) as b:
                await asyncio.gather(a.send(*later), b.send(*later))
                assert await a.sink.force_flush(10) and await b.sink.force_flush(10)
            same = _one_parent(fake)
            assert same.ts == parent.ts
            assert "Nightly build" in _shows(same) and "complete" in _shows(same), _shows(same)[:400]
            assert not fake.deleted
        finally:
            await fake.stop()

    run(main())


def test_a_decision_under_the_former_id_shows_on_the_same_message() -> None:
    """A button made while the task showed as D, clicked after it finished
    and was forgotten: the decision comes with a bare view under D. It goes
    on the same message, which still shows X (never D's old view again)."""

    async def main() -> None:
        fake, store = FakeSlack(), InMemoryStateStore()
        await fake.start()
        try:
            s = _script()
            async with slack_env(fake=fake, store=store, **FAST) as env:
                await env.send(s.started(), s.checkpoint(step="compile"))
                _rename(s)
                await env.send(s.finished())
                assert await env.sink.force_flush(10)
            parent = _one_parent(fake)
            d = Decision("iv-1", DERIVED, "cancel", "U123", s.view.updated_ns + 1, source="slack", run_id=RUN)
            bare = TaskView(task_id=DERIVED, trace_id="", root_span_id="", agent_id="unknown", run_id=RUN)
            ev = HumanIntervention(event_id="iv-1", time_ns=d.time_ns, task=bare, decision=d, known=False)
            async with slack_env(fake=fake, store=store, **FAST) as env:
                await env.send(ev)
                assert await env.sink.force_flush(10)
            same = _one_parent(fake)
            assert same.ts == parent.ts
            assert "Nightly build" in _shows(same) and "complete" in _shows(same), _shows(same)[:400]
            assert any("U123" in _shows(m) or "ancel" in _shows(m) for m in fake.thread(same))
        finally:
            await fake.stop()

    run(main())
