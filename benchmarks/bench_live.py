"""The live channel: checkpoint -> Slack through ``spanvisor serve``, and its cost to the agent.

    .venv/bin/python benchmarks/bench_live.py [--quick] [--profile]     # about 65 s; loopback only

1. **Agent-thread cost** of ``t.checkpoint(message, progress=, step=)`` on a
   task's open root, against a plain ``span.add_event`` with the same three
   attributes on an open root span, and against ``t.checkpoint`` with
   ``SPANVISOR_LIVE_CHANNEL=off``. The agent's provider is a real SDK
   TracerProvider with a BatchSpanProcessor and the OTLP/HTTP span exporter
   aimed at a local endpoint (a subprocess on 127.0.0.1 answering 200), so
   the live channel is on, as it is for an agent exporting OTLP. Each
   repetition runs one block per configuration, in an order that rotates
   each repetition; a block is ``--tasks-per-block`` tasks of 100 calls
   (under the SDK's 128 events a span), tasks opened and closed outside the
   timed region, ``gc.collect()`` before each block. Reported: the agent
   thread's CPU (``time.thread_time_ns``) and wall ns per call, medians over
   the blocks, and the per-repetition ratios to ``add_event`` as median and
   quartiles; the agent thread's time in a task's end (``with task`` exit)
   after 100 calls, and in paced tasks (5 checkpoints 20 ms apart, so the
   channel's send thread has sent them before the end, as in an agent that
   waits on its model); the CPU per record of the channel's send thread
   (``spanvisor-live``: queued tuples to SDK log records) and the SDK's log
   batch thread (encoding, POSTing), which the agent does not pay on its
   thread, and theirs while idle. ``--profile`` prints a cProfile of the
   checkpoint calls.
2. **Latency** from ``t.checkpoint(...)`` returning to the fake Slack
   receiving the first ``chat.postMessage``/``chat.update`` that shows that
   checkpoint's message, or a later one of the same task (a parent shows
   the *last* action: a checkpoint overtaken by the next one before Slack
   was edited is shown as that next one; the count of those is printed).
   ``spanvisor serve`` runs as a subprocess (sink slack only, no database)
   against the local fake Slack (tests/fakes). The agent, in this process:
   a real SDK TracerProvider, BatchSpanProcessor + OTLP/HTTP span exporter
   to ``serve`` (default 5 s delay), and the helper's own live channel (an
   OTLP/HTTP log exporter behind the SDK's BatchLogRecordProcessor, set up
   by the helper). ``--tasks`` tasks (20) run at once on their own threads,
   started over 2 s, each with ``--checkpoints`` (10) uniquely worded
   checkpoints 0.4-0.8 s apart; a task stays open until its last checkpoint
   is shown, so no task end flushes a record early. Runs:

   * the SDK's default log export delay (``OTEL_BLRP_SCHEDULE_DELAY`` unset:
     1 s), goal p95 < 2 s;
   * ``OTEL_BLRP_SCHEDULE_DELAY=100``, goal p95 < 0.5 s;

   both with the Slack pacing the serve tests use (``slack_env`` in
   tests/receiver/serve_proc.py: parent edits at most every 200 ms,
   posts every 10 ms a channel), so that the figure is the live channel's
   and not Slack pacing's; then

   * all defaults: the SDK's 1 s delay and the Slack sink's default
     intervals (a parent edited at most every 5 s, by design), each task in
     its own channel (``SPANVISOR_SLACK_ROUTES``), so one channel's
     1 post/s does not delay the parents (``--no-defaults`` skips it).
3. **A task's end with the OTLP endpoint down**: the wall time ``with task``
   exit holds the agent's thread when the endpoint refuses connections, and
   when it accepts them and never answers (not in ``--quick``), with the
   live channel on and off. One task each, so up to the exporter's timeout.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import logging
import os
import platform
import pstats
import random
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "receiver")]

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter  # noqa: E402
from opentelemetry.sdk.resources import Resource  # noqa: E402
from opentelemetry.sdk.trace import TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import BatchSpanProcessor  # noqa: E402
from opentelemetry.trace import Tracer  # noqa: E402
from serve_proc import FakeSlackThread, ServeProcess, slack_env  # type: ignore[import-not-found]  # noqa: E402

from spanvisor.agent import task  # noqa: E402
from spanvisor.otel.live import channel  # noqa: E402
from spanvisor.spans import conventions as cv  # noqa: E402

BLRP_DELAY = "OTEL_BLRP_SCHEDULE_DELAY"
CALLS_PER_TASK = 100
MARK = re.compile(r"lv-(\w)-(\d{2})-(\d{3})")

ENDPOINT_CODE = r"""
import http.server
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
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


