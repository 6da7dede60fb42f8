"""One long task in-process: the pipeline thread's CPU per span against short tasks.

Run: ``.venv/bin/python benchmarks/bench_long_task.py`` (about a minute).
Options: ``--children N`` (default 10,000), ``--reps N`` (default 3, medians
reported), ``--every N`` spans the agent ends between two pumps (default
50), ``--poll-every N`` spans between two polls of the open roots (default
500), ``--profile`` prints a cProfile of one long task's pumps, ``--quick``
is a smoke run.

A real SDK ``TracerProvider`` with ``SpanvisorSpanProcessor`` and a
pipeline whose thread never starts: the benchmark plays the agent and,
every ``--every`` spans, the pipeline thread (one ``_pump``, timed alone
with this thread's CPU clock), so the pipeline reads the open root while
the agent is still writing it, as it does in a real process. The pipeline
thread also re-reads the open roots (and expires what is due) once a second
of wall time, once its inbox is worked off; here that is at every
``--poll-every``-th span exactly instead (a pump that goes on until it has
polled, whatever the inbox holds), as for an agent ending 500 spans a
second, so every run does the same work and emits the same events however
fast the machine is and whatever ``--every`` leaves queued. Every child is
a model call or a tool call (each makes the tracker re-read the open root
up to its end, to order the root's checkpoints before it), and the agent
adds a checkpoint to its root after every child and sets its progress every
tenth.

* **long**: one root with ``--children`` children and as many checkpoints.
* **short**: tasks of 100 spans (99 children, 99 checkpoints) until as
  many spans have ended.

Then the same shapes in end order, the tracker alone (as from the exporter
or a receiver): unstamped children wait in their trace's buffer until the
root ends with every checkpoint, and the root's events up to each child's
end are read before that child.

Each under the SDK's default span limits (128 events a span: the root's
oldest checkpoints fall off while the task runs) and with the event limit
raised above the task's checkpoints (every checkpoint stays on the root).
The figure is CPU ns per span on the pipeline thread, the goal a long task
within 1.2x of short ones. The events the tracker emitted are counted by
kind: the same code must give the same counts.
"""

from __future__ import annotations

import argparse
import collections
import cProfile
import io
import math
import os
import platform
import pstats
import statistics
import time
from collections.abc import Sequence

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanLimits, TracerProvider
from opentelemetry.trace import Tracer

from spanvisor.config import Config
from spanvisor.events import Event
from spanvisor.otel.processor import SpanvisorSpanProcessor
from spanvisor.pipeline.pipeline import Pipeline
from spanvisor.sink import BaseSink, SinkResult
from spanvisor.spans.data import SpanData, SpanEventData
from spanvisor.stats import PipelineStats
from spanvisor.tracking.taskcontext import TrackerSettings
from spanvisor.tracking.tracker import TaskTracker

SHORT_SPANS = 100


class NullSink(BaseSink):
    """Takes every event and keeps none."""

    name = "counting"

    async def export(self, events: Sequence[Event]) -> SinkResult:
        return SinkResult.SUCCESS


class IdlePipeline(Pipeline):
    """A pipeline whose thread never starts: the benchmark pumps it."""

    def start(self) -> IdlePipeline:
        return self


