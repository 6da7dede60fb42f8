"""A point annotation per person's decision, created once, against
the fake Grafana: replays, restarts, replicas and an ambiguous POST."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from grafana_helpers import T0, finished, start_sink, started, view, with_fake
from tests.fakes.grafana_api import FakeGrafana

from spanvisor.events import Decision, HumanIntervention, TaskView, stable_id
from spanvisor.sink import SinkResult
from spanvisor.statestores.memory import InMemoryStateStore
from spanvisor_grafana.interventions import INTERVENTIONS, intervention_tag, state_key
from spanvisor_grafana.sink import NAMESPACE
from spanvisor_grafana.text import task_tag

S = 1_000_000_000


def click(task_view: TaskView, n: int, action: str = "approve", **kw: Any) -> HumanIntervention:
    d = Decision(
        intervention_id=stable_id("click", n),
        task_id=task_view.task_id,
        action=action,  # type: ignore[arg-type]
        actor_id="U1",
        time_ns=T0 + n * S,
        approval_id="a1" if action in ("approve", "reject") else None,
        actor_name=kw.pop("actor_name", "alice"),
        comment=kw.pop("comment", None),
        source="slack",
    )
    return HumanIntervention(event_id=d.intervention_id, time_ns=d.time_ns, task=task_view, decision=d, **kw)


def bare(task_id: str) -> TaskView:
    return TaskView(task_id=task_id, trace_id="", root_span_id="", agent_id="unknown")


def points(fake: FakeGrafana) -> list[dict[str, Any]]:
    return sorted(fake.by_tag("intervention"), key=lambda a: a["time"])


def test_one_point_per_intervention_applied_or_denied_known_or_not() -> None:
    async def body(fake: FakeGrafana) -> None:
        store = InMemoryStateStore()
        sink = await start_sink(fake, store, grafana_tags=("env:prod",))
        events = [
            started(),
            click(view(seq=5), 1, comment="ship it\x1b[2J"),
            click(view(), 2, "cancel", outcome="denied", reason="not allowed", known=False),
            click(bare("elsewhere"), 3, "acknowledge", known=False),
        ]
        for _ in range(2):
            assert await sink.export(events) is SinkResult.SUCCESS
        assert len(fake.calls("POST")) == 4  # the task's start and three points
        approve, cancel, ack = points(fake)
        assert approve["time"] == (T0 + S) // 1_000_000
        assert approve.get("timeEnd") in (None, 0, approve["time"])  # a point, not a region
        assert set(approve["tags"]) >= {
            "spanvisor",
            "intervention",
            "action:approve",
            "outcome:applied",
            "agent:rivet",
            "env:prod",
            task_tag("task-1"),
            intervention_tag(stable_id("click", 1)),
        }
        assert approve["text"].startswith("✅ approved by alice (U1) · approval a1 via slack")
        assert "Rivet: Diagnose F47" in approve["text"] and "“ship it[2J”" in approve["text"]
        assert "outcome:denied" in cancel["tags"] and "denied (not allowed)" in cancel["text"]
        # A bare view names no agent, only the task id.
        assert not any(t.startswith("agent:") for t in ack["tags"]) and "task elsewhere" in ack["text"]
        # Each point's id is kept under the task's id, so pruning the task removes it.
        ids = {a["id"] for a in (approve, cancel, ack)}
        stored = {(await store.get(INTERVENTIONS, state_key(e)) or {}).get("id") for e in events[1:]}  # type: ignore[arg-type]
        assert stored == ids
        # The task's own region is untouched by decisions.
        assert (await store.get(NAMESPACE, "task-1") or {}).get("id") not in ids
        assert fake.calls("PATCH") == []
        await sink.shutdown(1)

    with_fake(body)


def test_restart_and_a_second_replica_do_not_post_again() -> None:
    async def body(fake: FakeGrafana) -> None:
        store = InMemoryStateStore()
        event = click(view(), 1)
        first = await start_sink(fake, store)
        assert await first.export([event]) is SinkResult.SUCCESS
        await first.shutdown(1)
        for _ in range(2):  # a restarted process, then another replica, same store
            other = await start_sink(fake, store)
            assert await other.export([event]) is SinkResult.SUCCESS
            await other.shutdown(1)
        assert len(points(fake)) == 1 and len(fake.calls("POST")) == 1

    with_fake(body)


def test_an_ambiguous_post_is_found_again_not_posted_twice() -> None:
    async def body(fake: FakeGrafana) -> None:
        sink = await start_sink(fake, grafana_retry_budget_s=0.0)
        event = click(view(), 1, "retry")
        fake.fail_next("POST", 503, apply=True)  # stored, but the answer says otherwise
        assert await sink.export([event]) is SinkResult.RETRY
        assert await sink.export([event]) is SinkResult.SUCCESS
        assert len(points(fake)) == 1
        await sink.shutdown(1)

    with_fake(body)


def test_a_decision_on_a_finished_task_does_not_rewrite_its_region() -> None:
    async def body(fake: FakeGrafana) -> None:
        sink = await start_sink(fake)
        done = finished()
        assert await sink.export([started(), done]) is SinkResult.SUCCESS
        (region,) = fake.by_tag("status:complete")
        before = dict(region)
        # known=False with the finished view (and a higher seq): only a point.
        late = click(replace(done.task, seq=done.task.seq + 7), 9, "retry", outcome="denied", known=False)
        assert await sink.export([late]) is SinkResult.SUCCESS
        assert len(fake.calls("PATCH")) == 1  # the finish's own
        (after,) = fake.by_tag("status:complete")
        assert after == before and len(points(fake)) == 1
        await sink.shutdown(1)

    with_fake(body)


def test_a_task_lookup_never_adopts_a_point_at_its_start() -> None:
    async def body(fake: FakeGrafana) -> None:
        store = InMemoryStateStore()
        sink = await start_sink(fake, store, grafana_retry_budget_s=0.0)
        # A decision at the very millisecond the task started, then the
        # task's start POST fails ambiguously without landing: the lookup
        # finds only the decision's point, which is not the task's region.
        at_start = replace(click(view(), 1), decision=replace(click(view(), 1).decision, time_ns=T0))
        assert await sink.export([at_start]) is SinkResult.SUCCESS
        fake.fail_next("POST", 503)
        assert await sink.export([started()]) is SinkResult.RETRY
        assert await sink.export([started()]) is SinkResult.SUCCESS
        region = (await store.get(NAMESPACE, "task-1") or {}).get("id")
        (point,) = points(fake)
        assert region is not None and region != point["id"]
        await sink.shutdown(1)

    with_fake(body)
