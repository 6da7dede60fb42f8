"""A task's level gate is made only when a level is reached or a forecast
said; until then its answers are those of a gate made up front."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from spanvisor.tracking.occupancy import LevelGate
from spanvisor.tracking.settings import TrackerSettings
from spanvisor.tracking.taskcontext import TaskContext

levels = st.lists(st.sampled_from([0.5, 0.7, 0.85, 0.9, 1.0]), max_size=3).map(tuple)


@given(levels, st.lists(st.integers(0, 1200), max_size=40))
def test_a_gate_made_on_need_crosses_as_one_made_up_front(thresholds: tuple[float, ...], tokens: list[int]) -> None:
    ctx = TaskContext(TrackerSettings(thresholds=thresholds))
    eager = LevelGate(thresholds)
    judged = -1.0
    for t in tokens:
        ratio = t / 1000
        expected = [] if ratio == judged else [(lv, n, ratio) for lv, n in eager.crossed(ratio)]
        judged = ratio
        assert ctx.crossed(t, 1000) == expected
        assert (ctx.gate.next_level(ratio) if ctx.gate else None) in (eager.next_level(ratio), None)
    if not any(t / 1000 >= lv for t in tokens for lv in thresholds):
        assert ctx.gate is None  # never reached a level: no gate held
