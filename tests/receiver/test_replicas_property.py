"""Replicas agree with one replica, as a property.

A task's spans (stamped, as the processor leaves them) go to three
in-process replicas in a random assignment and a random order (children
after their root included), and all of them to one replica alone. Whatever
the assignment and order:

* one Slack parent per task, and the shared view in the state store are
  final, with the outcome, name and agent one replica shows;
* the PostgreSQL task row ends in the same state, with the same totals
  (tokens, cost, unpriced calls: a finished task's are recounted from its
  model-call rows, each once whichever replica received it);
* the rows the spans cause (checkpoint events, model calls, artifacts) are
  the same, each once, those of spans sent after the root included: they
  ended before it, so the root's replica keeps their events as a
  correction's facts (the late-span rule), another replica reads them as
  part of a partial task, and either way each row has the id it has in
  time;
* the shared view (what Slack shows) counts the tokens of every model call
  its root's replica received, late ones included (one replica: all of
  them; see docs/reference/deploy.md#replicas for why a replica's view is its own);
* no replica keeps a task open once the hold time has passed.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from replica_harness import Cluster, shown_status
from tests.core._trees import SpanSpec, stamp_trees
from tests.waiting import wait_until

from spanvisor.spans import conventions as cv
from spanvisor.spans.data import SpanEventData

pytestmark = pytest.mark.slow

REPLICAS = 3
_ids = itertools.count(1)


@pytest.fixture(scope="module")
def clusters(pg_server: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Cluster, Cluster]]:
    tmp = tmp_path_factory.mktemp("replicas")
    many = Cluster.start(tmp, pg_server.database(), REPLICAS, "many")
    one = Cluster.start(tmp, pg_server.database(), 1, "one")
    try:
        yield many, one
    finally:
        many.close()
        one.close()


@st.composite
def tasks(draw: st.DrawFn) -> tuple[list[SpanSpec], list[int], list[int]]:
    """(the task's spans, the replica of each, the order they are sent in)."""
    n = next(_ids)
    trace, root_id = f"{n:032x}", f"{n:08x}00000000"
    t0 = time.time_ns() - 60_000_000_000
    root = SpanSpec(trace, root_id, None, "invoke_agent", t0, t0 + 50_000_000_000)
    root.start_attrs = {
        cv.TASK_NAME: f"Diagnose P{n}",
        cv.TASK_ID: f"P{n}",
        cv.AGENT_ID: "rivet",
        cv.REPO: "acme/plant",
    }
    if draw(st.booleans()):
        root.error, root.status_message = True, "budget exceeded"
    specs = [root]
    kinds = draw(st.lists(st.sampled_from(["step", "chat", "tool"]), min_size=1, max_size=5))
    for i, kind in enumerate(kinds):
        start = t0 + (i + 1) * 5_000_000_000
        c = SpanSpec(trace, f"{n:08x}{i + 1:08x}", root_id, kind, start, start + 2_000_000_000)
        if kind == "chat":
            c.start_attrs = {cv.GEN_AI_OPERATION: "chat", cv.GEN_AI_INPUT: 1000 * (i + 1), cv.GEN_AI_OUTPUT: 10}
        elif kind == "step":
            c.start_attrs = {cv.PROGRESS: 20 * (i + 1)}
            c.events = [SpanEventData(cv.EVENT_CHECKPOINT, start + 1, {"message": f"step {i}"})]
        else:
            c.events = [SpanEventData(cv.EVENT_ARTIFACT, start + 1, {"agent.artifact.name": f"report-{i}.md"})]
        specs.append(c)
    stamp_trees(specs)
    replica = draw(st.lists(st.integers(0, REPLICAS - 1), min_size=len(specs), max_size=len(specs)))
    order = draw(st.permutations(range(len(specs))))
    return specs, replica, list(order)


def _state(cluster: Cluster, task: str) -> dict[str, Any]:
    [parent] = cluster.parents()[task]
    shared = cluster.shared_views([task])[task]
    row = cluster.task_rows([task])[task]
    return {
        "parent": shown_status(parent),
        "named": f"Diagnose {task}" in (parent.text or ""),
        "final": shared["final"],
        "status": shared["view"]["status"],
        "name": shared["view"]["task_name"],
        "agent": shared["view"]["agent_id"],
        "row": (row["status"], row["task_name"]),
        # The audit trail's final totals: every call once, whichever replica got it.
        "totals": (row["input_tokens"], row["output_tokens"], row["cost_usd"], row["unpriced_calls"]),
        "rows": cluster.event_rows([task])[task],
    }


def test_replicas_agree_with_one_replica(clusters: tuple[Cluster, Cluster]) -> None:
    many, one = clusters
    sent: list[str] = []

    @settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(case=tasks())
    def one_task(case: tuple[list[SpanSpec], list[int], list[int]]) -> None:
        specs, replica, order = case
        task = specs[0].start_attrs[cv.TASK_ID]
        sent.append(task)
        for i in order:
            data = specs[i].data(None, stamped=True)
            many.send(replica[i], [data])
            one.send(0, [data])
        many.flush()
        one.flush()
        many.wait_final([task])
        one.wait_final([task])
        got, want = _state(many, task), _state(one, task)
        assert got == want
        assert got["totals"][0] == sum(s.start_attrs.get(cv.GEN_AI_INPUT, 0) for s in specs)
        assert len(got["rows"]) == len(set(got["rows"]))
        # Every row a span can cause is there, whichever replica got it, in time or late.
        kinds = {r[1] for r in got["rows"]}
        assert len(got["rows"]) == sum(len(s.events) + (cv.GEN_AI_INPUT in s.start_attrs) for s in specs), kinds
        assert got["final"] and got["named"] and got["parent"] == got["status"]
        assert got["status"] == ("error" if specs[0].error else "complete")
        # Tokens: every model call its root's replica received, in time or late.
        root_at = replica[0]
        calls = [(i, s) for i, s in enumerate(specs) if cv.GEN_AI_INPUT in s.start_attrs]
        shared = many.shared_views([task])[task]["view"]
        assert shared["input_tokens"] == sum(s.start_attrs[cv.GEN_AI_INPUT] for i, s in calls if replica[i] == root_at)
        assert one.shared_views([task])[task]["view"]["input_tokens"] == sum(
            s.start_attrs[cv.GEN_AI_INPUT] for _, s in calls
        )

    one_task()
    assert sent
    # A replica that had only children of a task holds it no longer than the hold time (1 s).
    wait_until(lambda: many.open_tasks() == [0] * REPLICAS, 15, "no open tasks on any replica")
    assert all(p.stats.value("dropped_total", reason="late_span", sink="") == 0 for p in many.pipelines)


def test_the_state_store_holds_the_version_and_finality(clusters: tuple[Cluster, Cluster]) -> None:
    """What the shared view record says, in the replicas' own words."""
    many, _ = clusters
    tasks = [t for t in many.parents() if t != "None"]

    def final() -> dict[str, dict[str, Any]] | None:
        # The Slack sink writes its shared view after the post it records, at
        # the fake Slack's real pace (chat.update's tier): on a busy machine
        # the last examples' final updates may still be queued when this starts.
        views = many.shared_views(tasks)
        return views if len(views) == len(tasks) and all(v.get("final") for v in views.values()) else None

    try:
        views = wait_until(final, 240, "every task's shared view, final")
    except AssertionError:
        views = many.shared_views(tasks)
        late = sorted(set(tasks) - {t for t, v in views.items() if v.get("final")})
        raise AssertionError(f"{len(late)} of {len(tasks)} tasks have no final shared view: {late[:5]}") from None
    assert views
    for value in views.values():
        assert value["final"] is True
        assert value["seq"] == value["view"]["seq"] and value["version"] >> 16 == (1 << 40) | value["seq"]
        assert value["shown"]["digest"] == value["digest"]
