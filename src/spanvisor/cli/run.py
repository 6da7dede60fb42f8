"""``spanvisor run -- claude -p "…"`` (or ``codex exec …``, ``gemini …``,
``qwen -p …``, ``copilot -p …``, ``opencode run …``, ``cline …``):
a coding-agent session as a task whose end is never missed.

The launcher gives the session a fresh task id and a name (``--name``, else
the prompt, clipped and redacted), points the CLI's telemetry at spanvisor
(``--endpoint`` / ``SPANVISOR_OTLP_ENDPOINT``, or a Collector) with the
task's id and name in ``OTEL_RESOURCE_ATTRIBUTES``, asks for tool details
(``--no-tool-details`` does not) and a log export each second where the CLI
lets it be set, opens the task with an ``agent.task.start`` record, runs
the CLI with the user's terminal (stdin and stderr its own; stdout too, or
read for the result: see :mod:`spanvisor.cli.run_result`), sends
heartbeats while it runs, forwards SIGINT, SIGTERM and SIGHUP to it, follows
the task for a cancel and then stops the CLI (:mod:`spanvisor.cli.run_stop`),
and at its exit ends the task's root span: complete, error or cancelled,
read per CLI (:func:`spanvisor.cli.run_result.end_of`). It exits with the
CLI's exit code (128 + N for a CLI killed by signal N). Nothing spanvisor
cannot send stops the CLI: it is said once on stderr.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from types import FrameType
from typing import Any

from spanvisor.cli import codingtask as ct
from spanvisor.cli import run_codex, run_more, run_stream
from spanvisor.cli.run_gate import LocalGate
from spanvisor.cli.run_records import Records
from spanvisor.cli.run_result import ResultReader, end_of, plan
from spanvisor.cli.run_stop import CancelWatch, Stopper, cancelled_text, signal_tree
from spanvisor.config import Config
from spanvisor.control.client import ENV_URL, token_from_env
from spanvisor.events import Decision, run_id_of
from spanvisor.gate import local, notes
from spanvisor.gate.session import TaskKey
from spanvisor.redaction import redact
from spanvisor.spans import conventions as cv

NAME_CHARS = 80
ENV_LOCAL_GATE = "SPANVISOR_LOCAL_GATE"
_BINARIES = {"claude": "claude-code", "codex": "codex", "gemini": "gemini", **run_more.BINARIES}
_NAMES = {"claude-code": "Claude Code", "codex": "Codex", "gemini": "Gemini CLI", **run_more.NAMES}
_SUBCOMMANDS = {"exec", "e", "run"}
_VALUE_OPTIONS = {"-m", "--model", "-c", "--config", "--output-format", "-s", "--sandbox", "--settings", "-C", "--cd"}


def cli_of(argv0: str) -> str | None:
    base = os.path.basename(argv0)
    for suffix in (".js", ".cmd", ".exe"):
        base = base.removesuffix(suffix)
    return _BINARIES.get(base)


def prompt_of(args: Sequence[str]) -> str | None:
    """The prompt in a CLI's arguments: the value of ``-p``/``--print``/
    ``--prompt`` when it is not an option, else the last plain argument."""
    rest = list(args[1:])
    for i, a in enumerate(rest):
        flag = a in ("-p", "--print", "--prompt", "-i", "--prompt-interactive")
        if flag and i + 1 < len(rest) and not rest[i + 1].startswith("-"):
            return rest[i + 1]
        if a.startswith("--prompt="):
            return a.split("=", 1)[1]
    plain = [
        a
        for i, a in enumerate(rest)
        if not a.startswith("-") and (i == 0 or rest[i - 1] not in _VALUE_OPTIONS) and a not in _SUBCOMMANDS
    ]
    return plain[-1] if plain else None


def task_name(explicit: str | None, args: Sequence[str], cli: str) -> str:
    raw = explicit or prompt_of(args) or f"{cli} session"
    name = redact(" ".join(raw.split()))
    return name if len(name) <= NAME_CHARS else name[: NAME_CHARS - 1] + "…"


def _toml_str(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _default(out: dict[str, str], key: str, value: str) -> None:
    """``key`` set to ``value`` unless the user chose one."""
    if not out.get(key, "").strip():
        out[key] = value


def telemetry(
    cli: str,
    argv: list[str],
    env: Mapping[str, str],
    endpoint: str,
    token: str | None,
    resource: str,
    tool_details: bool = True,
) -> tuple[list[str], dict[str, str]]:
    """The CLI's arguments and environment with its telemetry aimed at
    ``endpoint``. ``tool_details``: Claude Code reports each tool call's
    input (the command, the file), so a step reads ``Bash(ls -la)``."""
    out = dict(env)
    out["OTEL_RESOURCE_ATTRIBUTES"] = resource
    if token:
        out["OTEL_EXPORTER_OTLP_HEADERS"] = f"authorization=Bearer%20{token}"
    if cli == "claude-code":
        out.update(
            CLAUDE_CODE_ENABLE_TELEMETRY="1",
            OTEL_LOGS_EXPORTER="otlp",
            OTEL_METRICS_EXPORTER="otlp",
            OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf",
            OTEL_EXPORTER_OTLP_ENDPOINT=endpoint,
        )
        # Each event within a second, not after Claude Code's default 5 s,
        # unless the user chose an interval.
        _default(out, "OTEL_LOGS_EXPORT_INTERVAL", "1000")
        _default(out, "OTEL_METRIC_EXPORT_INTERVAL", "10000")
        if tool_details:
            _default(out, "OTEL_LOG_TOOL_DETAILS", "1")
        else:
            out["OTEL_LOG_TOOL_DETAILS"] = "0"
    elif cli == "gemini":
        out.update(
            GEMINI_TELEMETRY_ENABLED="true",
            GEMINI_TELEMETRY_TARGET="local",
            GEMINI_TELEMETRY_OTLP_ENDPOINT=endpoint,
            GEMINI_TELEMETRY_OTLP_PROTOCOL="http",
        )
        # No interval to set: Gemini CLI (0.61) builds its batch log processor
        # with no settings, and its sdk-logs reads no OTEL_BLRP_* variable:
        # records leave every 5 s, and at exit.
    elif cli == "codex":
        # -c overrides on top of the user's own config.toml (kept as is).
        headers = f", headers = {{ authorization = {_toml_str('Bearer ' + token)} }}" if token else ""
        extra: list[str] = []
        for key, path in (("exporter", "logs"), ("trace_exporter", "traces"), ("metrics_exporter", "metrics")):
            value = (
                f'{{ otlp-http = {{ endpoint = {_toml_str(f"{endpoint}/v1/{path}")}, protocol = "binary"{headers} }} }}'
            )
            extra += ["-c", f"otel.{key}={value}"]
        argv = [argv[0], *extra, *argv[1:]]
    else:
        run_more.telemetry(cli, out, endpoint)
    return argv, out


class _Beat:
    """Heartbeats while the CLI runs: the task stays live when the CLI says
    nothing for a while (a long tool call), and stalls only if the launcher dies."""

    def __init__(self, records: Records, every_s: float) -> None:
        self.records, self.every_s = records, every_s
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="spanvisor-run-heartbeat", daemon=True)

    def _run(self) -> None:
        while not self.stop.wait(self.every_s):
            self.records.say(cv.LIVE_HEARTBEAT, {})


def handler(args: argparse.Namespace, config: Config) -> int:
    argv = list(args.command)
    if argv and argv[0] == "--":
        argv = argv[1:]
    if not argv:
        print(
            "spanvisor run: give the command after --, e.g. spanvisor run -- claude -p 'fix the tests'", file=sys.stderr
        )
        return 2
    cli = args.cli or cli_of(argv[0])
    if cli is None:
        print(
            f"spanvisor run: {os.path.basename(argv[0])!r} is not claude, codex, gemini, qwen, copilot, opencode "
            "or cline; say which with --cli",
            file=sys.stderr,
        )
        return 2
    endpoint = ct.endpoint_from(args.endpoint)
    task_id = args.task_id or f"{cli}-{uuid.uuid4().hex[:16]}"
    name = task_name(args.name, argv, cli)
    service = ct.SERVICES[cli]
    env = os.environ
    resource = ct.with_resource(env, {ct.RESOURCE_TASK_ID: task_id, ct.RESOURCE_TASK_NAME: name})
    child_argv, child_env = telemetry(cli, argv, env, endpoint, args.token, resource, not args.no_tool_details)
    child_env[ct.ENV_ENDPOINT] = endpoint  # where the CLI's hooks send their requests
    # The task, and who may not approve its requests, for the hooks: in
    # SPANVISOR_* variables, which Claude Code passes on (it drops OTEL_*).
    child_env[ct.ENV_TASK_ID] = task_id
    if (asker := ct.task_owner(env)) is not None:
        child_env[ct.ENV_TASK_OWNER] = asker
    # The session's hooks ask this process (a warm gate) over a private socket.
    gate = _local_gate()
    if gate is not None:
        child_env[local.ENV_SOCKET] = gate.path
        gate.client_path(child_env)  # the hooks' `spanvisor hook` as the launcher's small client
        if cli == "claude-code":  # SPANVISOR_LOCAL_GATE=http: Claude Code's http hook, answered here
            child_argv = gate.for_claude(child_argv, child_env)
    hooks_said: str | None = None
    if cli == "codex":
        child_argv, hooks_said = run_codex.trusted(child_argv, child_env, os.getcwd())
        if hooks_said:
            print(f"spanvisor run: {hooks_said}", file=sys.stderr)
    if args.gate:
        child_argv, gate_said = run_more.gate(cli, child_argv, child_env, gate.dir if gate is not None else None)
        if gate_said:
            print(f"spanvisor run: {gate_said}", file=sys.stderr)
    child_argv, mode = plan(cli, child_argv)
    # OpenCode's and Cline's calls and steps, read from what they print (run_stream.py).
    report = run_stream.start(cli, service, task_id, name, endpoint, args.token, argv)
    task = ct.SessionTask(task_id, service, True, ct.otlp_args(endpoint, args.token, args.timeout))
    started = time.time_ns()
    print(f"spanvisor run: task {task_id} ({name}) → {endpoint}", file=sys.stderr, flush=True)
    # The start goes from a background queue: the CLI starts now, up or down.
    records = Records(TaskKey(task_id, service, True), endpoint, args.token, task_id)
    records.say(cv.LIVE_TASK_START, {cv.TASK_NAME: name, cv.AGENT_ID: service}, started)
    if hooks_said and run_codex.FLAG not in child_argv:
        # Codex may skip every hook silently: said on the task, not only here.
        records.say(cv.EVENT_CHECKPOINT, {cv.MESSAGE: "⚠ Codex's hooks are not trusted: the gate may not run"})
    every = float(config.get("heartbeat_s") or 0.0)
    beat = _Beat(records, every) if every > 0 else None
    if beat is not None:
        beat.thread.start()
    watching: list[CancelWatch] = []

    def follow(stopper: Stopper) -> None:
        """A cancel of this run of the task stops the CLI (run_stop.py)."""

        def cancel(d: Decision) -> None:
            if stopper.stop(cancelled_text(d), d):
                said = f"⏹ {cancelled_text(d)}: spanvisor run is stopping {_NAMES[cli]}"
                records.say(cv.EVENT_CHECKPOINT, {cv.MESSAGE: said})
                print(f"spanvisor run: {cancelled_text(d)}; stopping {argv[0]}", file=sys.stderr, flush=True)

        url = env.get(ENV_URL) or endpoint
        watch = CancelWatch(
            task_id, run_id_of(*TaskKey(task_id, service, True).ids), url, token_from_env(env) or args.token, cancel
        )
        watching.append(watch)
        watch.start()

    try:
        code, signalled, reading, stopper = _supervise(child_argv, child_env, mode, follow, report)
    finally:
        if beat is not None:
            beat.stop.set()
        for w in watching:
            w.close()
    if gate is not None:
        gate.close()
    run_stream.finish(report, within_s=min(args.timeout, 5.0))
    left = records.close(within_s=min(args.timeout, 5.0))
    if left or records.dropped:
        print(f"spanvisor run: {left + records.dropped} of the launcher's records were not sent", file=sys.stderr)
    # The hooks' notes that could not go at once: delivered now, the
    # receiver permitting (else they wait for the next session's hooks).
    _quietly(lambda: notes.deliver(token=args.token) >= 0)
    if code is None:
        return 127
    if stopper is not None and stopper.decision is not None:
        # Whatever the CLI made of the signals: a person cancelled it.
        status, error, message = "cancelled", None, f"{cancelled_text(stopper.decision)} · stopped by spanvisor run"
    else:
        status, error, message = end_of(cli, os.path.basename(argv[0]), code, reading, signalled)
    # The exporter's own retry lines stay off the user's terminal: the
    # outcome is said in one line below.
    logging.getLogger("opentelemetry.exporter").setLevel(logging.CRITICAL)
    if not _quietly(lambda: task.end(name, started, status, error, message)):
        print(f"spanvisor run: {endpoint} did not take the task's end ({status})", file=sys.stderr)
    return 128 - code if code < 0 else code


def _local_gate() -> LocalGate | None:
    if os.environ.get(ENV_LOCAL_GATE) == "off":
        return None
    try:
        return LocalGate()
    except OSError as exc:  # the hooks decide by themselves, as without a launcher
        print(f"spanvisor run: no local gate ({exc.strerror or exc}); each hook decides by itself", file=sys.stderr)
        return None


def _quietly(send: Any) -> bool:
    try:
        return bool(send())
    except Exception as exc:
        print(f"spanvisor run: sending failed ({type(exc).__name__})", file=sys.stderr)
        return False


def _from_terminal() -> bool:
    """Whether a SIGINT here came from the terminal's key: then the CLI, in
    the terminal's foreground group with us, got it too (sent again, an
    interactive CLI would read a second Ctrl-C: "exit")."""
    try:
        return os.isatty(0) and os.tcgetpgrp(0) == os.getpgrp()
    except OSError:
        return False


def _supervise(
    argv: list[str],
    env: dict[str, str],
    mode: Any,
    follow: Callable[[Stopper], None] | None = None,
    tap: Callable[[dict[str, Any]], object] | None = None,
) -> tuple[int | None, int | None, ResultReader, Stopper | None]:
    """Run the CLI to its end, forwarding SIGINT, SIGTERM and SIGHUP to it
    and what runs under it (SIGTERM and SIGHUP: the launcher is being
    stopped, so the CLI is, firmer after a grace); ``follow`` may stop it
    meanwhile. (exit code, the signal forwarded or sent to stop it, what its
    output said, the stopper)."""
    reading = ResultReader(mode, tap=tap)
    piped = mode != "passthrough"
    try:
        proc = subprocess.Popen(
            argv, env=env, stdout=subprocess.PIPE if piped else None, text=piped, bufsize=1 if piped else -1
        )
    except OSError as exc:
        print(f"spanvisor run: cannot start {argv[0]}: {exc.strerror or exc}", file=sys.stderr)
        return None, None, reading, None
    stopper = Stopper(proc)
    forwarded: list[int] = []

    def forward(signum: int, frame: FrameType | None) -> None:
        forwarded.append(signum)
        if signum != signal.SIGINT:
            stopper.stop(f"the launcher got {signal.Signals(signum).name}", start=signal.SIGTERM)
        elif not _from_terminal():
            signal_tree(proc, signum)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    if follow is not None:
        follow(stopper)
    try:
        if piped and proc.stdout is not None:
            for line in proc.stdout:
                shown = reading.line(line)
                if shown:
                    sys.stdout.write(shown)
                    sys.stdout.flush()
            reading.finish()
        code = proc.wait()
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
    sent = forwarded[0] if forwarded else stopper.last_signal
    return code, sent, reading, stopper


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "run",
        help="run claude -p, codex exec, gemini, qwen, copilot, opencode run or cline as a supervised task "
        "(telemetry to spanvisor, the end reported)",
    )
    p.add_argument("--name", help="task name (default: the prompt, clipped)")
    p.add_argument(
        "--cli",
        choices=("claude-code", "codex", "gemini", *run_more.BINARIES.values()),
        help="which CLI (default: from the command)",
    )
    p.add_argument(
        "--endpoint",
        help=f"OTLP/HTTP endpoint: spanvisor serve or a Collector (default: ${ct.ENV_ENDPOINT} or {ct.DEFAULT_ENDPOINT})",
    )
    p.add_argument(
        "--token",
        default=os.environ.get("SPANVISOR_OTLP_TOKEN"),
        help="bearer token of the endpoint (default: $SPANVISOR_OTLP_TOKEN)",
    )
    p.add_argument("--task-id", help="the task id (default: a fresh one)")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds to send each record (default 10)")
    p.add_argument(
        "--no-tool-details",
        action="store_true",
        help="do not ask Claude Code for each tool call's input (the command, the file path): steps then read "
        "'Bash', not 'Bash(ls -la)'",
    )
    p.add_argument(
        "--gate",
        action="store_true",
        help="give OpenCode spanvisor's gate plugin, Cline spanvisor's PreToolUse hook (the other CLIs: set the "
        "hook in their settings)",
    )
    p.add_argument("command", nargs=argparse.REMAINDER, help="-- then the CLI and its arguments")
    p.set_defaults(func=handler)


__all__ = ["cli_of", "handler", "prompt_of", "register", "task_name", "telemetry"]
