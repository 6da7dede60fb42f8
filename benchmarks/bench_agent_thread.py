"""What the agent's thread pays per span, as a user runs it.

Run: ``.venv/bin/python benchmarks/bench_agent_thread.py`` (about 20 s on
a loaded 2-core machine). Options: ``--cycles N`` (default 120),
``--block N`` (tasks a configuration runs a cycle, default 4), ``--only``
(configuration keys), ``--raw FILE``, ``--quick`` (30 cycles).

``bench_processor.py`` measures the hooks with the collector off and no
pipeline beside them, which is what the hooks cost but not what a user
pays. Here every configuration runs as in an agent's process: the garbage
collector **on**, spanvisor's pipeline thread **running**, BSP's worker
exporting to a local OTLP/HTTP endpoint (another process), nothing pinned.

The agent: an ``invoke_agent`` root and 50 ``chat`` children, each with an
event and its usage set at the end (the shape an outside measurement used).

Configurations:

* (a) the SDK alone: a TracerProvider with no processor;
* (b) BatchSpanProcessor + OTLP/HTTP exporter, at the SDK's defaults;
* (s) ``SpanvisorSpanProcessor()`` at its defaults (``Config.load(env={})``:
  the console sink, written to /dev/null here), its pipeline running;
* (h) spanvisor's hooks alone: the same processor on a pipeline whose thread
  never runs, its inbox emptied between tasks (untimed);
* (l) Langfuse's ``LangfuseSpanProcessor`` and (g) Logfire configured with
  ``send_to_logfire=False`` exporting OTLP/HTTP to the same endpoint: only
  when importable in this interpreter (``make bench-peers`` builds their
  environments), else left out and said so.

Method. Each configuration runs in a process of its own, so that the
collections one triggers are its own (the collector's counters are
process-wide: in one process every configuration would pay part of the
others'). Every process imports the same modules, so their heaps start
alike. All start at once, warm up (20 tasks), collect once and wait; then
``--cycles`` cycles each ask every configuration, in a shuffled order, to
run ``--block`` tasks back to back, timed on the agent thread's CPU clock
(``time.thread_time_ns``), a process at a time: the machine's drift hits
all configurations alike within a cycle. A ``gc.callbacks`` clock on the
agent thread counts and times the collections that run there, by
generation. At the end each process waits for its background work (BSP's
flush, the pipeline's inbox worked off) and reports every thread's CPU
since its first timed task (``pthread_getcpuclockid``), per span.

Reported per configuration: the agent thread's CPU per span outside
collections (the median over the cycles: a task another process disturbed
moves it little) plus in them (the collections' CPU over the whole run per
span: a mean, as the user pays it; a full collection falls in one block of
many), collections per 1,000 spans by generation, and every thread's CPU
per span. Ratios (x-a)/(b-a): of what the agent thread pays (the median of
the paired differences outside collections plus the difference of the
means in them, with bootstrap quartiles over the cycles), of the part
outside collections alone (``bench_processor``'s ``paired_ratio``: the
hooks-alone goal's reading, the collector's work left out), and of every
thread's CPU. The load average before and after.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import random
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from bench_processor import IdlePipeline, StalledSink, paired_ratio, start_endpoint

CHILDREN = 50
SPANS = CHILDREN + 1
WARM = 20
CYCLES = 120
QUICK_CYCLES = 30
BLOCK = 4
BOOTSTRAP = 400
LABELS = {
    "a": "(a) SDK alone",
    "b": "(b) + BatchSpanProcessor + OTLP/HTTP",
    "s": "(s) + SpanvisorSpanProcessor(), defaults",
    "h": "(h) spanvisor's hooks alone",
    "l": "(l) + Langfuse's span processor",
    "g": "(g) Logfire (send_to_logfire=False) + OTLP",
}
PEERS = {"l": "langfuse._client.span_processor", "g": "logfire"}


def run_task(tracer: Any, n: int) -> None:
    """An agent task: a root and 50 model calls, an event on each."""
    with tracer.start_as_current_span(
        "invoke_agent rivet",
        attributes={
            "gen_ai.operation.name": "invoke_agent",
            "gen_ai.agent.name": "rivet",
            "agent.task.name": f"Answer ticket {n}",
        },
    ):
        for i in range(CHILDREN):
            with tracer.start_as_current_span(
                "chat gpt-4o",
                attributes={
                    "gen_ai.operation.name": "chat",
                    "gen_ai.provider.name": "openai",
                    "gen_ai.request.model": "gpt-4o",
                },
            ) as call:
                call.add_event("gen_ai.choice", {"index": 0, "finish_reason": "stop"})
                call.set_attribute("gen_ai.response.model", "gpt-4o-2024-08-06")
                call.set_attribute("gen_ai.usage.input_tokens", 1_200 + 40 * i)
                call.set_attribute("gen_ai.usage.output_tokens", 180)


# -- one configuration, in its own process -----------------------------------------


class GcClock:
    """Collections on one thread: count and CPU ns by generation."""

    def __init__(self) -> None:
        self.me = threading.get_ident()
        self.count = [0, 0, 0]
        self.ns = [0, 0, 0]
        self._t0 = 0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if threading.get_ident() != self.me:
            return
        if phase == "start":
            self._t0 = time.thread_time_ns()
        else:
            g = info["generation"]
            self.count[g] += 1
            self.ns[g] += time.thread_time_ns() - self._t0


def _thread_cpu() -> dict[str, int]:
    out = {}
    for t in threading.enumerate():
        try:
            out[f"{t.name}#{t.ident}"] = time.clock_gettime_ns(time.pthread_getcpuclockid(t.ident))  # type: ignore[arg-type]
        except (OSError, TypeError, ValueError):
            pass
    return out


def _imports() -> None:
    """Every configuration's modules, in every process: heaps start alike."""
    import opentelemetry.exporter.otlp.proto.http.trace_exporter
    import opentelemetry.sdk.trace.export  # noqa: F401

    import spanvisor.otel.processor  # noqa: F401


