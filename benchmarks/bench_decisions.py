"""Click → agent: how long a person's decision takes to reach the agent
waiting in ``t.request_approval`` (the goal: p95 < 1 s on loopback).

    .venv/bin/python benchmarks/bench_decisions.py [--rounds 50] [--quick] [--database-url URL]
    .venv/bin/python benchmarks/bench_decisions.py --cas BEFORE [--rounds 3] [--database-url URL]

``--cas BEFORE``: the cost of the strict compare-and-set (issue 51):
decisions and permits a second through the control log
(``benchmarks/_cas_rate.py``) on each store (memory, local, and PostgreSQL
with ``--database-url``), run alternately against revision BEFORE and the
working tree (``interleave.py``'s checkout), medians and after/before
ratios from the one interleaved run.

About 35 s at the default 50 rounds (``--quick``: 5 rounds, about 5 s);
loopback only. Each round an agent thread opens a task and asks for approval;
once the request is open (and, for Slack, once the sink's parent message shows
the Approve button), the click is timed from just before it is sent to just
after ``request_approval`` returns in the agent (or the agent's long-poll of
the control API answers, through ``serve``; either way including the agent's
note of the answer, a span). Every path's rows go into one table: p50, p95,
max, and whether p95 < 1 s.

Where the click comes from:

- **control**: the decision handed to spanvisor directly. In-process it is
  ``pipeline.control.decide(...)``; through ``serve`` it is the
  ``POST .../decisions`` that ``spanvisor approve`` sends to the control API.
- **slack-http**: Slack's request URL. The click on the Approve button (the
  ``action_id`` and ``value`` the sink rendered on the task's parent message)
  as a ``block_actions`` payload, signed with the signing secret as Slack
  signs it, POSTed to ``/slack/interactions`` on the admin port: in-process,
  the Slack sink's admin routes served by serve's admin app in this process;
  through serve, the admin port of a ``spanvisor serve`` subprocess running
  the Slack sink (``SLACK_SIGNING_SECRET``). An unsigned POST checks first
  that the route is served there (it must answer 401); when it is not, the
  row says so instead of timing out.
- **socket-mode**: the same payload as an ``interactive`` envelope from the
  fake Socket Mode server (tests/fakes/slack_socket.py, reached through
  ``apps.connections.open`` with ``SLACK_APP_TOKEN=xapp-…``) over the
  WebSocket to the real slack_sdk ``SocketModeClient`` that the sink runs,
  in this process or in serve. Timed from the envelope's send.
- **control replicas** (with ``--database-url``, a migrated PostgreSQL): two
  ``serve`` processes sharing the state store; the agent exports to and
  polls replica A, the click goes to replica B (as when Slack hands the
  interaction to another replica), so it crosses PostgreSQL.

The fake Slack Web API (tests/fakes) runs on a loop of its own in this
process; in each place (in-process, serve) one Slack sink has both ways in
on, as a deployment may, and the HTTP rounds run before the Socket Mode ones.
The in-process agent waits on the pipeline's control log; through serve it
exports OTLP/HTTP to the serve and long-polls ``SPANVISOR_CONTROL_URL``.
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

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]  # tests.fakes, as bench_slack.py imports it

from opentelemetry.sdk.trace import TracerProvider  # noqa: E402

from _slack_clicks import FakeSlackSide, LoopThread  # noqa: E402
from spanvisor.agent import task  # noqa: E402
from spanvisor.events import Decision  # noqa: E402

GOAL_MS = 1000.0


def pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, max(0, round(q * len(s)) - 1))]


def header() -> None:
    print(f"{'path':24s} {'n':>4s} {'p50 ms':>8s} {'p95 ms':>8s} {'max ms':>8s}  p95 < 1 s", flush=True)


def report(name: str, ms: list[float]) -> None:
    p95 = pct(ms, 0.95)
    print(
        f"{name:24s} {len(ms):4d} {statistics.median(ms):8.1f} {p95:8.1f} {max(ms):8.1f}  "
        f"{'met' if p95 < GOAL_MS else 'MISSED'}",
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
    """``is_open`` is polled (untimed) until the click can be made; the time
    runs from just before ``click`` to ``request_approval`` returning."""
    out: list[float] = []
    for i in range(n):
        task_id = f"bench-{uuid.uuid4().hex[:10]}"
        done: list[tuple[float, bool]] = []

        def agent() -> None:
            with task("bench", agent_id="bench", task_id=task_id, tracer=tracer) as t:  # noqa: B023
                decision = t.request_approval("Go?", timeout=60)
                done.append((time.perf_counter(), decision.approved))  # noqa: B023

        th = threading.Thread(target=agent, daemon=True)
        th.start()
        wait_until(lambda: is_open(task_id), 30, f"round {i}: the request to open")  # noqa: B023
        t0 = time.perf_counter()
        click(task_id)
        th.join(60)
        if not done:
            raise RuntimeError(f"round {i}: the agent was not released")
        if not done[0][1]:
            raise RuntimeError(f"round {i}: the agent's answer was not an approval")
        out.append((done[0][0] - t0) * 1000)
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


def slack_in_process(n: int, side: FakeSlackSide) -> None:
    """One pipeline with the Slack sink (HTTP and Socket Mode on), its admin
    routes served here; the agent's processor feeds that pipeline."""
    from spanvisor.config import Config
    from spanvisor.otel.processor import SpanvisorSpanProcessor
    from spanvisor.pipeline.pipeline import Pipeline
    from spanvisor_slack import SlackSink
    from spanvisor_slack.settings import SETTINGS

    with tempfile.TemporaryDirectory() as tmp:
        env = {"SPANVISOR_DATA_DIR": tmp, **side.env()}
        pipeline = Pipeline(Config.load(env=env, extra=SETTINGS), sinks=[SlackSink()]).start()
        try:
            if not pipeline.wait_ready(30):
                raise RuntimeError("the in-process pipeline with the Slack sink did not start")
            admin = side.serve_admin(pipeline)
            side.wait_socket()
            provider = TracerProvider()
            provider.add_span_processor(SpanvisorSpanProcessor(pipeline=pipeline))
            tracer = provider.get_tracer("bench")
            report("slack-http in-process", rounds(tracer, n, side.button_shown, side.click_http(admin)))
            report("socket-mode in-process", rounds(tracer, n, side.button_shown, side.click_socket))
        finally:
            side.stop_admin()
            pipeline.shutdown(10)


