"""What ``spanvisor run`` does before the CLI starts, with nothing heavy
imported: the CLI's arguments and environment (its telemetry aimed at
spanvisor, the task's id and name, the hooks' variables), the place of the
local gate's socket and small client, and the spawn itself, in a process
group of its own. Everything else (the gate's policy and parser, the
records, following the task for a cancel) is imported once the CLI runs:
the CLI's start is what the user waits for.

**The gate, reserved.** The launcher names a private folder (mode 0700)
before the spawn: ``SPANVISOR_GATE_SOCKET`` is its ``gate.sock`` and its
``bin`` comes first on the CLI's ``PATH``. Both appear only once the gate
is up (links to the local gate's own socket and small client): a hook
called before then finds no small client on the ``PATH`` and no socket,
and the full ``spanvisor hook`` decides it by itself, as without a
launcher.

**A process group of its own.** Some CLIs' wrappers do not pass a signal
on (Copilot CLI's npm loader, Qwen Code's launcher): the launcher signals
the CLI's whole group. On a terminal, that group is made the terminal's
foreground group for the session (as a shell does for a job), so the
CLI reads the terminal and gets its Ctrl-C; the launcher takes the
terminal back when the CLI exits.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from spanvisor.clis import registry
from spanvisor.gate import session as gs
from spanvisor.redaction import redact

NAME_CHARS = 80
# Variables of the launcher's environment the CLI never gets.
NOT_FOR_THE_AGENT = frozenset({"SPANVISOR_DECIDE_TOKEN"})
_SUBCOMMANDS = {"exec", "e", "run"}
_VALUE_OPTIONS = {"-m", "--model", "-c", "--config", "--output-format", "-s", "--sandbox", "--settings", "-C", "--cd"}

# How the launcher reads a CLI's output: its adapter names it (output_plan),
# spanvisor.launcher.results reads it ("passthrough": nothing is read).
Mode = str


def cli_of(argv0: str) -> str | None:
    """The CLI the command starts, by its adapter's commands."""
    adapter = registry.by_binary(argv0)
    return adapter.name if adapter is not None else None


def _cli_name(name: str) -> str:
    if registry.get(name) is None:
        raise argparse.ArgumentTypeError(
            f"no coding-agent CLI is called {name!r} (known: {', '.join(registry.names())})"
        )
    return name


def prompt_of(args: Sequence[str], cli: str | None = None) -> str | None:
    """The prompt in a CLI's arguments: the value of ``-p``/``--print``/
    ``--prompt`` when it is not an option, else the last plain argument
    that is no option's value (the CLI's adapter names its own options that
    take one)."""
    adapter = registry.get(cli) if cli is not None else None
    valued = _VALUE_OPTIONS | (adapter.value_options if adapter is not None else frozenset())
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
        if not a.startswith("-") and (i == 0 or rest[i - 1] not in valued) and a not in _SUBCOMMANDS
    ]
    return plain[-1] if plain else None


def task_name(explicit: str | None, args: Sequence[str], cli: str) -> str:
    raw = explicit or prompt_of(args, cli) or f"{cli} session"
    name = redact(" ".join(raw.split()))
    return name if len(name) <= NAME_CHARS else name[: NAME_CHARS - 1] + "…"


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
    # A person's token to approve with is not the agent's to hold.
    out = {k: v for k, v in env.items() if k not in NOT_FOR_THE_AGENT}
    out["OTEL_RESOURCE_ATTRIBUTES"] = resource
    if token:
        out["OTEL_EXPORTER_OTLP_HEADERS"] = f"authorization=Bearer%20{token}"
    argv = registry.need(cli).aim_telemetry(list(argv), out, endpoint, tool_details)
    return argv, out


def plan(cli: str, args: Sequence[str]) -> tuple[list[str], Mode]:
    """The CLI's arguments with what the launcher adds, and how to read its
    stdout (its adapter's; :mod:`spanvisor.launcher.results` reads it)."""
    return registry.need(cli).output_plan(list(args))


class Reserved:
    """The local gate's place, named before the CLI starts."""

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        e = os.environ if env is None else env
        runtime = e.get("XDG_RUNTIME_DIR")
        base = runtime if runtime and os.path.isdir(runtime) else (e.get("TMPDIR") or "/tmp")
        for _ in range(16):
            here = os.path.join(base, f"spanvisor-run-{os.urandom(8).hex()}")
            try:
                os.mkdir(here, 0o700)
            except FileExistsError:
                continue
            break
        else:
            raise FileExistsError(f"no fresh folder in {base}")
        self.dir = here
        self.socket = os.path.join(here, "gate.sock")
        self.bin = os.path.join(here, "bin")

    def give(self, env: dict[str, str], socket_variable: str) -> None:
        """The CLI's variables: the socket, and the small client first on its ``PATH``."""
        env[socket_variable] = self.socket
        env["PATH"] = self.bin + os.pathsep + env.get("PATH", os.defpath)

    def link(self, socket_path: str, bin_dir: str | None) -> None:
        """Point the reserved names at the local gate, once it listens (the
        socket first: a small client found on the ``PATH`` finds it)."""
        for name, target in ((self.socket, socket_path), (self.bin, bin_dir)):
            if target is None:
                continue
            tmp = f"{name}.{os.getpid()}.tmp"
            os.symlink(target, tmp)
            os.replace(tmp, name)

    def close(self) -> None:
        import shutil

        shutil.rmtree(self.dir, ignore_errors=True)


