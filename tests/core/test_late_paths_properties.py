"""The late-span rule on every path, on random trees with work that outlives
its task root (``late_children``): after TaskFinished only TaskCorrected
follows, and every path ends every task on the same final view (totals
included) with the same corrections.

* the tracker alone: the processor's order (start, polls, end) against the
  end-order paths' (every span at its end, in end-time order, in batches),
  stamped and not;
* the real paths: the processor on a TracerProvider, the exporter (stamped
  and unstamped spans) and the receiver (OTLP protobuf decoded from the body
  as received, as ``serve`` does over HTTP and gRPC), as in
  ``test_paths_properties``.
"""

from __future__ import annotations

import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spanvisor.events import ArtifactAdded, Checkpoint, Event, TaskCorrected
from spanvisor.tracking.tracker import TaskTracker

from ._invariants import (
    check_against_specs,
    check_stream,
    check_task_roots,
    corrections_by_root,
    final_states,
    final_states_by_root,
    only,
)
from ._paths import clean_specs, exporter_run, processor_run, receiver_run, unstamped_spans
from ._strategies import late_children, traces
from ._trees import FakeClock, SpanSpec, feed_start_order, stamp_trees

SLOW = settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)


@st.composite
def late_trees(draw: st.DrawFn) -> list[SpanSpec]:
    base = draw(traces(max_traces=2, max_children=5, root_parent=True, clean_root_updates=True))
    specs: list[SpanSpec] = draw(late_children(base))
    return specs


def _corrections(events: list[Event]) -> list[tuple[str, str, int, int]]:
    return sorted(
        (e.task_id, e.event_id, e.task.input_tokens, e.task.output_tokens)
        for e in events
        if isinstance(e, TaskCorrected)
    )


def _by_end_time(
    tracker: TaskTracker, specs: list[SpanSpec], stamped: bool, clock: FakeClock, batch: int
) -> list[Event]:
    """``span_ended`` in the order spans end (deeper first on a tie), as an
    exporter sends them; held roots expire between batches."""
    order = sorted(specs, key=lambda s: (s.end_ns, -s.start_ns))
    out: list[Event] = []
    for i in range(0, len(order), batch):
        for s in order[i : i + batch]:
            out += tracker.span_ended(s.data(None, stamped=stamped))
        out += tracker.expire()
    clock.advance(10_000)
    return out + tracker.expire()


@SLOW
@given(specs=late_trees(), data=st.data())
def test_the_tracker_gives_one_rule_in_every_order(specs: list[SpanSpec], data: st.DataObject) -> None:
    stamp_trees(specs)
    in_process = feed_start_order(TaskTracker(clock=FakeClock()), specs)
    check_stream(in_process, all_finished=True)
    check_against_specs(in_process, specs)
    want = final_states(in_process)
    for stamped in (True, False):
        clock = FakeClock()
        batch = data.draw(st.integers(1, 8), label="batch")
        ended = _by_end_time(TaskTracker(clock=clock), specs, stamped, clock, batch)
        check_stream(ended, all_finished=True)
        check_against_specs(ended, specs)
        assert final_states(ended) == want, f"stamped={stamped}"
        assert _corrections(ended) == _corrections(in_process), f"stamped={stamped}"


@SLOW
@given(specs=late_trees(), seed=st.integers(0, 99))
def test_every_real_path_gives_the_same_corrections(specs: list[SpanSpec], seed: int) -> None:
    specs = clean_specs(specs)
    in_process, stamped = processor_run(specs)
    unstamped = unstamped_spans(specs)
    runs = {
        "processor": in_process,
        "exporter stamped": exporter_run(stamped),
        "exporter unstamped": exporter_run(unstamped),
        "receiver stamped": receiver_run(stamped, random.Random(seed)),
        "receiver unstamped": receiver_run(unstamped, random.Random(seed + 1)),
    }
    want, corrections = final_states_by_root(in_process, specs), corrections_by_root(in_process, specs)
    for name, events in runs.items():
        check_stream(events, all_finished=True)
        check_against_specs(events, specs)
        traces = check_task_roots(events, specs, name)
        assert only(final_states_by_root(events, specs), traces) == only(want, traces), name
        assert [c for c in corrections_by_root(events, specs) if c[0][0] in traces] == [
            c for c in corrections if c[0][0] in traces
        ], name


def _audit(events: list[Event]) -> list[str]:
    """The ids of the audit facts a sink writes (checkpoint events, model and
    tool calls, artifacts), a correction's facts included: each once."""
    out: list[str] = []
    for e in events:
        for f in (e, *e.facts) if isinstance(e, TaskCorrected) else (e,):
            if isinstance(f, ArtifactAdded) or (isinstance(f, Checkpoint) and f.source != "state"):
                out.append(f.event_id)
    return sorted(out)


def _totals(events: list[Event]) -> dict[str, tuple[object, ...]]:
    return {
        t: (s["input_tokens"], s["output_tokens"], s["cost_usd"], s["unpriced_calls"], s["artifacts"])
        for t, s in final_states(events).items()
    }


@SLOW
@given(
    specs=traces(max_traces=2, max_children=5, root_parent=True, clean_root_updates=True),
    data=st.data(),
)
def test_requests_in_any_order_keep_every_fact_once(specs: list[SpanSpec], data: st.DataObject) -> None:
    """A task's spans split over requests (each in end order) that arrive in any order, roots not last: the facts
    of every span are told once, those that came after their root as a
    correction's facts, and the final totals are the in-process path's."""
    stamp_trees(specs)
    in_process = feed_start_order(TaskTracker(clock=FakeClock()), specs)
    order = sorted(specs, key=lambda s: (s.end_ns, s.start_ns))
    cuts = sorted(data.draw(st.sets(st.integers(1, max(1, len(order) - 1)), max_size=4), label="cuts"))
    requests = [order[a:b] for a, b in zip([0, *cuts], [*cuts, len(order)], strict=True) if order[a:b]]
    requests = data.draw(st.permutations(requests), label="arrival")
    clock = FakeClock()
    tracker = TaskTracker(clock=clock)
    split: list[Event] = []
    for request in requests:
        for s in request:
            split += tracker.span_ended(s.data(None, stamped=True))
        split += tracker.expire()
    clock.advance(10_000)
    split += tracker.expire()
    check_stream(split, all_finished=True)
    assert _audit(split) == _audit(in_process)
    assert len(set(_audit(split))) == len(_audit(split))
    assert _totals(split) == _totals(in_process)
