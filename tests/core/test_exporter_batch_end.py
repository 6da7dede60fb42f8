"""The exporter path decides provisional tasks at the end of a delivered batch.

One ``export()`` call is one delivered batch: the pipeline queues a batch end
(``pipeline.BATCH_END``) after its spans and settles there, as the receiver
settles at a request's end, not wherever a pump happens to end
(``test_stamped_root_after_children.py`` has the race this closed). What
the batch end must not cost:

* a batch cut by a full inbox still ends: the end goes past the bound, one at
  the end at most;
* spans with no batch end after them (the processor's, on a pipeline an
  exporter made; an end that never came) are still decided: by a flush, and
  without one, once they have waited (``SETTLE_AFTER_PUMPS`` and
  ``SETTLE_AFTER_S``);
* the processor path queues no batch end and settles nothing, as before.

The pipelines here are built but not started where the test needs to see
what is queued before the first pump reads it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from spanvisor.events import Event, TaskStarted
from spanvisor.otel.exporter import SpanvisorSpanExporter
from spanvisor.pipeline.inbox import Inbox
from spanvisor.pipeline.pipeline import BATCH_END, Pipeline
from spanvisor.spans import conventions as cv
from spanvisor.stats import PipelineStats
from spanvisor.testing import InMemorySink

from ..waiting import wait_until
from ._paths import FLUSH_S, SHUTDOWN_S, _Ids, clean_specs, play, unstamped_spans
from ._sdk import _config
from ._trees import SpanSpec

JOB = "job-42"
TOOL = {cv.GEN_AI_OPERATION: "execute_tool", "gen_ai.tool.name": "grep"}
CHAT = {cv.GEN_AI_OPERATION: "chat", cv.GEN_AI_REQUEST_MODEL: "claude-sonnet-4-20250514"}


def runs(n: int) -> list[SpanSpec]:
    """``n`` runs, each a root naming ``job-42`` over a tool call and a model
    call that end before it (so the root comes after them)."""
    specs: list[SpanSpec] = []
    for t in range(1, n + 1):
        trace, root, base = f"{t:032x}", f"{t:04x}000000000000", 5_000_000_000 * t
        specs.append(SpanSpec(trace, root, None, "agent run", base, base + 10_000, {cv.TASK_ID: JOB}))
        specs.append(SpanSpec(trace, f"{t:04x}000000000001", root, "execute_tool grep", base + 1, base + 2, dict(TOOL)))
        specs.append(SpanSpec(trace, f"{t:04x}000000000002", root, "chat", base + 1, base + 2, dict(CHAT)))
    return clean_specs(specs)


def ended(n: int) -> list[ReadableSpan]:
    """The runs' spans in end order: each run's children, then its root."""
    return unstamped_spans(runs(n))


def started(events: Sequence[Event]) -> Counter[str]:
    return Counter(e.task_id for e in events if isinstance(e, TaskStarted))


def derived(span: ReadableSpan) -> str:
    ctx = span.context
    assert ctx is not None
    return f"{ctx.trace_id:032x}-{ctx.span_id:016x}"


def flushed(pipeline: Pipeline, memory: InMemorySink) -> list[Event]:
    try:
        pipeline.start()
        assert pipeline.force_flush(FLUSH_S)
    finally:
        pipeline.shutdown(SHUTDOWN_S)
    return memory.events


# -- the inbox's mark ------------------------------------------------------------


def test_a_mark_goes_past_the_bound_once_and_never_into_a_closed_inbox() -> None:
    stats = PipelineStats()
    inbox = Inbox(2, stats)
    assert inbox.put(("end", 1)) and inbox.put(("end", 2))
    assert not inbox.put(("end", 3))  # full: the span is dropped and counted
    assert inbox.put_mark(BATCH_END) and len(inbox) == 3  # the batch still ends
    assert not inbox.put(("end", 4))
    assert inbox.put_mark(BATCH_END) and len(inbox) == 3  # one after the spans taken, not one per batch
    assert stats.value("dropped_total", reason="inbox_full", sink="") == 2
    inbox.closed = True
    inbox.clear()
    assert not inbox.put_mark(BATCH_END) and len(inbox) == 0


def test_a_mark_comes_after_a_mark_only_with_spans_between() -> None:
    inbox = Inbox(10, PipelineStats())
    assert inbox.put_mark(BATCH_END) and inbox.put_mark(BATCH_END)
    assert inbox.put(("end", 1)) and inbox.put_mark(BATCH_END)
    assert [e is BATCH_END for e in inbox.drain(lambda: True)] == [True, False, True]


# -- batches on the exporter path ------------------------------------------------


def test_each_export_call_is_settled_at_its_own_end() -> None:
    """Read by one pump or several, the same: a root in its children's batch
    names their task; a root in the next batch renames the task shown under
    the derived id before it, from its own events on, as on the pure tracker."""
    first, second, root = ended(1)
    memory = InMemorySink()
    pipeline = Pipeline(_config(), [memory], path="exporter")
    pipeline.submit_batch([first, second, root])
    assert started(flushed(pipeline, memory)) == {JOB: 1}

    memory = InMemorySink()
    pipeline = Pipeline(_config(), [memory], path="exporter")
    pipeline.submit_batch([first, second])
    pipeline.submit_batch([root])  # queued before the first pump: one pump reads both
    events = flushed(pipeline, memory)
    assert started(events) == {derived(root): 1}
    assert {e.task_id for e in events} == {derived(root), JOB}
    assert events[-1].task_id == JOB and events[-1].task.former_id == derived(root)


def test_a_batch_cut_by_a_full_inbox_still_ends_and_is_settled_without_a_flush() -> None:
    spans = ended(2)
    (first, second, root), other = spans[:3], spans[3]
    memory = InMemorySink()
    pipeline = Pipeline(_config(SPANVISOR_INBOX_SIZE="2"), [memory], path="exporter")
    try:
        pipeline.submit_batch([first, second, other])
        pipeline.submit_batch([root])  # dropped too: the inbox is still full
        assert pipeline.stats.value("inbox_depth") == 3  # two spans and the batch's end
        assert pipeline.stats.value("dropped_total", reason="inbox_full", sink="") == 2
        pipeline.start()
        # The root was lost: the run is shown provisionally, under the derived id.
        got = wait_until(lambda: started(memory.events), what="the provisional task of the batch that was cut")
        assert got == {derived(root): 1}
        assert memory.events[0].task.provisional
    finally:
        pipeline.shutdown(SHUTDOWN_S)


def test_spans_with_no_batch_end_are_settled_once_they_waited() -> None:
    """The processor's ends on a pipeline an exporter made (no batch end):
    decided anyway, with no flush."""
    first, second, root = ended(1)
    memory = InMemorySink()
    pipeline = Pipeline(_config(), [memory], path="exporter").start()
    try:
        pipeline.submit_end(first)
        pipeline.submit_end(second)
        got = wait_until(lambda: started(memory.events), what="the provisional task of spans with no batch end")
        assert got == {derived(root): 1}
    finally:
        pipeline.shutdown(SHUTDOWN_S)


def test_a_flush_settles_spans_with_no_batch_end() -> None:
    first, second, root = ended(1)
    memory = InMemorySink()
    pipeline = Pipeline(_config(), [memory], path="exporter").start()
    try:
        pipeline.submit_end(first)
        pipeline.submit_end(second)
        assert pipeline.force_flush(FLUSH_S)
        assert started(memory.events) == {derived(root): 1}
    finally:
        pipeline.shutdown(SHUTDOWN_S)


def test_the_processor_path_queues_no_batch_end() -> None:
    spans = ended(1)
    pipeline = Pipeline(_config(), [InMemorySink()], path="processor")
    pipeline.submit_batch(spans)
    assert pipeline.stats.value("inbox_depth") == len(spans)
    pipeline.shutdown(SHUTDOWN_S)


def test_a_batch_span_processor_flush_is_one_batch() -> None:
    """The SDK's BatchSpanProcessor, its batch holding every span (no export
    before the flush): 300 runs, each root after its children, all job-42's."""
    memory = InMemorySink()
    exporter = SpanvisorSpanExporter(sinks=[memory], config=_config())
    ids = _Ids()
    provider = TracerProvider(id_generator=ids, shutdown_on_exit=False)
    bsp = BatchSpanProcessor(exporter, max_queue_size=4096, max_export_batch_size=4096, schedule_delay_millis=3_600_000)
    provider.add_span_processor(bsp)
    try:
        play(runs(300), provider, ids)
        assert provider.force_flush(FLUSH_S * 1000)
        assert exporter.force_flush(FLUSH_S * 1000)
    finally:
        provider.shutdown()
    assert started(memory.events) == {JOB: 300}
