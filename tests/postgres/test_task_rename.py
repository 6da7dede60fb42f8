"""A provisional task renamed (issue 66): what the audit held under the derived
id D moves to the id X its root names, in the transaction of the first event
that says so; decisions stay under D (hash-chained) and show as X's through
task_aliases; replays, restarts and replicas give the same rows."""

from __future__ import annotations

import dataclasses
import itertools
from pathlib import Path
from typing import Any

import asyncpg
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spanvisor.events import (
    Artifact,
    ArtifactAdded,
    Checkpoint,
    Decision,
    Event,
    HumanIntervention,
    LogLine,
    TaskFinished,
    TaskStarted,
    TaskView,
    run_id_of,
    stable_id,
)
from spanvisor_postgres.humanqueries import list_interventions
from spanvisor_postgres.queries import find_task
from spanvisor_postgres.timeline import timeline

from ._events import SECOND, T0
from .conftest import fetch, run
from .test_sink_basic import export_all

TABLES = {
    "agent_tasks": "SELECT task_id, trace_id, status, seq, input_tokens FROM agent_tasks ORDER BY task_id",
    "agent_checkpoints": "SELECT event_id, task_id FROM agent_checkpoints ORDER BY event_id",
    "task_artifacts": "SELECT event_id, task_id FROM task_artifacts ORDER BY event_id",
    "task_logs": "SELECT task_id, pos, message FROM task_logs ORDER BY task_id, pos",
    "human_interventions": "SELECT intervention_id, task_id, chain_seq FROM human_interventions ORDER BY 1",
    "task_aliases": "SELECT former_id, task_id, run_id FROM task_aliases ORDER BY former_id",
}


async def rows(url: str) -> dict[str, list[dict[str, Any]]]:
    return {name: [dict(r) for r in await fetch(url, sql)] for name, sql in TABLES.items()}


def renamed_task(n: int, task_id: str = "") -> tuple[list[Event], list[Event], str, str]:
    """A task shown provisionally under D (start, checkpoints, an artifact, a
    decision), then renamed to X (checkpoints, a decision, the finish with a
    log tail). Returns (before, after, D, X)."""
    trace = stable_id("trace", "rename", n)
    root = trace[:16]
    d, x = f"{trace}-{root}", task_id or f"deploy-{n}"
    run_id = run_id_of(trace, root)
    start = T0 + n * SECOND
    v = TaskView(
        task_id=d,
        trace_id=trace,
        root_span_id=root,
        agent_id="svc",
        task_name="svc",
        status="starting",
        started_ns=start,
        updated_ns=start,
        run_id=run_id,
        provisional=True,
        seq=1,
    )
    before: list[Event] = [TaskStarted(event_id=stable_id(d, "start"), time_ns=start, task=v)]
    t = start
    for i in range(3):
        t += 1_000_000
        v = dataclasses.replace(v, status="working", updated_ns=t, seq=v.seq + 1, input_tokens=100 * (i + 1))
        before.append(Checkpoint(event_id=stable_id(d, "cp", i), time_ns=t, task=v, source="event"))
    art = Artifact(name="plan.md", uri=None, kind="file")
    t += 1_000_000
    v = dataclasses.replace(v, updated_ns=t, seq=v.seq + 1)
    before.append(ArtifactAdded(event_id=stable_id(d, "art"), time_ns=t, task=v, artifact=art))
    before.append(_decision(v, "early", t + 1, run_id))
    # The root arrives naming X: every view from here on carries X and D.
    v = dataclasses.replace(v, task_id=x, former_id=d, provisional=False, agent_id="deployer", task_name="Deploy")
    after: list[Event] = []
    for i in range(2):
        t += 1_000_000
        v = dataclasses.replace(v, updated_ns=t, seq=v.seq + 1, input_tokens=500 + 100 * i)
        after.append(Checkpoint(event_id=stable_id(x, "cp", i), time_ns=t, task=v, source="event"))
    after.append(_decision(v, "late", t + 1, run_id))
    t += 1_000_000
    v = dataclasses.replace(v, status="complete", updated_ns=t, ended_ns=t, seq=v.seq + 1, progress=100.0)
    tail = (LogLine(time_ns=t - 10, level="INFO", message="shipped"),)
    after.append(
        TaskFinished(
            event_id=stable_id(x, "end"),
            time_ns=t,
            task=v,
            outcome="complete",
            duration_s=(t - start) / SECOND,
            log_tail=tail,
        )
    )
    return before, after, d, x


def _decision(v: TaskView, name: str, at: int, run_id: str) -> HumanIntervention:
    d = Decision(
        intervention_id=stable_id(v.task_id, name),
        task_id=v.task_id,
        action="acknowledge",
        actor_id="U1",
        time_ns=at,
        run_id=run_id,
    )
    return HumanIntervention(event_id=d.intervention_id, time_ns=at, task=v, decision=d)


def _expect_moved(got: dict[str, list[dict[str, Any]]], d: str, x: str) -> None:
    assert [r["task_id"] for r in got["agent_tasks"]] == [x]
    task = got["agent_tasks"][0]
    assert task["status"] == "complete" and task["input_tokens"] == 600
    assert len(got["agent_checkpoints"]) == 5 and {r["task_id"] for r in got["agent_checkpoints"]} == {x}
    assert [r["task_id"] for r in got["task_artifacts"]] == [x]
    assert [(r["task_id"], r["message"]) for r in got["task_logs"]] == [(x, "shipped")]
    # Decisions are never changed: the early one stays under D, chained once.
    assert sorted(r["task_id"] for r in got["human_interventions"]) == sorted([d, x])
    assert [(r["former_id"], r["task_id"]) for r in got["task_aliases"]] == [(d, x)]


