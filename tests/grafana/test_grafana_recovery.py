"""State-store failures and task-tag lookups: one annotation per task, never another's."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from grafana_helpers import T0, finished, start_sink, started, with_fake
from hypothesis import given
from hypothesis import strategies as st
from tests.fakes.grafana_api import FakeGrafana

from spanvisor.sink import SinkResult
from spanvisor.statestores.api import Claim
from spanvisor.statestores.memory import InMemoryStateStore
from spanvisor.stats import PipelineStats
from spanvisor_grafana.sink import NAMESPACE
from spanvisor_grafana.text import MAX_TAG, task_tag

DAY_MS = 86_400_000


class FlakyStore(InMemoryStateStore):
    """The in-memory store, with the next N calls of an operation refused (PostgreSQL away)."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.fail: dict[str, int] = {}

    def _maybe_fail(self, op: str) -> None:
        if self.fail.get(op, 0) > 0:
            self.fail[op] -= 1
            raise ConnectionRefusedError(f"{op}: connection refused")

    async def claim(self, namespace: str, key: str, owner: str, lease_s: float = 60.0) -> Claim:
        self._maybe_fail("claim")
        return await super().claim(namespace, key, owner, lease_s)

    async def put(self, namespace: str, key: str, value: Mapping[str, Any], owner: str) -> None:
        self._maybe_fail("put")
        await super().put(namespace, key, value, owner)

    async def get(self, namespace: str, key: str) -> Mapping[str, Any] | None:
        self._maybe_fail("get")
        return await super().get(namespace, key)


def _task_tags(fake: FakeGrafana, task_id: str) -> list[dict[str, Any]]:
    return fake.by_tag(task_tag(task_id))


def test_store_read_failure_is_retried_not_dropped() -> None:
    for op in ("get", "claim"):

        async def body(fake: FakeGrafana, op: str = op) -> None:
            store, stats = FlakyStore(), PipelineStats()
            sink = await start_sink(fake, store, stats)
            store.fail[op] = 1
            assert await sink.export([started()]) is SinkResult.RETRY
            assert not fake.annotations and stats.total("dropped_total") == 0
            # Redelivered: the event was not remembered as done.
            assert await sink.export([started()]) is SinkResult.SUCCESS
            assert await sink.export([finished()]) is SinkResult.SUCCESS
            (ann,) = fake.annotations.values()
            assert ann["timeEnd"] > ann["time"] and "status:complete" in ann["tags"]
            assert stats.total("dropped_total") == 0
            await sink.shutdown(1)

        with_fake(body)


def test_put_failure_after_post_adopts_instead_of_posting_again() -> None:
    async def body(fake: FakeGrafana) -> None:
        store = FlakyStore()
        sink = await start_sink(fake, store)
        store.fail["put"] = 1
        assert await sink.export([started()]) is SinkResult.RETRY
        assert len(fake.annotations) == 1
        # The finish arrives before the start is redelivered.
        assert await sink.export([finished()]) is SinkResult.SUCCESS
        assert await sink.export([started()]) is SinkResult.SUCCESS
        assert len(fake.calls("POST")) == 1
        (ann,) = fake.annotations.values()
        assert ann["timeEnd"] - ann["time"] == 42_000
        assert await store.get(NAMESPACE, "task-1") == {"id": ann["id"]}
        await sink.shutdown(1)

    with_fake(body)


def test_replica_taking_over_a_lapsed_claim_adopts_the_posted_annotation() -> None:
    async def body(fake: FakeGrafana) -> None:
        now = [0.0]
        store = FlakyStore(clock=lambda: now[0])
        first = await start_sink(fake, store)
        store.fail["put"] = 1
        assert await first.export([started()]) is SinkResult.RETRY
        await first.shutdown(1)  # dies holding the claim; its memory is gone

        second = await start_sink(fake, store, grafana_retry_budget_s=0.3)
        assert await second.export([finished()]) is SinkResult.RETRY  # claim still held
        now[0] += 3600  # the lease lapses
        assert await second.export([finished()]) is SinkResult.SUCCESS
        assert len(fake.calls("POST")) == 1
        (ann,) = fake.annotations.values()
        assert ann["timeEnd"] > ann["time"]
        await second.shutdown(1)

    with_fake(body)


def test_long_ids_sharing_a_prefix_get_their_own_annotations() -> None:
    prefix = "acme-plant/line-7/nightly-maintenance-run/" + "x" * 60
    a, b = prefix + "/task-A", prefix + "/task-B"

    async def body(fake: FakeGrafana) -> None:
        store = InMemoryStateStore()
        sink = await start_sink(fake, store)
        await sink.export([started(a)])
        fake.fail_next("POST", 503)  # B's create fails ambiguously: B looks up its tag
        await sink.export([started(b)])
        await sink.export([finished(b, outcome="error")])
        assert len(fake.annotations) == 2
        (ann_a,) = _task_tags(fake, a)
        (ann_b,) = _task_tags(fake, b)
        assert ann_a["id"] != ann_b["id"]
        assert "status:starting" in ann_a["tags"] and "status:error" in ann_b["tags"]
        assert await store.get(NAMESPACE, a) == {"id": ann_a["id"]}
        assert await store.get(NAMESPACE, b) == {"id": ann_b["id"]}
        await sink.shutdown(1)

    with_fake(body)


def test_reused_task_id_does_not_adopt_an_older_run() -> None:
    async def body(fake: FakeGrafana) -> None:
        sink = await start_sink(fake)
        # Yesterday's run of the same task id, already in Grafana.
        yesterday = started(started_ns=T0 - DAY_MS * 1_000_000)
        await sink.export([yesterday])
        fresh = await start_sink(fake)  # today, another store: nothing known
        fake.fail_next("POST", 503)  # ambiguous, did not land: the lookup runs
        assert await fresh.export([started()]) is SinkResult.SUCCESS
        assert await fresh.export([finished()]) is SinkResult.SUCCESS
        runs = sorted(_task_tags(fake, "task-1"), key=lambda x: x["time"])
        assert len(runs) == 2
        assert runs[0]["time"] == T0 // 1_000_000 - DAY_MS and runs[0]["timeEnd"] == runs[0]["time"]
        assert runs[1]["time"] == T0 // 1_000_000 and runs[1]["timeEnd"] - runs[1]["time"] == 42_000
        await sink.shutdown(1)
        await fresh.shutdown(1)

    with_fake(body)


def test_task_tag_short_ids_stay_readable() -> None:
    assert task_tag("task-1") == "task:task-1"
    long = "x" * 200
    assert task_tag(long).startswith("task-sha256:") and len(task_tag(long)) == len(task_tag("y" * 300))
    # Cleaning would merge these two; the hash keeps them apart.
    assert task_tag("a b") != task_tag("a  b")


@given(st.text(max_size=300), st.text(max_size=300))
def test_task_tag_fits_and_is_unique_per_id(a: str, b: str) -> None:
    ta, tb = task_tag(a), task_tag(b)
    assert len(ta) <= MAX_TAG and "\n" not in ta
    assert (ta == tb) == (a == b)