def _peer_importable(key: str) -> bool:
    try:
        __import__(PEERS[key])
    except Exception:
        return False
    return True


def build(key: str, port: int) -> tuple[Any, Callable[[], object], Callable[[], object]]:
    """(tracer, between tasks, settle at the end) for one configuration."""
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    from spanvisor.config import Config
    from spanvisor.otel.processor import SpanvisorSpanProcessor

    endpoint = f"http://127.0.0.1:{port}/v1/traces"
    nothing: Callable[[], object] = lambda: None  # noqa: E731
    if key == "g":
        import importlib

        logfire: Any = importlib.import_module("logfire")

        logfire.configure(
            send_to_logfire=False,
            console=False,
            service_name="bench",
            additional_span_processors=[BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint))],
        )
        provider: Any = logfire.DEFAULT_LOGFIRE_INSTANCE.config.get_tracer_provider()
        return provider.get_tracer("bench"), nothing, lambda: provider.force_flush(10_000)
    p = TracerProvider(resource=Resource.create({"service.name": "bench"}), shutdown_on_exit=False)
    config = Config.load(env={}, extra=())
    if key == "b":
        p.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    elif key == "l":
        import importlib

        LangfuseSpanProcessor = importlib.import_module(PEERS["l"]).LangfuseSpanProcessor

        p.add_span_processor(
            LangfuseSpanProcessor(
                public_key="pk-lf-bench", secret_key="sk-lf-bench", base_url=f"http://127.0.0.1:{port}"
            )
        )
    elif key == "s":
        proc = SpanvisorSpanProcessor(config=config)
        proc.pipeline.wait_ready(10)
        p.add_span_processor(proc)

        def settle() -> None:
            deadline = time.monotonic() + 10
            while proc.pipeline.stats.value("inbox_depth") > 0 and time.monotonic() < deadline:
                time.sleep(0.002)
            p.force_flush(10_000)

        return p.get_tracer("bench"), nothing, settle
    elif key == "h":
        pipe = IdlePipeline(config, [StalledSink()])
        p.add_span_processor(SpanvisorSpanProcessor(pipeline=pipe))
        return p.get_tracer("bench"), pipe._inbox.clear, nothing
    return p.get_tracer("bench"), nothing, lambda: p.force_flush(10_000)


