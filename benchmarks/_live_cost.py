"""The agent-thread side of ``bench_live.py``: what ``t.checkpoint()`` costs
the agent with the live channel on and off, against a plain
``span.add_event``, and what a task's end costs it (see that script's
docstring for the method)."""

from __future__ import annotations

import cProfile
import gc
import io
import os
import pstats
import socket
import statistics
import subprocess
import sys
import sysconfig
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import Tracer

from spanvisor.agent import task
from spanvisor.otel.live import channel
from spanvisor.spans import conventions as cv

BLRP_DELAY = "OTEL_BLRP_SCHEDULE_DELAY"
CALLS_PER_TASK = 100

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
            repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
            prof_text = buf.getvalue().replace(sysconfig.get_paths()["purelib"] + "/", "").replace(repo + "/", "")
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
