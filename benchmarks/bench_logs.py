"""Log tails: the agent thread's cost per log record, and records/s through serve.

Run: ``.venv/bin/python benchmarks/bench_logs.py`` (about a minute on an idle
2-core machine); ``--records N`` per repetition, ``--reps N``, ``--seconds S``
for the serve part, ``--quick`` for a smoke run.

**1. The agent's thread.** An agent logging with the standard library through
the OTel SDK's ``LoggingHandler`` (what ``OTEL_PYTHON_LOGGING_AUTO_INSTRUMENTATION_ENABLED``
installs), inside a task span, 70 % INFO, 20 % WARNING, 10 % ERROR. All
configurations in one run, interleaved per repetition:

* (a) a LoggerProvider with no processor: the SDK's own cost (the handler
  translating the record, the Logger building a ReadWriteLogRecord);
* (b) the SDK's BatchLogRecordProcessor + the OTLP/HTTP log exporter,
  pointed at a local endpoint in its own process that answers 200 (in this
  burst its queue fills and it drops records: its export thread competes
  with the agent for the GIL meanwhile);
* (c) spanvisor's SpanvisorLogProcessor on a running pipeline (InMemorySink),
  the records in a task (kept in its tail);
* (d) the same, the records outside any task (counted, dropped at once).

Reported: median over repetitions of the agent thread's wall and CPU time
per record (``time.thread_time_ns``), the overhead over (a), and
(x-a)/(b-a): 1.0 is what the SDK's batch processor + OTLP exporter adds.

**2. ``spanvisor serve``.** A real ``spanvisor serve`` subprocess (sink
prometheus, journal on); two client threads POST ``/v1/logs`` protobuf
requests of 1,000 records each (50 traces of 20 records, the same level mix)
for ``--seconds``, cycling through 20 prepared requests: 1,000 traces, none
with a task, so each waits in a pending ring (the receiver's most expensive
path: a busy agent whose tasks are not announced yet). Reported: records/s
acknowledged (200), 503s, and the server's CPU µs per record.
"""

from __future__ import annotations

import argparse
import http.client
import logging
import os
import platform
import random
import statistics
import sys
import tempfile
import threading
import time
import warnings

from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.trace import TracerProvider

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_ingest import Server, cpu_seconds
from bench_processor import start_endpoint
from spanvisor.config import Config
from spanvisor.otel.logs import SpanvisorLogProcessor
from spanvisor.otel.processor import SpanvisorSpanProcessor
from spanvisor.spans import conventions as cv
from spanvisor.testing import InMemorySink

LEVELS = [logging.INFO] * 7 + [logging.WARNING] * 2 + [logging.ERROR]
NAMES = {
    "a": "(a) no processor (SDK alone)",
    "b": "(b) BatchLogRecordProcessor + OTLP/HTTP",
    "c": "(c) spanvisor, records in a task",
    "d": "(d) spanvisor, records outside tasks",
}


class Setup:
    def __init__(self, key: str, endpoint_port: int) -> None:
        self.key = key
        self.tracer_provider = TracerProvider(shutdown_on_exit=False)
        self.span_processor: SpanvisorSpanProcessor | None = None
        self.logger_provider = LoggerProvider(shutdown_on_exit=False)
        if key == "b":
            exporter = OTLPLogExporter(endpoint=f"http://127.0.0.1:{endpoint_port}/v1/logs")
            self.logger_provider.add_log_record_processor(BatchLogRecordProcessor(exporter))
        elif key in ("c", "d"):
            config = Config.load(env={}, extra=()).with_values(shutdown_timeout_s=2.0)
            self.span_processor = SpanvisorSpanProcessor(sinks=[InMemorySink()], config=config)
            self.tracer_provider.add_span_processor(self.span_processor)
            self.logger_provider.add_log_record_processor(SpanvisorLogProcessor(self.span_processor))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            self.handler = LoggingHandler(logger_provider=self.logger_provider)
        self.logger = logging.getLogger(f"bench.{key}")
        self.logger.handlers[:] = [self.handler]
        self.logger.setLevel(logging.DEBUG)
        self.logger.propagate = False
        self.tracer = self.tracer_provider.get_tracer("bench")

    def run(self, n: int) -> tuple[float, float]:
        """(wall ns, thread CPU ns) per record for ``n`` records."""
        levels, log = LEVELS, self.logger.log
        in_task = self.key != "d"
        ctx = self.tracer.start_as_current_span("task", attributes={cv.TASK_NAME: "bench"}) if in_task else None
        if ctx is not None:
            ctx.__enter__()
        try:
            c0, t0 = time.thread_time_ns(), time.perf_counter_ns()
            for i in range(n):
                log(levels[i % 10], "step %d of the task: reading %s", i, "a file")
            wall, cpu = time.perf_counter_ns() - t0, time.thread_time_ns() - c0
        finally:
            if ctx is not None:
                ctx.__exit__(None, None, None)
        return wall / n, cpu / n

    def close(self) -> None:
        self.logger_provider.shutdown()
        if self.span_processor is not None:
            self.span_processor.pipeline.shutdown(2.0)
        self.tracer_provider.shutdown()


