"""A run its root renamed (issue 66) is one task here: its state moves from
the derived id's key to the new one, so it is not running twice, its tokens
count once, and its finish closes it."""

from __future__ import annotations

from dataclasses import replace

from prom_streams import feed, started_sink, val

from spanvisor.events import Checkpoint, TaskFinished, TaskStarted, TaskView

DERIVED = "0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331"
T0 = 1_700_000_000_000_000_000


def test_renamed_run_counts_once() -> None:
    v = TaskView(
        task_id=DERIVED,
        trace_id="0af7651916cd43dd8448eb211c80319c",
        root_span_id="b7ad6b7169203331",
        agent_id="importer",
        run_id="run-1",
        started_ns=T0,
        updated_ns=T0,
        seq=1,
        input_tokens=500,
    )
    x = replace(v, task_id="job-42", former_id=DERIVED, seq=2, input_tokens=800)
    sink, registry = started_sink()
    feed(sink, [TaskStarted(event_id="a" * 32, time_ns=T0, task=v)])
    feed(sink, [Checkpoint(event_id="b" * 32, time_ns=T0 + 1, task=x)])
    state = sink.metrics
    assert list(state.open) == ["job-42/run-1"]
    assert val(registry, "spanvisor_tokens_total", agent="importer", direction="input") == 800
    done = replace(x, seq=3, status="complete", ended_ns=T0 + 10**9)
    feed(sink, [TaskFinished(event_id="c" * 32, time_ns=T0 + 10**9, task=done, outcome="complete", duration_s=1.0)])
    assert not state.open
    assert val(registry, "spanvisor_tasks_finished_total", agent="importer", repo="", outcome="complete") == 1
