"""The gate's cost per tool call, as the coding agent pays it.

**Per call** (``hooks``): from the CLI's spawn of ``spanvisor hook`` to its
exit, wall time, for each CLI contract (claude-code, codex, gemini), with
``serve`` up (a real ``spanvisor serve``: the note is delivered) and down
(nothing listens: the note is spooled), in three setups: the command hook
cold (no launcher), the full command hook through the launcher's socket
(``SPANVISOR_GATE_SOCKET``), and the launcher's small client (what
``spanvisor hook`` is on the CLI's PATH under ``spanvisor run``: a
standard-library client run with ``python -I -S``). Calls: one a rule
allows (every contract), and for Claude Code's also one a rule denies, one
no rule matches (``default = "deny"``) and a chained command. **Claude
Code's http hook** (``http``): the POST of the hook's JSON to the
launcher's loopback listener and to ``serve``'s ``/v1/hooks/claude-code``,
a new connection each call, to the answer. Beside ``true`` (a process that
does nothing) as the floor. Interleaved: one call of each case per round.
The launcher's gate runs in this process, as it runs in ``spanvisor run``.

**The launcher's start** (``run``): ``spanvisor run -- claude …`` against
the same fake ``claude`` (a shell script that notes the time it starts and
exits) run alone, with ``serve`` up and down: what the launcher adds before
the CLI starts, and from start to exit, interleaved (a twentieth of
``--calls`` rounds, 5 to 50).

**An outage** (``outage``): the launcher's gate deciding calls while
``serve`` is down, each call's work in this process as the notes waiting
in the spool grow (``max(250, --calls)`` calls a step, four steps).

**The system gate keying a session** (``keyed``): the cold command hook as
the system gate runs it for a session without the launcher (``--key-sessions
--locked``), each call a new session, so each sends the session's key
before answering (``spanvisor.hook.sessionkey``): to an OTLP endpoint that
answers at once, one that refuses, and one that takes the connection and
never answers (the post's deadline, ``SEND_TIMEOUT_S``, ends it), each
beside the same hook without keying against the same receiver (whose notes
and cancel look meet it too). What keying costs a session's first call
when its receiver is up, down or silent; ``min(--calls, 20)`` calls a case.

**A session** (``session``): the real Claude Code (``tests/codingagents``'
pinned install) against the fake Messages API answering each turn after
0.5 s, ``--session-calls`` Bash calls then a text turn, without the gate
(its permissions allow Bash) and with it (``spanvisor run`` and the command
hook ``spanvisor hook claude-code``, a policy allowing each call): total
wall time of each, and the ratio.

    .venv/bin/python benchmarks/bench_gate.py [--calls 1000] [--session-calls 500] [--only hooks,http,outage,keyed,run,session]

``--spanvisor`` names the command timed as the cold hook and as the
launcher (default: this venv's, an editable install, whose import finder
costs every Python start about 10 ms that an installed wheel does not pay;
to measure what users pay, install the wheel alone: the gate needs nothing
but tree-sitter; the launcher, ``--only run``, the wheel's dependencies):

    python3 -m venv /tmp/gate && .venv/bin/python -m pip wheel --no-deps -w /tmp/whl .
    /tmp/gate/bin/pip install --no-deps /tmp/whl/spanvisor-*.whl tree-sitter tree-sitter-bash
    .venv/bin/python benchmarks/bench_gate.py --spanvisor /tmp/gate/bin/spanvisor
    /tmp/gate/bin/pip install /tmp/whl/spanvisor-*.whl      # then --only run as well

Figures: p50/p95/p99 in ms and the p50 over the floor; the goals, met or
missed. The defaults (100 calls, a 50-call session: about 10 minutes on a
loaded 2-core machine) fit ``make bench``;
docs/design/performance.md's figures come from ``--calls 1000 --session-calls 500``.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]

SPANVISOR = str(Path(sys.executable).with_name("spanvisor"))
CLIS = ("claude-code", "codex", "gemini")
POLICY = """default = "deny"
[[rule]]
name = "everyday"
command = ["ls", "ls *", "git status", "echo *"]
decision = "allow"
[[rule]]
name = "no-rm"
command = ["rm *"]
decision = "deny"
"""
CALLS = {
    "allowed": "ls -la",
    "denied": "rm -rf build",
    "no rule": "make deploy",
    "chained": "git status && ls -la | ls",
}
DOWN = "http://127.0.0.1:9"


def stdin_for(cli: str, command: str) -> bytes:
    tool = "run_shell_command" if cli == "gemini" else "Bash"
    doc = {"session_id": "bench", "tool_name": tool, "tool_input": {"command": command}}
    if cli != "gemini":
        doc["hook_event_name"] = "PreToolUse"
    return json.dumps(doc).encode()


def spawned(argv: list[str], stdin: bytes, env: dict[str, str]) -> Callable[[], float]:
    def once() -> float:
        t0 = time.perf_counter()
        subprocess.run(argv, input=stdin, capture_output=True, env=env, check=False)
        return (time.perf_counter() - t0) * 1000

    return once


def posted(url: str, body: bytes) -> Callable[[], float]:
    parts = url.split("/", 3)
    host, port = parts[2].split(":")
    path = "/" + parts[3]

    def once() -> float:
        t0 = time.perf_counter()
        conn = http.client.HTTPConnection(host, int(port), timeout=60)
        conn.request("POST", path, body, {"Content-Type": "application/json"})
        conn.getresponse().read()
        conn.close()
        return (time.perf_counter() - t0) * 1000

    return once


def start_serve(tmp: Path, policy: Path, token: bool = False) -> tuple[subprocess.Popen[bytes], str]:
    """A real ``spanvisor serve`` (console sink, no journal), its base URL.
    Open unless ``token``: then with the token it makes at its first start,
    in ``tmp / "serve"`` (serve's default; a hook given that data dir reads
    it and sends it only to this user's listener)."""
    import re

    env = {k: v for k, v in os.environ.items() if not k.startswith(("SPANVISOR_", "OTEL_", "SLACK_"))}
    env |= {
        "SPANVISOR_DATA_DIR": str(tmp / "serve"),
        **({} if token else {"SPANVISOR_OPEN": "1"}),  # open: the hooks measured here send no token
        "SPANVISOR_SINKS": "console",
        "SPANVISOR_OTLP_BIND": "127.0.0.1",
        "SPANVISOR_OTLP_HTTP_PORT": "0",
        "SPANVISOR_OTLP_GRPC_PORT": "off",
        "SPANVISOR_ADMIN_PORT": "off",
        "SPANVISOR_JOURNAL": "off",
        "SPANVISOR_HOOK_POLICY": str(policy),
        "SPANVISOR_HOOK_DELIVERY": "off",
    }
    tmp.mkdir(parents=True, exist_ok=True)
    log = tmp / "serve.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "spanvisor.cli", "serve"], env=env, stdout=out, stderr=subprocess.STDOUT
        )
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        m = re.search(r"http=(\d+)", log.read_text(errors="replace"))
        if m:
            return proc, f"http://127.0.0.1:{m.group(1)}"
        if proc.poll() is not None:
            raise SystemExit(f"serve exited:\n{log.read_text()}")
        time.sleep(0.1)
    raise SystemExit("serve did not start")


