"""The same agent run through every real path gives the same story.

Random task trees (the generator of ``_strategies``) are played on a real
TracerProvider with their own ids and times, then reach spanvisor three ways:

* **processor**: ``SpanvisorSpanProcessor`` on the provider (in-process, live);
* **exporter**: the ended SDK spans, stamped by that processor and not, handed
  to ``SpanvisorSpanExporter`` in end order;
* **receiver**: the same spans encoded as OTLP protobuf by the OTel exporter's
  own encoder, decoded by the receiver, in random batches, into a receiver
  ``Pipeline``.

Every stream passes the one stream checker (``check_stream`` and
``check_against_specs``), and every path ends every task on the same final
view, field by field.
"""

from __future__ import annotations

import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ._invariants import (
    check_against_specs,
    check_stream,
    check_task_roots,
    corrections_by_root,
    final_states_by_root,
    only,
)
from ._paths import clean_specs, exporter_run, in_scopes, processor_run, receiver_run, unstamped_spans
from ._strategies import traces
from ._trees import SpanSpec


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    specs=traces(
        max_traces=2,
        max_children=6,
        root_parent=True,
        clean_root_updates=True,
        many_attributes=True,
        skew=True,
        parallel=True,
    ),
    seed=st.integers(0, 99),
)
def test_processor_exporter_and_receiver_tell_the_same_story(specs: list[SpanSpec], seed: int) -> None:
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
    for name, events in runs.items():
        check_stream(events, all_finished=True)
        check_against_specs(events, specs)
        traces = check_task_roots(events, specs, name)
    want = only(final_states_by_root(in_process, specs), traces)
    # A root given more attributes than the SDK keeps loses its name and agent
    # where no processor saw it start: read as a task by its results
    # (docs/reference/conventions.md#attribute-limits), named after its span.
    limited = {f"{s.trace_id}-{s.span_id}" for s in specs if len(s.attrs_at(s.end_ns, stamped=True)) > SDK_LIMIT}
    for name, events in runs.items():
        got = only(final_states_by_root(events, specs), traces)
        if "unstamped" in name:
            got, want_here = _without_identity(got, limited), _without_identity(want, limited)
        else:
            want_here = want
        assert got == want_here, (name, _diff(got, want_here))


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    specs=traces(max_traces=2, max_children=6, root_parent=True, clean_root_updates=True, parallel=True),
    seed=st.integers(0, 99),
)
def test_requests_grouped_by_scope_tell_the_in_process_story(specs: list[SpanSpec], seed: int) -> None:
    """The OTLP encoder groups each request by instrumentation scope, so a
    root can precede another scope's call that ended before it; the
    receiver reads one resource's scopes in end order again, and every task
    ends as in-process, with the same corrections (none that in-process has
    not). One provider is one clock here (no skew: across resources, spans
    keep the order they came in)."""
    specs = clean_specs(specs)
    in_process, stamped = processor_run(specs)
    rng = random.Random(seed)
    runs = {
        "receiver stamped": receiver_run(in_scopes(stamped, rng), rng),
        "receiver unstamped": receiver_run(in_scopes(unstamped_spans(specs), rng), rng),
    }
    want = final_states_by_root(in_process, specs)
    corrections = corrections_by_root(in_process, specs)
    limited = {f"{s.trace_id}-{s.span_id}" for s in specs if len(s.attrs_at(s.end_ns, stamped=True)) > SDK_LIMIT}
    for name, events in runs.items():
        check_stream(events, all_finished=True)
        check_against_specs(events, specs)
        traces = check_task_roots(events, specs, name)
        got, want_here = only(final_states_by_root(events, specs), traces), only(want, traces)
        if "unstamped" in name:
            got, want_here = _without_identity(got, limited), _without_identity(want_here, limited)
        assert got == want_here, (name, _diff(got, want_here))
        assert corrections_by_root(events, specs) == corrections, name


SDK_LIMIT = 128


def _diff(got: dict[str, dict[str, object]], want: dict[str, dict[str, object]]) -> dict[str, object]:
    """What differs, field by field (the failure's message)."""
    out: dict[str, object] = {t: "missing" for t in want.keys() - got.keys()}
    out.update({t: "extra" for t in got.keys() - want.keys()})
    for t in got.keys() & want.keys():
        fields = {k: (got[t].get(k), want[t].get(k)) for k in got[t] | want[t] if got[t].get(k) != want[t].get(k)}
        if fields:
            out[t] = fields
    return out


_IDENTITY = ("task_name", "agent_id", "agent_name")


def _without_identity(states: dict[str, dict[str, object]], tasks: set[str]) -> dict[str, dict[str, object]]:
    return {
        t: {k: v for k, v in state.items() if k not in _IDENTITY} if t in tasks else state
        for t, state in states.items()
    }