def agent_tracer(traces_url: str, blrp_ms: int | None) -> tuple[TracerProvider, Tracer, float | None]:
    """An OTLP agent's provider; its live channel (with the log batch
    processor reading OTEL_BLRP_SCHEDULE_DELAY) is made here, at once."""
    if blrp_ms is None:
        os.environ.pop(BLRP_DELAY, None)
    else:
        os.environ[BLRP_DELAY] = str(blrp_ms)
    provider = TracerProvider(resource=Resource.create({"service.name": "bench-live"}), shutdown_on_exit=False)
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=traces_url, timeout=20)))
    tracer = provider.get_tracer("bench")
    live = channel(tracer)
    if live is None:
        raise SystemExit("no live channel for an OTLP agent: nothing to measure")
    return provider, tracer, _blrp_delay_s(live)


def _blrp_delay_s(live: Any) -> float | None:
    """The delay the channel's log batch processor really uses (SDK internals, best effort)."""
    try:
        lp = live._flush.__self__
        bp = lp._multi_log_record_processor._log_record_processors[0]._batch_processor
        return float(bp._schedule_delay)
    except (AttributeError, IndexError, TypeError):
        return None


def _thread_cpu_ns(names: tuple[str, ...]) -> int:
    total = 0
    for th in threading.enumerate():
        if th.name in names and th.ident is not None:
            try:
                total += time.clock_gettime_ns(time.pthread_getcpuclockid(th.ident))
            except (OSError, ProcessLookupError):
                pass
    return total


SEND_THREADS = ("spanvisor-live", "OtelBatchLogRecordProcessor")


@dataclass
class Costs:
    cpu: dict[str, list[float]] = field(default_factory=dict)
    wall: dict[str, list[float]] = field(default_factory=dict)
    end: dict[str, list[tuple[float, float]]] = field(default_factory=dict)  # (CPU, wall) ns per task end
    paced: dict[str, tuple[float, float, float]] = field(default_factory=dict)
    idle: float = 0.0  # send threads' CPU ns per second, nothing to send


def _block(tracer: Tracer, kind: str, tasks: int, msgs: list[str]) -> tuple[float, float, float, float]:
    """(agent CPU ns/call, wall ns/call, task end CPU ns, task end wall ns) for one block."""
    os.environ["SPANVISOR_LIVE_CHANNEL"] = "off" if kind == "checkpoint, live off" else "auto"
    gc.collect()
    cpu = wall = end_cpu = end_wall = 0
    tc, pc = time.thread_time_ns, time.perf_counter_ns
    for n in range(tasks):
        if kind == "span.add_event":
            root = tracer.start_span("agent.task bench", attributes={cv.TASK_NAME: "bench"})
            c0, w0 = tc(), pc()
            for i, m in enumerate(msgs):
                root.add_event(cv.EVENT_CHECKPOINT, {cv.MESSAGE: m, cv.PROGRESS: float(i), cv.STEP: "apply"})
            cpu, wall = cpu + tc() - c0, wall + pc() - w0
            c0, w0 = tc(), pc()
            root.end()
        else:
            managed = task("bench", agent_id="bench", task_id=f"cost-{n}", tracer=tracer)
            t = managed.__enter__()
            c0, w0 = tc(), pc()
            for i, m in enumerate(msgs):
                t.checkpoint(m, progress=float(i), step="apply")
            cpu, wall = cpu + tc() - c0, wall + pc() - w0
            c0, w0 = tc(), pc()
            managed.__exit__(None, None, None)
        end_cpu, end_wall = end_cpu + tc() - c0, end_wall + pc() - w0
    calls = tasks * len(msgs)
    return cpu / calls, wall / calls, end_cpu / tasks, end_wall / tasks


