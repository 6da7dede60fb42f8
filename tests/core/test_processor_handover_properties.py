"""The processor's two hand-overs tell the same story.

By default (no other span processor on the provider, nothing stamped) the
hooks hand every span over as it is and the pipeline's thread tells which
task it belongs to, replaying the hooks' classification in hook order. Once
a task is stamped or another processor reads its spans, the hooks classify
on the agent's thread. On random trees (late work, roots past the attribute
limit, spans that become agent spans only at their end, parallel tasks),
both give every task the same final view and pass the one stream checker.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ._invariants import check_against_specs, check_stream, expected_roots, final_states, roots_of
from ._paths import clean_specs, processor_run
from ._strategies import late_children, traces
from ._trees import SpanSpec

SLOW = settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)


@st.composite
def trees(draw: st.DrawFn) -> list[SpanSpec]:
    base = draw(
        traces(
            max_traces=2,
            max_children=6,
            root_parent=True,
            clean_root_updates=True,
            many_attributes=True,
            parallel=True,
        )
    )
    if draw(st.booleans()):
        base = draw(late_children(base))
    return base


@SLOW
@given(specs=trees())
def test_the_pipeline_side_classification_gives_the_hooks_final_views(specs: list[SpanSpec]) -> None:
    specs = clean_specs(specs)
    runs = {
        "alone (pipeline classifies)": processor_run(specs, alone=True)[0],
        "another processor (hooks classify, stamped)": processor_run(specs)[0],
        "another processor, stamps off (hooks classify)": processor_run(specs, stamp="off")[0],
    }
    roots = expected_roots(specs)
    for name, events in runs.items():
        check_stream(events, all_finished=True)
        check_against_specs(events, specs)
        assert roots_of(events) == roots, name
    want = final_states(runs["another processor (hooks classify, stamped)"])
    for name, events in runs.items():
        assert final_states(events) == want, name
