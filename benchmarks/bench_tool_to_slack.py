"""A real coding-agent CLI's tool call to its line in Slack, under ``spanvisor run``.

    .venv/bin/python benchmarks/bench_tool_to_slack.py [--calls 20] [--turn 1.0] [--only claude,gemini,codex] [--no-gate]

Each CLI (``tests/codingagents``' pinned npm install: Claude Code, Gemini
CLI, Codex CLI) runs one session under ``spanvisor run`` against its fake
model API: ``--calls`` shell tool calls, each model turn answered after
``--turn`` seconds (real models take seconds), then a text turn. The gate
is on, as the docs set it up (the command hook ``spanvisor hook <cli>`` in
the CLI's own settings, answered by the launcher; a policy allowing the
calls); ``--no-gate`` runs without it. Each tool call runs ``./mark <id>``,
a script in the session's folder that writes the wall clock (``date +%s%N``)
to ``<id>.t`` in the session's folder: the moment the tool ran, just after
the gate's answer. Measured per call: from then to the first
``chat.postMessage``/``chat.update`` the fake Slack answered ok whose
message names ``<id>`` (the work log's line, or a reply, of the task's
thread). A call never shown within ``--drain`` seconds of the session's end
counts as slower than any shown. The CLI's own line is split where its
record reached serve (``_arrivals``: a pass-through in front of serve's
port that notes when a request naming each id came): the CLI's export
delay, then serve's way to Slack; the gate's line where its note reached
serve (the note leaves as the gate answers, so often before the tool runs:
a negative delay).

``serve`` runs at its defaults (``SPANVISOR_SINKS=auto``) with an embedded
PostgreSQL (fsync on) and the local fake Slack at Slack's real limits
(1 post/s a channel, ``chat.update`` at Tier 3), as ``bench_fleet.py``
runs it. Each CLI's export delay is what ``spanvisor run`` leaves it:
Claude Code 1 s (``OTEL_LOGS_EXPORT_INTERVAL``, which the launcher sets),
Gemini CLI its own batch (no setting reaches it), Codex CLI its own
fixed tick (no setting either: the floor, stated on its own). Goal:
p95 <= 1.5 s for Claude Code and Gemini CLI. About 2.5 minutes.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "receiver"), str(ROOT / "benchmarks")]

from serve_proc import FakeSlackThread  # type: ignore[import-not-found]  # noqa: E402
from tests.codingagents import claude_code as cc  # noqa: E402
from tests.codingagents import codex_cli as cx  # noqa: E402
from tests.codingagents import gemini_cli as gc  # noqa: E402
from tests.codingagents.fake_anthropic import fake_anthropic  # noqa: E402
from tests.codingagents.fake_gemini import fake_gemini  # noqa: E402
from tests.codingagents.fake_http import FakeModelAPI  # noqa: E402
from tests.codingagents.fake_openai import fake_openai  # noqa: E402
from tests.codingagents.npm_install import install  # noqa: E402
from tests.codingagents.script import Script, held, text, tool  # noqa: E402

from _arrivals import Arrivals  # noqa: E402
from _fleet_report import pct  # noqa: E402
from bench_fleet import TIER3, TOKEN, loadavg, start_serve, stop_serve  # noqa: E402
from spanvisor_postgres.embedded import EmbeddedPostgres  # noqa: E402

VENV_BIN = str(Path(sys.executable).parent)
SPANVISOR = str(Path(sys.executable).with_name("spanvisor"))
GOAL_S = 1.5
# The gate's note leaves as the gate answers, so it may reach serve before the tool runs.
NOTE_BEFORE_S = 5.0
GATE_ROWS = ("first line", "  its note at serve", "  then serve -> Slack")
POLICY = """default = "deny"
[[rule]]
name = "the benchmark's marks"
command = ["./mark *"]
decision = "allow"
"""
MARK = '#!/bin/sh\ndate +%s%N > "$1.t"\n'
CLIS = ("claude", "gemini", "codex")
NAMES = {"claude": "Claude Code", "gemini": "Gemini CLI", "codex": "Codex CLI"}
TOOLS = {"claude": ("Bash", "command"), "gemini": ("run_shell_command", "command"), "codex": ("exec_command", "cmd")}


class Seen:
    """Each marker's first ok Slack post or edit naming it, in wall-clock
    seconds: any line (under the gate, its decision's line, e.g.
    ``Bash: ./mark <id>: allowed by policy:…``), and the CLI's own tool-call
    line, from its telemetry (``Bash(./mark <id>) (80 ms)``)."""

    def __init__(self, slack: Any) -> None:
        self.slack = slack
        # The fake stamps calls with this process's monotonic clock; the marks are wall clock.
        self.offset = time.time() - time.monotonic()

    def first(self, markers: list[str]) -> tuple[dict[str, float], dict[str, float]]:
        calls = list(self.slack.fake.calls)  # appended on the fake's loop; a copy is a snapshot
        any_line: dict[str, float] = {}
        own: dict[str, float] = {}
        for c in calls:
            if c.method not in ("chat.postMessage", "chat.update") or not c.response.get("ok"):
                continue
            shown = json.dumps(c.args)
            for m in markers:
                if m not in any_line and m in shown:
                    any_line[m] = c.at + self.offset
                if m not in own and f"(./mark {m})" in shown:
                    own[m] = c.at + self.offset
        return any_line, own


def _texts(doc: Any) -> list[str]:
    """Every line of text in a Slack call's arguments (blocks included)."""
    if isinstance(doc, str):
        return doc.splitlines()
    if isinstance(doc, dict):
        doc = list(doc.values())
    return [ln for v in doc for ln in _texts(v)] if isinstance(doc, list) else []