def paced_tasks(tracer: Tracer, tasks: int) -> dict[str, tuple[float, float, float]]:
    """A task's end and the send threads' work when checkpoints come as an
    agent's do (5, 20 ms apart, the send thread running between them):
    {live on/off: (end CPU ns, end wall ns, send threads' CPU ns per checkpoint)}."""
    out: dict[str, list[tuple[int, int, int]]] = {}
    tc, pc = time.thread_time_ns, time.perf_counter_ns
    for n in range(2 * tasks):
        kind = ("checkpoint, live on", "checkpoint, live off")[n % 2]
        os.environ["SPANVISOR_LIVE_CHANNEL"] = "off" if kind.endswith("off") else "auto"
        sent0 = _thread_cpu_ns(SEND_THREADS)
        managed = task("bench", agent_id="bench", task_id=f"paced-{n}", tracer=tracer)
        t = managed.__enter__()
        for i in range(5):
            t.checkpoint(f"paced {n} {i}", progress=float(i), step="apply")
            time.sleep(0.02)
        time.sleep(0.15)  # the send thread's rounds: nothing is left queued at the end
        c0, w0 = tc(), pc()
        managed.__exit__(None, None, None)
        c1, w1 = tc(), pc()
        time.sleep(0.05)
        out.setdefault(kind, []).append((c1 - c0, w1 - w0, _thread_cpu_ns(SEND_THREADS) - sent0))
    return {
        k: (
            statistics.median(v[0] for v in vs),
            statistics.median(v[1] for v in vs),
            statistics.median(v[2] for v in vs),
        )
        for k, vs in out.items()
    }


def idle_send_cpu(seconds: float) -> float:
    """The send threads' CPU ns per second while no task says anything."""
    c0 = _thread_cpu_ns(SEND_THREADS)
    time.sleep(seconds)
    return (_thread_cpu_ns(SEND_THREADS) - c0) / seconds


def end_when_down(hang: bool) -> tuple[float, float]:
    """Wall seconds a task's end holds the agent's thread when its OTLP
    endpoint refuses connections (or accepts and never answers): (live on, live off)."""
    import socket

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    if hang:
        sock.listen(16)  # accepted by the kernel, never answered
    else:
        sock.close()  # nothing listens: connection refused
    out = []
    for live in ("auto", "off"):
        os.environ["SPANVISOR_LIVE_CHANNEL"] = live
        provider = TracerProvider(shutdown_on_exit=False)  # never shut down: its spans go nowhere
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=f"http://127.0.0.1:{port}/v1/traces")))
        managed = task("down", agent_id="bench", tracer=provider.get_tracer("bench"))
        managed.__enter__().checkpoint("the collector is down")
        time.sleep(0.2)  # the send thread has handed the records to the SDK
        w0 = time.monotonic()
        managed.__exit__(None, None, None)
        out.append(time.monotonic() - w0)
    os.environ.pop("SPANVISOR_LIVE_CHANNEL", None)
    if hang:
        sock.close()
    return out[0], out[1]


