"""``spanvisor run`` tells the system gate its session.

Under the system gate (``spanvisor gate serve``, another user's process),
a call's task is never the environment's word: a repository can set the
variables a hook carries. The gate gives a call the task of the nearest
``spanvisor run`` above it that told the gate its session, by the
kernel's word for the process (:mod:`spanvisor.cli.gate_serve`). So before
the CLI starts, the launcher tells every system gate its CLI's hook
entries name (``--gate SOCKET``, in the settings files the CLI reads) and
``SPANVISOR_SYSTEM_GATE``, on a connection it keeps open for the session:
its end (or the launcher's death) is the session's end for the gate.

A gate that does not answer at once is said once: its calls are then filed
under the CLI's own session, not this task. Standard library only.
"""

from __future__ import annotations

import os
import shlex
import socket
import time
from collections.abc import Mapping

from spanvisor.clis import registry
from spanvisor.gate import clitimeout, local

ENV = "SPANVISOR_SYSTEM_GATE"
# How long the launcher waits for a gate's answer before the CLI starts.
TELL_S = 0.5


def named(cli: str, env: Mapping[str, str], cwd: str) -> list[str]:
    """The system gates' sockets this session's hooks go to: ``--gate
    SOCKET`` in the CLI's hook entries, and ``SPANVISOR_SYSTEM_GATE``."""
    out: list[str] = []
    if env.get(ENV):
        out.append(env[ENV])
    adapter = registry.get(cli)
    if adapter is not None:
        for path in clitimeout.settings_files(cli, env, cwd):
            for command, _ in adapter.hook_timeouts(clitimeout.read_settings(path)):
                try:
                    words = shlex.split(command)
                except ValueError:
                    continue
                out += [words[i + 1] for i, w in enumerate(words[:-1]) if w == "--gate"]
    return list(dict.fromkeys(p for p in out if os.path.isabs(p)))


def tell(
    paths: list[str], task_id: str, agent: str, run: str | None, owner: str | None = None
) -> tuple[list[socket.socket], list[str]]:
    """Tell each gate the session (``owner``: the person the agent works
    for, who may not approve its requests): (the connections to keep open
    for it, what to say of the gates that did not take it)."""
    held: list[socket.socket] = []
    said: list[str] = []
    session = {
        "task_id": task_id,
        "agent": agent,
        **({"run": run} if run else {}),
        **({"owner": owner} if owner else {}),
    }
    for path in paths:
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            conn.settimeout(TELL_S)
            conn.connect(path)
            conn.sendall(local.frame({"launcher": session}))
            answer = local.read_frame(conn, time.monotonic() + TELL_S)
            if answer is None or answer.get("ok") is not True:
                raise OSError("no answer")
        except OSError as exc:
            conn.close()
            said.append(
                f"the system gate at {path} did not take this session ({exc.strerror or exc}): "
                f"its calls are filed under the CLI's own session, not task {task_id}"
            )
            continue
        held.append(conn)
    return held, said


__all__ = ["ENV", "named", "tell"]
