"""The decision log's chain head, sent to the receiver when asked.

Real pipelines with the webhook sink, a real state store file (the local
SQLite store) shared by every pipeline and by the test, which publishes
heads as the postgres sink does, and the verifying receiver on loopback.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spanvisor.pipeline.pipeline import Pipeline
from spanvisor.statestores.chainhead import ChainHead, advance
from spanvisor.statestores.local import LocalStateStore
from spanvisor.statestores.memory import InMemoryStateStore
from spanvisor.testing import InMemorySink
from spanvisor_webhook import WebhookSink
from spanvisor_webhook.checkpoints import NAMESPACE, SENT_KEY, CheckpointWatch
from tests.waiting import wait_until
from tests.webhook.conftest import SECRET, Receiver, Running, webhook_config

pytestmark = pytest.mark.timeout_s(120)


def head(seq: int) -> ChainHead:
    return ChainHead(seq, f"{seq:064x}", 1_795_357_800_000_000_000 + seq)


class Shared:
    """The state store file every pipeline opens, and the test's own handle on it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.opened: list[LocalStateStore] = []

    def open(self) -> LocalStateStore:
        store = LocalStateStore(self.path)
        asyncio.run(store.start())
        self.opened.append(store)
        return store

    def publish(self, seq: int) -> None:
        async def go() -> None:
            store = LocalStateStore(self.path)
            await store.start()
            try:
                await advance(store, head(seq), "postgres:test")
            finally:
                await store.close()

        asyncio.run(go())

    def close(self) -> None:
        for store in self.opened:
            asyncio.run(store.close())


@pytest.fixture
def shared(tmp_path: Path) -> Iterator[Shared]:
    s = Shared(tmp_path / "shared" / "state.db")
    yield s
    s.close()


@pytest.fixture
def replicas(tmp_path: Path, shared: Shared) -> Iterator[Callable[..., Running]]:
    made: list[Running] = []

    def start(url: str, replica: str = "r1", **env: str) -> Running:
        cfg = webhook_config(
            {
                "SPANVISOR_DATA_DIR": str(tmp_path / replica),
                "SPANVISOR_REPLICA_ID": replica,
                "SPANVISOR_WEBHOOK_URL": url,
                "SPANVISOR_WEBHOOK_SECRET": SECRET,
                "SPANVISOR_WEBHOOK_TIMEOUT": "2s",
                **env,
            }
        )
        sink, memory = WebhookSink(checkpoint_poll_s=0.05), InMemorySink()
        pipeline = Pipeline(cfg, sinks=[sink, memory], state_store=shared.open()).start()
        assert pipeline.wait_ready(10)
        from opentelemetry.sdk.trace import TracerProvider

        from spanvisor.otel.processor import SpanvisorSpanProcessor

        provider = TracerProvider()
        provider.add_span_processor(SpanvisorSpanProcessor(pipeline=pipeline))
        running = Running(pipeline, sink, memory, provider.get_tracer("webhook-checkpoints"))
        made.append(running)
        return running

    yield start
    for r in made:
        r.pipeline.shutdown(5)


def _ids(receiver: Receiver) -> list[str | None]:
    return [r.intervention_id for r in receiver.delivered()]


def test_a_new_head_is_sent_once_signed(receiver: Receiver, replicas: Callable[..., Running], shared: Shared) -> None:
    run = replicas(receiver.url, SPANVISOR_WEBHOOK_CHECKPOINTS="true")
    shared.publish(3)
    wait_until(lambda: len(receiver.delivered()) == 1, what="the checkpoint of link 3")
    seen = receiver.requests[0]
    assert seen.verified and seen.headers["X-Spanvisor-Intervention-Id"] == "chain-3"
    assert seen.json == {
        "type": "spanvisor.chain_checkpoint",
        "v": 1,
        "seq": 3,
        "hash": f"{3:064x}",
        "time": "2026-11-22T14:30:00.000Z",
        "checkpoint_id": "chain-3",
    }
    shared.publish(3)  # the same head again, and an older one: the store keeps 3
    shared.publish(2)
    shared.publish(5)
    wait_until(lambda: len(receiver.delivered()) == 2, what="the checkpoint of link 5")
    assert run.pipeline.force_flush(30)
    assert _ids(receiver) == ["chain-3", "chain-5"]
    assert len(receiver.requests) == 2


