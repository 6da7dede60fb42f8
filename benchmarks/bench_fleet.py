"""A fleet of coding agents through one ``spanvisor serve``: every record
acknowledged, nothing dropped, and how long a tool call takes to reach Slack.

    .venv/bin/python benchmarks/bench_fleet.py [--sessions 100] [--seconds 60] [--quick] [--launched] [--clis 3|7]
    .venv/bin/python benchmarks/bench_fleet.py --supervised [--setups abd]

``--sessions`` (100) concurrent sessions, a third each Claude Code, Codex CLI
and Gemini CLI (``--clis 3``, the default; ``--clis 7`` adds Qwen Code,
Copilot CLI, OpenCode and Cline, a seventh each), send their OTel log events
to one ``spanvisor serve`` subprocess over OTLP/HTTP for ``--seconds`` (60).
Each session runs on its own thread and schedule as a CLI does: a prompt
(now and then another), turns of a model call (0.5-2 s) and one to three
tool calls (each 0.05-1 s, then 0.5-2.5 s of thought), so a tool call every
few seconds. Its records are the CLI's (names and attributes as
tests/receiver/coding_sessions.py's, emitted through the real SDK logger and
encoded by the SDK's OTLP encoder; Gemini CLI's as OTLP/JSON) and leave in
batches at each CLI's default export delay (``_fleet``): Claude Code every
5 s (``OTEL_LOGS_EXPORT_INTERVAL``'s default, the JavaScript SDK's timer
from a batch's first record), Gemini CLI 1 s (the JavaScript SDK's default),
Codex CLI a fixed ~3 s tick (FIELD-NOTES); with ``--launched`` Claude Code
every 1 s, as under ``spanvisor run``. Qwen Code sends Gemini CLI's records
under its own names, OTLP/JSON in chunked requests, every 1 s (its SDK's
default). Copilot CLI, OpenCode and Cline run under ``spanvisor run``
(``_fleet_launched``): runs of 15-30 s, each a task of the launcher's,
with its start, heartbeats and end; Copilot CLI's spans leave only at each
run's exit; OpenCode's and Cline's printed lines are read by the launcher's
own reader and sent at once. Their tasks' agent is the CLI (the launcher
names it so): in setup (a) they share a channel per CLI.

``serve`` runs at its defaults (``SPANVISOR_SINKS=auto``: Slack, PostgreSQL,
Prometheus, the event stream) with an embedded PostgreSQL (fsync on) and the
local fake Slack (tests/fakes) at Slack's real limits, as its strict form:
1 post/s per channel (burst 4) and ``chat.update`` at Tier 3, 50 a minute per
workspace (burst 5); the Slack sink at its defaults (each method paced at
Slack's documented tier before sending, a work log edited at most every 1 s
while edits are plentiful and each tool call posted as a reply when they are
not, 1 post/s a channel). Two setups, each its own ``serve``:

* (a) each session's task in a channel of its own (``SPANVISOR_SLACK_ROUTES``);
* (b) every task in one channel: Slack's 1 post/s per channel binds, so 100
  parents alone take 100 s there;
  With its board off (``SPANVISOR_SLACK_BOARD_BACKLOG=off``): the channel as
  it was before issue 67, every line queued as a reply;
* (c), only with ``--setups``: (a) with ``chat.update`` not limited, at the
  fake and in the sink, to tell Slack's Tier 3 from the rest;
* (d) every task in one channel at the sink's defaults: past 10 posts
  waiting the channel folds into its board (issue 67);
* (e), only with ``--setups``: (d) with a Slack Code channel per session
  (``SPANVISOR_SLACK_CODE_CHANNELS=on``): each session's message, thread
  and buttons in a channel of its own, made by
  ``agents.conversations.create`` (paced at Tier 2, 20 a minute), the
  team channel a line per session.

``--ramp R`` spreads the sessions' starts evenly over R seconds (each
then works ``--seconds``): a fleet that grows, as code channels are made
at Slack's pace (setup e), rather than all at once.

``--supervised`` (setups a, b and d unless ``--setups`` says otherwise):
each Claude Code, Codex CLI and Gemini CLI session also asks once for a
person's approval as ``spanvisor hook`` does, waits for the answer (a
person's, through the control API, 3-8 s later) and ends as its
``SessionEnd`` hook says, one in ten failing (``_fleet_supervised``); then
also measured: an approval request visible (goal p95 <= 2 s) and on its
task's parent with its buttons, an error visible (goal <= 5 s), each change
of each task's state shown within 10 s (anywhere, and on its own parent),
and the audit trail (every task's final state, request and decision in
PostgreSQL).

Measured per setup: OTLP answers (2xx, 4xx, 5xx and 503 per attempt, batches
never acknowledged); serve's /metrics (``spanvisor_dropped_total``, receiver
requests and coding-agent records by outcome); tasks in PostgreSQL against
sessions, ``tool_call`` timeline rows against tool calls sent; latency from a
tool call's record handed to the exporter (the SDK's emit) to the first fake
Slack ``chat.postMessage``/``chat.update`` showing it or a later call of the
same session (a work log shows its newest 8 lines and counts the rest), split
into emit -> 2xx (the export delay) and 2xx -> Slack (for Copilot CLI: its
exit's export -> Slack), by CLI; for the launched CLIs, the launcher's start
-> the first Slack call naming the task; tool calls not shown by
the end of ``--drain`` (120 s) count as slower than any shown; Slack calls and
429s; serve's and PostgreSQL's CPU while sending (``_cpuwatch``); the
machine's load (/proc/loadavg) before and after.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import math
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "receiver"), str(ROOT / "benchmarks")]

from serve_proc import FakeSlackThread, ServeProcess  # type: ignore[import-not-found]  # noqa: E402

from _cpuwatch import cores, postmaster_of, snapshot  # noqa: E402
from _fleet import CLIS, Fleet, run_session  # noqa: E402
from _fleet_launched import LAUNCHED, START, LaunchedSession, session  # noqa: E402
from _fleet_post import Poster, Sent  # noqa: E402
from _fleet_report import report  # noqa: E402
from _fleet_supervised import SlackStates, Supervised, audit_sql, measure  # noqa: E402
from spanvisor_postgres.embedded import EmbeddedPostgres  # noqa: E402

MARK = re.compile(r"fl([a-e])(\d{3})n(\d{4})")
METRIC = re.compile(r"^spanvisor_(\w+)\{([^}]*)\}\s+(\S+)$")
MIXES = {"3": ("claude", "codex", "gemini"), "7": ("claude", "codex", "gemini", "qwen", *LAUNCHED)}
# The strict fake's own Tier 3 figure for chat.update (50 a minute, burst 5),
# looked up by name as serve_proc is imported untyped: the fakes are checked
# with the tests, not here.
TIER3: tuple[float, int] = importlib.import_module("tests.fakes.slack_api").TIER3
# serve's bearer token: every OTLP request and control API call of the fleet carries it.
TOKEN = "fleet-bench-token"
WANTED = ("dropped_total", "receiver_requests_total", "coding_agent_records_total", "live_records_total")
# setup -> (what it is, a channel per session, chat.update at Tier 3, the channel's board, code channels)
SETUPS = {
    "a": ("own channel each", True, True, True, False),
    "b": ("one channel, board off (before issue 67)", False, True, False, False),
    "c": ("own channel each, chat.update not limited (a diagnostic: the rest of the path)", True, False, True, False),
    "d": ("one channel, board on (the default)", False, True, True, False),
    "e": ("one team channel, a code channel per session", False, True, True, True),
}


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


class SlackWatch:
    """The highest tool call of each session a Slack call showed, and when."""

    def __init__(self, slack: FakeSlackThread, setup: str, observer: Any = None) -> None:
        self.slack, self.setup = slack, setup
        self.observer = observer  # told each call Slack took: (method, args, response, when)
        self.seen = 0
        self.shown: dict[int, int] = {}
        self.hits: dict[int, list[tuple[float, int]]] = defaultdict(list)  # session -> (call time, call shown)
        self.parents: dict[tuple[int, int], float] = {}  # (session, run) -> first Slack call naming the task
        self.calls: Counter[str] = Counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            calls = list(self.slack.fake.calls)  # appended on the fake's loop; a copy is a snapshot
            for c in calls[self.seen :]:
                self.calls[f"{c.method} {c.status}"] += 1
                if c.method not in ("chat.postMessage", "chat.update") or not c.response.get("ok"):
                    continue
                if self.observer is not None:
                    self.observer(c.method, c.args, c.response, c.at)
                best: dict[int, int] = {}
                for setup, k, i in MARK.findall(str(c.args)):
                    if setup == self.setup:
                        best[int(k)] = max(best.get(int(k), -1), int(i))
                for setup, k, r in START.findall(str(c.args)):
                    if setup == self.setup:
                        self.parents.setdefault((int(k), int(r)), c.at)
                for k, i in best.items():
                    self.hits[k].append((c.at, i))
                    self.shown[k] = max(self.shown.get(k, -1), i)
            self.seen = len(calls)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)


class Rows:
    """Counts in serve's PostgreSQL over one kept connection."""

    def __init__(self, url: str, prefix: str) -> None:
        import asyncpg

        self.loop = asyncio.new_event_loop()
        self.conn = self.loop.run_until_complete(asyncpg.connect(url))
        # A session's task id is its CLI's namespace and its id (claude-code:fleet-a-…); a launched run's the launcher's.
        self.like = f"%{prefix}%"

    def audit(self) -> tuple[dict[str, str], int, int]:
        """(each task's final status, tasks with a request, approvals recorded) of this setup."""
        sql = audit_sql()

        async def all_of() -> tuple[dict[str, str], int, int]:
            finals = {r["task_id"]: r["status"] for r in await self.conn.fetch(sql["finals"], self.like)}
            asked = await self.conn.fetchval(sql["requests"], self.like)
            decided = await self.conn.fetchval(sql["decisions"], self.like)
            return finals, int(asked), int(decided)

        return self.loop.run_until_complete(all_of())

    def count(self) -> tuple[int, int]:
        """(tasks, tool_call timeline rows) of this setup's sessions."""

        async def both() -> tuple[int, int]:
            tasks = await self.conn.fetchval("SELECT count(*) FROM agent_tasks WHERE task_id LIKE $1", self.like)
            tools = await self.conn.fetchval(
                "SELECT count(*) FROM agent_checkpoints WHERE task_id LIKE $1 AND source = 'tool_call'", self.like
            )
            return int(tasks), int(tools)

        return self.loop.run_until_complete(both())

    def close(self) -> None:
        self.loop.run_until_complete(self.conn.close())
        self.loop.close()