def agent_cost(reps: int, tasks: int, profile: bool) -> tuple[Costs, str]:
    endpoint = subprocess.Popen([sys.executable, "-c", ENDPOINT_CODE], stdout=subprocess.PIPE, text=True)
    assert endpoint.stdout is not None
    port = int(endpoint.stdout.readline())
    provider, tracer, _ = agent_tracer(f"http://127.0.0.1:{port}/v1/traces", None)
    kinds = ["span.add_event", "checkpoint, live on", "checkpoint, live off"]
    msgs = [f"checkpoint {i}: rows {i * 17} to {i * 17 + 16}" for i in range(CALLS_PER_TASK)]
    costs = Costs()
    prof_text = ""
    try:
        for kind in kinds:  # warm-up: imports, first-call costs, the channel
            _block(tracer, kind, 2, msgs)
        for rep in range(reps):
            for kind in kinds[rep % 3 :] + kinds[: rep % 3]:
                c, w, ec, ew = _block(tracer, kind, tasks, msgs)
                costs.cpu.setdefault(kind, []).append(c)
                costs.wall.setdefault(kind, []).append(w)
                costs.end.setdefault(kind, []).append((ec, ew))
        costs.paced = paced_tasks(tracer, max(3, tasks))
        costs.idle = idle_send_cpu(1.0)
        if profile:
            os.environ["SPANVISOR_LIVE_CHANNEL"] = "auto"
            prof = cProfile.Profile()
            for _ in range(20):
                with task("bench", agent_id="bench", tracer=tracer) as t:
                    prof.enable()
                    for i, m in enumerate(msgs):
                        t.checkpoint(m, progress=float(i), step="apply")
                    prof.disable()
            buf = io.StringIO()
            pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(15)
            prof_text = buf.getvalue()
    finally:
        os.environ.pop("SPANVISOR_LIVE_CHANNEL", None)
        provider.shutdown()
        endpoint.terminate()
        endpoint.wait(5)
    return costs, prof_text


def quartiles(vals: list[float]) -> tuple[float, float, float]:
    if len(vals) < 2:
        return vals[0], vals[0], vals[0]
    q1, q2, q3 = statistics.quantiles(vals, n=4, method="inclusive")
    return q1, q2, q3


def report_cost(costs: Costs) -> None:
    base = costs.cpu["span.add_event"]
    print(
        f"{'agent thread':24} {'CPU ns/call':>11} {'wall ns/call':>12}  {'CPU ratio to add_event':>26}  "
        f"{'end of a task of 100 (CPU / wall µs)':>36}"
    )
    for kind, cpu in costs.cpu.items():
        q1, q2, q3 = quartiles([x / b for x, b in zip(cpu, base, strict=True)])
        wall = statistics.median(costs.wall[kind])
        ec = statistics.median(e[0] for e in costs.end[kind]) / 1000
        ew = statistics.median(e[1] for e in costs.end[kind]) / 1000
        print(
            f"{kind:24} {statistics.median(cpu):11,.0f} {wall:12,.0f}  {q2:>11.2f}x [{q1:.2f}-{q3:.2f}]  "
            f"{ec:>24,.0f} / {ew:,.0f}"
        )
    on, off = costs.cpu["checkpoint, live on"], costs.cpu["checkpoint, live off"]
    q1, q2, q3 = quartiles([x / y for x, y in zip(on, off, strict=True)])
    print(f"live on / live off, CPU per call: {q2:.2f}x [{q1:.2f}-{q3:.2f}]")
    print("paced tasks (5 checkpoints 20 ms apart; the send thread has sent them before the end):")
    for kind, (ec, ew, _) in costs.paced.items():
        print(f"  {kind}: task end {ec / 1000:,.0f} µs CPU / {ew / 1000:,.0f} µs wall on the agent's thread")
    on_sent, off_sent = costs.paced["checkpoint, live on"][2], costs.paced["checkpoint, live off"][2]
    print(
        f"  off the agent's thread (send thread + SDK log batch thread): {(on_sent - off_sent) / 6 / 1000:,.0f} µs CPU "
        f"per record (a task: start + 5 checkpoints); idle, {costs.idle / 1e6:.2f} ms CPU per second"
    )


# -- latency through serve ------------------------------------------------------


@dataclass
class Said:
    key: tuple[str, int]  # (run label, task number)
    i: int
    at: float  # time.monotonic() after t.checkpoint returned


