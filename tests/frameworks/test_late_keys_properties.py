"""Spans that become a task's root only after they start (the keys of
OpenLLMetry's and OpenInference's LangChain spans come late) tell the same
story in process as in end order.

The processor cannot know at a child's start that its parent will be a task
later: such a trace goes to the tracker in end order, as the exporter path
does. Random task trees whose roots get their root-making keys only after
they start (the ``late_roots`` generator), played on a real TracerProvider:
the processor's stream passes the stream checker and ends every task on the
same final view as the exporter given the same spans unstamped (both may
show a task before its root arrives: docs/reference/conventions.md#provisional-tasks).
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings

from ..core._invariants import check_against_specs, check_stream, check_task_roots, final_states_by_root, only
from ..core._paths import clean_specs, exporter_run, processor_run, unstamped_spans
from ..core._strategies import traces
from ..core._trees import SpanSpec


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(specs=traces(max_traces=2, max_children=6, late_roots=True, clean_root_updates=True))
def test_a_root_known_only_at_its_end_keeps_its_children_in_process(specs: list[SpanSpec]) -> None:
    specs = clean_specs(specs)
    in_process, _ = processor_run(specs)
    end_order = exporter_run(unstamped_spans(specs))
    for name, events in (("processor", in_process), ("exporter", end_order)):
        check_stream(events, all_finished=True)
        check_against_specs(events, specs)
        # Tasks by their roots: one shown before its root arrived may carry an inner span's id.
        traces = check_task_roots(events, specs, name)
    assert only(final_states_by_root(in_process, specs), traces) == only(final_states_by_root(end_order, specs), traces)