def test_rename_moves_rows_and_replays_change_nothing(pg_server: Any, tmp_path: Path) -> None:
    url = pg_server.database()
    before, after, d, x = renamed_task(1)

    async def main() -> None:
        await export_all(url, tmp_path, [before, after[:1], after[1:]])
        first = await rows(url)
        _expect_moved(first, d, x)
        # A restarted sink replays everything, twice, in one batch and event by event.
        await export_all(url, tmp_path, [before + after, before + after])
        await export_all(url, tmp_path, [[e] for e in before + after], "executemany")
        assert await rows(url) == first
        # Found by either id, shown under X; D's decision is X's.
        conn = await asyncpg.connect(url)
        try:
            for key in (d, x, d[:20]):
                task = await find_task(conn, key)
                assert (task["task_id"], task["former_id"]) == (x, d)
            entries = await timeline(conn, task)
            assert [e["kind"] for e in entries].count("intervention") == 2
            for key in (d, x):
                shown = await list_interventions(conn, task=key)
                assert sorted((r["task_id"], r.get("recorded_as") or "") for r in shown) == [(x, ""), (x, d)]
        finally:
            await conn.close()

    run(main)


def test_a_provisional_replica_writes_under_the_new_id(pg_server: Any, tmp_path: Path) -> None:
    """A replica that never saw the root keeps writing under D after the move
    (and a replay of D's events arrives late): written under X, nothing doubled."""
    url = pg_server.database()
    before, after, d, x = renamed_task(2)
    late = before[-2]  # the artifact, as another replica sends it after the rename
    extra = dataclasses.replace(before[1], event_id=stable_id(d, "cp", "replica"))

    async def main() -> None:
        await export_all(url, tmp_path, [before[:3], after])
        await export_all(url, tmp_path / "b", [[late, extra], before], "unnest")
        got = await rows(url)
        assert [r["task_id"] for r in got["agent_tasks"]] == [x]
        assert {r["task_id"] for r in got["agent_checkpoints"]} == {x}
        assert len(got["agent_checkpoints"]) == 6 and [r["task_id"] for r in got["task_artifacts"]] == [x]
        assert got["agent_tasks"][0]["status"] == "complete"

    run(main)


def test_an_alias_not_of_the_runs_own_id_is_not_followed(pg_server: Any, tmp_path: Path) -> None:
    """Someone who may INSERT into task_aliases cannot re-home another task's
    history: an alias counts only for the derived id of the named task's run."""
    url = pg_server.database()
    before_a, after_a, d_a, x_a = renamed_task(3)
    before_b, _, d_b, _ = renamed_task(4)

    async def main() -> None:
        await export_all(url, tmp_path, [before_a + after_a, before_b])
        conn = await asyncpg.connect(url)
        try:
            # Claim B's provisional task (and its decision) for A.
            await conn.execute("INSERT INTO task_aliases (former_id, task_id, run_id) VALUES ($1, $2, 'r')", d_b, x_a)
            assert (await find_task(conn, d_b))["task_id"] == d_b
            assert (await find_task(conn, x_a))["former_id"] == d_a
            shown = await list_interventions(conn, task=x_a)
            assert {r["intervention_id"] for r in shown} == {stable_id(d_a, "early"), stable_id(x_a, "late")}
            assert all(r.get("recorded_as") != d_b for r in await list_interventions(conn))
        finally:
            await conn.close()
        # B's next events are not sent to A either.
        await export_all(url, tmp_path, [before_b])
        assert {r["task_id"] for r in await fetch(url, "SELECT task_id FROM agent_tasks")} == {x_a, d_b}

    run(main)


@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cuts=st.lists(st.integers(min_value=1, max_value=11), max_size=3), order=st.permutations(range(3)))
def test_any_batching_and_replica_order_gives_the_same_rows(
    pg_server: Any, tmp_path_factory: Any, cuts: list[int], order: list[int]
) -> None:
    """However the events are cut into batches, and whichever of three writers
    (the renaming one, a replay, a provisional replica) goes first."""
    url = pg_server.database()
    before, after, d, x = renamed_task(5)
    stream = before + after
    bounds = sorted({0, len(stream), *cuts})
    batches = [stream[a:b] for a, b in itertools.pairwise(bounds)]
    writers = [batches, [stream], [before]]
    data = tmp_path_factory.mktemp("rename")

    async def main() -> None:
        for i in order:
            await export_all(url, data / str(i), writers[i])
        _expect_moved(await rows(url), d, x)

    run(main)


def test_prune_takes_what_was_kept_under_the_former_id(pg_server: Any, tmp_path: Path) -> None:
    """A renamed task pruned: its alias, its decisions under either id, and
    the state sinks and the control log kept under the former id go with it."""
    from spanvisor_postgres.queries import prune

    url = pg_server.database()
    before, after, d, x = renamed_task(7)
    run_id = after[0].task.run_id

    async def main() -> None:
        await export_all(url, tmp_path, [before, after])
        conn = await asyncpg.connect(url)
        try:
            for ns, key in (
                ("slack.parent", f"{d}/{run_id}"),
                ("control.runs", f"{d}/run/{run_id}"),
                ("slack.parent", f"{x}/{run_id}"),
            ):
                await conn.execute(
                    "INSERT INTO delivery_state (namespace, key, owner, value) VALUES ($1, $2, 'a', '{}')", ns, key
                )
        finally:
            await conn.close()
        pool = await asyncpg.create_pool(url, min_size=1, max_size=2)
        try:
            assert await prune(pool, 86400.0) == 1
        finally:
            await pool.close()
        for table in ("agent_tasks", "task_aliases", "human_interventions", "agent_checkpoints", "delivery_state"):
            assert await fetch(url, f"SELECT 1 FROM {table}") == [], table

    run(main)
