"""State-store outages and lapsed leases never give a task a second parent."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import pytest
from tests.fakes.slack_api import FakeSlack
from tests.slack.slack_support import run, slack_config, slack_env, until
from tests.taskscript import TaskScript

from spanvisor.sink import SinkContext
from spanvisor.statestores.api import Claim
from spanvisor.statestores.memory import InMemoryStateStore
from spanvisor.stats import PipelineStats
from spanvisor_slack import SlackSink


class FlakyStore(InMemoryStateStore):
    """Fails the next ``fail[op]`` calls of an operation, or every call made
    by the owners in ``down`` (a replica cut off from the database)."""

    def __init__(self) -> None:
        super().__init__()
        self.fail: dict[str, int] = {}
        self.down: set[str] = set()
        # What each owner asked for, answered or not: tests wait on these
        # instead of sleeping.
        self.asked: dict[tuple[str, str], int] = {}

    def _maybe_fail(self, op: str, owner: str | None = None) -> None:
        key = (op, owner or "")
        self.asked[key] = self.asked.get(key, 0) + 1
        if owner in self.down:
            raise ConnectionResetError("state store: connection reset")
        if self.fail.get(op):
            self.fail[op] -= 1
            raise ConnectionRefusedError("state store: connection refused")

    def count(self, op: str, owner: str) -> int:
        return self.asked.get((op, owner), 0)

    async def claim(self, namespace: str, key: str, owner: str, lease_s: float = 60.0) -> Claim:
        self._maybe_fail("claim", owner)
        return await super().claim(namespace, key, owner, lease_s)

    async def put_if_owner(self, namespace: str, key: str, value: Mapping[str, Any], owner: str) -> bool:
        self._maybe_fail("put", owner)
        return await super().put_if_owner(namespace, key, value, owner)


def _drops(stats: PipelineStats) -> dict[str, float]:
    return {dict(k[1])["reason"]: v for k, v in stats.counters.items() if k[0] == "dropped_total"}


def test_a_store_blip_after_the_post_keeps_one_parent() -> None:
    # The reviewer's r1: the put of {channel, ts} fails once after Slack accepted the post.
    async def main() -> None:
        store = FlakyStore()
        store.fail["put"] = 1
        async with slack_env(store=store, slack_update_interval_s=0.1) as env:
            t = TaskScript.new("task-blip", task_name="Diagnose F47")
            await env.send(t.started())
            # Slack took the post and the store failed the put of its result.
            await until(lambda: env.fake.parents() and env.stats.value("slack_state_store_errors_total", op="put"))
            await env.send(t.checkpoint(progress=50.0, message="halfway"), t.finished())
            assert await env.sink.force_flush(20)
            parents = env.fake.parents()
            assert len(parents) == 1
            assert "complete" in parents[0].blocks[0]["text"]["text"]
            assert len(env.fake.thread(parents[0])) == 2  # the milestone and the summary
            assert await store.get("slack.parent", "task-blip") == {"channel": parents[0].channel, "ts": parents[0].ts}
            assert _drops(env.stats) == {}
            assert env.stats.value("slack_state_store_errors_total", op="put") == 1

    run(main())


def test_failing_claims_delay_the_messages_and_lose_nothing() -> None:
    async def main() -> None:
        store = FlakyStore()
        store.fail["claim"] = 2  # the parent's claim, then a reply's
        async with slack_env(store=store, slack_update_interval_s=0.1, slack_reply_interval_s=0.05) as env:
            t = TaskScript.new("task-claims")
            await env.send(t.started(), t.checkpoint(progress=30.0), t.checkpoint(progress=80.0), t.finished())
            assert await env.sink.force_flush(20)
            (parent,) = env.fake.parents()
            assert "complete" in parent.blocks[0]["text"]["text"]
            texts = " ".join(str(m.text) for m in env.fake.thread(parent))
            assert "25%" in texts and "75%" in texts and _drops(env.stats) == {}

    run(main())


def test_a_task_whose_output_stopped_is_not_started_again() -> None:
    # A dead worker used to leave no trace, so the task's next event posted anew.
    async def main() -> None:
        async with slack_env(slack_channel="#missing") as env:
            t = TaskScript.new("task-dead")
            await env.send(t.started())
            await env.sink.force_flush(2)
            for i in range(3):
                await env.send(t.checkpoint(progress=10.0 * i, message=f"step {i}"))
                await env.sink.force_flush(2)
            assert len(env.fake.calls_to("chat.postMessage")) == 1
            assert _drops(env.stats) == {"slack_channel_not_found": 1}

    run(main())


async def _replica(fake: FakeSlack, store: InMemoryStateStore, rid: str, token: str, **kw: Any) -> SlackSink:
    sink = SlackSink()
    cfg = slack_config(fake.base_url, token, **{"slack_timeout_s": 5.0, "slack_update_interval_s": 0.1, **kw})
    await sink.start(SinkContext(config=cfg, state_store=store, stats=PipelineStats(), replica_id=rid))
    return sink


@pytest.mark.slow
def test_the_lease_is_renewed_while_a_slow_post_waits() -> None:
    # Slack answers after three leases. The lease is 1.5 s, not shorter: on a
    # loaded machine the loop can be late by half a second, and a renewal that
    # late lets the lease lapse for real.
    async def main() -> None:
        fake = FakeSlack()
        await fake.start()
        store = FlakyStore()
        slow = {"slack_lease_s": 1.5, "slack_timeout_s": 15.0}  # every Slack answer takes 4.5 s
        a = await _replica(fake, store, "replica-a", "xoxb-slow-4500", **slow)
        b = await _replica(fake, store, "replica-b", "xoxb-slow-4500", **slow)
        try:
            t = TaskScript.new("task-1", task_name="Diagnose F47")
            await a.export([t.started()])
            # The claim, the check before the call, then renewals every
            # lease/3: five claims by A mean A's first lease has run out and
            # only the renewals keep it (A's post is still in flight).
            await until(lambda: store.count("claim", "replica-a") >= 5, 30, "A renewing its lease")
            await b.export([t.checkpoint(progress=10.0, message="reading")])
            assert await a.force_flush(20) and await b.force_flush(20)
            (parent,) = fake.parents()
            assert await store.get("slack.parent", "task-1") == {"channel": parent.channel, "ts": parent.ts}
            assert "reading" in str(parent.attachments)  # B edits the parent A posted
            assert not fake.calls_to("chat.delete")
        finally:
            for s in (a, b):
                await s.shutdown(2)
            await fake.stop()

    run(main())


@asynccontextmanager
async def _both_posted(a_events: Sequence[Any], b_events: Sequence[Any]) -> AsyncIterator[Contest]:
    """A posts the task's parent with ``a_events``' view, slowly, and is cut
    off from the store meanwhile; its lease lapses and B, given
    ``b_events``, takes the task over and posts its own. Then A's post is
    answered, its put of the result fails while it is cut off, and it is
    back: what happens next is the test's."""
    fake = FakeSlack()
    await fake.start()
    store = FlakyStore()
    a = await _replica(fake, store, "replica-a", "xoxb-slow-1000", slack_lease_s=0.3)
    # B's app cannot read the channel's history (no channels:history), so
    # it cannot find A's post, noted as under way, and posts its own: the
    # case A's conditional put is for.
    b = await _replica(fake, store, "replica-b", "xoxb-nohistory", slack_lease_s=0.3)
    try:
        await a.export(list(a_events))
        # A claimed and checked its claim right before the call: its slow post is under way.
        await until(lambda: store.count("claim", "replica-a") >= 2, what="A posting")
        store.down.add("replica-a")
        # B waits until A's lease lapses (A cannot renew it), takes the task over and posts.
        await b.export(list(b_events))
        assert await b.force_flush(20)
        await until(lambda: store.count("put", "replica-a") >= 1, what="A storing its post")
        store.down.clear()
        yield Contest(fake, store, a, b)
    finally:
        for sink in (a, b):
            await sink.shutdown(2)
        await fake.stop()


