"""Cost per span on the agent's thread: no processor, OTLP/HTTP, spanvisor.

Run: ``.venv/bin/python benchmarks/bench_processor.py`` (about 4 minutes
for ``--only e,f`` on a loaded 2-core machine, 5.5 for every configuration).
Options: ``--method tasks|blocks`` (below; default tasks), ``--reps N``
(cycles, default 240; rounds under ``--method blocks``, default 60),
``--block N`` (timed tasks in a row, default 5), ``--processes N`` (fresh
processes the cycles are split among, default 6), ``--only``, ``--gc``
(leave the collector on in the timed tasks), ``--no-pin``, ``--raw FILE``
(every task's or round's figures, as JSON), ``--profile`` (a cProfile of the
agent thread under (c) and of the pipeline thread), ``--quick``.

Configurations, all measured in ONE run, interleaved (in a shuffled order
each cycle, so no configuration always follows the same neighbour) so that
drift on a shared machine hits them equally:

* (a) a TracerProvider with no processor: what the SDK itself costs;
* (b) a BatchSpanProcessor with the OTLP/HTTP protobuf exporter, pointed at a
  local endpoint (a subprocess on 127.0.0.1 answering 200 to POST /v1/traces);
* (e) spanvisor's hooks alone at the defaults: the processor on a pipeline
  whose thread never runs (its inbox emptied between tasks, untimed). No
  other processor is on the provider, so ``SPANVISOR_STAMP_SPANS=auto``
  writes no stamps: the goal's "default settings, no other exporter". The
  hooks then hand every span over as it is; finding its task is the
  pipeline thread's work (in its figure at the end, not here);
* (f) (e) stamping (``SPANVISOR_STAMP_SPANS=true``: what another exporter on
  the provider turns on; its own cost is (b), left out here);
* (c) SpanvisorSpanProcessor whose only sink is stalled: its ``export`` awaits
  an asyncio.Event that is never set, so its queue (cut to 100 events here so
  that it is full for most of the run) fills and drops;
* (c') (c) stamping;
* (d) SpanvisorSpanProcessor with a sink that delivers: it counts the events
  and keeps only the last 100 (``CountingSink``).

The trace shape is a realistic agent task of 91 spans: an agent root span
with ``agent.*`` attributes, then 10 turns, each one model call
(``gen_ai.*`` with usage) and 4 tool calls with one HTTP child each (no key
any convention knows). About 12% of spans carry keys. The root gets
``agent.progress`` set each turn and an ``agent.checkpoint`` event every
other turn, as an agent using the helpers would.

Two modes:

* ``burst``: tasks back to back; the background threads (BSP's exporter,
  spanvisor's pipeline) compete with the agent for the GIL the whole time;
* ``paced``: a 10 ms pause after each task, as an agent waiting on its model
  would; background work mostly runs in the pauses.

Method (``--method tasks``, the default since issue 26's sixth round). Each
cycle runs, for every configuration in a shuffled order, one untimed task
(that configuration's code and data back in the caches after the previous
configuration's, as in an agent that runs one configuration all along) and
then ``--block`` tasks (5) back to back, each timed alone on the agent
thread's CPU clock; burst then paced (the pause after every task, timed or
not). After a configuration's tasks, untimed: an export BSP's tasks set off
(its queue reached a batch of 512) runs to its end, the queue itself
carrying over to (b)'s next cycle as in an agent's process; the spanvisor
pipelines work off their inbox. One ``gc.collect()`` per cycle and mode,
the collector off while the cycle's tasks run. The 240 cycles (1,200 timed
tasks of every configuration in each mode) are split among six fresh
processes as below. A cycle's figure for a configuration is the **median of
its 5 tasks**, and the ratio is the blocks method's, over cycles: the median
over the cycles of x-a over the median of b-a, each difference within one
cycle, with bootstrap quartiles over the cycles. Why: on a loaded machine
one task's CPU moves by ±30 % from the next (other processes and the host in
the caches and the core), far more than the few µs compared, in a long tail
that only ever adds time. The configurations' tasks run within a fraction
of a second of each other, so drift cancels in the differences, and a
block's median is not moved by the one or two disturbed tasks that move its
mean (the blocks method's figure). Beside it, the ratio of each
configuration's q10 over all its tasks, unpaired. Read on a quiet machine
the two are the same; on a loaded one the pause of a paced task gives other
processes time to evict the hooks' code and data, a cost of the loaded
machine that no statistic takes out: paced figures read higher there.

``--method blocks``, the fifth round's, kept for the figures the docs cite
from it: the 60 rounds are split among six fresh processes run one after
another (``--processes``), pooled at the end: one process's heap layout
(where its configurations' objects landed) moved every round of that
process alike, so a run in one process carried it whole; the ratio of each
process alone is printed beside the pooled one. The spread between
processes was the largest part of the gap between two runs (the rounds of
one process agree within a few hundredths), so six processes of ten rounds
halve its share against three of twenty (√2 less spread) in about the same
time: one untimed warm-up round each instead of two. In each process every
configuration is built once and warmed up (10 tasks, then one untimed
round); then each round runs one short block of tasks on each
configuration in turn (10 tasks burst, 15 paced). The process is
pinned to one CPU and the endpoint to the other (``--no-pin`` not to):
whether a background thread (BSP's worker, spanvisor's pipeline) ran beside
the agent on the other core or took turns with it changed the agent's CPU
per span from run to run. Before a block, ``gc.collect()``, and the
collector is off while the block runs (``--gc`` leaves it on): where a
collection falls was the largest noise between blocks, and what it costs
depends on the whole heap, not on the configuration. After a block, also
untimed, the configuration's background thread works off what the block
left (BSP's ``force_flush``; spanvisor's pipeline until its inbox is empty).
Reported per configuration, per span (start + end, including the agent's
own attribute writes): wall time of the agent's work and the agent thread's
CPU time (``time.thread_time_ns``: robust to other processes on a shared
machine), medians over the rounds. The ratio (x-a)/(b-a), 1.0 when a
configuration adds as much per span as the OTLP exporter does, is the
median over the rounds of x-a over the median of b-a, each difference taken
within one round; its quartiles come from bootstrap resamples of the
rounds. (A median of per-round ratios divides by one small, noisy b-a each
round: two runs of 12 rounds gave medians 0.52 and 1.44.) The notes (drops,
events, what was left in the inbox) are totals over the whole run. Then the
CPU cost per span of the pipeline thread (the tracker), measured alone.
Under ``--method tasks`` the pinning, the building and warm-up of every
configuration and the pipeline thread's figure are the same; the table's
columns are medians over the cycles of the cycles' block medians, and the
blocks method rotates its order where the tasks method shuffles it.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import io
import json
import logging
import math
import os
import platform
import pstats
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import Tracer

from spanvisor.config import Config
from spanvisor.events import Event
from spanvisor.otel.processor import SpanvisorSpanProcessor
from spanvisor.pipeline.pipeline import Pipeline
from spanvisor.sink import BaseSink, SinkResult

SPANS_PER_TASK = 91
RUSAGE_THREAD = getattr(resource, "RUSAGE_THREAD", resource.RUSAGE_SELF)
STALLED_QUEUE = 100
LABELS = {
    "a": "(a) no processor",
    "b": "(b) BatchSpanProcessor + OTLP/HTTP",
    "e": "(e) hooks alone, defaults (no stamps)",
    "f": "(f) hooks alone, stamping",
    "c": "(c) spanvisor, sinks stalled",
    "s": "(c') spanvisor, sinks stalled, stamping",
    "d": "(d) spanvisor, sink delivering",
}
PACE_S = 0.010
# Many short interleaved rounds rather than a few long blocks: drift on a
# shared machine hits every configuration alike, and the medians of 60
# paired differences move by hundredths between runs where 12 moved by
# tenths (see report()).
REPS = 60
BURST_TASKS = 10
PACED_TASKS = 15
WARM_ROUNDS = 1
# --method tasks: cycles of a short block of every configuration, burst then
# paced: one untimed task, then BLOCK tasks each timed alone.
CYCLES = 240
BLOCK_WARM = 1
BLOCK = 5
# The rounds are split among this many fresh processes, run one after another
# (the spread between processes, not between rounds, moved a run's medians).
PROCESSES = 6
BOOTSTRAP = 400

# A tiny OTLP/HTTP endpoint in its own process, as a Collector would be:
# it must not share the GIL with the agent being measured.
ENDPOINT_CODE = r"""
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        n = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(n)
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()
    def log_message(self, *a):
        pass
srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
print(srv.server_address[1], flush=True)
srv.serve_forever()
"""


class StalledSink(BaseSink):
    """A sink whose export never returns: a sink that is down and hanging."""

    name = "stalled"

    def __init__(self) -> None:
        super().__init__()
        self._never: asyncio.Event | None = None

    async def export(self, events: Sequence[Event]) -> SinkResult:
        self._never = self._never or asyncio.Event()
        await self._never.wait()
        return SinkResult.SUCCESS


class CountingSink(BaseSink):
    """A sink that delivers: counts the events, keeps only the last 100 (a
    real sink writes them and forgets)."""

    name = "counting"

    def __init__(self) -> None:
        super().__init__()
        self.delivered = 0
        self.last: deque[Event] = deque(maxlen=100)

    async def export(self, events: Sequence[Event]) -> SinkResult:
        self.delivered += len(events)
        self.last.extend(events)
        return SinkResult.SUCCESS


# -- the agent ------------------------------------------------------------------


def run_task(tracer: Tracer, n: int) -> None:
    """One agent task: 91 spans, the shape an instrumented agent emits."""
    with tracer.start_as_current_span(
        "invoke_agent rivet",
        attributes={
            "agent.id": "rivet",
            "agent.name": "rivet",
            "agent.task.name": f"Diagnose fault F{n}",
            "agent.repo": "acme/plant-ops",
            "agent.steps": ["triage", "route", "fix", "verify"],
            "gen_ai.operation.name": "invoke_agent",
        },
    ) as root:
        for turn in range(10):
            with tracer.start_as_current_span(
                "chat claude-sonnet-4",
                attributes={
                    "gen_ai.operation.name": "chat",
                    "gen_ai.provider.name": "anthropic",
                    "gen_ai.request.model": "claude-sonnet-4-20250514",
                },
            ) as call:
                call.set_attribute("gen_ai.response.model", "claude-sonnet-4-20250514")
                call.set_attribute("gen_ai.usage.input_tokens", 2_000 + 1_500 * turn)
                call.set_attribute("gen_ai.usage.output_tokens", 300)
            for t in range(4):
                with (
                    tracer.start_as_current_span(
                        "tool read_file", attributes={"tool.call.index": t, "code.function.name": "read_file"}
                    ),
                    tracer.start_as_current_span(
                        "GET",
                        attributes={
                            "http.request.method": "GET",
                            "url.full": "https://git.example.com/acme/plant-ops/raw/main/README.md",
                            "http.response.status_code": 200,
                        },
                    ),
                ):
                    pass
            root.set_attribute("agent.progress", (turn + 1) * 10)
            if turn % 2:
                root.add_event("agent.checkpoint", {"message": f"turn {turn} done", "agent.step": "fix"})


# -- configurations ---------------------------------------------------------------


@dataclass
class Setup:
    provider: TracerProvider
    close: Callable[[], dict[str, float]]
    # Runs between tasks, outside the timed region.
    between: Callable[[], None] = lambda: None
    # Runs after each block of tasks, outside the timed region: the
    # background thread works off what the block left, so the next block
    # (of any configuration) starts with nothing queued.
    drain: Callable[[], None] = lambda: None
    # Runs after each task under ``--method tasks``, outside the timed
    # region: what the task set off in the background ends before the next
    # configuration's task starts (None: ``drain``).
    settle: Callable[[], None] | None = None


def _config() -> Config:
    # Defaults only: the benchmark must not pick up a developer's env.
    return Config.load(env={}, extra=())


def setup_none() -> Setup:
    p = TracerProvider(resource=Resource.create({"service.name": "bench"}), shutdown_on_exit=False)
    return Setup(p, lambda: {})


class DropCounter(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        if "Queue full" in record.getMessage():
            self.count += 1


BSP_DROPS = DropCounter()


def setup_otlp(port: int) -> Callable[[], Setup]:
    def make() -> Setup:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        p = TracerProvider(resource=Resource.create({"service.name": "bench"}), shutdown_on_exit=False)
        bsp = BatchSpanProcessor(OTLPSpanExporter(endpoint=f"http://127.0.0.1:{port}/v1/traces"))
        p.add_span_processor(bsp)
        before = BSP_DROPS.count

        def close() -> dict[str, float]:
            p.shutdown()
            return {"bsp_dropped": BSP_DROPS.count - before}

        def drain() -> None:
            p.force_flush(10_000)

        batch = bsp._batch_processor

        def settle() -> None:
            # An export the task set off (the queue reached a batch) runs to
            # its end, untimed; the queue itself carries over to (b)'s next
            # task, so BSP batches as it would for a running agent (a flush
            # per task would export 91 spans at a time, all untimed).
            deadline = time.monotonic() + 10
            while batch._worker_awaken.is_set() and time.monotonic() < deadline:
                time.sleep(0.0005)

        return Setup(p, close, drain=drain, settle=settle)

    return make


def _spanvisor(sink: BaseSink, queue_size: int | None = None, stamp: str = "auto") -> Setup:
    p = TracerProvider(resource=Resource.create({"service.name": "bench"}), shutdown_on_exit=False)
    config = _config()
    if queue_size is not None:
        config = config.with_values(queue_size=queue_size)
    proc = SpanvisorSpanProcessor(sinks=[sink], config=config.with_values(stamp_spans=stamp))
    proc.pipeline.wait_ready(10)
    p.add_span_processor(proc)

    def close() -> dict[str, float]:
        st = proc.pipeline.stats
        st.sync_inbox_drops()
        out = {
            "inbox_left": st.value("inbox_depth"),
            "events": st.total("events_emitted_total"),
            "dropped_inbox": st.value("dropped_total", reason="inbox_full", sink=""),
            "dropped_queue": st.total("dropped_total") - st.value("dropped_total", reason="inbox_full", sink=""),
        }
        # A stalled sink never acknowledges, so a full flush would wait its
        # whole deadline: shut the pipeline down with a short one instead.
        proc.pipeline.shutdown(0.3)
        if isinstance(sink, CountingSink):
            out["delivered"] = sink.delivered
        return out

    def drain() -> None:
        # Until the inbox is worked off (a stalled sink never acknowledges,
        # so a flush would wait its whole deadline).
        deadline = time.monotonic() + 10
        while proc.pipeline.stats.value("inbox_depth") > 0 and time.monotonic() < deadline:
            time.sleep(0.002)

    return Setup(p, close, drain=drain)


def setup_stalled() -> Setup:
    # A short sink queue, so the stalled sink's queue is full (and dropping)
    # for most of the run rather than only after 10,000 events.
    return _spanvisor(StalledSink(), queue_size=STALLED_QUEUE)


def setup_stalled_stamping() -> Setup:
    # What another exporter on the provider would turn on (auto), forced
    # here so that no other exporter's own cost is in the figure.
    return _spanvisor(StalledSink(), queue_size=STALLED_QUEUE, stamp="on")


def setup_memory() -> Setup:
    return _spanvisor(CountingSink())


class IdlePipeline(Pipeline):
    """A pipeline whose thread never starts: spans pile up in the inbox.

    With it, only the hooks' own work runs on the agent thread: no pipeline
    thread competes for the GIL.
    """

    def start(self) -> IdlePipeline:
        return self


def hooks_only(stamp: str) -> Callable[[], Setup]:
    def make() -> Setup:
        p = TracerProvider(resource=Resource.create({"service.name": "bench"}), shutdown_on_exit=False)
        pipe = IdlePipeline(_config().with_values(stamp_spans=stamp), [StalledSink()])
        p.add_span_processor(SpanvisorSpanProcessor(pipeline=pipe))
        # Empty the inbox between tasks, as the pipeline thread would, so
        # that spans piling up do not make the garbage collector's passes
        # (which run on the agent thread) ever longer. Outside the timed
        # region: freeing what the entries held is not counted here.
        return Setup(p, lambda: {}, pipe._inbox.clear)

    return make


# -- measuring --------------------------------------------------------------------------


@dataclass
class Result:
    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    gc: list[float] = field(default_factory=list)
    full_gcs: list[int] = field(default_factory=list)
    # --method tasks: involuntary context switches of the agent thread
    # during each task (another process preempted it).
    preempted: list[int] = field(default_factory=list)
    extra: list[dict[str, float]] = field(default_factory=list)


class GcClock:
    """CPU time of the garbage collections that run on one thread.

    A collection runs on whichever thread's allocation crosses the
    threshold; ``gc.callbacks`` are called on that thread at its start and
    stop, so the thread's own CPU clock times it.
    """

    def __init__(self) -> None:
        self.thread = 0
        self.ns = 0
        self.full = 0
        self._t0 = 0

    def reset(self, thread: int) -> None:
        self.thread, self.ns, self.full = thread, 0, 0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if threading.get_ident() != self.thread:
            return
        if phase == "start":
            self._t0 = time.thread_time_ns()
        else:
            self.ns += time.thread_time_ns() - self._t0
            self.full += info.get("generation") == 2


GC_CLOCK = GcClock()


def measure(s: Setup, tasks: int, paced: bool, keep_gc: bool = False) -> tuple[float, float, float, int]:
    """(wall ns/span, agent-thread CPU ns/span, of which in gc, full
    collections on the agent thread) for one block of tasks on one
    configuration."""
    tracer = s.provider.get_tracer("bench")
    # Every block starts from the same heap: none pays for the garbage the
    # previous one left (outside the timed region). Then, unless --gc, the
    # collector is off while the block runs: where a collection falls is
    # the largest source of noise between blocks (one full collection is
    # worth a thousand spans' hooks), and its cost depends on the whole
    # process's heap, not on the configuration.
    gc.collect()
    GC_CLOCK.reset(threading.get_ident())
    wall = cpu = 0
    clock, thread_clock = time.perf_counter_ns, time.thread_time_ns
    if not keep_gc:
        gc.disable()
    try:
        for i in range(tasks):
            c0, t0 = thread_clock(), clock()
            run_task(tracer, i)
            wall += clock() - t0
            cpu += thread_clock() - c0
            s.between()
            if paced:
                time.sleep(PACE_S)
    finally:
        gc.enable()
    gc_ns, full = GC_CLOCK.ns, GC_CLOCK.full
    GC_CLOCK.reset(0)
    s.drain()
    n = tasks * SPANS_PER_TASK
    return wall / n, cpu / n, gc_ns / n, full


def start_endpoint() -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen([sys.executable, "-c", ENDPOINT_CODE], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    port = int(proc.stdout.readline())
    return proc, port


def pipeline_cost(tasks: int, reps: int) -> float:
    """CPU ns per span on the pipeline thread (tracker, no sink work).

    The pipeline is not started, so the spans wait in its inbox; then one
    pump on this thread runs the tracker over all of them, timed alone.
    """
    vals = []
    for _ in range(reps):
        p = TracerProvider(resource=Resource.create({"service.name": "bench"}), shutdown_on_exit=False)
        pipe = IdlePipeline(_config(), [StalledSink()])
        p.add_span_processor(SpanvisorSpanProcessor(pipeline=pipe))
        tracer = p.get_tracer("bench")
        for i in range(tasks):
            run_task(tracer, i)
        c0 = time.thread_time_ns()
        pipe._pump()
        vals.append((time.thread_time_ns() - c0) / (tasks * SPANS_PER_TASK))
    return statistics.median(vals)


def _top(prof: cProfile.Profile, n: int = 20) -> str:
    buf = io.StringIO()
    pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(n)
    return buf.getvalue()


def profile_stalled(tasks: int) -> str:
    """cProfile of the agent thread under (c)."""
    s = setup_stalled()
    tracer = s.provider.get_tracer("bench")
    for i in range(5):
        run_task(tracer, i)
    prof = cProfile.Profile()
    prof.enable()
    for i in range(tasks):
        run_task(tracer, i)
    prof.disable()
    s.close()
    return _top(prof)


def profile_pipeline(tasks: int) -> str:
    """cProfile of one pump of the pipeline thread over ``tasks`` tasks."""
    p = TracerProvider(resource=Resource.create({"service.name": "bench"}), shutdown_on_exit=False)
    pipe = IdlePipeline(_config(), [StalledSink()])
    p.add_span_processor(SpanvisorSpanProcessor(pipeline=pipe))
    tracer = p.get_tracer("bench")
    for i in range(tasks):
        run_task(tracer, i)
    prof = cProfile.Profile()
    prof.enable()
    pipe._pump()
    prof.disable()
    return _top(prof)


def _keys(only: str) -> list[str]:
    keys = ["a", "b", "e", "f", "c", "s", "d"]
    if only:
        keep = {"a", "b", *only.split(",")}
        keys = [k for k in keys if k in keep]
    return keys


def run_rounds(
    args: argparse.Namespace, keys: list[str], reps: int, burst_tasks: int, paced_tasks: int
) -> tuple[dict[tuple[str, str], Result], str]:
    """Every configuration built and warmed up in this process, then
    ``reps`` interleaved rounds; and where the process was pinned."""
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    pinned = not args.no_pin and len(cpus) >= 2
    if pinned:
        # Every thread of this process (the agent's, BSP's worker, the
        # pipeline's: all made after this) on one CPU, the endpoint on
        # another. Whether a background thread happened to run beside the
        # agent on the other core, or took turns with it, changed the
        # agent thread's CPU per span from one run to the next.
        os.sched_setaffinity(0, {cpus[-1]})
    endpoint, port = start_endpoint()
    if pinned:
        os.sched_setaffinity(endpoint.pid, {cpus[0]})
    every: dict[str, Callable[[], Setup]] = {
        "a": setup_none,
        "b": setup_otlp(port),
        "e": hooks_only(stamp="auto"),
        "f": hooks_only(stamp="on"),
        "c": setup_stalled,
        "s": setup_stalled_stamping,
        "d": setup_memory,
    }
    configs = {k: every[k] for k in keys}
    results: dict[tuple[str, str], Result] = {}
    gc.callbacks.append(GC_CLOCK)
    setups: dict[str, Setup] = {}
    try:
        for key in keys:  # built once, warmed up: first-call costs, caches
            setups[key] = configs[key]()
            tracer = setups[key].provider.get_tracer("bench")
            for i in range(10):
                run_task(tracer, i)
                setups[key].between()
            setups[key].drain()
        for _ in range(WARM_ROUNDS):  # untimed: every configuration in its steady state
            for key in keys:
                measure(setups[key], burst_tasks, paced=False, keep_gc=args.gc)
        if args.method == "tasks":
            results = run_cycles(args, setups, keys, reps)
        for rep in range(reps if args.method == "blocks" else 0):
            # Rotated each repetition: no configuration always runs right
            # after the same other one.
            order = keys[rep % len(keys) :] + keys[: rep % len(keys)]
            for mode, tasks in (("burst", burst_tasks), ("paced", paced_tasks)):
                for key in order:
                    wall, cpu, gc_ns, full = measure(setups[key], tasks, paced=mode == "paced", keep_gc=args.gc)
                    r = results.setdefault((mode, key), Result())
                    r.wall.append(wall)
                    r.cpu.append(cpu)
                    r.gc.append(gc_ns)
                    r.full_gcs.append(full)
        for key in keys:
            extra = setups.pop(key).close()
            for mode in ("burst", "paced"):
                results[(mode, key)].extra.append(extra)
    finally:
        for s in setups.values():
            s.close()
        gc.callbacks.remove(GC_CLOCK)
        endpoint.terminate()
        endpoint.wait(5)
    return results, ("pinned to CPU " + str(cpus[-1]) if pinned else "not pinned")


def run_cycles(
    args: argparse.Namespace, setups: dict[str, Setup], keys: list[str], cycles: int
) -> dict[tuple[str, str], Result]:
    """``--method tasks``: one task of every configuration in a shuffled
    order, a burst cycle then a paced one, ``cycles`` times; each task timed
    alone on the agent thread's CPU clock. A configuration's tasks and its
    neighbours' run within a few tens of milliseconds of each other, so the
    machine's drift (other processes' load, the CPU's speed) hits all of
    them alike and cancels in the differences x-a and b-a taken within one
    cycle."""
    results: dict[tuple[str, str], Result] = {}
    rng = random.Random(len(keys) * 7919 + cycles)
    order = list(keys)
    thread_clock, clock = time.thread_time_ns, time.perf_counter_ns
    tracers = {k: setups[k].provider.get_tracer("bench") for k in keys}
    settles = {k: setups[k].settle or setups[k].drain for k in keys}
    me = threading.get_ident()
    block = args.block
    for _ in range(cycles):
        for mode in ("burst", "paced"):
            # A shuffled order, not a rotation: with a rotation each
            # configuration would mostly follow the same neighbour.
            rng.shuffle(order)
            # One collection a cycle, outside the timed tasks, and the
            # collector off inside it (unless --gc), as for the blocks.
            gc.collect()
            if not args.gc:
                gc.disable()
            try:
                for key in order:
                    s, tracer = setups[key], tracers[key]
                    r = results.setdefault((mode, key), Result())
                    for i in range(BLOCK_WARM):
                        # Untimed: this configuration's code and data back in
                        # the caches after the previous configuration's, as in
                        # an agent that runs one configuration all along.
                        run_task(tracer, i)
                        s.between()
                        if mode == "paced":
                            time.sleep(PACE_S)
                    for i in range(block):
                        GC_CLOCK.reset(me)
                        ivcsw = resource.getrusage(RUSAGE_THREAD).ru_nivcsw
                        c0, t0 = thread_clock(), clock()
                        run_task(tracer, i)
                        wall, cpu = clock() - t0, thread_clock() - c0
                        ivcsw = resource.getrusage(RUSAGE_THREAD).ru_nivcsw - ivcsw
                        gc_ns, full = GC_CLOCK.ns, GC_CLOCK.full
                        GC_CLOCK.reset(0)
                        s.between()
                        if mode == "paced":
                            time.sleep(PACE_S)
                        r.wall.append(wall / SPANS_PER_TASK)
                        r.cpu.append(cpu / SPANS_PER_TASK)
                        r.gc.append(gc_ns / SPANS_PER_TASK)
                        r.full_gcs.append(full)
                        r.preempted.append(ivcsw)
                    settles[key]()
            finally:
                gc.enable()
    return results


def _save(path: str, results: dict[tuple[str, str], Result], pinned_to: str) -> None:
    with open(path, "w") as f:
        json.dump({"pinned": pinned_to, "results": {f"{m}/{k}": vars(r) for (m, k), r in results.items()}}, f)


def _load(path: str) -> tuple[dict[tuple[str, str], Result], str]:
    with open(path) as f:
        got = json.load(f)
    out = {}
    for name, fields in got["results"].items():
        mode, key = name.split("/")
        out[(mode, key)] = Result(**fields)
    return out, str(got["pinned"])


def _pool(by_process: list[dict[tuple[str, str], Result]]) -> dict[tuple[str, str], Result]:
    """The processes' rounds as one run's (each round's differences stay
    within its own process)."""
    out: dict[tuple[str, str], Result] = {}
    for results in by_process:
        for k, r in results.items():
            p = out.setdefault(k, Result())
            p.wall += r.wall
            p.cpu += r.cpu
            p.gc += r.gc
            p.full_gcs += r.full_gcs
            p.preempted += r.preempted
            p.extra += r.extra
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Cost per span on the agent's thread.")
    ap.add_argument(
        "--method",
        choices=("tasks", "blocks"),
        default="tasks",
        help="tasks: every configuration's tasks interleaved one by one (default); "
        "blocks: the fifth round's rounds of blocks of 10/15 tasks",
    )
    ap.add_argument(
        "--block",
        type=int,
        default=BLOCK,
        help=f"--method tasks: timed tasks a configuration runs in a row, after an untimed one (default {BLOCK})",
    )
    ap.add_argument(
        "--reps",
        type=int,
        default=0,
        help=f"interleaved rounds: cycles of one task each (default {CYCLES}) or rounds of blocks (default {REPS})",
    )
    ap.add_argument("--quick", action="store_true", help="fewer spans and reps, for a smoke run")
    ap.add_argument("--profile", action="store_true", help="cProfile the agent thread under (c) and the pipeline")
    ap.add_argument(
        "--gc", action="store_true", help="leave the garbage collector on during the timed blocks (noisier)"
    )
    ap.add_argument("--only", default="", help="comma-separated configuration keys to run (a and b always run)")
    ap.add_argument(
        "--no-pin", action="store_true", help="do not pin this process to one CPU and the endpoint to another"
    )
    ap.add_argument("--raw", default="", help="write every round's figures to this JSON file")
    ap.add_argument(
        "--processes",
        type=int,
        default=PROCESSES,
        help=f"fresh processes the rounds are split among, one after another (default {PROCESSES})",
    )
    ap.add_argument("--child", default="", help=argparse.SUPPRESS)  # one process's rounds, as JSON, to this file
    args = ap.parse_args(argv)
    bsp_log = logging.getLogger("opentelemetry.sdk._shared_internal")
    bsp_log.addHandler(BSP_DROPS)
    bsp_log.propagate = False
    logging.getLogger("spanvisor").setLevel(logging.CRITICAL)  # drops are expected under (c); counted below
    burst_tasks, paced_tasks = (BURST_TASKS, PACED_TASKS) if not args.quick else (4, 2)
    # A child gets its share of the rounds as --reps (with --quick passed on).
    quick_reps = 6 if args.method == "blocks" else 24
    reps = args.reps or (quick_reps if args.quick else REPS if args.method == "blocks" else CYCLES)
    processes = max(1, min(args.processes, reps)) if not args.child else 1
    keys = _keys(args.only)
    t_start = time.monotonic()
    if processes == 1:
        results, pinned_to = run_rounds(args, keys, reps, burst_tasks, paced_tasks)
        by_process = [results]
        if args.child:
            _save(args.child, results, pinned_to)
            return 0
    else:
        # Each share of the rounds in a fresh process, one after another:
        # what one process's heap layout does to its configurations' figures
        # averages out over several, where one process gave it to every
        # round of a run (see benchmarks/README.md).
        by_process, pinned_to = [], ""
        share = [reps // processes + (i < reps % processes) for i in range(processes)]
        for n in share:
            with tempfile.NamedTemporaryFile(suffix=".json") as tmp:
                child = [*(argv if argv is not None else sys.argv[1:]), "--reps", str(n), "--child", tmp.name]
                subprocess.run([sys.executable, __file__, *child], check=True)
                got, pinned_to = _load(tmp.name)
                by_process.append(got)
        results = _pool(by_process)
    elapsed = time.monotonic() - t_start
    print(
        f"spanvisor bench_processor: python {platform.python_version()}, {os.cpu_count()} CPUs, "
        f"{reps} reps in {processes} process{'es' if processes > 1 else ''}, "
        + (
            f"{burst_tasks}/{paced_tasks} tasks x {SPANS_PER_TASK} spans per rep (burst/paced), "
            if args.method == "blocks"
            else f"method tasks: 1 untimed + {args.block} timed tasks of {SPANS_PER_TASK} spans per configuration "
            "per rep, burst and paced, "
        )
        + f"{pinned_to}, gc {'on' if args.gc else 'off'} in blocks, {elapsed:.0f} s"
    )
    report(results, keys, by_process, args.block if args.method == "tasks" else 0)
    if args.raw:
        with open(args.raw, "w") as f:
            json.dump(
                {f"{m}/{k}": {"cpu": r.cpu, "wall": r.wall, "preempted": r.preempted} for (m, k), r in results.items()},
                f,
            )
    pipe_ns = pipeline_cost(burst_tasks, min(reps, REPS))
    print()
    print(
        f"pipeline thread (tracker only, no sinks): {pipe_ns:,.0f} CPU ns per span, "
        f"so one pipeline keeps up with about {1e9 / pipe_ns:,.0f} spans/s of this shape"
    )
    if args.profile:
        print()
        print("cProfile of the agent thread under (c), burst, sorted by own time:")
        print(profile_stalled(burst_tasks))
        print("cProfile of the pipeline thread (one pump over the same spans), sorted by own time:")
        print(profile_pipeline(burst_tasks))
    return 0


def paired_ratio(xs: list[float], as_: list[float], bs: list[float]) -> tuple[float, float, float]:
    """(x-a)/(b-a) as median(x-a) / median(b-a), the differences paired
    within each round (measured next to each other, so the machine's drift
    cancels), and the quartiles of that ratio over bootstrap resamples of
    the rounds. A median of per-round ratios divides by one small noisy
    difference each round and has heavy tails: it moved by tenths."""
    dx = [x - a for x, a in zip(xs, as_, strict=True)]
    db = [b - a for b, a in zip(bs, as_, strict=True)]

    def ratio(idx: Sequence[int]) -> float:
        den = statistics.median(db[i] for i in idx)
        return statistics.median(dx[i] for i in idx) / den if den else math.nan

    n = len(dx)
    rng = random.Random(0)
    boot = sorted(ratio([rng.randrange(n) for _ in range(n)]) for _ in range(BOOTSTRAP))
    q1, _, q3 = _quartiles(boot)
    return ratio(range(n)), q1, q3


def _quantile(vals: Sequence[float], p: float) -> float:
    """The ``p`` quantile of ``vals``, interpolated between order statistics."""
    v = sorted(vals)
    at = p * (len(v) - 1)
    lo = int(at)
    hi = min(lo + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (at - lo)


def quantile_ratio(xs: list[float], as_: list[float], bs: list[float], p: float) -> float:
    """(Qx-Qa)/(Qb-Qa), Q the ``p`` quantile of each configuration's
    per-task CPU over the whole run, unpaired: printed beside the paired
    ratio as a second reading of the same tasks (on a loaded machine the
    low part of each distribution is what a task costs when left alone;
    with no disturbance every quantile gives the same differences)."""
    qa = _quantile(as_, p)
    den = _quantile(bs, p) - qa
    return (_quantile(xs, p) - qa) / den if den else math.nan


def _quartiles(vals: list[float]) -> tuple[float, float, float]:
    if len(vals) < 2:
        return vals[0], vals[0], vals[0]
    q1, q2, q3 = statistics.quantiles(vals, n=4, method="inclusive")
    return q1, q2, q3


def by_cycle(results: dict[tuple[str, str], Result], block: int) -> dict[tuple[str, str], Result]:
    """``--method tasks``: one figure a cycle and configuration, the median
    of its ``block`` tasks (what the ratios pair, as a round's block of the
    blocks method): a task that another process or the host disturbed,
    which only ever adds time, moves it far less than it moves a mean."""

    def medians(vals: list[float]) -> list[float]:
        return [statistics.median(vals[i : i + block]) for i in range(0, len(vals) - block + 1, block)]

    out = {}
    for k, r in results.items():
        full = [sum(r.full_gcs[i : i + block]) for i in range(0, len(r.full_gcs), block)]
        out[k] = Result(medians(r.wall), medians(r.cpu), medians(r.gc), full, extra=r.extra)
    return out


def report(
    results: dict[tuple[str, str], Result],
    keys: list[str],
    by_process: list[dict[tuple[str, str], Result]],
    block: int = 0,
) -> None:
    """The table and the ratios; ``block`` > 0: ``--method tasks``, whose
    tasks are read as one figure a cycle, the median of that cycle's
    ``block`` tasks of each configuration (see :func:`by_cycle`)."""
    tasks = results
    if block:
        results = by_cycle(results, block)
        by_process = [by_cycle(p, block) for p in by_process]
    wall = {k: statistics.median(r.wall) for k, r in results.items()}
    cpu = {k: statistics.median(r.cpu) for k, r in results.items()}
    gc_ns = {k: statistics.fmean(r.gc) for k, r in results.items()}
    full = {k: sum(r.full_gcs) for k, r in results.items()}
    print()
    header = (
        f"{'mode':6} {'configuration':40} {'wall ns/span':>12} {'+ over (a)':>10} "
        f"{'CPU ns/span':>11} {'+ over (a)':>10} {'of it gc':>8} {'full gcs':>8}  notes"
    )
    print(header)
    print("-" * len(header))
    md = [
        "| mode | configuration | wall ns/span | added | agent-thread CPU ns/span | added "
        "| of it in gc (agent thread) | full gcs (agent thread) | notes |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for mode in ("burst", "paced"):
        for key in keys:
            k, base = (mode, key), (mode, "a")
            w, c = wall[k], cpu[k]
            dw, dc = w - wall[base], c - cpu[base]
            notes = _notes(results[k].extra)
            print(
                f"{mode:6} {LABELS[key]:40} {w:12,.0f} {dw:+10,.0f} {c:11,.0f} {dc:+10,.0f} "
                f"{gc_ns[k]:8,.0f} {full[k]:8}  {notes}"
            )
            md.append(
                f"| {mode} | {LABELS[key]} | {w:,.0f} | {dw:+,.0f} | {c:,.0f} | {dc:+,.0f} "
                f"| {gc_ns[k]:,.0f} | {full[k]} | {notes} |"
            )
    print()
    ratios = []
    for mode in ("burst", "paced"):
        a, b = results[(mode, "a")], results[(mode, "b")]
        for key in keys[2:]:
            x = results[(mode, key)]
            parts = []

            for name, field_name in (("CPU", "cpu"), ("wall", "wall")):
                xs, as_, bs = getattr(x, field_name), getattr(a, field_name), getattr(b, field_name)
                r, q1, q3 = paired_ratio(xs, as_, bs)
                parts.append(f"{name} {r:.2f} [{q1:.2f}-{q3:.2f}]")
            if block:
                # Another reading of the same tasks, unpaired: each
                # configuration's low quantile over all its tasks.
                t = [tasks[(mode, k)].cpu for k in (key, "a", "b")]
                parts.append(f"CPU at q10 of all tasks {quantile_ratio(*t, 0.1):.2f}")
            if len(by_process) > 1:
                # How far one process's rounds alone would have put it.
                each = [paired_ratio(p[(mode, key)].cpu, p[(mode, "a")].cpu, p[(mode, "b")].cpu)[0] for p in by_process]
                parts.append("CPU by process " + " ".join(f"{v:.2f}" for v in each))
            ratios.append(f"{mode}: ({key}-a)/(b-a) = " + ", ".join(parts))
    if block:
        print(
            f"ratios (x-a)/(b-a): median over the cycles of x-a, over the median of b-a, each difference within "
            f"one cycle between the medians of its {block} tasks of each configuration [quartiles of the same "
            "ratio over bootstrap resamples of the cycles]"
        )
    else:
        print(
            "ratios (x-a)/(b-a): median over the rounds of x-a, over the median of b-a, each difference within "
            "one round [quartiles of the same ratio over bootstrap resamples of the rounds]"
        )
    print("\n".join(ratios))
    print()
    print("markdown:")
    print()
    print("\n".join(md))
    print()
    print("\n".join(f"- {x}" for x in ratios))


def _notes(extras: list[dict[str, float]]) -> str:
    if not extras or not extras[0]:
        return ""
    keys = extras[0].keys()
    parts = []
    for k in keys:
        vals = [e.get(k, 0) for e in extras]
        parts.append(f"{k}={statistics.median(vals):,.0f}")
    return ", ".join(parts)


if __name__ == "__main__":
    sys.exit(main())