def spawn(argv: list[str], env: Mapping[str, str], piped: bool) -> Any:
    """Start the CLI in a process group of its own (the terminal's
    foreground group while it runs, when the launcher has the terminal);
    the ``subprocess.Popen``."""
    import subprocess

    fg = _foreground()
    proc = subprocess.Popen(
        argv,
        env=dict(env),
        stdout=subprocess.PIPE if piped else None,
        text=piped,
        bufsize=1 if piped else -1,
        process_group=0,
    )
    if fg:
        _give_terminal(proc.pid)
        # A CLI that read the terminal before it was its own is stopped (SIGTTIN): on it goes.
        with contextlib.suppress(OSError):
            os.killpg(proc.pid, signal.SIGCONT)
    proc.spanvisor_terminal = fg  # type: ignore[attr-defined]
    return proc


def _foreground() -> bool:
    """Whether this process has the terminal (its group is the terminal's foreground group)."""
    try:
        return os.isatty(0) and os.tcgetpgrp(0) == os.getpgrp()
    except OSError:
        return False


def _give_terminal(pgid: int) -> None:
    """Make ``pgid`` the terminal's foreground group (SIGTTOU held off: the
    launcher may not be in the foreground when it takes the terminal back)."""
    previous = signal.signal(signal.SIGTTOU, signal.SIG_IGN)
    try:
        with contextlib.suppress(OSError):
            os.tcsetpgrp(0, pgid)
    finally:
        signal.signal(signal.SIGTTOU, previous)


def take_terminal_back(proc: Any) -> None:
    if getattr(proc, "spanvisor_terminal", False):
        _give_terminal(os.getpgrp())


def signal_group(proc: Any, signum: int, also: Sequence[int] = ()) -> None:
    """``signum`` to the CLI's process group, and to the processes in
    ``also`` (what runs under the CLI) that left it."""
    if proc.poll() is not None:
        return
    try:
        pgid = os.getpgid(proc.pid)
    except OSError:
        pgid = proc.pid
    with contextlib.suppress(OSError):
        os.killpg(pgid, signum)
    for pid in also:
        try:
            if os.getpgid(pid) != pgid:
                os.kill(pid, signum)
        except OSError:
            pass  # ended meanwhile, or not ours to signal


def said(text: str) -> None:
    print(f"spanvisor run: {text}", file=sys.stderr, flush=True)


# The launcher's options (spanvisor run --help).
def add_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("--name", help="task name (default: the prompt, clipped)")
    p.add_argument(
        "--cli", type=_cli_name, metavar="CLI", help="which CLI, by its adapter's name (default: from the command)"
    )
    p.add_argument(
        "--endpoint",
        help=f"OTLP/HTTP endpoint: spanvisor serve or a Collector (default: ${gs.ENV_ENDPOINT} or {gs.DEFAULT_ENDPOINT})",
    )
    p.add_argument(
        "--token",
        default=os.environ.get("SPANVISOR_OTLP_TOKEN"),
        help="bearer token of the endpoint (default: $SPANVISOR_OTLP_TOKEN, else for a loopback endpoint the local "
        "serve's own, from <data dir>/serve-token)",
    )
    p.add_argument("--task-id", help="the task id (default: a fresh one)")
    p.add_argument(
        "--agent",
        help="the task's agent, as Slack routes and budgets name it (default: spanvisor.agent or agent.name in "
        "OTEL_RESOURCE_ATTRIBUTES, else the CLI: claude-code, codex_exec, …)",
    )
    p.add_argument("--timeout", type=float, default=10.0, help="seconds to send each record (default 10)")
    p.add_argument(
        "--no-tool-details",
        action="store_true",
        help="do not ask Claude Code for each tool call's input (the command, the file path): steps then read "
        "'Bash', not 'Bash(ls -la)'",
    )
    p.add_argument(
        "--no-diff",
        action="store_true",
        help="do not send the session's diff of its git working tree (a code channel's diff tab shows it)",
    )
    p.add_argument(
        "--gate",
        action="store_true",
        help="give OpenCode spanvisor's gate plugin; for Cline, refuse to start it unless spanvisor's PreToolUse "
        "hook is in ~/.cline/hooks (the other CLIs: set the hook in their settings)",
    )
    p.add_argument("command", nargs=argparse.REMAINDER, help="-- then the CLI and its arguments")
    return p


__all__ = [
    "NAME_CHARS",
    "Mode",
    "Reserved",
    "add_arguments",
    "cli_of",
    "plan",
    "prompt_of",
    "said",
    "signal_group",
    "spawn",
    "take_terminal_back",
    "task_name",
    "telemetry",
]
