"""``spanvisor hook claude-code|codex|gemini``: the gate's command.

The CLI runs it before a tool call with the call as JSON on stdin
(:mod:`spanvisor.gate.contracts`). It applies the policy
(:mod:`spanvisor.gate.policy`, shell commands decided per simple command);
when the policy says ``ask``, a person decides (:mod:`.hook_ask`). The
policy's answer imports nothing but the gate and never waits on the
network: its audit note is spooled and delivered after the answer
(:mod:`spanvisor.gate.notes`, :mod:`.hook_notes`).

It fails closed, and structurally so: one guard around everything turns
any exception, signal, unreadable input or policy, and a backstop timer at
the CLI's deadline into that CLI's block (the deny JSON and exit status 2),
and only an allow exits 0. The tool input never reaches stderr or a log.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TextIO

from spanvisor.clis import registry
from spanvisor.gate import cancel, clitimeout, notes, session, turns, verdict
from spanvisor.gate import contracts as gc
from spanvisor.gate.answer import Answer
from spanvisor.gate.centralcache import ENV_MODE
from spanvisor.gate.deadline import Deadline
from spanvisor.gate.readlimit import read_at_most
from spanvisor.hook import config as hook_config

ENV_POLICY = hook_config.ENV_POLICY

MAX_INPUT = verdict.MAX_INPUT


class Interrupted(BaseException):
    """A signal arrived before the answer: the call is blocked."""


def _cli_name(name: str) -> str:
    if registry.get(name) is None:
        raise argparse.ArgumentTypeError(
            f"no coding-agent CLI is called {name!r} (known: {', '.join(registry.names())})"
        )
    return name


class Late(BaseException):
    """The backstop timer fired: the CLI's deadline is near."""