class SlackWatch:
    """Which checkpoint each task's Slack calls show, read off the fake's call log."""

    def __init__(self, slack: FakeSlackThread) -> None:
        self.slack = slack
        self.seen = 0
        self.shown: dict[tuple[str, int], int] = {}  # highest checkpoint shown
        self.hits: list[tuple[float, tuple[str, int], int]] = []  # (call time, task, checkpoint shown)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            calls = list(self.slack.fake.calls)  # appended on the fake's loop; a copy is a snapshot
            for c in calls[self.seen :]:
                if c.method in ("chat.postMessage", "chat.update") and c.response.get("ok"):
                    for label, k, i in {m.groups() for m in MARK.finditer(str(c.args))}:
                        key = (label, int(k))
                        self.hits.append((c.at, key, int(i)))
                        self.shown[key] = max(self.shown.get(key, -1), int(i))
            self.seen = len(calls)

    def wait_shown(self, key: tuple[str, int], i: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while self.shown.get(key, -1) < i:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)
        return True

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)


def run_tasks(
    watch: SlackWatch, tracer: Tracer, label: str, tasks: int, per_task: int, hold_s: float
) -> tuple[list[float], int, int]:
    """(latencies s, checkpoints overtaken before shown, never shown)."""
    said: list[Said] = []
    rng = random.Random(label)
    lock = threading.Lock()

    def agent(k: int) -> None:
        r = random.Random(f"{label}-{k}")
        time.sleep(2.0 * k / tasks)
        with task(f"live bench {label} {k}", agent_id=f"a{k:02d}", tracer=tracer) as t:
            for i in range(per_task):
                time.sleep(r.uniform(0.4, 0.8))
                t.checkpoint(f"lv-{label}-{k:02d}-{i:03d}", step="work")
                at = time.monotonic()
                with lock:
                    said.append(Said((label, k), i, at))
            # Open until the last one is shown: a task's end flushes its records.
            watch.wait_shown((label, k), per_task - 1, hold_s)

    threads = [threading.Thread(target=agent, args=(k,), daemon=True) for k in range(tasks)]
    rng.shuffle(threads)
    for th in threads:
        th.start()
    for th in threads:
        th.join(120)
    time.sleep(0.1)
    hits = sorted(watch.hits)
    latencies: list[float] = []
    overtaken = missing = 0
    for s in said:
        first = next(((at, j) for at, key, j in hits if key == s.key and j >= s.i and at >= s.at), None)
        if first is None:
            missing += 1
            continue
        latencies.append(first[0] - s.at)
        overtaken += first[1] != s.i
    return latencies, overtaken, missing


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(p / 100 * (len(xs) - 1)))] if xs else float("nan")


def start_serve(base: Path, slack: FakeSlackThread, default_slack: bool, tasks: int) -> ServeProcess:
    env = slack_env(base, slack.base_url, SPANVISOR_SINKS="slack", SPANVISOR_STATE_STORE="memory")
    for leaked in ("SPANVISOR_DATABASE_URL", "SPANVISOR_OTLP_TOKEN", "SPANVISOR_CONTROL_TOKEN", "SLACK_APP_TOKEN"):
        env.pop(leaked, None)
    env.pop(BLRP_DELAY, None)
    if default_slack:
        for paced in ("CHANNEL", "UPDATE", "REPLY"):
            env.pop(f"SPANVISOR_SLACK_{paced}_INTERVAL")
        env["SPANVISOR_SLACK_ROUTES"] = ",".join(f"agent:a{k:02d}=#live-{k:02d}" for k in range(tasks))
    return ServeProcess(base, env)


@dataclass
class Run:
    name: str
    label: str
    blrp_ms: int | None
    default_slack: bool
    goal_s: float | None


RUNS = [
    Run("SDK default log delay, test Slack pacing", "A", None, False, 2.0),
    Run("OTEL_BLRP_SCHEDULE_DELAY=100, test Slack pacing", "B", 100, False, 0.5),
    Run("all defaults (SDK 1 s, Slack edits every 5 s)", "C", None, True, None),
]


