"""Click → agent: how long a person's decision takes to reach the agent
waiting in ``t.request_approval`` (issue 11's goal: p95 < 1 s on loopback).

    .venv/bin/python benchmarks/bench_decisions.py [--rounds 50] [--database-url URL]

Each round an agent thread opens a task and asks for approval; once the
request is open (the tracker shows it), the "click" is timed from just
before the decision is handed over to just after ``request_approval``
returns in the agent (that includes the agent's note of the answer, a span).

1. **in-process**: the agent's TracerProvider runs spanvisor's processor;
   the click is ``pipeline.control.decide(...)`` (what the Slack sink does
   in the same process). The waiting agent is woken by the control log.
2. **serve**: the agent exports OTLP/HTTP to a ``spanvisor serve`` and reads
   decisions from its control API (``SPANVISOR_CONTROL_URL``, long-poll);
   the click is the ``POST .../decisions`` that ``spanvisor approve`` sends.
3. **replicas** (with ``--database-url``, a migrated PostgreSQL): two
   ``serve`` processes sharing the state store; the agent exports to and
   polls replica A, the click goes to replica B (as when Slack hands the
   interaction to another replica), so it crosses PostgreSQL.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from opentelemetry.sdk.trace import TracerProvider

from spanvisor.agent import task
from spanvisor.events import Decision


def pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, max(0, round(q * len(s)) - 1))]


def report(name: str, ms: list[float]) -> None:
    print(
        f"{name:12s} n={len(ms):3d}  p50 {statistics.median(ms):7.1f} ms  p95 {pct(ms, 0.95):7.1f} ms  "
        f"max {max(ms):7.1f} ms  {'goal met' if pct(ms, 0.95) < 1000 else 'GOAL MISSED'} (p95 < 1000 ms)",
        flush=True,
    )


def wait_until(cond: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.005)


def rounds(
    tracer: Any,
    n: int,
    is_open: Callable[[str], bool],
    click: Callable[[str], None],
) -> list[float]:
    out: list[float] = []
    for i in range(n):
        task_id = f"bench-{uuid.uuid4().hex[:10]}"
        done: list[float] = []

        def agent() -> None:
            with task("bench", agent_id="bench", task_id=task_id, tracer=tracer) as t:  # noqa: B023
                decision = t.request_approval("Go?", timeout=60)
                done.append(time.perf_counter())  # noqa: B023
                assert decision.approved, decision

        th = threading.Thread(target=agent, daemon=True)
        th.start()
        wait_until(lambda: is_open(task_id), 30, f"round {i}: the request to open")  # noqa: B023
        t0 = time.perf_counter()
        click(task_id)
        th.join(60)
        if not done:
            raise RuntimeError(f"round {i}: the agent was not released")
        out.append((done[0] - t0) * 1000)
    return out


def decision(task_id: str) -> Decision:
    return Decision(uuid.uuid4().hex, task_id, "approve", "bench", time.time_ns(), approval_id="a1", actor_name="bench")


def in_process(n: int) -> list[float]:
    from spanvisor.config import Config
    from spanvisor.otel.processor import SpanvisorSpanProcessor
    from spanvisor.pipeline.pipeline import Pipeline
    from spanvisor.testing import InMemorySink

    with tempfile.TemporaryDirectory() as tmp:
        config = Config.load(env={"SPANVISOR_DATA_DIR": tmp}, extra=())
        pipeline = Pipeline(config, sinks=[InMemorySink()]).start()
        pipeline.wait_ready(30)
        provider = TracerProvider()
        provider.add_span_processor(SpanvisorSpanProcessor(pipeline=pipeline))
        control = pipeline.control

        def is_open(task_id: str) -> bool:
            view = control.call_sync(lambda: control.task(task_id), 10)
            return view is not None and bool(view.approvals)

        def click(task_id: str) -> None:
            verdict = control.call_sync(lambda: control.decide(decision(task_id)), 10)
            assert verdict.outcome == "applied", verdict

        try:
            return rounds(provider.get_tracer("bench"), n, is_open, click)
        finally:
            pipeline.shutdown(10)


class Serve:
    def __init__(self, data_dir: Path, **env: str) -> None:
        full = {k: v for k, v in os.environ.items() if not k.startswith("SPANVISOR_")}
        full.update(
            SPANVISOR_DATA_DIR=str(data_dir),
            SPANVISOR_SINKS="prometheus",
            SPANVISOR_EMBEDDED_DB="false",
            SPANVISOR_OTLP_BIND="127.0.0.1",
            SPANVISOR_OTLP_HTTP_PORT="0",
            SPANVISOR_OTLP_GRPC_PORT="off",
            SPANVISOR_ADMIN_PORT="0",
            **env,
        )
        data_dir.mkdir(parents=True, exist_ok=True)
        self.log = data_dir / "serve.log"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "spanvisor.cli", "serve"],
            env=full,
            stdout=self.log.open("w"),
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            m = re.search(r"http=(\d+)", self.log.read_text())
            if m:
                self.base = f"http://127.0.0.1:{m.group(1)}"
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        raise RuntimeError("serve did not start:\n" + self.log.read_text())

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(60)


def through_serve(n: int, agent_side: Serve, click_side: Serve) -> list[float]:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    from spanvisor.control.client import HttpSource

    os.environ["SPANVISOR_CONTROL_URL"] = agent_side.base
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=agent_side.base + "/v1/traces")))
    reader, writer = HttpSource(agent_side.base), HttpSource(click_side.base)

    def is_open(task_id: str) -> bool:
        status, doc = reader.get_task(task_id)
        return status == 200 and bool(doc.get("approvals"))

    def click(task_id: str) -> None:
        sent = writer.decide(task_id, "approve", "bench", approval_id="a1", source="api")
        assert sent.ok, sent

    try:
        return rounds(provider.get_tracer("bench"), n, is_open, click)
    finally:
        provider.shutdown()
        os.environ.pop("SPANVISOR_CONTROL_URL", None)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=50)
    ap.add_argument("--database-url", help="a migrated PostgreSQL: also measure across two replicas")
    args = ap.parse_args()
    print(f"python {platform.python_version()}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}", flush=True)
    report("in-process", in_process(args.rounds))
    with tempfile.TemporaryDirectory() as tmp:
        one = Serve(Path(tmp) / "serve")
        try:
            report("serve", through_serve(args.rounds, one, one))
        finally:
            one.stop()
        if args.database_url:
            shared = {"SPANVISOR_DATABASE_URL": args.database_url, "SPANVISOR_STATE_STORE": "postgres"}
            a = Serve(Path(tmp) / "a", **shared)
            b = Serve(Path(tmp) / "b", **shared)
            try:
                report("replicas", through_serve(args.rounds, a, b))
            finally:
                a.stop()
                b.stop()
        else:
            print("replicas     skipped (give --database-url, a migrated PostgreSQL)", flush=True)


if __name__ == "__main__":
    main()