def metrics(admin: int) -> dict[str, Counter[str]]:
    """serve's /metrics: each counter of interest by its labels."""
    out: dict[str, Counter[str]] = defaultdict(Counter)
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{admin}/metrics", timeout=10) as resp:
            text = resp.read().decode()
    except (urllib.error.URLError, OSError):
        return out
    for line in text.splitlines():
        m = METRIC.match(line)
        if m and m.group(1) in WANTED:
            labels = ",".join(sorted(x for x in m.group(2).split(",") if not x.startswith("sink=")))
            out[m.group(1)][labels.replace('"', "")] += int(float(m.group(3)))
    return out


def start_serve(
    base: Path,
    db_url: str,
    slack_url: str,
    routes: str | None,
    tier3: bool = True,
    board: bool = True,
    code: bool = False,
) -> ServeProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SPANVISOR_", "SLACK_", "OTEL_"))}
    env |= {
        "SPANVISOR_DATA_DIR": str(base),
        "SPANVISOR_DATABASE_URL": db_url,
        "SLACK_BOT_TOKEN": "xoxb-fleet",
        "SPANVISOR_SLACK_CHANNEL": "#agents",
        "SPANVISOR_SLACK_BASE_URL": slack_url,
        "SPANVISOR_OTLP_BIND": "127.0.0.1",
        "SPANVISOR_OTLP_TOKEN": TOKEN,
        "SPANVISOR_OTLP_HTTP_PORT": "0",
        "SPANVISOR_OTLP_GRPC_PORT": "0",
        "SPANVISOR_ADMIN_PORT": "0",
        # Only how long the stop at the end may drain a Slack backlog: not measured.
        "SPANVISOR_SHUTDOWN_TIMEOUT": "10s",
    }
    if routes:
        env["SPANVISOR_SLACK_ROUTES"] = routes
    if not tier3:  # the diagnostic setup: no edit limit anywhere
        env["SPANVISOR_SLACK_RATE_LIMITS"] = "chat.update=0,chat.delete=0"
    if not board:  # the channel as it was before issue 67: every line a reply
        env["SPANVISOR_SLACK_BOARD_BACKLOG"] = "off"
    if code:  # a Slack Code channel per session, the team channel a line each
        env["SPANVISOR_SLACK_CODE_CHANNELS"] = "on"
    serve = ServeProcess(base, env, start=False)
    serve.start(timeout=120)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # /readyz: PostgreSQL connected and migrated, every sink started
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{serve.admin}/readyz", timeout=5) as resp:
                if resp.status == 200:
                    return serve
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.2)
    stop_serve(serve)
    raise RuntimeError("serve did not become ready:\n" + serve.log_text()[-3000:])


