"""Bounded maps that forget their oldest entry first: the newest ``bound``
distinct keys kept, in the order first seen, whatever was deleted between.

They were plain dicts evicted with ``del d[next(iter(d))]``, which finds the
first key by scanning the holes that earlier deletions left at the front:
O(n) an eviction once full. Now ordered dicts (``popitem(last=False)``)."""

from __future__ import annotations

from collections import OrderedDict
from types import SimpleNamespace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spanvisor.control import runsync
from spanvisor.control.runsync import RunSync
from spanvisor.events import TaskStarted, TaskView
from spanvisor.otel import replay
from spanvisor.otel.replay import Replay
from spanvisor.tracking.tracker import TaskTracker

BOUND = 4


def _newest_first_seen(keys: list[int], bound: int) -> list[int]:
    """The model: the last ``bound`` distinct keys, in first-seen order."""
    kept: list[int] = []
    for k in keys:
        if k not in kept:
            kept.append(k)
            if len(kept) > bound:
                kept.pop(0)
    return kept


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(0, 12), max_size=60))
def test_run_sync_knows_the_newest_runs_first_seen(keys: list[int]) -> None:
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(runsync, "MAX_KNOWN", BOUND)
        sync = RunSync(TaskTracker(), lambda _: None)
        for k in keys:
            v = TaskView(f"t{k}", "ab" * 16, "cd" * 8, "agent", run_id=f"r{k}")
            sync.observe([TaskStarted(event_id=f"s{k}", time_ns=1, task=v)])
    assert isinstance(sync._known, OrderedDict)
    assert list(sync._known) == [(f"t{k}", f"r{k}") for k in _newest_first_seen(keys, BOUND)]


class _Roots(Replay):
    def __init__(self) -> None:
        self.task_traces = OrderedDict()
        self._trace_roots = OrderedDict()


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 12), st.booleans()), max_size=60))
def test_the_open_task_roots_of_the_newest_traces_are_kept(steps: list[tuple[int, bool]]) -> None:
    """Roots start (a new span id each) and end (the trace's first open
    root): the bound counts traces, the oldest trace still held goes first."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(replay, "MAX_TASK_TRACES", BOUND)
        r = _Roots()
        model: OrderedDict[int, list[int]] = OrderedDict()
        for n, (trace, ends) in enumerate(steps):
            if ends and r._trace_roots.get(trace):
                sid = r._trace_roots[trace][0]
                r._root_ended(SimpleNamespace(trace_id=trace, span_id=sid))
                model[trace].remove(sid)
                if not model[trace]:
                    del model[trace]
                continue
            r._root_started(SimpleNamespace(trace_id=trace, span_id=n))
            model.setdefault(trace, []).append(n)
            if len(model) > BOUND:
                model.popitem(last=False)
        assert r._trace_roots == model and list(r._trace_roots) == list(model)
