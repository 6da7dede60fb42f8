"""A finished task's totals in the audit trail are exact across replicas.

A task's spans split over two replicas (two writers with their own ids), as a Collector's load balancer can
split them: the root's replica gets a call that ended in time, the root and
a call that ended after the root (outlived work: a correction without
facts); the other replica gets an unpriced call that ended in time and, by
a retry, the outlived call too (read there as part of a partial task).
Whatever order and batching their events reach PostgreSQL in, through each
write method, replayed or not, the task row ends with the in-process
path's totals (one tracker given every span): every call counted once,
the one both replicas read included. Failed before the recount: the row
held the root replica's totals.
"""

from __future__ import annotations

import itertools
from typing import Any

import asyncpg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spanvisor.events import Event, TaskCorrected, TaskFinished
from spanvisor.spans import conventions as cv
from spanvisor.tracking.tracker import TaskTracker
from spanvisor_postgres.writer import WriteMethod, Writer
from tests.core._late import MS, ROOT, T0, TRACE, late_call_specs
from tests.core._trees import FakeClock, SpanSpec, stamp_trees

from .conftest import run

_ids = itertools.count(1)
TOTALS = "SELECT input_tokens, output_tokens, cost_usd, unpriced_calls FROM agent_tasks WHERE task_id = $1"


def _replicas(task_id: str) -> tuple[list[Event], list[Event], tuple[int, int, float, int]]:
    """(the root's replica's events, the other replica's, the in-process totals)."""
    root, first, late = late_call_specs(task_id)
    other = {cv.GEN_AI_OPERATION: "chat", cv.GEN_AI_REQUEST_MODEL: "acme-unpriced-llm"}
    third = SpanSpec(TRACE, "00000000000000b3", ROOT, "chat", T0 + 200 * MS, T0 + 700 * MS, other)
    third.updates = [(third.end_ns, {cv.GEN_AI_INPUT: 300, cv.GEN_AI_OUTPUT: 30})]
    specs = [root, first, late, third]
    stamp_trees(specs)

    def read(*order: SpanSpec) -> list[Event]:
        tracker = TaskTracker(clock=FakeClock())
        return [e for s in order for e in tracker.span_ended(s.data(None, stamped=True))]

    at_root, elsewhere, alone = read(first, root, late), read(third, late), read(first, third, root, late)
    assert isinstance(at_root[-1], TaskCorrected) and not at_root[-1].arrived_late
    assert not any(isinstance(e, TaskFinished) for e in elsewhere)
    v = alone[-1].task
    return at_root, elsewhere, (v.input_tokens, v.output_tokens, v.cost_usd, v.unpriced_calls)


def _write(url: str, method: WriteMethod, batches: list[tuple[int, list[Event]]], task_id: str) -> tuple[Any, ...]:
    """Each (replica, batch) written by that replica's writer."""

    async def go() -> tuple[Any, ...]:
        pool = await asyncpg.create_pool(url, min_size=1, max_size=3)
        try:
            writers = [Writer(pool, method, f"replica-{i}") for i in range(2)]
            for replica, batch in batches:
                await writers[replica].write(batch)
            for w in writers:
                await w.close()
            row = await pool.fetchrow(TOTALS, task_id)
            calls = await pool.fetchval(
                "SELECT count(*) FROM agent_checkpoints WHERE task_id = $1 AND source = 'model_call'", task_id
            )
            return (row["input_tokens"], row["output_tokens"], row["cost_usd"], row["unpriced_calls"]), calls
        finally:
            await pool.close()

    return run(go)


@st.composite
def deliveries(draw: st.DrawFn, a: list[Event], b: list[Event]) -> list[tuple[int, list[Event]]]:
    """Each replica's events in its own order, cut into batches at random,
    the two replicas' batches interleaved at random, perhaps all sent twice
    (a replay)."""

    def cut(events: list[Event]) -> list[list[Event]]:
        cuts = sorted(draw(st.sets(st.integers(1, len(events) - 1), max_size=2)))
        return [events[i:j] for i, j in zip([0, *cuts], [*cuts, len(events)], strict=True)]

    own = [cut(a), cut(b)]
    picks = draw(st.permutations([0] * len(own[0]) + [1] * len(own[1])))
    taken = [iter(own[0]), iter(own[1])]
    batches = [(p, next(taken[p])) for p in picks]
    return batches * (2 if draw(st.booleans()) else 1)


@pytest.mark.parametrize("method", ["copy", "unnest", "executemany"])
def test_totals_across_replicas_equal_the_in_process_totals(db_url: str, method: WriteMethod) -> None:
    @settings(max_examples=10, database=None)
    @given(data=st.data())
    def check(data: st.DataObject) -> None:
        task_id = f"U-{method}-{next(_ids)}"
        a, b, want = _replicas(task_id)
        batches = data.draw(deliveries(a, b))
        got, calls = _write(db_url, method, batches, task_id)
        assert got == want
        # The outlived call is a row only where it was read in time (the other replica).
        assert calls == 3

    check()


def test_the_recount_never_lowers_a_total(db_url: str) -> None:
    """A task whose model-call rows are missing (written before the recount
    existed, or set aside) keeps the totals its view gave: a late call from
    another replica can only add."""
    task_id = f"U-old-{next(_ids)}"
    a, b, _ = _replicas(task_id)
    first, _ = _write(db_url, "copy", [(0, a)], task_id)

    async def forget() -> None:
        conn = await asyncpg.connect(db_url)
        try:
            await conn.execute("DELETE FROM agent_checkpoints WHERE task_id = $1 AND source = 'model_call'", task_id)
        finally:
            await conn.close()

    run(forget)
    got, _ = _write(db_url, "copy", [(1, b)], task_id)
    assert got[0] >= first[0] and got[2] >= first[2] and got[3] >= first[3]


def test_one_writer_is_not_recounted(db_url: str) -> None:
    """A task one writer wrote alone is not shared: its view counts every
    call, and the recount leaves it alone (it costs nothing there)."""
    task_id = f"U-one-{next(_ids)}"
    a, _, _ = _replicas(task_id)
    _write(db_url, "copy", [(0, a), (0, a)], task_id)

    async def shared() -> Any:
        conn = await asyncpg.connect(db_url)
        try:
            return await conn.fetchrow("SELECT writer, shared FROM agent_tasks WHERE task_id = $1", task_id)
        finally:
            await conn.close()

    assert tuple(run(shared)) == ("replica-0", False)