def stop_serve(serve: ServeProcess) -> None:
    try:
        serve.terminate(60)
    except subprocess.TimeoutExpired:
        serve.kill()


def database_of(server_url: str, setup: str) -> str:
    """A database of the setup's own on the embedded server: each setup's
    serve talks to a fake Slack of its own, so it must not find the Slack
    messages (a channel's board, parents) an earlier setup's state claims."""
    import asyncpg

    async def make() -> None:
        conn = await asyncpg.connect(server_url)
        try:
            await conn.execute(f"DROP DATABASE IF EXISTS fleet_{setup}")
            await conn.execute(f"CREATE DATABASE fleet_{setup}")
        finally:
            await conn.close()

    asyncio.run(make())
    head, _, _ = server_url.rpartition("/")
    return f"{head}/fleet_{setup}"


def run_setup(setup: str, base: Path, server_url: str, a: argparse.Namespace) -> dict[str, Any]:
    label, per_channel, tier3, board, code = SETUPS[setup]
    db_url = database_of(server_url, setup)
    print(f"\n({setup}) {a.sessions} sessions, {label}: starting serve …", flush=True)
    run = f"{os.getpid() % 10_000:04d}"
    mix = a.mix
    sessions = [session(setup, k, mix[k % len(mix)], run) for k in range(a.sessions)]
    limits = {"chat.update": TIER3, "chat.delete": TIER3} if tier3 else None
    slack = FakeSlackThread(channel_rate=1.0, channel_burst=4, method_limits=limits)
    states = SlackStates(setup) if a.supervised else None
    watch = SlackWatch(slack, setup, states)
    # A launched task's agent is its CLI's service (the launcher's start names
    # it so): those route a channel per CLI, the only split a route can make.
    own = [f"agent:{s.agent}=#{s.agent}" for s in sessions if s.cli not in LAUNCHED]
    own += [f"agent:{CLIS[c][0]}=#{c}-agents" for c in mix if c in LAUNCHED]
    routes = ",".join(own) if per_channel else None
    serve = start_serve(base / f"serve-{setup}", db_url, slack.base_url, routes, tier3, board, code)
    rows = Rows(db_url, f"fleet-{setup}-")
    try:
        sent = Sent()
        fleet = Fleet(sessions, Poster(serve.http, sent, workers=min(32, a.sessions), token=TOKEN))
        supervisor = Supervised(setup, fleet, serve.http, a.seconds, TOKEN) if a.supervised else None
        postmaster = postmaster_of(base / "postgres" / "pgdata")
        load_before = loadavg()
        t0 = time.monotonic()
        fleet.start_ticks(t0)
        cpu_from = snapshot([serve.proc.pid], postmaster)
        agents = [
            threading.Thread(
                target=run_session,
                args=(
                    s,
                    t0 + a.ramp * k / len(sessions),
                    a.seconds,
                    supervisor if not isinstance(s, LaunchedSession) else None,
                ),
                daemon=True,
            )
            for k, s in enumerate(sessions)
        ]
        for th in agents:
            th.start()
        for th in agents:
            th.join(max(1.0, t0 + a.ramp + a.seconds + 30 - time.monotonic()))
        cpu = cores(cpu_from, snapshot([serve.proc.pid], postmaster))
        sending_s = time.monotonic() - t0
        flushed = fleet.finish(30)
        tools = [t for s in sessions for t in s.tools]
        print(
            f"  sent {sent.records:,} records in {sent.requests:,} requests over {sending_s:.0f} s "
            f"({len(tools):,} tool calls); waiting up to {a.drain:.0f} s for Slack and PostgreSQL …",
            flush=True,
        )
        last = time.monotonic()
        deadline = last + a.drain
        n_tasks = n_rows = 0
        drained_s = float("nan")
        while time.monotonic() < deadline:
            n_tasks, n_rows = rows.count()
            finals = supervisor is None or (states is not None and states.finals_shown(supervisor.truth))
            if finals and n_rows >= len(tools) and all(watch.shown.get(s.k, -1) >= len(s.tools) - 1 for s in sessions):
                drained_s = time.monotonic() - last
                break
            time.sleep(0.5)
        n_tasks, n_rows = rows.count()
        audit = rows.audit() if supervisor is not None else None
        exits = [x for s in sessions if isinstance(s, LaunchedSession) for x in s.exits]
        time.sleep(0.5)  # a last scrape after the sinks' own last writes
        got = metrics(serve.admin)
    finally:
        rows.close()
        stop_serve(serve)
        watch.close()
        slack.close()
    to_slack, export, after_ack = [], [], []
    by_cli: dict[str, tuple[list[float], list[float], list[float]]] = {c: ([], [], []) for c in mix}
    parents: dict[str, list[float]] = {c: [] for c in mix if c in LAUNCHED}
    for s in sessions:
        if isinstance(s, LaunchedSession):
            for run_no, at in s.starts.items():
                shown_at = watch.parents.get((s.k, run_no))
                parents[s.cli].append(math.inf if shown_at is None else shown_at - at)
    later = 0
    for s in sessions:
        hits = sorted(watch.hits.get(s.k, []))
        for t in s.tools:
            first = next(((at, j) for at, j in hits if at >= t.emitted and j >= t.i), None)
            to_slack.append(math.inf if first is None else first[0] - t.emitted)
            export.append(t.acked - t.emitted)
            by_cli[s.cli][0].append(export[-1])
            by_cli[s.cli][1].append(to_slack[-1])
            if first is not None:
                later += first[1] != t.i
                after_ack.append(first[0] - t.acked)
                by_cli[s.cli][2].append(after_ack[-1])
    supervised = None
    if supervisor is not None and states is not None and audit is not None:
        supervised = measure(supervisor.truth, states)
        supervised["t0"] = t0
        finals, asked, decided = audit
        by_k = {int(m.group(1)): v for tid, v in finals.items() if (m := re.search(rf"fleet-{setup}-(\d{{3}})-", tid))}
        truth = supervisor.truth
        supervised["audit"] = {
            "tasks": len(finals),
            "finals_right": sum(1 for k, t in truth.items() if by_k.get(k) == t.outcome),
            "finals_of": len(truth),
            "requests": asked,
            "requests_made": sum(1 for t in truth.values() if t.asked is not None),
            "decisions": decided,
        }
    return {
        "setup": setup,
        "label": label,
        "supervised": supervised,
        "sent": sent,
        "flushed": flushed,
        "tools": len(tools),
        "tasks": n_tasks,
        "tasks_made": sum(s.tasks for s in sessions),
        "parents": parents,
        "exits": len(exits),
        "rows": n_rows,
        "to_slack": to_slack,
        "export": export,
        "after_ack": after_ack,
        "by_cli": by_cli,
        "later": later,
        "drained_s": drained_s,
        "metrics": got,
        "slack": watch.calls,
        "cpu": cpu,
        "load": (load_before, loadavg()),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="A fleet of coding agents through one spanvisor serve.")
    ap.add_argument("--sessions", type=int, default=100, help="concurrent sessions (a third of each CLI)")
    ap.add_argument("--seconds", type=float, default=60.0, help="how long the sessions work")
    ap.add_argument("--drain", type=float, default=120.0, help="longest wait for Slack and PostgreSQL after")
    ap.add_argument(
        "--setups",
        default=None,
        help="a: a channel per session, b: one channel with its board off, c: (a) with chat.update unlimited, "
        "d: one channel at the defaults (its board on), e: (d) with a code channel per session; "
        "default ab, or abd with --supervised",
    )
    ap.add_argument(
        "--supervised",
        action="store_true",
        help="each session also asks once for an approval (answered 3-8 s later) and ends, 1 in 10 failing: "
        "measures approvals, errors and states shown against issue 67's goals",
    )
    ap.add_argument("--quick", action="store_true", help="20 sessions for 15 s, 45 s of drain")
    ap.add_argument(
        "--ramp",
        type=float,
        default=0.0,
        help="seconds over which the sessions begin, evenly (default 0: all within the first 5 s)",
    )
    ap.add_argument(
        "--launched",
        action="store_true",
        help="Claude Code at the 1 s export delay `spanvisor run` sets (the SDK's default), not its own 5 s",
    )
    ap.add_argument(
        "--clis",
        default="3",
        help="3: Claude Code, Codex CLI, Gemini CLI; 7: with Qwen Code, Copilot CLI, OpenCode, Cline; "
        "or names, e.g. claude,copilot",
    )
    a = ap.parse_args(argv)
    a.mix = MIXES.get(a.clis) or tuple(c.strip() for c in a.clis.split(",") if c.strip())
    if not a.mix or set(a.mix) - set(CLIS):
        ap.error(f"--clis takes 3, 7 or names of {','.join(CLIS)}")
    if a.launched:
        service, mode, _ = CLIS["claude"]
        CLIS["claude"] = (service, mode, 1.0)
    if a.quick:
        a.sessions, a.seconds, a.drain = 20, 15.0, 45.0
    a.sessions = max(1, min(a.sessions, 999))
    if a.setups is None:
        a.setups = "abd" if a.supervised else "ab"
    if not a.setups or set(a.setups) - set(SETUPS):
        ap.error("--setups takes letters of abcde")
    print(
        f"spanvisor bench_fleet: python {platform.python_version()}, {os.cpu_count()} CPUs, "
        f"load (1, 5, 15 min) {loadavg()} at start",
        flush=True,
    )
    base = Path(tempfile.mkdtemp(prefix="spanvisor-bench-fleet-"))
    pg = EmbeddedPostgres(base / "postgres")
    results = []
    try:
        print("starting the embedded PostgreSQL (fsync on) …", flush=True)
        url = pg.acquire()
        for setup in a.setups:
            results.append(run_setup(setup, base, url, a))
    finally:
        pg.release()
        shutil.rmtree(base, ignore_errors=True)
    for r in results:
        report(r, a.sessions)
    print(f"\nload (1, 5, 15 min) {loadavg()} at the end")
    return 0


if __name__ == "__main__":
    sys.exit(main())
