"""``spanvisor hook <cli> --gate SOCKET``: the call decided by the system gate.

The system gate (``spanvisor gate serve``, :mod:`spanvisor.cli.gate_serve`)
runs under a user of its own; its policy, its copy of the central policy,
its spool and its tokens live with it, out of the agent's reach. The hook
the CLI runs only carries the call there: the CLI's name, the call as the
CLI wrote it, the working directory, the session's context variables
(:data:`~spanvisor.hook.config.KEPT`, ``OTEL_RESOURCE_ATTRIBUTES``) and
its start, so both count one deadline. Its own policy, servers and tokens
are never sent: the gate decides with its own.

Nothing the agent's user can reach decides: a gate that cannot be reached,
refuses the connection (another user, not of its group), closes it or says
nothing until just past the deadline is a block, never a decision made here.
"""

from __future__ import annotations

import argparse
import os
import socket
import time
from collections.abc import Mapping

from spanvisor.gate import local
from spanvisor.gate.answer import Answer
from spanvisor.gate.deadline import Deadline
from spanvisor.hook.config import KEPT

# What the gate is told of the hook's environment: the session it runs in.
CONTEXT = KEPT | {"OTEL_RESOURCE_ATTRIBUTES"}


def request(
    args: argparse.Namespace, raw: bytes, env: Mapping[str, str], cwd: str, started: float
) -> dict[str, object]:
    """The frame the gate reads: the CLI, the flags that describe the call
    (never one that chooses a policy, a server or a token), the call itself."""
    argv = [str(args.cli)]
    if getattr(args, "at_terminal", False):
        argv.append("--at-terminal")
    if getattr(args, "cli_timeout", None) is not None:
        argv += ["--cli-timeout", repr(float(args.cli_timeout))]
    context = {k: v for k, v in env.items() if k in CONTEXT}
    return {"argv": argv, "stdin": raw.decode("latin-1"), "started": started, "cwd": cwd, "env": context}


def ask(
    args: argparse.Namespace,
    out: Answer,
    deadline: Deadline,
    raw: bytes,
    env: Mapping[str, str],
    cwd: str | None,
    started: float,
) -> int:
    """The system gate's answer, written as it gave it; a block when there is none."""
    path = str(args.gate)
    doc = request(args, raw, env, cwd or os.getcwd(), started)
    until = deadline.launcher_given_up()
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(max(0.001, until - time.monotonic()))
            sock.connect(path)
            sock.sendall(local.frame(doc))
            got = local.read_frame(sock, until)
    except OSError as exc:
        why = exc.strerror or type(exc).__name__
        return out.block(f"spanvisor hook: the system gate at {path} cannot be asked ({why}); denied")
    except ValueError:
        got = None
    code = got.get("code") if got is not None else None
    text, err = (got.get("stdout"), got.get("stderr")) if got is not None else (None, None)
    if not isinstance(code, int) or not isinstance(text, str) or not isinstance(err, str):
        return out.block(f"spanvisor hook: the system gate at {path} gave no answer; denied")
    return out.relay(code, text, err)


__all__ = ["CONTEXT", "ask", "request"]
