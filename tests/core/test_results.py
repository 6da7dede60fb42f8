"""Result fields: agent.result.<name> on a task root -> TaskView.results, the
same on every path (processor with polls, end order with and without stamps,
the real SDK through the processor), sanitised and bounded."""

from __future__ import annotations

import math
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from spanvisor.events import ResultField, TaskFinished
from spanvisor.spans import conventions as cv
from spanvisor.testing import InMemorySink
from spanvisor.tracking.results import MAX_RESULTS, read
from spanvisor.tracking.tracker import TaskTracker

from ._invariants import check_stream
from ._sdk import Agent
from ._trees import FakeClock, SpanSpec, feed_end_order, feed_start_order, stamp_trees

R = cv.RESULT_PREFIX
TRACE = "0" * 31 + "7"
ROOT = "00000000000000b0"


def test_values_units_and_order() -> None:
    notes: list[str] = []
    got = read(
        {
            R + "arr_gain": 4820,
            R + "arr_gain.unit": "USD",
            R + "prs_opened": 3,
            R + "precision": 0.94,
            R + "merged": True,
            R + "verdict": "flaky test",
            cv.TASK_NAME: "not a result",
        },
        (),
        notes,
    )
    assert got == (
        ResultField("arr_gain", 4820, "USD"),
        ResultField("prs_opened", 3, None),
        ResultField("precision", 0.94, None),
        ResultField("merged", True, None),
        ResultField("verdict", "flaky test", None),
    )
    assert notes == []
    # The root's attributes, read again: a value changed in place; True is not 1.
    again = read({R + "prs_opened": 3, R + "new": "x"}, got, notes)
    assert again == (ResultField("prs_opened", 3, None), ResultField("new", "x", None))
    flipped = read({R + "prs_opened": True, R + "new": "x"}, again, notes)
    assert type(flipped[0].value) is bool
    # Nothing new: the very same tuple.
    assert read({R + "prs_opened": True, R + "new": "x"}, flipped, notes) is flipped


def test_junk_is_sanitised_with_notes() -> None:
    notes: list[str] = []
    got = read(
        {
            R + "nan": math.nan,
            R + "list": ("a", "b"),
            R + "long": "x" * 10_000,
            R + "bad\x00name\n": 1,
            R + "n" * 500: 2,
            R + "long.unit": "u" * 100,
            R + ".unit": "no name",
            R + "": 5,
        },
        (),
        notes,
    )
    by_name = {f.name: f for f in got}
    assert "nan" not in by_name and "list" not in by_name and "" not in by_name
    assert len(str(by_name["long"].value)) <= 200
    assert by_name["long"].unit is not None and len(by_name["long"].unit) <= 32
    assert "badname" in by_name
    assert all(len(f.name) <= 64 for f in got)
    assert any("ignored nan" in n for n in notes) and any("truncated" in n for n in notes)


def test_at_most_twenty() -> None:
    notes: list[str] = []
    got = read({R + f"r{i:02d}": i for i in range(50)}, (), notes)
    assert len(got) == MAX_RESULTS and got[0].name == "r00"
    assert any("more than 20 results" in n for n in notes)


def _task(results_at_start: dict[str, object], results_later: dict[str, object]) -> list[SpanSpec]:
    root = SpanSpec(
        TRACE,
        ROOT,
        None,
        "evaluate",
        1_000,
        9_000,
        start_attrs={cv.TASK_NAME: "evaluate", cv.AGENT_ID: "rivet", **results_at_start},
        updates=[(5_000, results_later)],
    )
    child = SpanSpec(TRACE, "00000000000000b1", ROOT, "tool", 2_000, 6_000, start_attrs={cv.PROGRESS: 50})
    return [root, child]


def _final_results(events: list) -> tuple[ResultField, ...]:  # type: ignore[type-arg]
    [done] = [e for e in events if isinstance(e, TaskFinished)]
    return done.task.results


result_values = st.one_of(
    st.integers(-(10**12), 10**12),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
    st.text(max_size=30),
)
result_maps = st.dictionaries(st.sampled_from(["a", "b", "c", "a.unit", "b.unit"]), result_values, max_size=4).map(
    lambda d: {R + k: (str(v) if k.endswith(".unit") else v) for k, v in d.items()}
)


@settings(max_examples=60, deadline=None)
@given(start=result_maps, later=result_maps, polls=st.lists(st.integers(1_000, 9_000), max_size=4), seed=st.integers())
def test_every_order_ends_on_the_same_results(
    start: dict[str, object], later: dict[str, object], polls: list[int], seed: int
) -> None:
    specs = _task(start, later)
    stamp_trees(specs)
    in_process = feed_start_order(TaskTracker(), specs, sorted(polls), lag=1)
    check_stream(in_process)
    want = _final_results(in_process)
    # The root's attributes at its end decide (a later value replaces an earlier one in place).
    expected = read({**start, **later}, (), [])
    assert {f.name: (f.value, f.unit) for f in want} == {f.name: (f.value, f.unit) for f in expected}
    for stamped in (True, False):
        clock = FakeClock()
        tracker = TaskTracker(clock=clock)
        exported = feed_end_order(tracker, specs, random.Random(seed), stamped, clock, batch=1)
        assert {f.name: (f.value, f.unit) for f in _final_results(exported)} == {
            f.name: (f.value, f.unit) for f in want
        }


def test_results_set_on_a_live_root_reach_taskview(agent: Agent, memory: InMemorySink) -> None:
    """Through the real SDK and the processor: set at start and while running
    (read by the poll of the open root that a flush runs)."""
    with agent.tracer.start_as_current_span("triage", attributes={cv.TASK_NAME: "triage", R + "prs_opened": 1}) as root:
        with agent.tracer.start_as_current_span("tool"):
            pass
        root.set_attribute(R + "prs_opened", 3)
        root.set_attribute(R + "arr_gain", 4820.0)
        root.set_attribute(R + "arr_gain.unit", "USD")
        assert agent.flush()
    assert agent.flush()
    [done] = memory.of_type(TaskFinished)
    assert done.task.results == (ResultField("prs_opened", 3, None), ResultField("arr_gain", 4820.0, "USD"))
