"""The processor's hooks on their own, and what handing spans over costs.

Run: ``.venv/bin/python benchmarks/bench_hooks.py``
(about 20 s). A quick look for iterating on the hooks, beside
``bench_processor.py`` (the goal's figures):

* **hooks**: each of spanvisor's hooks called on 20,000 ready-made spans of
  one open task (no allocation in the loop; best of 5, thread CPU ns per
  call), at the defaults (no other processor: every span goes over as it
  is) and stamping, and BatchSpanProcessor's ``on_end`` for scale;
* **hand-over**: agent-thread CPU ns a span of ``bench_processor``'s task
  shape (collector off, one list or inbox emptied between tasks, untimed)
  with no processor, a processor that does nothing, one that appends every
  span as it is at its start and end, one that appends compact copies (a
  member's ids at its start, ten fields at its end, so that the SDK's
  objects die as the span ends), and spanvisor's processor at the defaults.
  The differences show what keeping spans alive for a pipeline costs the
  agent (its next allocations come from fresh memory) against building
  copies.
"""

from __future__ import annotations

import gc
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_processor import SPANS_PER_TASK, IdlePipeline, StalledSink, _config, run_task
from spanvisor.otel.classify import ROOT_KEYS
from spanvisor.otel.processor import SpanvisorSpanProcessor
from spanvisor.pipeline.handover import compact_end
from spanvisor.spans import conventions as cv

N = 20_000


class _Null(SpanExporter):
    def export(self, spans: Any) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def _provider() -> TracerProvider:
    return TracerProvider(resource=Resource.create({"service.name": "bench"}), shutdown_on_exit=False)


def hooks() -> None:
    for stamp in ("auto", "on"):
        p = _provider()
        pipe = IdlePipeline(_config().with_values(stamp_spans=stamp, inbox_size=10**7), [StalledSink()])
        proc = SpanvisorSpanProcessor(pipeline=pipe)
        p.add_span_processor(proc)
        tr = p.get_tracer("bench")
        root = tr.start_span(
            "root", attributes={cv.AGENT_ID: "a", cv.TASK_NAME: "t", cv.GEN_AI_OPERATION: "invoke_agent"}
        )
        ctx = trace.set_span_in_context(root)
        spans: list[Any] = [tr.start_span("tool", context=ctx, attributes={"tool.call.index": 1}) for _ in range(N)]
        # What the SDK hands on_end: a ReadableSpan made as the span ends.
        readable: list[Any] = [sp._readable_span() for sp in spans]
        calls: dict[str, Callable[[Any], None]] = {
            "on_start": proc.on_start,
            "_on_ending": proc._on_ending,
            "on_end": proc.on_end,
        }
        for name, fn in calls.items():
            best = float("inf")
            for _ in range(5):
                pipe._inbox.clear()
                if name == "on_start":  # the stamp written anew each time
                    for sp in spans:
                        for k in cv.STAMP_KEYS:
                            sp._attributes._dict.pop(k, None)
                gc.disable()
                t0 = time.thread_time_ns()
                for sp in readable if name == "on_end" else spans:
                    fn(sp)
                best = min(best, (time.thread_time_ns() - t0) / N)
                gc.enable()
            print(f"hooks  {'stamping' if stamp == 'on' else 'defaults':9} {name:11} {best:6.0f} ns a call")
        pipe._inbox.clear()
    bsp = BatchSpanProcessor(_Null(), max_queue_size=10**7, max_export_batch_size=10**7, schedule_delay_millis=10**7)
    best = float("inf")
    for _ in range(5):
        gc.disable()
        t0 = time.thread_time_ns()
        for sp in readable:
            bsp.on_end(sp)
        best = min(best, (time.thread_time_ns() - t0) / N)
        gc.enable()
        bsp._batch_processor._queue.clear()
    print(f"hooks  BatchSpanProcessor on_end  {best:6.0f} ns a call")
    bsp.shutdown()  # type: ignore[no-untyped-call]


class _Nothing(SpanProcessor):
    def __init__(self) -> None:
        self.kept: list[Any] = []

    def on_start(self, span: Span, parent_context: Any = None) -> None:
        pass

    def on_end(self, span: ReadableSpan) -> None:
        pass


class _AsTheyAre(_Nothing):
    def on_start(self, span: Span, parent_context: Any = None) -> None:
        self.kept.append(("start", span))

    def on_end(self, span: ReadableSpan) -> None:
        self.kept.append(("end", span))


class _Copies(_Nothing):
    def on_start(self, span: Span, parent_context: Any = None) -> None:
        d = span._attributes._dict  # type: ignore[union-attr]
        if d and not ROOT_KEYS.isdisjoint(d) and cv.is_root_candidate(d):
            self.kept.append(("start", span, dict(d)))
        else:
            self.kept.append(("start", (span._context, span._parent, span._name, span._start_time, d, span._resource)))

    def on_end(self, span: ReadableSpan) -> None:
        self.kept.append(("end", compact_end(span)))


def hand_over(rounds: int = 30) -> None:
    setups: dict[str, tuple[TracerProvider, Callable[[], None]]] = {}
    for name in ("no processor", "does nothing", "as they are", "compact copies", "spanvisor, defaults"):
        p = _provider()
        clear: Callable[[], None] = lambda: None  # noqa: E731
        if name == "spanvisor, defaults":
            pipe = IdlePipeline(_config(), [StalledSink()])
            p.add_span_processor(SpanvisorSpanProcessor(pipeline=pipe))
            clear = pipe._inbox.clear
        elif name != "no processor":
            proc = {"does nothing": _Nothing, "as they are": _AsTheyAre, "compact copies": _Copies}[name]()
            p.add_span_processor(proc)
            clear = proc.kept.clear
        setups[name] = (p, clear)
    got: dict[str, list[float]] = {k: [] for k in setups}
    for r in range(rounds):
        for name, (p, clear) in setups.items():
            tracer = p.get_tracer("bench")
            gc.collect()
            gc.disable()
            t0 = time.thread_time_ns()
            for i in range(8):
                run_task(tracer, i)
            ns = (time.thread_time_ns() - t0) / (8 * SPANS_PER_TASK)
            gc.enable()
            clear()
            if r >= 3:
                got[name].append(ns)
    base = statistics.median(got["no processor"])
    for name, vals in got.items():
        m = statistics.median(vals)
        print(f"hand-over  {name:20} {m:8,.0f} ns a span  {m - base:+7,.0f}")


if __name__ == "__main__":
    hooks()
    hand_over()
