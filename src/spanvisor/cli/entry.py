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

_BLOCK = 2


def main() -> int:
    argv = sys.argv[1:]
    if argv[:1] != ["hook"]:
        from spanvisor.cli.main import main as full

        return full()
    _exit(_watch(argv[1:]))
    return _BLOCK  # pragma: no cover - _exit does not return


def _decide(argv: list[str]) -> int:
    try:
        from spanvisor.cli.hook import main as hook

        return hook(argv)
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
    try:
        child = os.fork()
    except OSError:
        return _decide(argv)
    if child == 0:
        for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT, signal.SIGQUIT):
            signal.signal(sig, signal.SIG_DFL)
        _exit(_decide(argv))
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
