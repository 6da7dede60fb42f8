"""Replicas agree on what a task's parent shows.

Two Slack sinks share one state store and one fake Slack, as two `serve`
replicas do. One (the root's replica) has the whole task; the other holds
only some children: its view has no name, never finishes, and its ``seq``
is its own. The parent shows the newest view in the shared store: a final
one beats any other, and a partial view never replaces it.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace

from slack_support import run, slack_env
from tests.fakes.slack_api import FakeSlack
from tests.taskscript import ManualClock, TaskScript

from spanvisor.events import Checkpoint
from spanvisor.statestores.memory import InMemoryStateStore
from spanvisor_slack.shared import Stored, version_of
from spanvisor_slack.worker import RETIRE_S

FAST = {"slack_update_interval_s": 0.0, "slack_reply_interval_s": 0.0, "slack_channel_interval_s": 0.0}


def _text(fake: FakeSlack) -> str:
    [parent] = fake.parents()
    return f"{parent.text} {parent.blocks} {parent.attachments}"


def _updates(fake: FakeSlack) -> int:
    return len(fake.calls_to("chat.update"))


async def _pair() -> tuple[FakeSlack, InMemoryStateStore]:
    fake = FakeSlack(channel_rate=100, channel_burst=100)
    await fake.start()
    return fake, InMemoryStateStore()


def _whole(task_id: str) -> TaskScript:
    return TaskScript.new(task_id, task_name="Diagnose F47")


def _partial(task_id: str) -> TaskScript:
    """A replica that got only children: no name; its seq counts its own events."""
    return TaskScript.new(task_id)


def test_a_partial_view_arriving_after_the_final_one_changes_nothing() -> None:
    async def main() -> None:
        fake, store = await _pair()
        try:
            whole, part = _whole("T1"), _partial("T1")
            async with slack_env(fake=fake, store=store, **FAST) as a, slack_env(fake=fake, store=store, **FAST) as b:
                await a.send(whole.started(), whole.checkpoint(progress=50.0), whole.finished("complete"))
                assert await a.sink.force_flush(20)
                before = _updates(fake)
                # Many events on the other replica: a higher seq, not final.
                await b.send(part.started(), *[part.checkpoint(progress=float(p)) for p in range(10, 40)])
                assert await b.sink.force_flush(20)
                assert _updates(fake) == before
            assert len(fake.parents()) == 1
            shown = _text(fake)
            assert "complete" in shown and "Diagnose F47" in shown
        finally:
            await fake.stop()

    run(main())


def test_a_parent_posted_from_a_partial_view_ends_on_the_final_one() -> None:
    async def main() -> None:
        fake, store = await _pair()
        try:
            whole, part = _whole("T2"), _partial("T2")
            async with slack_env(fake=fake, store=store, **FAST) as a, slack_env(fake=fake, store=store, **FAST) as b:
                await b.send(part.started(), part.checkpoint(progress=30.0))
                assert await b.sink.force_flush(20)
                assert "working" in _text(fake) and "Diagnose F47" not in _text(fake)
                await a.send(whole.started(), whole.checkpoint(progress=60.0), whole.finished("error"))
                assert await a.sink.force_flush(20)
                await b.send(part.checkpoint(progress=35.0))  # more of the partial view: never over the final
                assert await b.sink.force_flush(20)
            assert len(fake.parents()) == 1
            assert "error" in _text(fake) and "Diagnose F47" in _text(fake)
            stored = Stored.load(await store.get("slack.view", "T2"))
            assert stored is not None and stored.final and stored.is_shown and stored.view.status == "error"
        finally:
            await fake.stop()

    run(main())


def test_a_late_span_corrects_the_finished_parent() -> None:
    """The tracker sends a late span's events with the finished view, corrected
    (more tokens) and a higher seq: the parent follows, still finished."""

    async def main() -> None:
        fake, store = await _pair()
        try:
            whole = _whole("T3")
            async with slack_env(fake=fake, store=store, **FAST) as a:
                started = whole.started()
                finished = whole.finished("complete")
                await a.send(started, replace(finished, task=replace(finished.task, input_tokens=1234)))
                assert await a.sink.force_flush(20)
                assert "1,234" in _text(fake) or "1234" in _text(fake)
                v = replace(finished.task, input_tokens=1234)
                late = Checkpoint(
                    event_id="late-model-call",
                    time_ns=finished.time_ns + 1,
                    task=replace(v, seq=v.seq + 1, input_tokens=5678),
                    source="model_call",
                )
                await a.send(late)
                assert await a.sink.force_flush(20)
            assert len(fake.parents()) == 1
            assert ("5,678" in _text(fake) or "5678" in _text(fake)) and "complete" in _text(fake)
        finally:
            await fake.stop()

    run(main())


def test_edits_coalesce_across_replicas() -> None:
    """Views that leapfrog each other on two replicas, faster than the update
    interval: the parent is posted once and edited about once, not per view."""

    async def main() -> None:
        fake, store = await _pair()
        try:
            one, two = _partial("T4"), _partial("T4")
            slow = {**FAST, "slack_update_interval_s": 30.0}
            async with slack_env(fake=fake, store=store, **slow) as a, slack_env(fake=fake, store=store, **slow) as b:
                await a.send(one.started(), one.checkpoint(progress=1.0))
                await b.send(two.started())
                for p in range(2, 20):
                    await (a if p % 2 else b).send((one if p % 2 else two).checkpoint(progress=float(p)))
                    if p % 2:
                        one.checkpoint()  # the replicas' seqs grow unevenly
                assert await a.sink.force_flush(20) and await b.sink.force_flush(20)
            assert len(fake.parents()) == 1
            assert _updates(fake) <= 2
        finally:
            await fake.stop()

    run(main())


def test_a_final_view_its_owner_never_showed_is_shown_by_another_replica() -> None:
    """The root's replica stored the final view and died before the edit:
    the next replica that works on the task shows it, from the store."""

    async def main() -> None:
        fake, store = await _pair()
        try:
            whole, part = _whole("T5"), _partial("T5")
            async with slack_env(fake=fake, store=store, **FAST) as b:
                await b.send(part.started(), part.checkpoint(progress=10.0))
                assert await b.sink.force_flush(20)
                whole.started()
                final = whole.finished("complete").task
                dead = Stored(version_of(final, True), "gone-replica", True, final, written=0.0, shown={})
                assert (await store.put_if_newer("slack.view", "T5", dead.dump(), dead.version, "gone-replica")).won
                await b.send(part.checkpoint(progress=20.0))
                assert await b.sink.force_flush(20)
            assert "complete" in _text(fake) and "Diagnose F47" in _text(fake)
            stored = Stored.load(await store.get("slack.view", "T5"))
            assert stored is not None and stored.is_shown and stored.version == dead.version + 1
        finally:
            await fake.stop()

    run(main())


def test_an_idle_partial_task_retires_and_a_later_event_adopts_its_parent() -> None:
    async def main() -> None:
        fake, store = await _pair()
        clock = ManualClock()
        try:
            part = _partial("T6")
            async with slack_env(fake=fake, store=store, clock=clock, **FAST) as b:
                await b.send(part.started(), part.checkpoint(progress=10.0))
                assert await b.sink.force_flush(20)
                assert b.stats.value("slack_open_tasks") == 1
                clock.advance(RETIRE_S + 1)
                for _ in range(100):
                    if b.stats.value("slack_open_tasks") == 0:
                        break
                    await asyncio.sleep(0.01)
                assert b.stats.value("slack_open_tasks") == 0
                await b.send(part.checkpoint(progress=20.0))
                assert await b.sink.force_flush(20)
            assert len(fake.parents()) == 1 and len(fake.calls_to("chat.postMessage")) == 1
        finally:
            await fake.stop()

    run(main())