def latency(tasks: int, per_task: int, runs: list[Run]) -> list[str]:
    lines = []
    slack = FakeSlackThread()
    watch = SlackWatch(slack)
    tmp = Path(tempfile.mkdtemp(prefix="bench-live-"))
    serves: dict[bool, ServeProcess] = {}
    try:
        for run in runs:
            if run.default_slack not in serves:
                for s in serves.values():
                    s.stop()
                serves = {run.default_slack: start_serve(tmp / run.label, slack, run.default_slack, tasks)}
            serve = serves[run.default_slack]
            provider, tracer, delay = agent_tracer(serve.url, run.blrp_ms)
            t0 = time.monotonic()
            lat, overtaken, missing = run_tasks(watch, tracer, run.label, tasks, per_task, 15.0)
            provider.shutdown()
            took = time.monotonic() - t0
            goal = (
                ""
                if run.goal_s is None
                else f"  goal p95 < {run.goal_s} s: {'met' if pct(lat, 95) < run.goal_s else 'MISSED'}"
            )
            delay_txt = "?" if delay is None else f"{delay * 1000:.0f} ms"
            line = (
                f"{run.name}: log export delay {delay_txt}; {len(lat)} checkpoints, "
                f"p50 {pct(lat, 50) * 1000:,.0f} ms, p95 {pct(lat, 95) * 1000:,.0f} ms, max {max(lat, default=float('nan')) * 1000:,.0f} ms; "
                f"{overtaken} shown as a later one, {missing} never shown ({took:.0f} s){goal}"
            )
            print(line, flush=True)
            lines.append(line)
    finally:
        for s in serves.values():
            s.stop()
        watch.close()
        slack.close()
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="The live channel: checkpoint -> Slack through serve, and its agent cost.")
    ap.add_argument("--tasks", type=int, default=20, help="concurrent tasks in each latency run")
    ap.add_argument("--checkpoints", type=int, default=10, help="checkpoints per task")
    ap.add_argument("--reps", type=int, default=12, help="interleaved repetitions of the cost blocks")
    ap.add_argument("--tasks-per-block", type=int, default=10, help="tasks of 100 calls in one cost block")
    ap.add_argument("--no-defaults", action="store_true", help="skip the run at the Slack sink's default intervals")
    ap.add_argument("--profile", action="store_true", help="cProfile the checkpoint calls with the live channel on")
    ap.add_argument("--quick", action="store_true", help="a smoke run: fewer tasks, checkpoints and reps")
    args = ap.parse_args(argv)
    if args.quick:
        args.tasks, args.checkpoints, args.reps, args.tasks_per_block = 5, 4, 4, 3
    print(
        f"spanvisor bench_live: python {platform.python_version()}, {os.cpu_count()} CPUs, "
        f"load {os.getloadavg()[0]:.1f}",
        flush=True,
    )
    t0 = time.monotonic()
    costs, prof_text = agent_cost(args.reps, args.tasks_per_block, args.profile)
    print(
        f"\nagent-thread cost per call, {args.reps} interleaved reps of "
        f"{args.tasks_per_block} x {CALLS_PER_TASK} calls per configuration ({time.monotonic() - t0:.0f} s):"
    )
    report_cost(costs)
    if prof_text:
        print("\ncProfile of t.checkpoint() with the live channel on, sorted by own time:")
        print(prof_text)
    runs = RUNS[:2] if args.no_defaults else RUNS
    print(
        f"\ncheckpoint returned -> fake Slack call showing it, through serve: "
        f"{args.tasks} tasks x {args.checkpoints} checkpoints per run",
        flush=True,
    )
    latency(args.tasks, args.checkpoints, runs)
    down = [("refused", False)] if args.quick else [("refused", False), ("accepted, never answered", True)]
    # The exporters' retries are expected here: said once below, not logged.
    logging.getLogger("opentelemetry").setLevel(logging.CRITICAL)
    print()
    for what, hang in down:
        on, off = end_when_down(hang)
        print(
            f"a task's end with its OTLP endpoint down ({what}): the agent's thread waits {on:.2f} s with the "
            f"live channel, {off:.2f} s without",
            flush=True,
        )
    print(f"\ntotal {time.monotonic() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
