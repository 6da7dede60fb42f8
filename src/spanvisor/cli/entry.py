"""The ``spanvisor`` console script.

``spanvisor hook …`` answers a coding agent's every tool call, so it goes
straight to the gate (:func:`spanvisor.hook.command.main`): no configuration,
logging or plugin loading before the answer. And it cannot fail open: the
gate decides in a forked child while this process, which has imported
nothing but the standard library, waits. A child that dies (a crash in
native code such as the shell parser, the kernel's out-of-memory killer, a
traceback's exit 1, which the CLIs read as "not blocked"), a signal to this
process while it waits, and a child still deciding at the deadline's last
backstop all end in the CLI's block: exit status 2 and, in the CLI's shape,
the deny JSON. One deadline, counted from this process's start (or the
start handed on by the launcher's small client), holds for every path: the
launcher's socket, the child, the child's own timer and this process's.

The child tells this process its exit status over a pipe as soon as its
answer is written, and leaves the CLI's streams: this process exits at
once (the CLI goes on) while the child sends the audit note. Every other
command goes to :func:`spanvisor.cli.main.main`.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

    from spanvisor.gate.deadline import Deadline

_BLOCK = 2
_SIGNALS = (signal.SIGTERM, signal.SIGHUP, signal.SIGINT, signal.SIGQUIT)


def main() -> int:
    now = time.monotonic()
    argv = sys.argv[1:]
    if argv[:1] == ["run"]:  # the launcher starts the CLI before it loads anything heavy
        from spanvisor.launcher.session import main as launch

        return launch(argv[1:])
    if argv[:1] != ["hook"]:
        from spanvisor.cli.main import main as full

        return full()
    _exit(_watch(argv[1:], now))
    return _BLOCK  # pragma: no cover - _exit does not return


def _decide(
    argv: list[str], stdin: bytes | None, started: float, release_fd: int | None = None, received: float | None = None
) -> int:
    try:
        from spanvisor.hook.command import main as hook

        release = _releaser(release_fd) if release_fd is not None else None
        # received: this process's start (a start handed on in the
        # environment may be earlier, and a repository's env block can set it).
        code = hook(argv, stdin=stdin, started=started, release=release, received=received)
        if release is not None:
            # Once more, with the answer that stands: a signal (the backstop's
            # SIGALRM) raised between writing the answer and releasing the
            # parent leaves it unreleased, and a parent that hears nothing
            # writes a block after the answer the CLI already has.
            release(code)
        return code
    except BaseException as exc:  # the gate itself could not be imported
        return _block(argv, f"spanvisor hook failed to start ({type(exc).__name__}); denied")


def _releaser(fd: int) -> Callable[[int], None]:
    """What the child calls once its answer is written: leave the CLI's
    streams (so it sees them end with the parent), then tell the parent;
    once: a second call (the child's last, on its way out) does nothing,
    as the descriptor's number may name another file by then."""
    told = False

    def release(code: int) -> None:
        nonlocal told
        if told:
            return
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except BaseException:
                pass
        try:
            null = os.open(os.devnull, os.O_RDWR)
            for n in (0, 1, 2):
                os.dup2(null, n)
            os.close(null)
        except OSError:
            pass
        try:
            # Out of the CLI's terminal session before the CLI goes on: what
            # runs after the answer (a session's end, sent once the CLI has
            # exited) must not die of the SIGHUP a terminal's session leader
            # leaves behind when it exits, nor of a Ctrl-C meant for the CLI.
            os.setsid()
        except OSError:
            pass
        try:
            os.write(fd, bytes([code if 0 <= code < 256 else _BLOCK]))
            told = True
            os.close(fd)
        except OSError:
            pass

    return release


def _watch(argv: list[str], now: float) -> int:
    """Decide in a child; its exit status when it is an answer (0 or 2),
    else the block."""
    child = 0
    started, deadline = _deadline(argv, now)

    def stop(signum: int, _frame: object) -> None:
        if child:
            try:
                os.kill(child, signal.SIGKILL)
            except OSError:
                pass
        if signum == signal.SIGALRM:
            _exit(_block(argv, "spanvisor: no answer before the CLI's hook timeout; denied"))
        _exit(_block(argv, f"spanvisor hook was stopped ({signal.Signals(signum).name}); denied"))

    for sig in _SIGNALS:
        signal.signal(sig, stop)
    if deadline is not None:
        # The last backstop: whatever still runs then is a block, while the CLI listens.
        signal.signal(signal.SIGALRM, stop)
        signal.setitimer(signal.ITIMER_REAL, max(0.01, deadline.last() - time.monotonic()))
    stdin: bytes | None = None
    # A hook of the system gate (--gate) asks it alone: a launcher above it
    # told that gate its session (launcher/system_gate.py).
    to_system_gate = any(a == "--gate" or a.startswith("--gate=") for a in argv)
    if os.environ.get("SPANVISOR_GATE_SOCKET") and argv and deadline is not None and not to_system_gate:
        stdin, answered = _ask_launcher(argv, deadline, started)
        if answered is not None:
            return answered
    try:
        readable, writable = os.pipe()
        child = os.fork()
    except OSError:
        return _decide(argv, stdin, started, received=now)
    if child == 0:
        os.close(readable)
        for sig in (*_SIGNALS, signal.SIGALRM):
            signal.signal(sig, signal.SIG_DFL)
        _exit(_decide(argv, stdin, started, writable, now))
    os.close(writable)
    said = b""
    while True:
        try:
            said = os.read(readable, 1)
            break
        except InterruptedError:  # pragma: no cover - PEP 475 retries
            continue
        except OSError:
            break
    if said and said[0] in (0, _BLOCK):
        return said[0]  # the child goes on with the audit note; the CLI need not wait
    while True:
        try:
            _, status = os.waitpid(child, 0)
            break
        except InterruptedError:  # pragma: no cover - PEP 475 retries
            continue
        except ChildProcessError:
            status = -1
            break
    if os.WIFEXITED(status) and os.WEXITSTATUS(status) == _BLOCK:
        return _BLOCK
    if os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0 and ("-h" in argv or "--help" in argv):
        return 0  # the help, which is no answer to a call
    if os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0:
        # Exited 0 without saying it answered: its stdout may hold nothing
        # the CLI reads as a decision, and 0 would let the call run.
        return _block(argv, "spanvisor hook gave no answer; denied")
    how = f"signal {os.WTERMSIG(status)}" if os.WIFSIGNALED(status) else f"status {status}"
    return _block(argv, f"spanvisor hook failed ({how}); denied")


def _deadline(argv: list[str], now: float) -> tuple[float, Deadline | None]:
    """When the hook started, and the call's deadline counted from then
    (None when it cannot be known here: the child answers the arguments'
    error)."""
    try:
        from spanvisor.gate.clitimeout import limit
        from spanvisor.gate.deadline import Deadline, started_from

        started = started_from(os.environ, now)
    except Exception:
        return now, None
    try:
        from spanvisor.clis import registry

        # An unknown CLI is answered by the child (an argument error): the base adapter's default here.
        cli = argv[0] if registry.get(argv[0]) is not None else None
        return started, Deadline.for_cli(cli, limit(cli or "", _cli_timeout(argv), os.environ, None), started)
    except Exception:
        return started, None


def _ask_launcher(argv: list[str], deadline: Deadline, started: float) -> tuple[bytes | None, int | None]:
    """The launcher's answer (``spanvisor run``'s local gate), written out
    here: (the stdin read, the exit status), the status None when the
    launcher gave none and this process decides by itself (by the same
    deadline: a launcher silent to its end leaves no time to ask anyone)."""
    raw: bytes | None = None
    try:
        from spanvisor.gate import local

        raw = sys.stdin.buffer.read(local.MAX_FRAME)
        got = local.ask(os.environ[local.ENV_SOCKET], argv, raw, deadline.launcher_given_up(), started)
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

    doc = ""
    status = _BLOCK
    try:  # the CLI's own shape of a denial, from its adapter (standard library only)
        from spanvisor.clis import registry

        adapter = registry.get(argv[0]) if argv else None
        if adapter is not None:
            doc = json.dumps(adapter.reply(adapter.tool_events[0], "deny", reason))
            # Cline runs a call whose hook exits non-zero: its block is an
            # answer that stops the run, with status 0.
            status = adapter.block_status
    except Exception:  # exit status 2 alone: what most CLIs read as a block (Cline's shipped hook too)
        doc, status = "", _BLOCK
    for stream, text in ((sys.stdout, doc), (sys.stderr, reason)):
        try:
            if text:
                stream.write(text + "\n")
                stream.flush()
        except BaseException:
            if stream is sys.stdout and status == 0:
                status = _BLOCK  # no answer written: Cline's hook wrapper stops the run
    return status


def _exit(code: int) -> None:
    try:
        sys.stdout.flush()
    except BaseException:
        code = _BLOCK if code else code
    # At once: a stdout closed under us must not turn the status into 120
    # at the interpreter's exit.
    os._exit(code)


__all__ = ["main"]