def test_two_replicas_send_each_head_once(receiver: Receiver, replicas: Callable[..., Running], shared: Shared) -> None:
    one = replicas(receiver.url, "r1", SPANVISOR_WEBHOOK_CHECKPOINTS="true")
    two = replicas(receiver.url, "r2", SPANVISOR_WEBHOOK_CHECKPOINTS="true")
    for seq in (1, 2, 3):
        shared.publish(seq)
        wait_until(lambda seq=seq: f"chain-{seq}" in _ids(receiver), what=f"the checkpoint of link {seq}")
    assert one.pipeline.force_flush(30) and two.pipeline.force_flush(30)
    assert _ids(receiver) == ["chain-1", "chain-2", "chain-3"]
    assert len(receiver.requests) == 3


def test_off_by_default_only_interventions_are_sent(
    receiver: Receiver, replicas: Callable[..., Running], shared: Shared
) -> None:
    shared.publish(4)
    run = replicas(receiver.url)
    assert run.sink.checkpoints is None
    run.failed_task("T1")
    assert run.decide("T1", "retry", "iv-1").outcome == "applied"
    wait_until(lambda: len(receiver.delivered()) == 1, what="the intervention")
    shared.publish(5)
    assert run.decide("T1", "acknowledge", "iv-2").outcome in ("applied", "already_decided")
    assert run.pipeline.force_flush(30)
    assert all(r.json["type"] == "spanvisor.intervention" for r in receiver.requests)


def test_a_head_won_but_not_queued_is_queued_by_its_owner_after_a_restart(
    receiver: Receiver, replicas: Callable[..., Running], shared: Shared
) -> None:
    """A replica that won a head and died before it reached its outbox: the
    same replica, started again, sends it; another replica leaves it."""

    async def won_by(owner: str) -> None:
        store = LocalStateStore(shared.path)
        await store.start()
        try:
            await advance(store, head(4), "postgres:test")
            value = {**head(4).to_dict(), "by": f"webhook:{owner}", "queued": False}
            assert (await store.put_if_newer(NAMESPACE, SENT_KEY, value, 4, f"webhook:{owner}")).won
        finally:
            await store.close()

    asyncio.run(won_by("r1"))
    other = replicas(receiver.url, "r2", SPANVISOR_WEBHOOK_CHECKPOINTS="true")
    owner = replicas(receiver.url, "r1", SPANVISOR_WEBHOOK_CHECKPOINTS="true")
    wait_until(lambda: _ids(receiver) == ["chain-4"], what="the owner's checkpoint")
    assert other.pipeline.force_flush(30) and owner.pipeline.force_flush(30)
    assert len(receiver.requests) == 1


@settings(max_examples=60, deadline=None)
@given(
    steps=st.lists(
        st.one_of(
            st.tuples(st.just("publish"), st.integers(1, 9)),
            st.tuples(st.just("tick"), st.integers(0, 2)),
            st.tuples(st.just("outbox"), st.booleans()),
        ),
        max_size=30,
    )
)
def test_each_head_is_queued_at_most_once_and_in_order(steps: list[tuple[str, Any]]) -> None:
    """Heads published in any order, three replicas' watches reading them in
    any order, outboxes that sometimes refuse: across all replicas no head
    is queued twice, heads are queued in increasing order, and once the
    outboxes take them again the newest head is queued."""

    async def go() -> None:
        store = InMemoryStateStore()
        queued: list[int] = []
        taking = [True]

        def queue_of() -> Any:
            async def queue(items: list[dict[str, Any]]) -> bool:
                if not taking[0]:
                    return False
                queued.extend(int(i["body"]["seq"]) for i in items)
                return True

            return queue

        watches = [CheckpointWatch(store, f"r{i}", queue_of()) for i in range(3)]
        newest = 0
        for kind, arg in steps:
            if kind == "publish":
                await advance(store, head(arg), "postgres:test")
                newest = max(newest, arg)
            elif kind == "tick":
                await watches[arg].tick()
            else:
                taking[0] = arg
            assert len(queued) == len(set(queued)) and queued == sorted(queued)
        taking[0] = True
        for w in watches:
            await w.tick()
        assert queued == sorted(set(queued))
        if newest:
            assert queued[-1] == newest

    asyncio.run(go())