def session(
    cli: str, bin_dir: Path, endpoint: str, tmp: Path, a: argparse.Namespace, markers: list[str]
) -> tuple[list[str], dict[str, str], Path, FakeModelAPI]:
    """The CLI's argv (under ``spanvisor run``), its environment, its folder and its fake model."""
    name, arg = TOOLS[cli]
    turns = [held(tool(name, None, **{arg: f"./mark {m}"}), a.turn) for m in markers]
    script = Script([*turns, held(text("All marked."), a.turn)])
    api = {"claude": fake_anthropic, "gemini": fake_gemini, "codex": fake_openai}[cli]()
    run_id = api.script(f"tsl-{cli}", script)
    home, work = tmp / cli / "home", tmp / cli / "work"
    work.mkdir(parents=True)
    (work / "mark").write_text(MARK)  # in the folder: a login shell (Codex's bash -lc) resets PATH
    (work / "mark").chmod(0o755)
    matrix: Any = type("Served", (), {"endpoint": endpoint})()  # the helpers read only its endpoint
    prompt = f"mark each of {len(markers)} steps ({run_id})"
    hook = f"spanvisor hook {'claude-code' if cli == 'claude' else cli}"
    if cli == "claude":
        env = cc.env(home, matrix, api, run_id)
        env.pop("OTEL_LOGS_EXPORT_INTERVAL")  # the launcher's 1 s, not the tests' 0.5 s
        settings: dict[str, Any] = {"permissions": {"allow": ["Bash"]}}
        if a.gate:
            entry = {"type": "command", "command": hook, "timeout": 600, "onFailure": "block"}
            settings = {"hooks": {"PreToolUse": [{"matcher": "*", "hooks": [entry]}]}}
        (tmp / "claude-settings.json").write_text(json.dumps(settings))
        argv = [*cc.argv(bin_dir, prompt, tmp / "claude-settings.json", launcher=True), "--max-turns", "99"]
    elif cli == "gemini":
        env = gc.env(home, matrix, api, run_id, telemetry=False)
        if a.gate:
            path = home / ".gemini" / "settings.json"
            doc = json.loads(path.read_text())
            entry = {"type": "command", "command": f"{hook} --cli-timeout 600", "timeout": 600_000}
            doc["hooks"] = {"BeforeTool": [{"matcher": "*", "hooks": [entry]}]}
            path.write_text(json.dumps(doc))
        argv = gc.argv(bin_dir, prompt)
    else:
        env = cx.env(home, api, run_id)
        if a.gate:
            with (home / ".codex" / "config.toml").open("a") as f:
                f.write('\n[[hooks.PreToolUse]]\nmatcher = "*"\n[[hooks.PreToolUse.hooks]]\n')
                f.write(f'type = "command"\ncommand = "{hook}"\ntimeout = 600\n')
        argv = cx.argv(bin_dir, prompt)
    env["PATH"] = os.pathsep.join([VENV_BIN, env["PATH"]])
    env |= {"SPANVISOR_HOOK_POLICY": str(tmp / "policy.toml"), "SPANVISOR_DATA_DIR": str(tmp / cli / "data")}
    # serve asks for its token (as bench_fleet runs it); the launcher hands it on to its hooks and the CLI's export.
    env["SPANVISOR_OTLP_TOKEN"] = TOKEN
    launcher = [SPANVISOR, "run", "--endpoint", endpoint, "--"]
    return [*launcher, *argv], env, work, api


