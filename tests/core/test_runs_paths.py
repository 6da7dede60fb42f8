"""A reused task id on every path: every root that carries an ``agent.task.id``
here carries the same one (an orchestrator reusing ``job-42``), so each root
is a run of one task id. The processor, the exporter and the receiver (the
scan path), stamped and not, tell the same story: one TaskStarted and one
TaskFinished per run, no event id shared between runs, and each run's
final view equal to the processor's (keyed by task id *and* run).

As in ``test_paths_properties``, the runs compared are those of the traces
whose every model call lies under a task root (``agent_rooted``): a trace
whose top span is a plain span over a model call and a tool call is no task
in process, and on the end-order paths a task of its own, shown
provisionally and ended with that top span as its root, under a derived id
(docs/reference/conventions.md#provisional-tasks; issue 66, the example is
``test_stamped_root_after_children``'s). ``check_task_roots`` still holds
every path to one task per root and no task but a root's or a top span's."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from spanvisor.events import Event, TaskFinished, TaskStarted
from spanvisor.spans import conventions as cv

from ._invariants import agent_rooted, check_stream, check_task_roots, expected_roots, final_states
from ._paths import clean_specs, exporter_run, processor_run, receiver_run, unstamped_spans
from ._strategies import traces
from ._trees import SpanSpec


def by_run(events: Sequence[Event]) -> dict[tuple[str, str], dict[str, object]]:
    """final_states per (task id, run): runs of one id must not mix."""
    out: dict[tuple[str, str], dict[str, object]] = {}
    for run in {e.task.run_id for e in events}:
        for task_id, state in final_states([e for e in events if e.task.run_id == run]).items():
            out[(task_id, run)] = state
    return out


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(specs=traces(max_traces=3, max_children=4, root_parent=True, clean_root_updates=True), seed=st.integers(0, 99))
def test_runs_of_one_task_id_tell_the_same_story_on_every_path(specs: list[SpanSpec], seed: int) -> None:
    specs = clean_specs(specs)
    roots = expected_roots(specs)
    assume(len(roots) >= 2)
    for s in specs:
        if (s.trace_id, s.span_id) in roots:
            s.start_attrs[cv.TASK_ID] = "job-42"  # every task root: one id, reused
    assert len({(e.task_id, e.task.run_id) for e in processor_run(specs)[0]}) == len(roots)
    in_process, stamped = processor_run(specs)
    runs = {
        "processor": in_process,
        "exporter stamped": exporter_run(stamped),
        "exporter unstamped": exporter_run(unstamped_spans(specs)),
        "receiver stamped": receiver_run(stamped, random.Random(seed)),
    }
    agent_traces = agent_rooted(specs)
    want = by_run([e for e in in_process if e.task.trace_id in agent_traces])
    for name, events in runs.items():
        check_stream(events, all_finished=True)
        check_task_roots(events, specs, name)
        ids = [e.event_id for e in events]
        assert len(ids) == len(set(ids)), name  # no event id shared between runs (or twice)
        starts = Counter((e.task_id, e.task.run_id) for e in events if isinstance(e, TaskStarted))
        ends = Counter((e.task_id, e.task.run_id) for e in events if isinstance(e, TaskFinished))
        assert set(starts.values()) <= {1} and starts == ends, name
        assert by_run([e for e in events if e.task.trace_id in agent_traces]) == want, name