def build_parser(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument(
        "cli",
        type=_cli_name,
        metavar="CLI",
        help=f"which CLI calls, by its adapter's name ({', '.join(registry.NAMES)}, or one an installed package adds)",
    )
    p.add_argument(
        "--policy",
        help=f"policy TOML file (default: ${ENV_POLICY} unless --locked; none: every call asks a person)",
    )
    p.add_argument(
        "--central",
        choices=("auto", "required", "off"),
        help=f"the central policy of serve: auto (obeyed once seen), required, off (default: ${ENV_MODE}, else auto)",
    )
    p.add_argument(
        "--locked",
        action="store_true",
        help="ignore every SPANVISOR_* variable that changes what is decided (the policy, the central policy, "
        "servers, tokens, where notes go): a repository can set a hook's environment, not its command line",
    )
    p.add_argument(
        "--cli-timeout",
        type=float,
        metavar="SECONDS",
        help="the hook timeout the CLI's settings give this hook: every answer comes a few seconds before it "
        "(default: the CLI's own, claude-code 600, codex 600, gemini 60)",
    )
    p.add_argument(
        "--at-terminal",
        action="store_true",
        help="claude-code, codex: a PermissionRequest is answered neutrally, so the CLI asks the person at its "
        "terminal, and its task shows waiting meanwhile (other events are judged as without it)",
    )
    p.add_argument("--url", help="control API (default: $SPANVISOR_CONTROL_URL, else the OTLP endpoint)")
    p.add_argument("--token", help="control API token (default: $SPANVISOR_CONTROL_TOKEN)")
    p.add_argument(
        "--endpoint",
        help="OTLP/HTTP endpoint the records go to (default: $SPANVISOR_OTLP_ENDPOINT, $OTEL_EXPORTER_OTLP_ENDPOINT, "
        "or http://127.0.0.1:4318)",
    )
    p.add_argument("--otlp-token", help="bearer token of the OTLP endpoint (default: $SPANVISOR_OTLP_TOKEN)")
    p.add_argument(
        "--cancel-wait",
        metavar="DURATION",
        help="how long an allowed call may wait for the look at its session's cancel (100ms, 0.5s, 2; at most 5s; "
        "default: $SPANVISOR_HOOK_CANCEL_WAIT unless --locked, else 100ms): a busy serve answers later, and a "
        "look too late lets that one call's allow stand",
    )
    # The system gate's own (cli/gate_serve.py), never a hook's: a client's
    # request cannot carry it (gate_serve.passed_on), and a secret kept by
    # the agent's own user would be worth nothing.
    p.add_argument("--key-sessions", action="store_true", help=argparse.SUPPRESS)
    # The CLI its client runs under (<pid>:<start time>), by the kernel's word (the gate's, per call).
    p.add_argument("--session-cli", help=argparse.SUPPRESS)
    p.add_argument(
        "--gate",
        metavar="SOCKET",
        help="ask the system gate listening at SOCKET (`spanvisor gate serve`, under a user of its own): it decides "
        "with its own policy, servers and tokens; one that cannot be asked is a block",
    )
    return p


def main(
    argv: Sequence[str],
    stdin: bytes | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
    started: float | None = None,
    env: Mapping[str, str] | None = None,
    cwd: str | None = None,
    release: Callable[[int], None] | None = None,
    answer: Answer | None = None,
    deadline: Deadline | None = None,
    received: float | None = None,
) -> int:
    """``spanvisor hook …``: always an answer in the CLI's contract. The
    call is read from ``stdin`` when given (else this process's stdin), the
    answer written to ``stdout``/``stderr`` when given (or into ``answer``,
    which another thread may answer first); ``env`` and ``cwd`` are the hook
    process's when another process (the launcher) decides; ``started`` is
    when the hook process started (the deadline counts from it);
    ``release`` is called with the exit status as soon as it is known,
    before the audit note is sent; ``deadline``, the call's when the
    launcher already reckoned it (its backstop's: one deadline a call, its
    settings read once); ``received``, when this process got the call (the
    cancel look's wait counts from it when ``started``, which the caller
    may claim, is earlier: a claim may shorten the deadline, not the look)."""
    t0 = time.monotonic() if started is None else started
    cli = argv[0] if argv and registry.get(argv[0]) is not None else None
    e = os.environ if env is None else env

    def body(out: Answer) -> int:
        args, env_, said = hook_config.settle(_copied(_parsed(tuple(argv))), e)
        if said:
            _say(out, said)
        if (why := hook_config.refused(args)) is not None:
            return out.block(why)
        if cwd is not None and args.policy and not os.path.isabs(args.policy):
            args.policy = os.path.join(cwd, args.policy)
        if env is None:  # deciding in its own process: no launcher vouched for its session
            env_ = own_session(args, env_)
        return decide(args, out, t0, stdin, env_, cwd, deadline, received)

    out = answer if answer is not None else Answer(cli, stdout, stderr, release)
    return guarded(out, body, help_asked="-h" in argv or "--help" in argv)


def _copied(args: argparse.Namespace) -> argparse.Namespace:
    """A shallow copy, which settling may change (the parsed arguments are
    kept for the next call). Not ``copy.copy``: the copy module imports
    weakref, about 2 ms of a cold hook's start."""
    return argparse.Namespace(**vars(args))


@functools.lru_cache(maxsize=64)
def _parsed(argv: tuple[str, ...]) -> argparse.Namespace:
    """The arguments read (the launcher answers the same hook command all
    session: read once); an error exits as argparse does."""
    return build_parser(argparse.ArgumentParser(prog="spanvisor hook")).parse_args(list(argv))


def run(args: argparse.Namespace) -> int:
    """The same from arguments the full CLI's parser read."""
    started = time.monotonic()

    def body(out: Answer) -> int:
        settled, env, said = hook_config.settle(_copied(args), os.environ)
        if said:
            _say(out, said)
        if (why := hook_config.refused(settled)) is not None:
            return out.block(why)
        return decide(settled, out, started, env=own_session(settled, env))

    return guarded(Answer(args.cli), body)


def own_session(args: argparse.Namespace, env: dict[str, str]) -> dict[str, str]:
    """The environment a hook deciding in its own process decides with:
    when ``--locked``, nothing of what only a launcher may say of the
    session (its task, agent, owner, the task's name and repository): a
    repository's settings can set a hook's environment, and a rule on the
    owner or the task would match what the repository chose. The session is
    then its CLI's own. (Under the launcher the hook asks the launcher's
    gate, which decides under its own word; the system gate drops them
    likewise: cli/gate_serve.py.)"""
    if not getattr(args, "locked", False):
        return env
    from spanvisor.gate import session as gs

    return gs.unclaimed(env)


def _say(out: Answer, text: str) -> None:
    """A line on the hook's stderr, before the answer (never the input)."""
    try:
        err = out.stderr or sys.stderr
        err.write(text + "\n")
        err.flush()
    except BaseException:
        pass


def guarded(out: Answer, body: Callable[[Answer], int], help_asked: bool = False) -> int:
    """``body``'s answer, or the CLI's block whatever it raised."""
    previous = _on_signals()
    try:
        return body(out)
    except SystemExit as exc:
        if exc.code == 0 and help_asked:
            return 0
        return out.block("spanvisor hook: its arguments are wrong (see `spanvisor hook --help`); denied")
    except Late:
        return out.block("spanvisor: no answer before the CLI's hook timeout; denied")
    except Interrupted as exc:
        return out.block(f"spanvisor hook was stopped ({exc.args[0] if exc.args else 'a signal'}); denied")
    except BaseException as exc:  # never a traceback, never the input: block and say why
        return out.block(f"spanvisor hook failed ({type(exc).__name__}); denied")
    finally:
        _disarm()
        _restore(previous)


def decide(
    args: argparse.Namespace,
    out: Answer,
    started: float,
    stdin: bytes | None = None,
    env: Mapping[str, str] | None = None,
    cwd: str | None = None,
    deadline: Deadline | None = None,
    received: float | None = None,
) -> int:
    e = os.environ if env is None else env
    cli: gc.Cli = args.cli
    if deadline is None:
        # The CLI's own hook timeout as its settings give it, where they can be read.
        deadline = Deadline.for_cli(cli, clitimeout.limit(cli, args.cli_timeout, e, cwd), started)
    _backstop(deadline)
    raw = read_at_most(sys.stdin.buffer, MAX_INPUT) if stdin is None else stdin
    if getattr(args, "gate", None):  # another user's process decides everything, notices and ends too
        from spanvisor.hook import system as hook_system

        return hook_system.ask(args, out, deadline, raw, e, cwd, started)
    from spanvisor.gate import notices

    at_terminal = bool(getattr(args, "at_terminal", False))  # a PermissionRequest: the person at the terminal decides
    if (notice := notices.notice_of(cli, raw, at_terminal)) is not None:  # a notice: neutral, never a block
        from spanvisor.hook import notice as hook_notice

        _disarm()
        return hook_notice.answer(notice, args, out, e)
    ended = gc.session_event(cli, raw)
    if ended is not None:  # a turn's or the session's end: answered, never blocked
        from spanvisor.hook import end as hook_end

        _disarm()
        return hook_end.answer(ended, args, out, e)
    if getattr(args, "key_sessions", False):  # its end then proves it is the gate's (issue 63)
        from spanvisor.hook import sessionkey

        try:
            sessionkey.ensure(cli, raw, args.endpoint, args.otlp_token, e, deadline, args.session_cli)
        except Exception:  # a gate that cannot key decides all the same: the end is then unproved
            pass
    looked = _look(raw, cli, args, e, started if received is None else max(started, received))
    if looked is not None:  # a cancelled session's calls are denied, whatever the policy allows
        out.veto = lambda: _cancelled_text(looked.result())
    token = args.token or e.get("SPANVISOR_CONTROL_TOKEN") or args.otlp_token
    got = verdict.by_policy(
        raw,
        cli,
        args.policy,
        cwd,
        out,
        e,
        args.endpoint,
        url=args.url,
        token=token,
        time_left=deadline.left(),
        locked=bool(getattr(args, "locked", False)),
    )
    if isinstance(got, verdict.Asked):
        if looked is not None and (c := looked.result()) is not None:
            code = out.deny(c.reason())
            _disarm()
            notes.keep(
                _cancel_note(got.call, raw, c, args, e),
                args.otlp_token,
                e,
                released=out.release is not None,
                later=out.later,
            )
            return code
        from spanvisor.hook.ask import ask

        return ask(got.call, raw, got.policy, got.ruling, args, deadline, out, e)
    _disarm()
    note = got.note
    if out.vetoed is not None and looked is not None and (c := looked.result()) is not None:
        note = _cancel_note(gc.parse(cli, raw), raw, c, args, e)
    # The answer is out (and released): only now the note, which never holds it.
    notes.keep(note, args.otlp_token, e, released=out.release is not None, later=out.later)
    if looked is not None:  # a look the answer could not wait for still tells the next call
        cancel.finish_late(looked)
    return got.code


def _look(
    raw: bytes, cli: gc.Cli, args: argparse.Namespace, env: Mapping[str, str], started: float
) -> cancel.CancelLook | None:
    """A look at the session's cancel, beside the policy (None under the
    launcher, which stops the CLI itself, or without a session id)."""
    if env.get("SPANVISOR_GATE_SOCKET"):  # the launcher's session, even when the launcher is silent
        return None
    key = session.session_of(cli, gc.session_id_of(cli, raw), env)
    if key is None or key.launched:
        return None
    url = cancel.control_url(args.url, session.otlp_endpoint(args.endpoint, env), env)
    if getattr(args, "cancel_wait", None):  # the command line's, which a locked hook takes (its variable it does not)
        env = {**env, cancel.ENV_BUDGET: args.cancel_wait}
    return cancel.look(key.task_id, url, cancel.control_token(args.token, env), env, started)


def _cancelled_text(c: turns.Cancel | None) -> str | None:
    return c.reason() if c is not None else None


def _cancel_note(
    call: gc.Call, raw: bytes, c: turns.Cancel, args: argparse.Namespace, env: Mapping[str, str]
) -> dict[str, Any] | None:
    basis = call.call_id or hashlib.blake2b(raw, digest_size=16).hexdigest()
    return notes.note("cancel", call, basis, args.endpoint, time.time_ns(), env, said=c.text(), by=f"cancel:{c.by}")


_SIGNALS = (signal.SIGTERM, signal.SIGHUP, signal.SIGINT, signal.SIGQUIT, signal.SIGALRM)


def _on_signals() -> dict[int, Any] | None:
    """Signals become a block; the previous handlers, to put back (None
    off the main thread, where a hook run in-process cannot set them)."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def stop(signum: int, _frame: Any) -> None:
        if signum == signal.SIGALRM:
            raise Late
        raise Interrupted(signal.Signals(signum).name)

    return {sig: signal.signal(sig, stop) for sig in _SIGNALS}


def _restore(previous: dict[int, Any] | None) -> None:
    for sig, handler in (previous or {}).items():
        signal.signal(sig, handler)


def _backstop(deadline: Deadline) -> None:
    """A timer past the deadline (by half the margin): every step runs
    against the deadline itself, and this ends whatever still runs (a hung
    read, a slow server) with a block while the CLI still listens."""
    if threading.current_thread() is not threading.main_thread():
        return
    signal.setitimer(signal.ITIMER_REAL, max(0.01, deadline.backstop() - time.monotonic()))


def _disarm() -> None:
    if threading.current_thread() is not threading.main_thread():
        return
    try:
        signal.setitimer(signal.ITIMER_REAL, 0)
    except (ValueError, OSError):  # pragma: no cover - not the main thread
        pass


__all__ = ["ENV_POLICY", "build_parser", "guarded", "main", "run"]