@dataclass
class Contest:
    fake: FakeSlack
    store: FlakyStore
    a: SlackSink
    b: SlackSink


@pytest.mark.slow
def test_a_poster_whose_lease_was_taken_over_deletes_its_own_parent() -> None:
    # A's conditional put loses: A deletes its post and continues B's thread.
    async def main() -> None:
        t = TaskScript.new("task-2", task_name="Contested")
        async with _both_posted([t.started()], [t.checkpoint(progress=10.0, message="from b")]) as c:
            await c.a.export([t.checkpoint(progress=20.0, message="from a")])
            assert await c.a.force_flush(20) and await c.b.force_flush(20)
            (parent,) = c.fake.parents()
            assert [(m.metadata or {})["event_payload"]["task_id"] for m in c.fake.deleted] == ["task-2"]
            assert c.fake.deleted[0].ts != parent.ts
            assert await c.store.get("slack.parent", "task-2") == {"channel": parent.channel, "ts": parent.ts}
            assert "from a" in str(parent.attachments)  # A went on in B's parent
            stats = c.a.ctx.stats if c.a.ctx is not None else None
            assert stats is not None and stats.value("slack_duplicates_total", kind="parent", deleted="true") == 1

    run(main())


@pytest.mark.slow
def test_a_poster_that_lost_its_parent_shows_its_newer_view_on_the_winners() -> None:
    # As above, but A's post carried the task's end and A hears nothing more.
    # A deletes its post and adopts B's parent, which shows an earlier view.
    # A must put its own (final) view on B's parent, not record B's parent as
    # showing it: nobody would edit it again (found by the replicas property
    # test at load 6, the parent left at "working" for good).
    async def main() -> None:
        t = TaskScript.new("task-3", task_name="Contested end")
        started, earlier, end = t.started(), t.checkpoint(progress=10.0, message="from b"), t.finished("error")
        async with _both_posted([started, end], [earlier]) as c:
            assert await c.a.force_flush(20) and await c.b.force_flush(20)
            (parent,) = c.fake.parents()
            assert c.fake.deleted and c.fake.deleted[0].ts != parent.ts
            assert "error" in parent.text.split(" — ", 1)[0], parent.text  # A's end, on B's parent

    run(main())