def child(key: str, port: int) -> None:
    """A configuration's process, driven over stdin: ``run N`` runs N timed
    tasks and answers their figures; ``end`` waits for the background
    work and answers every thread's CPU since the first timed task."""
    proto = os.fdopen(os.dup(1), "w", buffering=1)
    # The console sink's cards go nowhere; the protocol has stdout's old fd.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    _imports()
    if key in PEERS:
        __import__(PEERS[key])
    tracer, between, settle = build(key, port)
    for i in range(WARM):
        run_task(tracer, i)
        between()
    settle()
    gc.collect()
    clock = GcClock()
    gc.callbacks.append(clock)
    thread_clock = time.thread_time_ns
    spans = 0
    threads0, proc0 = _thread_cpu(), time.process_time_ns()
    me = f"{threading.current_thread().name}#{threading.get_ident()}"
    proto.write("ready\n")
    for line in sys.stdin:
        cmd = line.split()
        if cmd[0] == "run":
            n = int(cmd[1])
            ns0, count0 = list(clock.ns), list(clock.count)
            cpu = []
            for i in range(n):
                c0 = thread_clock()
                run_task(tracer, i)
                cpu.append(thread_clock() - c0)
                between()
            spans += n * SPANS
            got = {
                "cpu": sum(cpu) / (n * SPANS),
                "task_median": statistics.median(cpu) / SPANS,
                "gc_ns": [(x - y) / (n * SPANS) for x, y in zip(clock.ns, ns0, strict=True)],
                "gcs": [x - y for x, y in zip(clock.count, count0, strict=True)],
                "spans": n * SPANS,
            }
            proto.write(json.dumps(got) + "\n")
        elif cmd[0] == "end":
            gc.callbacks.remove(clock)
            settle()
            threads1, proc1 = _thread_cpu(), time.process_time_ns()
            others = {
                name.split("#")[0]: (v - threads0.get(name, 0)) / spans for name, v in threads1.items() if name != me
            }
            proto.write(json.dumps({"process": (proc1 - proc0) / spans, "threads": others}) + "\n")
            return


# -- the run ------------------------------------------------------------------------


def _load() -> str:
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "n/a"


def _spawn(key: str, port: int) -> subprocess.Popen[str]:
    cmd = [sys.executable, __file__, "--child", key, str(port)]
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
    assert proc.stdout is not None
    if proc.stdout.readline().strip() != "ready":
        raise SystemExit(f"{LABELS[key]}: its process did not start")
    return proc