def agent_thread(records: int, reps: int) -> None:
    # (b)'s BatchLogRecordProcessor drops the oldest records when its queue
    # (2,048) is full, as in a burst like this one, and says so per record.
    logging.getLogger("opentelemetry.sdk._shared_internal").setLevel(logging.ERROR)
    proc, port = start_endpoint()
    try:
        wall: dict[str, list[float]] = {k: [] for k in NAMES}
        cpu: dict[str, list[float]] = {k: [] for k in NAMES}
        for _ in range(reps):
            for key in NAMES:
                s = Setup(key, port)
                s.run(min(2_000, records))  # warm up
                w, c = s.run(records)
                s.close()
                wall[key].append(w)
                cpu[key].append(c)
    finally:
        proc.terminate()
    med = {k: (statistics.median(wall[k]), statistics.median(cpu[k])) for k in NAMES}
    print(f"\n1. agent thread, {records:,} records x {reps} reps, ns per record (median)")
    print(f"{'configuration':44} {'wall':>8} {'+over a':>8} {'cpu':>8} {'+over a':>8} {'(x-a)/(b-a) cpu':>16}")
    base_w, base_c = med["a"]
    ref = med["b"][1] - base_c
    for k, name in NAMES.items():
        w, c = med[k]
        ratio = (c - base_c) / ref if k != "a" and ref > 0 else float("nan")
        print(f"{name:44} {w:8.0f} {w - base_w:+8.0f} {c:8.0f} {c - base_c:+8.0f} {ratio:16.2f}")


def _request(rng: random.Random, records: int = 1_000, per_trace: int = 20) -> bytes:
    now = time.time_ns()
    recs = []
    trace = b""
    for i in range(records):
        if i % per_trace == 0:
            trace = rng.randbytes(16)
        level = LEVELS[i % 10]
        recs.append(
            LogRecord(
                time_unix_nano=now + i,
                severity_number={logging.INFO: 9, logging.WARNING: 13, logging.ERROR: 17}[level],
                severity_text=logging.getLevelName(level),
                trace_id=trace,
                span_id=rng.randbytes(8),
                body={"string_value": f"step {i} of the task: reading a file"},
            )
        )
    req = ExportLogsServiceRequest(
        resource_logs=[ResourceLogs(scope_logs=[ScopeLogs(scope={"name": "agent"}, log_records=recs)])]
    )
    return req.SerializeToString()


def serve(seconds: float, clients: int = 2) -> None:
    rng = random.Random(7)
    bodies = [_request(rng) for _ in range(20)]
    with tempfile.TemporaryDirectory() as data_dir:
        server = Server(data_dir)
        try:
            counts = {"ok": 0, "retry": 0, "other": 0}
            lock = threading.Lock()
            stop = time.monotonic() + seconds

            def client(n: int) -> None:
                conn = http.client.HTTPConnection("127.0.0.1", server.http, timeout=30)
                i = n
                while time.monotonic() < stop:
                    body = bodies[i % len(bodies)]
                    i += 1
                    conn.request("POST", "/v1/logs", body, {"Content-Type": "application/x-protobuf"})
                    resp = conn.getresponse()
                    resp.read()
                    with lock:
                        key = "ok" if resp.status == 200 else "retry" if resp.status == 503 else "other"
                        counts[key] += 1
                conn.close()

            cpu0 = cpu_seconds(server.proc.pid)
            t0 = time.monotonic()
            threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            elapsed = time.monotonic() - t0
            cpu = cpu_seconds(server.proc.pid) - cpu0
        finally:
            server.stop()
    n = counts["ok"] * 1_000
    print(f"\n2. spanvisor serve, POST /v1/logs, {clients} clients, {elapsed:.1f} s, 1,000 records a request")
    print(f"records/s acknowledged: {n / elapsed:,.0f}   503s: {counts['retry']}   other: {counts['other']}")
    print(f"server CPU per record: {cpu / max(1, n) * 1e6:.2f} us")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--records", type=int, default=50_000)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--quick", action="store_true")
    a = p.parse_args(argv)
    if a.quick:
        a.records, a.reps, a.seconds = 5_000, 1, 2.0
    print(f"Python {platform.python_version()}, {os.cpu_count()} CPUs, {platform.machine()}")
    agent_thread(a.records, a.reps)
    serve(a.seconds)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
