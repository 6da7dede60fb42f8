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
import logging
import os
import platform
import random
import re
import shutil
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "receiver"), str(ROOT / "benchmarks")]

from opentelemetry.trace import Tracer  # noqa: E402
from serve_proc import FakeSlackThread, ServeProcess, slack_env  # type: ignore[import-not-found]  # noqa: E402

from _live_cost import BLRP_DELAY, CALLS_PER_TASK, agent_cost, agent_tracer, end_when_down, report_cost  # noqa: E402
from spanvisor.agent import task  # noqa: E402

MARK = re.compile(r"lv-(\w)-(\d{2})-(\d{3})")


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
        shutil.rmtree(tmp, ignore_errors=True)
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