def _ask(proc: subprocess.Popen[str], cmd: str) -> dict[str, Any]:
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(cmd + "\n")
    proc.stdin.flush()
    got: dict[str, Any] = json.loads(proc.stdout.readline())
    return got


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="The agent thread's CPU per span, collector on, pipeline running.")
    ap.add_argument("--cycles", type=int, default=CYCLES, help=f"interleaved cycles (default {CYCLES})")
    ap.add_argument("--block", type=int, default=BLOCK, help=f"tasks a configuration runs a cycle (default {BLOCK})")
    ap.add_argument("--only", default="", help="comma-separated keys (a and b always run): s,h,l,g")
    ap.add_argument("--raw", default="", help="every block's figures to this JSON file")
    ap.add_argument("--quick", action="store_true", help=f"{QUICK_CYCLES} cycles")
    ap.add_argument("--child", nargs=2, metavar=("KEY", "PORT"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        child(args.child[0], int(args.child[1]))
        return 0
    cycles = QUICK_CYCLES if args.quick else args.cycles
    keys = ["a", "b", "s", "h", "l", "g"]
    if args.only:
        keys = [k for k in keys if k in {"a", "b", *args.only.split(",")}]
    missing = [k for k in keys if k in PEERS and not _peer_importable(k)]
    keys = [k for k in keys if k not in missing]
    load0, t0 = _load(), time.monotonic()
    endpoint, port = start_endpoint()
    procs: dict[str, subprocess.Popen[str]] = {}
    blocks: dict[str, list[dict[str, Any]]] = {k: [] for k in keys}
    ends: dict[str, dict[str, Any]] = {}
    rng = random.Random(cycles * 31 + args.block)
    try:
        for k in keys:
            procs[k] = _spawn(k, port)
        order = list(keys)
        for _ in range(cycles):
            rng.shuffle(order)
            for k in order:
                blocks[k].append(_ask(procs[k], f"run {args.block}"))
        for k in keys:
            ends[k] = _ask(procs[k], "end")
    finally:
        for proc in procs.values():
            proc.kill()
            proc.wait(5)
        endpoint.terminate()
        endpoint.wait(5)
    print(
        f"spanvisor bench_agent_thread: python {platform.python_version()}, {os.cpu_count()} CPUs, "
        f"{cycles} cycles x {args.block} tasks of {SPANS} spans a configuration, a process each, "
        f"collector on, pipeline running, not pinned; load {load0} before, {_load()} after; "
        f"{time.monotonic() - t0:.0f} s"
    )
    for k in missing:
        print(f"{LABELS[k]}: left out, {PEERS[k]} not importable here (make bench-peers)")
    report(blocks, ends, keys)
    if args.raw:
        with open(args.raw, "w") as f:
            json.dump({"blocks": blocks, "ends": ends}, f)
    return 0


def _outside(b: dict[str, Any]) -> float:
    return float(b["cpu"]) - float(sum(b["gc_ns"]))


def _gc_mean(bs: list[dict[str, Any]]) -> float:
    """CPU in collections per span over the whole run: a mean, as a user pays it."""
    return float(sum(sum(b["gc_ns"]) * b["spans"] for b in bs)) / float(sum(b["spans"] for b in bs))


def user_ratio(xs: list[dict[str, Any]], as_: list[dict[str, Any]], bs: list[dict[str, Any]]) -> tuple[float, ...]:
    """(x-a)/(b-a) of what the agent thread pays: the median of the paired
    differences outside collections plus the difference of the mean CPU in
    them, with bootstrap quartiles over the cycles."""

    def ratio(idx: list[int]) -> float:
        dx = statistics.median(_outside(xs[i]) - _outside(as_[i]) for i in idx)
        db = statistics.median(_outside(bs[i]) - _outside(as_[i]) for i in idx)
        gx = [xs[i] for i in idx]
        ga, gb = [as_[i] for i in idx], [bs[i] for i in idx]
        den = db + _gc_mean(gb) - _gc_mean(ga)
        return (dx + _gc_mean(gx) - _gc_mean(ga)) / den if den else math.nan

    n = len(xs)
    rng = random.Random(0)
    boot = sorted(ratio([rng.randrange(n) for _ in range(n)]) for _ in range(BOOTSTRAP))
    return ratio(list(range(n))), boot[len(boot) // 4], boot[3 * len(boot) // 4]


def report(blocks: dict[str, list[dict[str, Any]]], ends: dict[str, dict[str, Any]], keys: list[str]) -> None:
    a, b = blocks["a"], blocks["b"]
    out_a = statistics.median(_outside(x) for x in a)
    gc_a = _gc_mean(a)
    print()
    head = (
        f"{'configuration':44} {'agent thread':>12} {'added':>7} {'outside gc':>10} {'in gc':>6} "
        f"{'gc0/1k':>6} {'gc1/1k':>6} {'gc2/1k':>6} {'all threads':>11} {'added':>8}"
    )
    print(head)
    print("-" * len(head))
    for k in keys:
        r = blocks[k]
        spans = sum(x["spans"] for x in r)
        out = statistics.median(_outside(x) for x in r)
        in_gc = _gc_mean(r)
        gcs = [sum(x["gcs"][g] for x in r) * 1000 / spans for g in range(3)]
        allt = ends[k]["process"]
        print(
            f"{LABELS[k]:44} {out + in_gc:12,.0f} {out + in_gc - out_a - gc_a:+7,.0f} {out:10,.0f} {in_gc:6,.0f} "
            f"{gcs[0]:6.1f} {gcs[1]:6.1f} {gcs[2]:6.2f} {allt:11,.0f} {allt - ends['a']['process']:+8,.0f}"
        )
    print(
        "(CPU ns per span. agent thread: outside gc, the median over the cycles of each block's CPU outside "
        "collections, plus in gc, the CPU of the collections that ran on the agent thread over the whole run "
        "per span; gcN/1k: collections of generation N on the agent thread per 1,000 spans; all threads: "
        "every thread of the process, the background work waited for at the end)"
    )
    print()
    print("background threads, CPU ns per span over the run:")
    for k in keys:
        parts = [f"{n} {v:,.0f}" for n, v in sorted(ends[k]["threads"].items())]
        print(f"  {LABELS[k]:44} " + (", ".join(parts) or "none"))
    print()
    # What a collection costs, apart from how often one runs: a heap that
    # holds more (or younger objects with more references) costs more each.
    print("collections on the agent thread, CPU µs each (generation 0 / 1 / 2):")
    for k in keys[1:]:
        r = blocks[k]
        each = []
        for g in range(3):
            n = sum(x["gcs"][g] for x in r)
            ns = sum(x["gc_ns"][g] * x["spans"] for x in r)
            each.append(f"{ns / n / 1e3:,.1f}" if n else "-")
        print(f"  {LABELS[k]:44} " + " / ".join(each))
    print()
    print("ratios (x-a)/(b-a) [bootstrap quartiles over the cycles]:")
    ea, eb = ends["a"]["process"], ends["b"]["process"]
    for k in keys[2:]:
        x = blocks[k]
        v, q1, q3 = user_ratio(x, a, b)
        o, o1, o3 = paired_ratio([_outside(y) for y in x], [_outside(y) for y in a], [_outside(y) for y in b])
        gx, gb = _gc_mean(x) - gc_a, _gc_mean(b) - gc_a
        allr = (ends[k]["process"] - ea) / (eb - ea) if eb != ea else math.nan
        print(
            f"  {LABELS[k]:44} agent thread {v:.2f} [{q1:.2f}-{q3:.2f}], outside gc {o:.2f} [{o1:.2f}-{o3:.2f}], "
            f"in gc {gx / gb if gb else math.nan:.2f}, all threads {allr:.2f}"
        )


if __name__ == "__main__":
    sys.exit(main())