class Serve:
    def __init__(self, data_dir: Path, **env: str) -> None:
        # Only what is given here: nothing of the caller's spanvisor or Slack setup.
        full = {k: v for k, v in os.environ.items() if not k.startswith(("SPANVISOR_", "SLACK_"))}
        full.update(
            SPANVISOR_DATA_DIR=str(data_dir),
            SPANVISOR_OPEN="1",  # no token: the clients here send none
            SPANVISOR_SINKS="prometheus",
            SPANVISOR_EMBEDDED_DB="false",
            SPANVISOR_OTLP_BIND="127.0.0.1",
            SPANVISOR_OTLP_HTTP_PORT="0",
            SPANVISOR_OTLP_GRPC_PORT="off",
            SPANVISOR_ADMIN_PORT="0",
        )
        full.update(env)
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
            m = re.search(r"http=(\d+) grpc=\S+ admin=(\d+)", self.log.read_text())
            if m:
                self.base = f"http://127.0.0.1:{m.group(1)}"
                self.admin = f"http://127.0.0.1:{m.group(2)}"
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        self.stop()
        raise RuntimeError("serve did not start:\n" + self.log.read_text())

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def through_serve(
    n: int,
    agent_side: Serve,
    click: Callable[[str], None],
    shown: Callable[[str], bool] = lambda task_id: True,
) -> list[float]:
    """The agent exports to ``agent_side`` and long-polls its control API;
    a round's click waits for the request to show there and for ``shown``."""
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    from spanvisor.control.client import HttpSource

    os.environ["SPANVISOR_CONTROL_URL"] = agent_side.base
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=agent_side.base + "/v1/traces")))
    reader = HttpSource(agent_side.base)

    def is_open(task_id: str) -> bool:
        status, doc = reader.get_task(task_id)
        return status == 200 and bool(doc.get("approvals")) and shown(task_id)

    try:
        return rounds(provider.get_tracer("bench"), n, is_open, click)
    finally:
        provider.shutdown()
        os.environ.pop("SPANVISOR_CONTROL_URL", None)


def api_click(click_side: Serve) -> Callable[[str], None]:
    from spanvisor.control.client import HttpSource

    writer = HttpSource(click_side.base)

    def click(task_id: str) -> None:
        sent = writer.decide(task_id, "approve", "bench", approval_id="a1", source="api")
        assert sent.ok, sent

    return click


def slack_serve(n: int, side: FakeSlackSide, data_dir: Path) -> None:
    serve = Serve(data_dir, SPANVISOR_SINKS="slack", **side.env())
    try:
        side.wait_socket()
        status = side.routed(serve.admin)
        if status == 401:
            report("slack-http serve", through_serve(n, serve, side.click_http(serve.admin), side.button_shown))
        else:  # measuring would only time out: say why instead
            print(
                f"{'slack-http serve':24s} NOT MEASURED: POST /slack/interactions on serve's admin port "
                f"answers {status}, not 401 to an unsigned request (the Slack sink's route is not served)",
                flush=True,
            )
        report("socket-mode serve", through_serve(n, serve, side.click_socket, side.button_shown))
    finally:
        serve.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=50, help="clicks per path (default 50)")
    ap.add_argument("--quick", action="store_true", help="5 rounds per path")
    ap.add_argument("--database-url", help="a migrated PostgreSQL: also measure across two replicas")
    ap.add_argument("--cas", metavar="BEFORE", help="decisions and permits a second against BEFORE, interleaved")
    args = ap.parse_args()
    if args.cas:
        from _cas_rate import interleaved

        interleaved(args.cas, min(args.rounds, 3) if args.rounds == 50 else args.rounds, args.database_url)
        return
    n = 5 if args.quick else args.rounds
    if n < 1:
        ap.error("--rounds must be at least 1")
    started = time.monotonic()
    print(f"python {platform.python_version()}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}", flush=True)
    header()
    lt = LoopThread()
    side = FakeSlackSide(lt)
    try:
        report("control in-process", in_process(n))
        slack_in_process(n, side)
        with tempfile.TemporaryDirectory() as tmp:
            one = Serve(Path(tmp) / "serve")
            try:
                report("control serve", through_serve(n, one, api_click(one)))
            finally:
                one.stop()
            slack_serve(n, side, Path(tmp) / "slack")
            if args.database_url:
                shared = {"SPANVISOR_DATABASE_URL": args.database_url, "SPANVISOR_STATE_STORE": "postgres"}
                a = Serve(Path(tmp) / "a", **shared)
                try:
                    b = Serve(Path(tmp) / "b", **shared)
                    try:
                        report("control replicas", through_serve(n, a, api_click(b)))
                    finally:
                        b.stop()
                finally:
                    a.stop()
            else:
                print(f"{'control replicas':24s} skipped (give --database-url, a migrated PostgreSQL)", flush=True)
    finally:
        side.close()
        lt.close()
    print(f"({time.monotonic() - started:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