TOKENED = "http hook, launcher's listener, serve's token: allowed"

# A pause before each call: the previous case's trailing work (the audit
# note a gate writes and delivers after its answer, in this process or in
# serve) is not timed in the next case, as a CLI's calls are spaced by its
# model's turns.
SETTLE_S = 0.005


def measure(cases: dict[str, Callable[[], float]], n: int, label: str) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {k: [] for k in cases}
    for fn in cases.values():  # warm: first imports, page cache
        fn()
    for i in range(n):
        for name, fn in cases.items():
            time.sleep(SETTLE_S)
            times[name].append(fn())
        if (i + 1) % max(1, n // 10) == 0:
            print(f"  {label}: {i + 1}/{n} rounds", file=sys.stderr, flush=True)
    return times


def table(times: dict[str, list[float]], floor: float) -> dict[str, tuple[float, float, float]]:
    out: dict[str, tuple[float, float, float]] = {}
    print(f"{'case':64} {'p50':>7} {'p95':>7} {'p99':>7}  over the floor")
    for name, ts in times.items():
        q = statistics.quantiles(ts, n=100)
        p50 = statistics.median(ts)
        out[name] = (p50, q[94], q[98])
        print(f"{name:64} {p50:7.1f} {q[94]:7.1f} {q[98]:7.1f}  {p50 - floor:7.1f}")
    return out


def goal(what: str, value: float, limit: float, unit: str = " ms") -> None:
    shown = f"{value:.2f}" if unit == "x" else f"{value:.1f}"  # a ratio near its goal: 1.46 is not 1.54
    print(f"goal: {what}: {shown}{unit} against <= {limit:g}{unit}: {'met' if value <= limit else 'MISSED'}")


def bench_calls(args: argparse.Namespace, tmp: Path, only: set[str]) -> None:
    from _floor_gate import FloorGate
    from spanvisor.clis import registry
    from spanvisor.gate import local
    from spanvisor.launcher.gate import LocalGate
    from spanvisor.launcher.gate_http import HttpGate

    policy = tmp / "policy.toml"
    policy.write_text(POLICY)
    serve, up = start_serve(tmp, policy)
    # As `spanvisor run` makes it: its session's task, under which the
    # launcher's gate decides every call (no cancel look: the launcher
    # follows its task's cancel itself and stops the CLI).
    gate = LocalGate({"SPANVISOR_TASK_ID": "bench-launched", "SPANVISOR_TASK_AGENT": "claude-code"})
    base = {k: v for k, v in os.environ.items() if not k.startswith(("SPANVISOR_", "OTEL_"))}
    base |= {"SPANVISOR_DATA_DIR": str(tmp / "data"), "SPANVISOR_HOOK_POLICY": str(policy)}
    receivers = {"serve up": up, "serve down": DOWN}
    floor_case: dict[str, Callable[[], float]] = {"true (the floor)": spawned(["true"], b"", base)}
    cases = dict(floor_case)
    tokened: subprocess.Popen[bytes] | None = None  # serve with its token, for the http hook
    try:
        if "hooks" in only:
            client = os.path.join(gate.bin or "", "spanvisor")
            setups = {
                "cold": [args.spanvisor, "hook"],
                "launcher": [args.spanvisor, "hook"],
                "launcher, small client": [client, "hook"],
            }
            for setup, head in setups.items():
                if setup.endswith("client") and gate.bin is None:
                    continue
                for rname, url in receivers.items():
                    env = {**base, "SPANVISOR_OTLP_ENDPOINT": url}
                    if setup != "cold":
                        env[local.ENV_SOCKET] = gate.path
                    for cli in CLIS:
                        kinds = CALLS if (cli == "claude-code" and rname == "serve down") else {"allowed": "ls -la"}
                        for kind, command in kinds.items():
                            name = f"{setup}: {cli}, {kind}, {rname}"
                            cases[name] = spawned([*head, cli], stdin_for(cli, command), env)
        http_gate, floor_gate, tokened_gate = None, None, None
        if "http" in only:
            env = {**base, "SPANVISOR_OTLP_ENDPOINT": up}
            http_gate = HttpGate(registry.need("claude-code"), gate.decide, env, str(tmp))
            floor_gate = FloorGate()
            # As on one machine at serve's defaults: serve made its token and
            # the gate reads it from the same data dir, so each call first
            # asks the kernel who listens on serve's port (servetoken).
            tokened, up_tokened = start_serve(tmp / "tokened", policy, token=True)
            env_tokened = {**base, "SPANVISOR_DATA_DIR": str(tmp / "tokened" / "serve")}
            env_tokened["SPANVISOR_OTLP_ENDPOINT"] = up_tokened
            tokened_gate = HttpGate(registry.need("claude-code"), gate.decide, env_tokened, str(tmp))
            for kind, command in CALLS.items():
                cases[f"http hook, the floor gate (regex, _floor_gate.py): {kind}"] = posted(
                    floor_gate.url, stdin_for("claude-code", command)
                )
                cases[f"http hook, launcher's listener: {kind}, serve up"] = posted(
                    http_gate.url, stdin_for("claude-code", command)
                )
                cases[f"http hook, serve's route: {kind}"] = posted(
                    f"{up}/v1/hooks/claude-code?timeout=600", stdin_for("claude-code", command)
                )
            # Last in a round: what its note's delivery leaves to do after the
            # answer falls on the next round's `true`, never in a ratio.
            cases[TOKENED] = posted(tokened_gate.url, stdin_for("claude-code", CALLS["allowed"]))
        if len(cases) > 1:
            times = measure(cases, args.calls, "calls")
            floor = statistics.median(times["true (the floor)"])
            got = table(times, floor)
            for name, (p50, _p95, p99) in got.items():
                if name.startswith("cold: claude-code, allowed, serve down"):
                    goal("a cold command hook, p50", p50, 60)
                if name.startswith("launcher, small client: claude-code, allowed"):
                    goal(f"through the launcher ({name.split(', ')[-1]}), p50", p50, 20)
                    goal(f"through the launcher ({name.split(', ')[-1]}), p99", p99, 50)
                if name.startswith("http hook, launcher's listener: allowed"):
                    goal("Claude Code's http hook (the launcher's listener), p50", p50, 5)
                    floor_p50 = next((v[0] for k, v in got.items() if k.startswith("http hook, the floor gate")), None)
                    if floor_p50:
                        goal("the launcher's listener over the floor gate, p50 ratio", p50 / floor_p50, 1.5, "x")
                        if TOKENED in got:
                            ratio = got[TOKENED][0] / floor_p50
                            print(f"  with serve's token (its default), the same ratio: {ratio:.2f}x")
                if name.startswith("http hook, serve's route: allowed"):
                    goal("Claude Code's http hook (serve's route), p50", p50, 5)
            print(f"calls per case: {args.calls}; answered by the launcher's gate: {gate.answered}")
        if http_gate is not None:
            http_gate.close()
        if floor_gate is not None:
            floor_gate.close()
        if tokened_gate is not None:
            tokened_gate.close()
    finally:
        gate.close()
        for proc in (serve, tokened):
            if proc is not None:
                proc.terminate()
                proc.wait(60)


class _Endpoints:
    """OTLP/HTTP endpoints for the keyed hook: one that answers 200 at once,
    and one that listens and never answers (never accepted: the backlog)."""

    def __init__(self) -> None:
        import http.server
        import socket
        import threading

        class Ok(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *a: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Ok)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.silent = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.silent.bind(("127.0.0.1", 0))
        self.silent.listen(1024)
        self.urls = {
            "answering": f"http://127.0.0.1:{self.server.server_address[1]}",
            "refusing": DOWN,
            "silent": f"http://127.0.0.1:{self.silent.getsockname()[1]}",
        }

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.silent.close()


def bench_keyed(args: argparse.Namespace, tmp: Path) -> None:
    from spanvisor.hook import sessionkey

    policy = tmp / "policy.toml"
    policy.write_text(POLICY)
    base = {k: v for k, v in os.environ.items() if not k.startswith(("SPANVISOR_", "OTEL_"))}
    base |= {"SPANVISOR_DATA_DIR": str(tmp / "data"), "SPANVISOR_HOOK_DELIVERY": "off", "HOME": str(tmp / "home")}
    ends = _Endpoints()

    def fresh(argv: list[str], env: dict[str, str]) -> Callable[[], float]:
        """Each call a new session (its key not yet sent)."""

        def once() -> float:
            doc = json.loads(stdin_for("claude-code", "ls -la"))
            doc["session_id"] = str(uuid.uuid4())
            return spawned(argv, json.dumps(doc).encode(), env)()

        return once

    # A locked hook reads its receiver from its command line only, as the gate passes it.
    hook = [args.spanvisor, "hook", "claude-code", "--locked", "--policy", str(policy), "--endpoint"]
    cases: dict[str, Callable[[], float]] = {"true (the floor)": spawned(["true"], b"", base)}
    for name, url in ends.urls.items():
        # The same receiver without keying: its notes and its cancel look
        # meet it too, so the difference is the keying's own cost.
        cases[f"locked, not keying: {name}"] = fresh([*hook, url], {**base, "XDG_STATE_HOME": str(tmp / "plain")})
        env = {**base, "XDG_STATE_HOME": str(tmp / f"state-{name}")}
        cases[f"locked, keying a new session: {name}"] = fresh([*hook, url, "--key-sessions"], env)
    try:
        times = measure(cases, max(5, min(args.calls, 20)), "keyed")
        floor = statistics.median(times["true (the floor)"])
        got = table(times, floor)
        added = {}
        for name in ends.urls:
            added[name] = got[f"locked, keying a new session: {name}"][0] - got[f"locked, not keying: {name}"][0]
            print(f"keying a session against a receiver {name} adds {added[name]:.1f} ms at p50")
        bound = sessionkey.SEND_TIMEOUT_S * 1000 + 100
        goal("keying against a silent receiver, the call's p50 over the same call unkeyed", added["silent"], bound)
    finally:
        ends.close()


def bench_run(args: argparse.Namespace, tmp: Path) -> None:
    """What ``spanvisor run`` adds to a session: before the CLI starts (the
    fake CLI writes the wall clock when it runs), and in all (start to exit)."""
    policy = tmp / "policy.toml"
    policy.write_text(POLICY)
    serve, up = start_serve(tmp / "run", policy)
    fake = tmp / "bin" / "claude"
    fake.parent.mkdir(exist_ok=True)
    fake.write_text('#!/bin/sh\ndate +%s.%N > "$BENCH_STARTED"\n')
    fake.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SPANVISOR_", "OTEL_"))}
    env["SPANVISOR_DATA_DIR"] = str(tmp / "run-data")
    launcher = (
        [args.spanvisor, "run"] if Path(args.spanvisor).exists() else [sys.executable, "-m", "spanvisor.cli", "run"]
    )
    claude = [str(fake), "-p", "hi", "--output-format", "json"]
    cases = {
        "the CLI alone": claude,
        "spanvisor run, serve up": [*launcher, "--endpoint", up, "--", *claude],
        "spanvisor run, serve down": [*launcher, "--endpoint", DOWN, "--", *claude],
    }
    marker = tmp / "started"
    starts: dict[str, list[float]] = {k: [] for k in cases}
    totals: dict[str, list[float]] = {k: [] for k in cases}
    n = max(5, min(args.calls // 20, 50))  # with serve down the launcher's end takes seconds
    try:
        for i in range(n + 1):
            for name, argv in cases.items():
                marker.unlink(missing_ok=True)
                t0 = time.time()
                subprocess.run(argv, capture_output=True, env={**env, "BENCH_STARTED": str(marker)}, check=False)
                total = (time.time() - t0) * 1000
                started = (float(marker.read_text()) - t0) * 1000 if marker.exists() else float("nan")
                if i:  # the first round warms up
                    starts[name].append(started)
                    totals[name].append(total)
            if (i + 1) % max(1, n // 10) == 0:
                print(f"  run: {i + 1}/{n} rounds", file=sys.stderr, flush=True)
    finally:
        serve.terminate()
        serve.wait(60)
    print("until the CLI starts:")
    table(starts, statistics.median(starts["the CLI alone"]))
    print("start to exit:")
    table(totals, statistics.median(totals["the CLI alone"]))
    alone = statistics.median(starts["the CLI alone"])
    for name in ("spanvisor run, serve up", "spanvisor run, serve down"):
        goal(f"what {name} adds to the CLI's start, p50", statistics.median(starts[name]) - alone, 50)


def bench_session(args: argparse.Namespace, tmp: Path) -> None:
    """A real Claude Code session against a model that takes 0.5 s a turn."""
    from tests.codingagents import claude_code as cc
    from tests.codingagents.fake_anthropic import answer, tool_results
    from tests.codingagents.fake_http import FakeModelAPI
    from tests.codingagents.npm_install import install
    from tests.codingagents.script import Script, text, tool

    bin_dir = install()

    def slow(script: Script, seen: object) -> object:
        if getattr(seen, "path", "").startswith("/v1/messages") and not getattr(seen, "path", "").endswith("tokens"):
            time.sleep(0.5)
        return answer(script, seen)  # type: ignore[arg-type]

    api = FakeModelAPI(slow)  # type: ignore[arg-type]
    policy = tmp / "policy.toml"
    policy.write_text(POLICY)
    serve, up = start_serve(tmp / "session", policy)
    totals: dict[str, float] = {}
    try:
        n = args.session_calls
        for gated in (False, True):
            run_id = api.script(
                uuid.uuid4().hex[:12], Script([*(tool("Bash", command=f"echo {i}") for i in range(n)), text("done")])
            )
            home = tmp / f"home-{gated}"
            env = cc.env(home, type("M", (), {"endpoint": up})(), api, run_id)  # type: ignore[arg-type]
            settings = tmp / f"settings-{gated}.json"
            if gated:
                env |= {"SPANVISOR_HOOK_POLICY": str(policy), "SPANVISOR_DATA_DIR": str(tmp / "session-data")}
                entry = {
                    "type": "command",
                    "command": "spanvisor hook claude-code",
                    "timeout": 600,
                    "onFailure": "block",
                }
                settings.write_text(json.dumps({"hooks": {"PreToolUse": [{"matcher": "*", "hooks": [entry]}]}}))
                argv = [SPANVISOR, "run", "--endpoint", up, "--", str(bin_dir / "claude"), "-p", f"go ({run_id})"]
            else:
                settings.write_text(json.dumps({"permissions": {"allow": ["Bash"]}}))
                argv = [str(bin_dir / "claude"), "-p", f"go ({run_id})", "--output-format", "json"]
            argv += ["--model", "claude-sonnet-4-5", "--settings", str(settings), "--max-turns", str(n + 5)]
            work = tmp / f"work-{gated}"
            work.mkdir()
            t0 = time.perf_counter()
            done = subprocess.run(
                argv, env=env, cwd=work, capture_output=True, text=True, timeout=n * 10 + 600, check=False
            )
            totals["with the gate" if gated else "without"] = time.perf_counter() - t0
            asked = [s for s in api.requests(run_id) if s.path.startswith("/v1/messages") and "count" not in s.path]
            calls = len(asked)
            results = tool_results(asked[-1].body) if asked else []
            ran = sum(1 for r in results if not r.get("is_error"))
            print(f"  {ran} of {len(results)} tool calls ran", file=sys.stderr, flush=True)
            print(
                f"  session {'with' if gated else 'without'} the gate: exit {done.returncode}, {calls} model turns, "
                f"{totals['with the gate' if gated else 'without']:.1f} s",
                file=sys.stderr,
                flush=True,
            )
    finally:
        api.close()
        serve.terminate()
        serve.wait(60)
    ratio = totals["with the gate"] / totals["without"]
    print(
        f"session of {args.session_calls} calls, a model turn 0.5 s: without the gate {totals['without']:.1f} s, "
        f"with it {totals['with the gate']:.1f} s: {ratio:.3f}x "
        f"(goal <= 1.05x: {'met' if ratio <= 1.05 else 'MISSED'})"
    )


def bench_outage(args: argparse.Namespace, tmp: Path) -> None:
    """The launcher's gate while ``serve`` is down: each call's own work in
    this process (answer, audit note spooled, the look at what is due), as
    the notes the outage leaves waiting grow. Flat is the goal: a call never
    pays for the outage's length."""
    from spanvisor.launcher.gate import LocalGate

    policy = tmp / "outage-policy.toml"
    policy.write_text(POLICY)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SPANVISOR_", "OTEL_"))}
    env |= {"SPANVISOR_DATA_DIR": str(tmp / "outage"), "SPANVISOR_HOOK_POLICY": str(policy)}
    env["SPANVISOR_OTLP_ENDPOINT"] = DOWN
    gate = LocalGate({"SPANVISOR_TASK_ID": "bench-outage", "SPANVISOR_TASK_AGENT": "claude-code"})
    raw, argv = stdin_for("claude-code", "ls -la"), ["claude-code", "--cli-timeout", "600"]
    step = max(250, args.calls)
    medians: list[float] = []
    try:
        for block in range(1, 5):
            took = []
            for _ in range(step):
                t0 = time.perf_counter()
                gate.decide(lambda *_: None, argv, raw, time.monotonic(), env, str(tmp))
                took.append((time.perf_counter() - t0) * 1000)
            medians.append(statistics.median(took))
            print(
                f"serve down, {block * step:5d} notes waiting: a call's work in the launcher, p50 {medians[-1]:.2f} ms"
            )
    finally:
        gate.close()
    print(f"the outage's cost to a call: {medians[-1] / medians[0]:.2f}x from the first {step} notes to the last")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calls", type=int, default=100, help="calls per case (docs/design/performance.md: 1000)")
    ap.add_argument("--session-calls", type=int, default=50, help="tool calls in the Claude Code session (0: none)")
    ap.add_argument(
        "--only",
        default="hooks,http,outage,keyed,run,session",
        help="comma-separated: hooks, http, outage, keyed, run, session",
    )
    ap.add_argument("--quick", action="store_true", help="50 calls per case, a 20-call session")
    ap.add_argument("--spanvisor", default=SPANVISOR, help="the spanvisor command to time (default: this venv's)")
    args = ap.parse_args()
    if args.quick:
        args.calls, args.session_calls = 50, 20
    only = set(args.only.split(","))
    tmp = Path(tempfile.mkdtemp(prefix="bench-gate-"))
    print(f"load average at the start: {os.getloadavg()}")
    try:
        if only & {"hooks", "http"}:
            bench_calls(args, tmp, only)
        if "outage" in only:
            bench_outage(args, tmp)
        if "keyed" in only:
            bench_keyed(args, tmp)
        if "run" in only:
            bench_run(args, tmp)
        if "session" in only and args.session_calls > 0:
            bench_session(args, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # ~16 MB a run (the fake CLIs, serve's data, the spools)
    print(f"load average at the end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