def run_cli(
    cli: str, bin_dir: Path, arrivals: Arrivals, seen: Seen, tmp: Path, a: argparse.Namespace
) -> dict[str, list[float]]:
    endpoint = arrivals.url
    markers = [f"tsl{cli[:2]}{os.getpid() % 10_000:04d}x{i:02d}" for i in range(a.calls)]
    argv, env, work, api = session(cli, bin_dir, endpoint, tmp, a, markers)
    print(f"\n{NAMES[cli]}: {a.calls} tool calls, a model turn {a.turn:g} s …", flush=True)
    try:
        t0 = time.monotonic()
        done = subprocess.run(
            argv, env=env, cwd=work, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=600, check=False
        )
        took = time.monotonic() - t0
        ran = {m: int((work / f"{m}.t").read_text()) / 1e9 for m in markers if (work / f"{m}.t").exists()}
        print(f"  exit {done.returncode} after {took:.1f} s; {len(ran)} of {a.calls} tool calls ran", flush=True)
        if len(ran) < a.calls:
            print(f"  its stdout and stderr, last lines:\n{done.stdout[-1500:]}\n{done.stderr[-1500:]}", flush=True)
        deadline = time.monotonic() + a.drain
        first, own = seen.first(markers)
        while time.monotonic() < deadline and not set(ran) <= set(own):
            time.sleep(0.25)
            first, own = seen.first(markers)
    finally:
        api.close()
    lags = {
        "first line": [first[m] - ran[m] if m in first else math.inf for m in ran],
        "  its note at serve": [],
        "  then serve -> Slack": [],
        "the CLI's own line": [own[m] - ran[m] if m in own else math.inf for m in ran],
        "  its export": [],
        "  serve -> Slack": [],
    }
    for m, t in ran.items():  # the gate's line split at its note's arrival (sent as it answers: before the run)
        noted = arrivals.first("launcher", m, t - NOTE_BEFORE_S)
        if noted is not None and m in first:
            lags["  its note at serve"].append(noted - t)
            lags["  then serve -> Slack"].append(first[m] - noted)
    for m, t in ran.items():  # the CLI's own line split at its arrival at serve
        got = arrivals.first("cli", m, t)
        if got is not None and m in own:
            lags["  its export"].append(got - t)
            lags["  serve -> Slack"].append(own[m] - got)
    print(f"  its own tool-call line in Slack: {len(own)} of {len(ran)} (drain {a.drain:g} s)", flush=True)
    return lags


def sec(x: float) -> str:
    return "not shown" if math.isinf(x) else f"{x:.2f} s"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calls", type=int, default=20, help="tool calls per session (20)")
    ap.add_argument("--turn", type=float, default=1.0, help="seconds the fake model takes a turn (1.0)")
    ap.add_argument("--only", default=",".join(CLIS), help="comma-separated: claude, gemini, codex")
    ap.add_argument("--drain", type=float, default=20.0, help="seconds to wait for Slack after a session (20)")
    ap.add_argument("--no-gate", dest="gate", action="store_false", help="no hook in the CLIs' settings")
    a = ap.parse_args(argv)
    clis = [c for c in CLIS if c in a.only.split(",")]
    print(
        f"spanvisor bench_tool_to_slack: python {platform.python_version()}, {os.cpu_count()} CPUs, "
        f"load (1, 5, 15 min) {loadavg()} at start; the gate {'on' if a.gate else 'off'}",
        flush=True,
    )
    bin_dir = install()
    tmp = Path(tempfile.mkdtemp(prefix="spanvisor-bench-tsl-"))
    (tmp / "policy.toml").write_text(POLICY)
    pg = EmbeddedPostgres(tmp / "postgres")
    slack = FakeSlackThread(
        channel_rate=1.0, channel_burst=4, method_limits={"chat.update": TIER3, "chat.delete": TIER3}
    )
    results: dict[str, dict[str, list[float]]] = {}
    try:
        print("starting the embedded PostgreSQL (fsync on) and serve at its defaults …", flush=True)
        serve = start_serve(tmp / "serve", pg.acquire(), slack.base_url, None)
        arrivals = Arrivals(serve.http)
        try:
            seen = Seen(slack)
            for cli in clis:
                results[cli] = run_cli(cli, bin_dir, arrivals, seen, tmp, a)
        finally:
            arrivals.close()
            stop_serve(serve)
    finally:
        slack.close()
        pg.release()
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"\na tool call ran -> its line in Slack, p50 / p95 / max (the gate {'on' if a.gate else 'off'}):")
    for cli, by in results.items():
        for what, lags in by.items():
            if not a.gate and what in GATE_ROWS:
                continue  # without the gate the first line is the CLI's own
            if not lags:
                print(f"  {NAMES[cli]:12} {'no tool call ran' if what == 'first line' else what + ': none matched'}")
                if what == "first line":
                    break
                continue
            p50, p95 = statistics.median(lags), pct(lags, 95)
            verdict = f"goal p95 <= {GOAL_S:g} s: {'met' if p95 <= GOAL_S else 'MISSED'}"
            if cli == "codex" or (what != "the CLI's own line" and what != "first line"):
                verdict = ""
            if cli == "codex" and what == "the CLI's own line":
                verdict = "its own export is the floor (no goal)"
            label = "the gate's line" if what == "first line" else what
            row = f"{sec(p50)} / {sec(p95)} / {sec(max(lags))}"
            print(f"  {NAMES[cli]:12} {label:21} {row:28} ({len(lags)} calls)  {verdict}")
    print(f"\nload (1, 5, 15 min) {loadavg()} at the end")
    return 0


if __name__ == "__main__":
    sys.exit(main())
