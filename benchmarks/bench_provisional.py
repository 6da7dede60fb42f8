"""A plain-OTel agent behind ``spanvisor serve``: how soon its task shows, before its root ends.

    .venv/bin/python benchmarks/bench_provisional.py [--agents 100] [--quick]     # about 2 min; loopback only

The agents carry nothing of spanvisor: each is a real SDK ``TracerProvider``
(its own ``service.name``, as a process of its own would) with the
``BatchSpanProcessor`` at the SDK's default export delay (5 s,
``OTEL_BSP_SCHEDULE_DELAY`` unset) and the OTLP/HTTP span exporter aimed at
``serve``; it runs a GenAI-shaped task: an ``invoke_agent`` root over
``--turns`` (8) ``chat`` model calls of 0.8-1.5 s, a tool call of 0.1-0.5 s
after each but the last (``execute_tool``), the model and tools simulated
by sleeps. The agents start spread over ``--spread`` s (10), each on a
thread of this process.

``spanvisor serve`` runs as a subprocess with the PostgreSQL audit trail (an
embedded server, fsync on) and the Slack sink at its default pacing, against
the local fake Slack (tests/fakes) at **Slack's limits**: one post a second
per channel (a burst of 4), ``chat.update`` at Tier 3 (50 a minute); the
agents' tasks are routed over ``--channels`` (20) channels by agent, as a
fleet's would be. Measured, per agent, from its first model call's end (the
``chat`` span ended, on the agent's clock) to:

* **row**: its task's row in ``agent_tasks`` (what ``spanvisor tasks``
  lists), read every 50 ms;
* **Slack**: the fake's ``chat.postMessage`` of its task's parent.

Its root is still open then, by construction (the task has more calls to
make). Reported: p50, p95 and max of each, and whether a task was shown
before its root; first one agent alone (goal: 6 s), then ``--agents`` at
once (goal: p95 8 s). The provisional rule is the default one
(``agent,tool,calls=2``): a task whose first export holds its first call but
not its first tool call shows with the next export, 5 s later; ``--rule``
measures another.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "receiver"), str(ROOT / "benchmarks")]

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter  # noqa: E402
from opentelemetry.sdk.resources import Resource  # noqa: E402
from opentelemetry.sdk.trace import TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import BatchSpanProcessor  # noqa: E402
from serve_proc import FakeSlackThread, ServeProcess, slack_env  # type: ignore[import-not-found]  # noqa: E402
from tests.fakes.slack_api import TIER3  # noqa: E402

from spanvisor_postgres.embedded import EmbeddedPostgres  # noqa: E402

MODEL = "gpt-4o"


class Agent:
    """One plain-OTel agent: its provider, and when its first model call ended."""

    def __init__(self, k: int, url: str, turns: int) -> None:
        self.k = k
        self.name = f"bench-agent-{k:03d}"
        self.turns = turns
        self.provider = TracerProvider(resource=Resource.create({"service.name": self.name}), shutdown_on_exit=False)
        self.provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=url, timeout=20)))
        self.task_id = ""
        self.first_call_end = 0.0
        self.root_end = 0.0

    def run(self, rng: random.Random) -> None:
        tracer = self.provider.get_tracer("plain-agent")
        attrs = {"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "planner"}
        with tracer.start_as_current_span("invoke_agent planner", attributes=attrs) as root:
            ctx = root.get_span_context()
            self.task_id = f"{ctx.trace_id:032x}-{ctx.span_id:016x}"
            for turn in range(1, self.turns + 1):
                call = {"gen_ai.operation.name": "chat", "gen_ai.request.model": MODEL}
                with tracer.start_as_current_span(f"chat {MODEL}", attributes=call) as span:
                    time.sleep(rng.uniform(0.8, 1.5))
                    span.set_attributes({"gen_ai.usage.input_tokens": 1_000 * turn, "gen_ai.usage.output_tokens": 60})
                if turn == 1:
                    self.first_call_end = time.monotonic()
                if turn < self.turns:
                    tool = {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "lookup"}
                    with tracer.start_as_current_span("execute_tool lookup", attributes=tool):
                        time.sleep(rng.uniform(0.1, 0.5))
        self.root_end = time.monotonic()
        self.provider.shutdown()


class Watch:
    """When each task's row and Slack parent first showed (this process's monotonic clock)."""

    def __init__(self, db_url: str, slack: FakeSlackThread) -> None:
        self.db_url, self.slack = db_url, slack
        self.row: dict[str, float] = {}
        self.parent: dict[str, float] = {}
        self.seen_calls = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)
        self._thread.start()

    async def _run(self) -> None:
        import asyncpg

        conn = await asyncpg.connect(self.db_url)
        try:
            while not self._stop.is_set():
                now = time.monotonic()
                for r in await conn.fetch("SELECT task_id FROM agent_tasks"):
                    self.row.setdefault(r["task_id"], now)
                calls = list(self.slack.fake.calls)
                for c in calls[self.seen_calls :]:
                    if c.method == "chat.postMessage" and c.response.get("ok") and "thread_ts" not in c.args:
                        meta = c.args.get("metadata") or {}
                        meta = json.loads(meta) if isinstance(meta, str) else meta
                        task = (meta.get("event_payload") or {}).get("task_id") if isinstance(meta, dict) else None
                        if task:
                            self.parent.setdefault(task, c.at)
                self.seen_calls = len(calls)
                await asyncio.sleep(0.05)
        finally:
            await conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)


async def migrated(url: str) -> None:
    import asyncpg

    from spanvisor_postgres.migrate import migrate

    conn = await asyncpg.connect(url)
    try:
        await migrate(conn)
    finally:
        await conn.close()


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(p / 100 * (len(xs) - 1)))] if xs else float("nan")


def start_serve(base: Path, db_url: str, slack: FakeSlackThread, channels: int, agents: int, rule: str) -> ServeProcess:
    env = slack_env(
        base,
        slack.base_url,
        SPANVISOR_DATABASE_URL=db_url,
        SPANVISOR_SINKS="postgres,slack",
        SPANVISOR_STATE_STORE="postgres",
    )
    for leaked in ("SPANVISOR_OTLP_TOKEN", "SPANVISOR_CONTROL_TOKEN", "SLACK_APP_TOKEN", "OTEL_BSP_SCHEDULE_DELAY"):
        env.pop(leaked, None)
    for paced in ("CHANNEL", "UPDATE", "REPLY"):  # the Slack sink's own defaults
        env.pop(f"SPANVISOR_SLACK_{paced}_INTERVAL")
    env["SPANVISOR_SLACK_ROUTES"] = ",".join(
        f"agent:bench-agent-{k:03d}=#fleet-{k % channels:02d}" for k in range(agents)
    )
    env["SPANVISOR_PROVISIONAL"] = rule
    return ServeProcess(base, env)


def run(base: Path, db_url: str, agents: int, spread: float, turns: int, channels: int, rule: str) -> dict[str, Any]:
    slack = FakeSlackThread(channel_rate=1.0, channel_burst=4, method_limits={"chat.update": TIER3})
    serve = start_serve(base, db_url, slack, channels, agents, rule)
    watch = Watch(db_url, slack)
    try:
        fleet = [Agent(k, serve.url, turns) for k in range(agents)]
        threads = []
        for a in fleet:
            th = threading.Thread(target=a.run, args=(random.Random(a.k),), daemon=True)
            th.start()
            threads.append(th)
            time.sleep(spread / max(1, agents))
        for th in threads:
            th.join(120)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not all(a.task_id in watch.parent for a in fleet):
            time.sleep(0.1)
    finally:
        watch.close()
        serve.stop()
        slack.close()
    row = [watch.row.get(a.task_id, float("nan")) - a.first_call_end for a in fleet]
    parent = [watch.parent.get(a.task_id, float("nan")) - a.first_call_end for a in fleet]
    before = sum(watch.parent.get(a.task_id, float("inf")) < a.root_end for a in fleet)
    return {"row": row, "slack": parent, "before_root": before, "agents": agents}


def report(label: str, r: dict[str, Any], goal_s: float, p: float) -> str:
    def fmt(xs: list[float]) -> str:
        ok = [x for x in xs if x == x]
        miss = len(xs) - len(ok)
        return f"p50 {pct(ok, 50):.1f} s, p95 {pct(ok, 95):.1f} s, max {max(ok, default=float('nan')):.1f} s" + (
            f", {miss} never shown" if miss else ""
        )

    got = pct([x for x in r["slack"] + r["row"] if x == x], p)
    verdict = "met" if got <= goal_s and all(x == x for x in r["slack"] + r["row"]) else "MISSED"
    return (
        f"{label}: row {fmt(r['row'])}; Slack parent {fmt(r['slack'])}; shown before its root ended: "
        f"{r['before_root']}/{r['agents']}; goal p{p:g} <= {goal_s:g} s: {verdict}"
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--agents", type=int, default=100)
    ap.add_argument("--spread", type=float, default=10.0, help="seconds over which the agents start")
    ap.add_argument("--turns", type=int, default=8, help="model calls per agent")
    ap.add_argument("--channels", type=int, default=20)
    ap.add_argument("--rule", default="agent,tool,calls=2", help="SPANVISOR_PROVISIONAL")
    ap.add_argument("--quick", action="store_true", help="10 agents")
    a = ap.parse_args(argv)
    if a.quick:
        a.agents = 10
    print(
        f"spanvisor bench_provisional: python {platform.python_version()}, {os.cpu_count()} CPUs, "
        f"load {os.getloadavg()[0]:.1f}, SPANVISOR_PROVISIONAL={a.rule}",
        flush=True,
    )
    base = Path(tempfile.mkdtemp(prefix="spanvisor-bench-provisional-"))
    pg = EmbeddedPostgres(base / "postgres")
    t0 = time.monotonic()
    try:
        db_url = pg.acquire()
        asyncio.run(migrated(db_url))  # before serve starts, so the first read finds the tables
        one = run(base / "one", db_url, 1, 0.0, a.turns, a.channels, a.rule)
        print(report("one agent", one, 6.0, 100), flush=True)
        many = run(base / "many", db_url, a.agents, a.spread, a.turns, a.channels, a.rule)
        print(report(f"{a.agents} agents", many, 8.0, 95), flush=True)
    finally:
        pg.release()
        shutil.rmtree(base, ignore_errors=True)
    print(f"total {time.monotonic() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
