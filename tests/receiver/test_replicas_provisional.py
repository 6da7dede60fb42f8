"""A plain-OTel agent's task across replicas, as a property: unstamped
spans, children first and the root last, each in a request of its own.

* **Routed by trace id** (every span to one replica): the task shows before
  its root is sent (one Slack parent, a row), under its root's id, and ends
  complete, named by its root, every call counted once.
* **Sprayed** over three replicas: each replica whose spans look like an
  agent run shows the task under the same guess (the calls hang right under
  the agent span), so there is **one** Slack parent and one row; the root's
  replica names it and ends it, the shared view is final, and every row is
  written once. A replica that never sees the root keeps its provisional task
  open (to be lost after ``SPANVISOR_LOST_AFTER``; see
  docs/reference/conventions.md#provisional-tasks).
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
from tests.core._trees import SpanSpec
from tests.waiting import wait_until

from spanvisor.spans import conventions as cv

pytestmark = pytest.mark.slow

REPLICAS = 3
_ids = itertools.count(1)


@pytest.fixture(scope="module")
def clusters(pg_server: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Cluster, Cluster]]:
    tmp = tmp_path_factory.mktemp("replicas-provisional")
    many = Cluster.start(tmp, pg_server.database(), REPLICAS, "pmany")
    one = Cluster.start(tmp, pg_server.database(), 1, "pone")
    try:
        yield many, one
    finally:
        many.close()
        one.close()


@st.composite
def plain_tasks(draw: st.DrawFn) -> tuple[list[SpanSpec], list[int]]:
    """(a GenAI-shaped task's spans, children first in the order they end and
    the root last; the replica each goes to when sprayed)."""
    n = next(_ids)
    trace, root_id = f"{0xE000 + n:032x}", f"{0xE000 + n:08x}00000000"
    t0 = time.time_ns() - 60_000_000_000
    turns = draw(st.integers(2, 4))
    root = SpanSpec(trace, root_id, None, "invoke_agent planner", t0, t0 + 50_000_000_000)
    root.start_attrs = {cv.GEN_AI_OPERATION: "invoke_agent", cv.GEN_AI_AGENT_NAME: "planner"}
    root.resource = {"service.name": f"plain-{n}"}
    specs: list[SpanSpec] = []
    at = t0 + 1_000_000_000
    for i in range(turns):
        chat = SpanSpec(trace, f"{0xE000 + n:08x}{2 * i + 1:08x}", root_id, "chat gpt-4o", at, at + 2_000_000_000)
        chat.start_attrs = {cv.GEN_AI_OPERATION: "chat", cv.GEN_AI_REQUEST_MODEL: "gpt-4o"}
        chat.updates = [(chat.end_ns, {cv.GEN_AI_INPUT: 1_000 * (i + 1), cv.GEN_AI_OUTPUT: 10})]
        specs.append(chat)
        at += 3_000_000_000
        if i < turns - 1:
            tool = SpanSpec(trace, f"{0xE000 + n:08x}{2 * i + 2:08x}", root_id, "execute_tool lookup", at, at + 1)
            tool.start_attrs = {cv.GEN_AI_OPERATION: "execute_tool", cv.GEN_AI_TOOL_NAME: "lookup"}
            specs.append(tool)
            at += 1_000_000_000
    for s in specs:
        s.resource = root.resource
    specs.append(root)
    replica = draw(st.lists(st.integers(0, REPLICAS - 1), min_size=len(specs), max_size=len(specs)))
    return specs, replica


def _rows(cluster: Cluster, task: str) -> list[tuple[str, str]]:
    return cluster.event_rows([task])[task]


def test_a_plain_task_shows_once_before_its_root_routed_or_sprayed(clusters: tuple[Cluster, Cluster]) -> None:
    many, one = clusters

    @settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(case=plain_tasks())
    def one_task(case: tuple[list[SpanSpec], list[int]]) -> None:
        specs, replica = case
        root = specs[-1]
        task = f"{root.trace_id}-{root.span_id}"
        calls = [s for s in specs if cv.is_model_call(s.attrs_at(s.end_ns, stamped=False))]
        for i, s in enumerate(specs[:-1]):
            data = s.data(None, stamped=False)
            many.send(replica[i], [data])
            one.send(0, [data])
        many.flush()
        one.flush()
        # Routed: before its root is sent, the task is shown, under its root's id.
        wait_until(lambda: len(one.parents().get(task, [])) == 1, 30, "the routed task's parent before its root")
        assert one.task_rows([task])[task]["status"] == "working"
        assert not one.shared_views([task])[task]["final"]
        # Sprayed: no replica shows it under another id, nor twice.
        shown_early = len(many.parents().get(task, []))
        assert shown_early <= 1
        data = root.data(None, stamped=False)
        many.send(replica[-1], [data])
        one.send(0, [data])
        many.flush()
        one.flush()
        for cluster in (many, one):
            cluster.wait_final([task])
            [parent] = cluster.parents()[task]
            assert shown_status(parent) == "complete"
            view = cluster.shared_views([task])[task]
            assert view["final"] and view["view"]["task_name"] == "invoke_agent planner"
            assert view["view"]["agent_id"] == "planner" and not view["view"].get("provisional", False)
            rows = _rows(cluster, task)
            assert len(rows) == len(set(rows)), "a row written twice"
            row = cluster.task_rows([task])[task]
            assert (row["status"], row["task_name"]) == ("complete", "invoke_agent planner")
        # Routed: every call once, in the row and the timeline.
        assert one.task_rows([task])[task]["input_tokens"] == sum(1_000 * (i + 1) for i in range(len(calls)))
        assert len(_rows(one, task)) == len(calls)
        # Sprayed: the calls of the replicas that showed the task, or got the root, each once.
        assert set(_rows(many, task)) <= set(_rows(one, task))

    one_task()


def test_a_web_request_with_one_model_call_shows_nowhere_and_is_counted(clusters: tuple[Cluster, Cluster]) -> None:
    """No noise: a trace that never looks like an agent run (a web request
    that makes one model call, its top span last) opens no task: no row, no
    Slack parent; it is counted as held back once its top span arrived."""
    _, one = clusters
    n = next(_ids)
    trace = f"{0xF000 + n:032x}"
    t0 = time.time_ns() - 10_000_000_000
    top = SpanSpec(trace, f"{0xF000 + n:08x}00000000", None, "GET /summary", t0, t0 + 3_000_000_000)
    top.start_attrs = {"http.request.method": "GET"}
    chat = SpanSpec(trace, f"{0xF000 + n:08x}00000001", top.span_id, "chat gpt-4o", t0 + 1, t0 + 2_000_000_000)
    chat.start_attrs = {cv.GEN_AI_OPERATION: "chat", cv.GEN_AI_REQUEST_MODEL: "gpt-4o"}
    chat.updates = [(chat.end_ns, {cv.GEN_AI_INPUT: 900, cv.GEN_AI_OUTPUT: 40})]
    stats = one.pipelines[0].stats
    before = stats.value("provisional_tasks_total", outcome="held_back")
    for s in (chat, top):
        one.send(0, [s.data(None, stamped=False)])
    one.flush()
    assert stats.value("provisional_tasks_total", outcome="held_back") == before + 1
    assert not [t for t in one.parents() if t.startswith(trace)], "a Slack parent for a web request"
    assert not db_rows_of_trace(one, trace), "a task row for a web request"


def db_rows_of_trace(cluster: Cluster, trace: str) -> list[Any]:
    from replica_harness import db

    return db(cluster.db_url, "SELECT task_id FROM agent_tasks WHERE trace_id = $1", trace)
