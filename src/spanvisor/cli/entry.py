"""The ``spanvisor`` console script.

``spanvisor hook …`` answers a coding agent's every tool call, so it goes
straight to the gate (:func:`spanvisor.cli.hook.main`): no configuration,
logging or plugin loading before the answer. And it cannot fail open: the
gate decides in a forked child while this process, which has imported
nothing but the standard library, waits. A child that dies (a crash in
native code such as the shell parser, the kernel's out-of-memory killer, a
traceback's exit 1, which the CLIs read as "not blocked") or a signal to
this process while it waits ends in the CLI's block: exit status 2 and, in
the CLI's shape, the deny JSON. Every other command goes to
:func:`spanvisor.cli.main.main`.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from spanvisor.gate.contracts import Cli

_BLOCK = 2


def main() -> int:
    argv = sys.argv[1:]
    if argv[:1] != ["hook"]:
        from spanvisor.cli.main import main as full

        return full()
    _exit(_watch(argv[1:]))
    return _BLOCK  # pragma: no cover - _exit does not return


def _decide(argv: list[str], stdin: bytes | None = None) -> int:
    try:
        from spanvisor.cli.hook import main as hook

        return hook(argv, stdin=stdin)
    except BaseException as exc:  # the gate itself could not be imported
        return _block(argv, f"spanvisor hook failed to start ({type(exc).__name__}); denied")


def _watch(argv: list[str]) -> int:
    """Decide in a child; its exit status when it is an answer (0 or 2),
    else the block."""
    child = 0

    def stop(signum: int, _frame: object) -> None:
        if child:
            try:
                os.kill(child, signal.SIGKILL)
            except OSError:
                pass
        _exit(_block(argv, f"spanvisor hook was stopped ({signal.Signals(signum).name}); denied"))

    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT, signal.SIGQUIT):
        signal.signal(sig, stop)
    stdin: bytes | None = None
    if os.environ.get("SPANVISOR_GATE_SOCKET") and argv:
        stdin, answered = _ask_launcher(argv)
        if answered is not None:
            return answered
    try:
        child = os.fork()
    except OSError:
        return _decide(argv, stdin)
    if child == 0:
        for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT, signal.SIGQUIT):
            signal.signal(sig, signal.SIG_DFL)
        _exit(_decide(argv, stdin))
    while True:
        try:
            _, status = os.waitpid(child, 0)
            break
        except InterruptedError:  # pragma: no cover - PEP 475 retries
            continue
        except ChildProcessError:
            status = -1
            break
    if os.WIFEXITED(status) and os.WEXITSTATUS(status) in (0, _BLOCK):
        return os.WEXITSTATUS(status)
    how = f"signal {os.WTERMSIG(status)}" if os.WIFSIGNALED(status) else f"status {status}"
    return _block(argv, f"spanvisor hook failed ({how}); denied")


def _ask_launcher(argv: list[str]) -> tuple[bytes | None, int | None]:
    """The launcher's answer (``spanvisor run``'s local gate), written out
    here: (the stdin read, the exit status), the status None when the
    launcher gave none and this process decides by itself."""
    raw: bytes | None = None
    try:
        import time

        from spanvisor.gate import local
        from spanvisor.gate.deadline import Deadline, margin_s

        raw = sys.stdin.buffer.read(16 * 1024 * 1024)
        cli: Cli = "gemini" if argv[0] == "gemini" else "codex" if argv[0] == "codex" else "claude-code"
        deadline = Deadline.for_cli(cli, _cli_timeout(argv), time.monotonic())
        got = local.ask(os.environ[local.ENV_SOCKET], argv, raw, deadline.at + margin_s(deadline.cli_timeout) / 2)
    except Exception:  # the launcher is an optimisation: decide here
        return raw, None
    if got is None:
        return raw, None
    code, out, err = got
    if code not in (0, _BLOCK):
        return raw, _block(argv, f"spanvisor hook: the launcher answered exit status {code}; denied")
    for stream, text in ((sys.stdout, out), (sys.stderr, err)):
        try:
            stream.write(text)
            stream.flush()
        except BaseException:
            if stream is sys.stdout:
                code = _BLOCK
    return raw, code


def _cli_timeout(argv: list[str]) -> float | None:
    for i, a in enumerate(argv):
        value = a.split("=", 1)[1] if a.startswith("--cli-timeout=") else None
        if a == "--cli-timeout" and i + 1 < len(argv):
            value = argv[i + 1]
        if value is not None:
            try:
                return float(value)
            except ValueError:
                return None
    return None


def _block(argv: list[str], reason: str) -> int:
    """The block in the CLI's shape (the PreToolUse shape: exit status 2
    blocks whatever the event)."""
    import json  # standard library only, and only on a failure

    cli = argv[0] if argv else ""
    doc = ""
    if cli == "gemini":
        doc = json.dumps({"decision": "deny", "reason": reason})
    elif cli in ("claude-code", "codex"):
        inner = {"hookEventName": "PreToolUse", "permissionDecision": "deny", "permissionDecisionReason": reason}
        doc = json.dumps({"hookSpecificOutput": inner})
    for stream, text in ((sys.stdout, doc), (sys.stderr, reason)):
        try:
            if text:
                stream.write(text + "\n")
                stream.flush()
        except BaseException:
            pass
    return _BLOCK


def _exit(code: int) -> None:
    try:
        sys.stdout.flush()
    except BaseException:
        code = _BLOCK if code else code
    # At once: a stdout closed under us must not turn the status into 120
    # at the interpreter's exit.
    os._exit(code)


__all__ = ["main"]
