"""The launcher as the local gatekeeper: a hook asks over a private socket.

``spanvisor run`` lives as long as the CLI and has the gate warm (the
policy's parser, the shell grammar, the connection to ``serve``), so it
listens on a Unix socket in a directory only its user can open
(``SPANVISOR_GATE_SOCKET`` tells the CLI's hooks where). A hook sends its
arguments and stdin and gets back the exit status and the text to write;
one round trip to a warm process instead of loading the gate. A hook whose
launcher is gone (refused, closed) decides by itself, as without a
launcher; one whose launcher is silent waits until just past the deadline
(the launcher's own backstop answers before) and then decides by itself,
with no time left to ask anyone. Frames: a 4-byte big-endian length, then
JSON; the request carries the hook's start, so both count one deadline.
"""

from __future__ import annotations

import json
import os
import socket
import struct
import time
from collections.abc import Mapping
from typing import Any

ENV_SOCKET = "SPANVISOR_GATE_SOCKET"
MAX_FRAME = 16 * 1024 * 1024
# The launcher's small client (gate/client.py) speaks fields, not JSON (no
# json, no re to import): its frames start with this, which JSON never does.
SMALL = b"\x00SPV"


def frame(doc: dict[str, Any]) -> bytes:
    if doc.get("small"):
        fields = [str(doc["stdout"]).encode(), str(doc["stderr"]).encode()]
        data = SMALL + bytes([int(doc["code"]) & 0xFF]) + b"".join(len(f).to_bytes(4, "big") + f for f in fields)
        return len(data).to_bytes(4, "big") + data
    data = json.dumps({k: v for k, v in doc.items() if k != "small"}, separators=(",", ":")).encode()
    return len(data).to_bytes(4, "big") + data


def _small(body: bytes) -> dict[str, Any] | None:
    """The small client's request: argv, stdin, start, cwd and env, each a
    length and its bytes (lists NUL-joined)."""
    fields: list[bytes] = []
    i = len(SMALL)
    while i < len(body):
        n = int.from_bytes(body[i : i + 4], "big")
        fields.append(body[i + 4 : i + 4 + n])
        i += 4 + n
    if len(fields) != 5 or i != len(body):
        return None
    try:
        argv, stdin, started, cwd, env = fields
        pairs = [kv.decode("utf-8", "surrogateescape").partition("=") for kv in env.split(b"\x00") if kv]
        return {
            "small": True,
            "argv": [a.decode("utf-8", "surrogateescape") for a in argv.split(b"\x00")] if argv else [],
            "stdin": stdin.decode("latin-1"),
            "started": float(started.decode("ascii")),
            "cwd": cwd.decode("utf-8", "surrogateescape"),
            "env": context({k: v for k, _, v in pairs}, "")["env"],
        }
    except (ValueError, UnicodeDecodeError):
        return None


def read_frame(sock: socket.socket, deadline: float | None = None) -> dict[str, Any] | None:
    """One frame's JSON object, or None on EOF, time out or garbage."""
    head = _read(sock, 4, deadline)
    if head is None:
        return None
    size = int.from_bytes(head, "big")
    if size > MAX_FRAME:
        return None
    body = _read(sock, size, deadline)
    if body is None:
        return None
    if body.startswith(SMALL):
        return _small(body)
    try:
        doc = json.loads(body)
    except ValueError:
        return None
    return doc if isinstance(doc, dict) else None


def _read(sock: socket.socket, n: int, deadline: float | None) -> bytes | None:
    chunks: list[bytes] = []
    got = 0
    while got < n:
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            sock.settimeout(left)
        try:
            chunk = sock.recv(min(n - got, 1 << 20))
        except OSError:
            return None
        if not chunk:
            return None
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def context(env: Mapping[str, str], cwd: str) -> dict[str, Any]:
    """What a decision depends on beyond the call, as the hook process has
    it: the working directory (a relative policy path, a relative file) and
    the variables the gate reads (the policy, the task, where notes go, the
    spool's home). The launcher decides with these, not its own."""
    return {"cwd": cwd, "env": {k: v for k, v in env.items() if k.startswith(_CONTEXT) or k in _ALSO}}


_CONTEXT = ("SPANVISOR_", "OTEL_RESOURCE_ATTRIBUTES", "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_PROTOCOL")
_ALSO = frozenset({"HOME", "XDG_STATE_HOME"})


def ask(path: str, argv: list[str], stdin: bytes, deadline: float, started: float) -> tuple[int, str, str] | None:
    """The launcher's answer to this hook call (exit status, stdout,
    stderr), or None when it could not give one before ``deadline``.
    ``started``: when the hook process started (``time.monotonic()``, one
    clock for every process of the machine), which the launcher's deadline
    counts from."""
    here = context({k: v for k, v in os.environ.items() if k != ENV_SOCKET}, os.getcwd())
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(max(0.001, deadline - time.monotonic()))
            sock.connect(path)
            if not launcher_above(sock):
                return None  # not this hook's launcher: it decides by itself
            sock.sendall(frame({"argv": argv, "stdin": stdin.decode("latin-1"), "started": started, **here}))
            doc = read_frame(sock, deadline)
    except (OSError, ValueError):
        return None
    if doc is None:
        return None
    code, out, err = doc.get("code"), doc.get("stdout"), doc.get("stderr")
    if not isinstance(code, int) or not isinstance(out, str) or not isinstance(err, str):
        return None
    return code, out, err


def launcher_above(sock: socket.socket) -> bool:
    """Whether the process listening at ``sock`` is this hook's launcher: of
    this user, and among this process's ancestors (the kernel's word:
    ``SO_PEERCRED``, ``/proc/<pid>/stat``). The socket's path comes from the
    hook's environment, which a repository's settings can set, and a
    process the agent started (a descendant of its CLI, never an ancestor
    of the CLI's hook) could listen there and answer allow. True where the
    kernel cannot be asked (not Linux)."""
    if getattr(socket, "SO_PEERCRED", None) is None or not os.path.exists("/proc/self/stat"):
        return True
    who = peer(sock)
    if who is None:
        return False
    pid, uid, _gid = who
    if uid != os.getuid() or pid <= 1:
        return False
    here = os.getppid()
    for _ in range(MAX_ANCESTORS):
        if here == pid:
            return True
        if here <= 1:
            return False
        here = _parent(here)
    return False


def peer(conn: socket.socket) -> tuple[int, int, int] | None:
    """(pid, uid, gid) of the process at the other end of ``conn``, by the
    kernel's word (``SO_PEERCRED``); None where it cannot be asked."""
    option = getattr(socket, "SO_PEERCRED", None)
    if option is None:
        return None
    try:
        pid, uid, gid = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, option, struct.calcsize("3i")))
    except OSError:
        return None
    return pid, uid, gid


# How far up a hook's ancestry its launcher is looked for (hook, shell, CLI, launcher, and wrappers).
MAX_ANCESTORS = 32


def _parent(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            text = f.read()
    except OSError:
        return 0
    fields = text[text.rfind(b")") + 2 :].split()
    return int(fields[1]) if len(fields) > 1 and fields[1].isdigit() else 0


__all__ = ["ENV_SOCKET", "MAX_FRAME", "SMALL", "ask", "context", "frame", "launcher_above", "peer", "read_frame"]