class Agent:
    """The agent's side and the timed pumps of one configuration."""

    def __init__(self, event_limit: int | None, every: int, poll_every: int = 500) -> None:
        limits = SpanLimits(max_events=event_limit) if event_limit is not None else SpanLimits()
        self.provider = TracerProvider(
            resource=Resource.create({"service.name": "bench"}), span_limits=limits, shutdown_on_exit=False
        )
        self.pipe = IdlePipeline(Config.load(env={}, extra=()), [NullSink()])
        self.provider.add_span_processor(SpanvisorSpanProcessor(pipeline=self.pipe))
        self.tracer: Tracer = self.provider.get_tracer("bench")
        self.every = every
        self.poll_every = poll_every
        self.ended = 0
        self.polls = 0
        self.cpu_ns = 0
        self.kinds: collections.Counter[str] = collections.Counter()
        self.prof: cProfile.Profile | None = None
        dispatch = self.pipe._dispatch

        def counted(events: list[Event]) -> None:
            for ev in events:
                self.kinds[ev.__class__.__name__] += 1
            dispatch(events)

        self.pipe._dispatch = counted  # type: ignore[method-assign]  # counts, then as before

    def span_done(self) -> None:
        self.ended += 1
        if self.ended % self.poll_every == 0:
            self.pump(poll=True)
        elif self.ended % self.every == 0:
            self.pump()

    def pump(self, poll: bool = False) -> None:
        # The pipeline polls and expires when a second of wall time has
        # passed since it last did, and polls only once its inbox is worked
        # off: how often would follow the machine's speed and the backlog.
        # Here both happen at every poll_every-th span, whatever the inbox
        # holds then: the pump goes on until the poll has run.
        pipe = self.pipe
        pipe._last_poll = pipe._last_expire = -math.inf if poll else math.inf
        if self.prof is not None:
            self.prof.enable()
        c0 = time.thread_time_ns()
        for _ in range(1_000_000):
            if not pipe._pump() and not (poll and pipe._last_poll == -math.inf):
                break
        else:
            raise RuntimeError("the pipeline's pump never polled the open roots")
        self.cpu_ns += time.thread_time_ns() - c0
        if self.prof is not None:
            self.prof.disable()
        if poll:
            self.polls += 1

    def task(self, n: int, children: int) -> None:
        tracer = self.tracer
        with tracer.start_as_current_span(
            "invoke_agent rivet",
            attributes={
                "agent.id": "rivet",
                "agent.name": "rivet",
                "agent.task.name": f"Diagnose fault F{n}",
                "agent.repo": "acme/plant-ops",
                "gen_ai.operation.name": "invoke_agent",
            },
        ) as root:
            for i in range(children):
                if i % 2:
                    with tracer.start_as_current_span(
                        "execute_tool read_file",
                        attributes={"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "read_file"},
                    ):
                        pass
                else:
                    with tracer.start_as_current_span(
                        "chat claude-sonnet-4",
                        attributes={
                            "gen_ai.operation.name": "chat",
                            "gen_ai.provider.name": "anthropic",
                            "gen_ai.request.model": "claude-sonnet-4-20250514",
                        },
                    ) as call:
                        call.set_attribute("gen_ai.usage.input_tokens", 2_000 + (i % 50) * 100)
                        call.set_attribute("gen_ai.usage.output_tokens", 300)
                self.span_done()
                root.add_event("agent.checkpoint", {"message": f"step {i} done", "agent.step": "fix"})
                if i % 10 == 9:
                    root.set_attribute("agent.progress", min(99, i * 100 // children))
        self.span_done()

    def close(self) -> None:
        self.pump()
        self.pipe.shutdown(0.3)
        self.provider.shutdown()


def run(
    kind: str, children: int, event_limit: int | None, every: int, poll_every: int, profile: bool = False
) -> tuple[float, Agent]:
    """CPU ns per span on the pipeline thread, and the agent (its counts)."""
    a = Agent(event_limit, every, poll_every)
    a.task(0, 20)  # warm-up, untimed: imports, the first priced call
    a.pump()
    a.cpu_ns, a.ended, a.polls, a.kinds = 0, 0, 0, collections.Counter()
    if profile:
        a.prof = cProfile.Profile()
    spans = children + 1
    if kind == "long":
        a.task(1, children)
    else:
        for n in range(max(1, spans // SHORT_SPANS)):
            a.task(2 + n, SHORT_SPANS - 1)
    a.pump()
    per_span = a.cpu_ns / a.ended
    a.close()
    return per_span, a


def _end_order_task(n: int, children: int, t0: int) -> list[SpanData]:
    """One task as the exporter or the receiver gets it: unstamped children
    (each waits in its trace's buffer until the root ends), then the root
    with a checkpoint before each child's end."""
    trace = format(n + 1, "032x")
    root_id = format((n + 1) << 20, "016x")
    us = 1_000
    events = tuple(
        SpanEventData("agent.checkpoint", t0 + i * 10 * us, {"message": f"step {i} done"}) for i in range(children)
    )
    kids = [
        SpanData(
            trace,
            format(((n + 1) << 20) + i + 1, "016x"),
            root_id,
            "chat m",
            t0 + i * 10 * us,
            t0 + i * 10 * us + 5 * us,
            {"gen_ai.operation.name": "chat", "gen_ai.request.model": "claude-sonnet-4-20250514"},
        )
        for i in range(children)
    ]
    attrs = {"agent.id": "rivet", "agent.task.name": f"Diagnose fault F{n}", "gen_ai.operation.name": "invoke_agent"}
    root = SpanData(trace, root_id, None, "invoke_agent rivet", t0, t0 + children * 10 * us + us, attrs, events)
    return [*kids, root]


def run_end_order(kind: str, children: int) -> tuple[float, collections.Counter[str]]:
    """CPU ns per span of a fresh tracker given the tasks in end order, and its events by kind."""
    c = Config.load(env={}, extra=())
    tracker = TaskTracker(TrackerSettings.from_config(c), stats=PipelineStats())
    t0 = time.time_ns()
    for span in _end_order_task(0, 20, t0):  # warm-up, untimed
        tracker.span_ended(span)
    count = 1 if kind == "long" else max(1, (children + 1) // SHORT_SPANS)
    size = children if kind == "long" else SHORT_SPANS - 1
    tasks = [_end_order_task(1 + n, size, t0) for n in range(count)]
    kinds: collections.Counter[str] = collections.Counter()
    c0 = time.thread_time_ns()
    n = 0
    for spans in tasks:
        for span in spans:
            for ev in tracker.span_ended(span):
                kinds[ev.__class__.__name__] += 1
        n += len(spans)
    return (time.thread_time_ns() - c0) / n, kinds


def _top(prof: cProfile.Profile, n: int = 25) -> str:
    buf = io.StringIO()
    pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(n)
    return buf.getvalue()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Pipeline CPU per span: one long task against 100-span tasks.")
    ap.add_argument("--children", type=int, default=10_000)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--every", type=int, default=50)
    ap.add_argument("--poll-every", type=int, default=500)
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args(argv)
    children, reps = (2_000, 1) if args.quick else (max(1, args.children), max(1, args.reps))
    limits: dict[str, int | None] = {"SDK default limits": None, "event limit raised": children + 1_000}
    t0 = time.monotonic()
    figures: dict[tuple[str, str], list[float]] = {}
    counts: dict[tuple[str, str], collections.Counter[str]] = {}
    polls: dict[tuple[str, str], int] = {}
    for _ in range(reps):  # interleaved: drift on a shared machine hits every configuration alike
        for label, limit in limits.items():
            for kind in ("short", "long"):
                per_span, a = run(kind, children, limit, max(1, args.every), max(1, args.poll_every))
                figures.setdefault((label, kind), []).append(per_span)
                counts[(label, kind)] = a.kinds
                polls[(label, kind)] = a.polls
    print(
        f"spanvisor bench_long_task: python {platform.python_version()}, {os.cpu_count()} CPUs, "
        f"{children:,} children, a pump every {args.every} spans, a poll every {args.poll_every}, "
        f"{reps} reps (medians), "
        f"load {os.getloadavg()[0]:.1f}, {time.monotonic() - t0:.0f} s"
    )
    for label in limits:
        short = statistics.median(figures[(label, "short")])
        long = statistics.median(figures[(label, "long")])
        print(
            f"{label:>20}: {SHORT_SPANS}-span tasks {short / 1e3:7.1f} µs/span, one task of {children + 1:,} spans "
            f"{long / 1e3:7.1f} µs/span: {long / short:.2f}x"
        )
        for kind in ("short", "long"):
            ev = ", ".join(f"{k} {v:,}" for k, v in sorted(counts[(label, kind)].items()))
            print(f"{'':>22}{kind} events ({polls[(label, kind)]} polls): {ev}")
    ends: dict[str, list[float]] = {}
    end_kinds: dict[str, collections.Counter[str]] = {}
    for _ in range(reps):
        for kind in ("short", "long"):
            per_span, end_kinds[kind] = run_end_order(kind, children)
            ends.setdefault(kind, []).append(per_span)
    short, long = statistics.median(ends["short"]), statistics.median(ends["long"])
    print(
        f"{'end order, buffered':>20}: {SHORT_SPANS}-span tasks {short / 1e3:7.1f} µs/span, one task of "
        f"{children + 1:,} spans {long / 1e3:7.1f} µs/span: {long / short:.2f}x (the tracker alone, "
        "unstamped children waiting for their root, as from the exporter or a receiver)"
    )
    for kind in ("short", "long"):
        ev = ", ".join(f"{k} {v:,}" for k, v in sorted(end_kinds[kind].items()))
        print(f"{'':>22}{kind} events: {ev}")
    if args.profile:
        _, a = run(
            "long", children, limits["event limit raised"], max(1, args.every), max(1, args.poll_every), profile=True
        )
        if a.prof is not None:
            print("\ncProfile of the long task's pumps (event limit raised), sorted by own time:")
            print(_top(a.prof))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
