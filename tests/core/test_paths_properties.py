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

from ._invariants import check_against_specs, check_stream, expected_roots, final_states, roots_of
from ._paths import clean_specs, exporter_run, processor_run, receiver_run, unstamped_spans
from ._strategies import traces
from ._trees import SpanSpec


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(specs=traces(max_traces=2, max_children=6, root_parent=True, clean_root_updates=True), seed=st.integers(0, 99))
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
    roots = expected_roots(specs)
    for name, events in runs.items():
        check_stream(events, all_finished=True)
        check_against_specs(events, specs)
        assert roots_of(events) == roots, name
    want = final_states(in_process)
    for name, events in runs.items():
        assert final_states(events) == want, name
