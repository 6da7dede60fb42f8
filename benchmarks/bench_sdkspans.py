"""SDK spans to what the tracker reads, on the agent process's pipeline thread.

Run: ``.venv/bin/python benchmarks/bench_sdkspans.py`` (a few seconds).
Options: ``--spans N`` (per shape, default 2,000), ``--reps N`` (default 7,
the best is reported), ``--src DIR`` (another checkout's ``src``, put first
on the path: the revision before, for a before-and-after in turns).

In an agent's process the processor hands the pipeline the SDK's own spans
and the pipeline turns each into a ``SpanData`` (``pipeline/sdkspans.py``)
before the tracker reads it. Timed here, CPU µs per span, on this thread,
for the shapes of ``bench_agent_thread.py``'s task and two more:

* a model call (``gen_ai.*`` with usage and an event: read whole);
* a tool call that carries only the processor's stamps (most spans);
* an open root read again at a poll (its events converted once).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from typing import Any


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--spans", type=int, default=2000)
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--src", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))
    args = ap.parse_args()
    sys.path.insert(0, os.path.abspath(args.src))

    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider

    from spanvisor.pipeline import sdkspans
    from spanvisor.spans import conventions as cv

    class Ends(SpanProcessor):
        def __init__(self) -> None:
            self.ended: list[ReadableSpan] = []

        def on_end(self, span: ReadableSpan) -> None:
            self.ended.append(span)

    ends = Ends()
    provider = TracerProvider(resource=Resource.create({"service.name": "bench"}), shutdown_on_exit=False)
    provider.add_span_processor(ends)
    tracer = provider.get_tracer("bench")
    stamps = {cv.TASK_ROOT: "00000000000000aa", cv.TASK_ID: "t-1", cv.AGENT_ID: "rivet"}
    model = {"gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4o"}
    shapes: dict[str, list[Any]] = {"a model call": [], "a tool call, stamps only": []}
    for i in range(args.spans):
        with tracer.start_as_current_span("chat gpt-4o", attributes=model) as call:
            call.add_event("gen_ai.choice", {"index": 0, "finish_reason": "stop"})
            call.set_attribute("gen_ai.usage.input_tokens", 1_200 + i)
            call.set_attribute("gen_ai.usage.output_tokens", 180)
        shapes["a model call"].append(ends.ended[-1])
        with tracer.start_as_current_span("tool", attributes={**stamps, "http.method": "GET"}):
            pass
        shapes["a tool call, stamps only"].append(ends.ended[-1])
    root = tracer.start_span("invoke_agent rivet", attributes={"gen_ai.operation.name": "invoke_agent"})
    for i in range(20):
        root.add_event("agent.checkpoint", {"agent.checkpoint.message": f"step {i}"})
    runs: dict[str, Any] = {name: (sdkspans.light_span, spans) for name, spans in shapes.items()}
    runs["an open root read again (20 events)"] = (sdkspans.snapshot_live, [root] * args.spans)

    print(f"spanvisor bench_sdkspans: python {platform.python_version()}, {os.cpu_count()} CPUs, {args.src}")
    for name, (convert, spans) in runs.items():
        best = float("inf")
        for _ in range(args.reps):
            t0 = time.thread_time_ns()
            for span in spans:
                convert(span)
            best = min(best, (time.thread_time_ns() - t0) / len(spans) / 1000)
        print(f"{name:40} {best:6.2f} us a span (best of {args.reps})")
    root.end()


if __name__ == "__main__":
    main()
