"""Audit notes the gate has yet to deliver: a spool of files.

A policy's answer never waits for the network: the note that records it
(on the session's task, over OTLP) is written here first, as one file named
by its stable id, and delivered after the answer by a detached process
(``python -m spanvisor.cli.hook_notes``), by the next hook call's, or by
the launcher at the session's end. A note leaves the spool only once the
receiver took it; its id and its time are fixed when it is written, so a
second delivery of it is the same record (the receiver's event ids are
derived from them). The spool is private to the user (mode 0700).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from spanvisor.gate.contracts import Call

ENV_SPOOL = "SPANVISOR_HOOK_SPOOL"
# A note undelivered this long is moved aside (kept, counted), not retried.
GIVE_UP_S = 7 * 86_400


def spool_dir(env: dict[str, str] | None = None) -> Path:
    e = os.environ if env is None else env
    explicit = e.get(ENV_SPOOL)
    if explicit:
        return Path(explicit)
    if e.get("SPANVISOR_DATA_DIR"):
        return Path(e["SPANVISOR_DATA_DIR"]) / "hook-spool"
    state = e.get("XDG_STATE_HOME") or os.path.join(e.get("HOME") or os.path.expanduser("~"), ".local", "state")
    return Path(state) / "spanvisor" / "hook-spool"


def write(note: dict[str, Any], directory: Path | None = None) -> Path:
    """Put ``note`` (with its ``id``) in the spool, atomically."""
    where = spool_dir() if directory is None else directory
    where.mkdir(mode=0o700, parents=True, exist_ok=True)
    name = f"{time.time_ns():020d}-{note['id']}.json"
    tmp = where / f".{name}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, json.dumps(note, separators=(",", ":"), default=str).encode())
    finally:
        os.close(fd)
    final = where / name
    os.replace(tmp, final)
    return final


def pending(directory: Path | None = None) -> list[Path]:
    """The notes waiting, oldest first."""
    where = spool_dir() if directory is None else directory
    try:
        return sorted(p for p in where.iterdir() if p.suffix == ".json" and not p.name.startswith("."))
    except OSError:
        return []


def undelivered(directory: Path | None = None) -> int:
    """How many notes were given up on (kept in ``undelivered/``)."""
    where = (spool_dir() if directory is None else directory) / "undelivered"
    try:
        return sum(1 for p in where.iterdir() if p.suffix == ".json")
    except OSError:
        return 0


# What a note keeps of the environment: where it goes and whose task it is.
NOTE_ENV = (
    "SPANVISOR_TASK_ID",
    "SPANVISOR_TASK_OWNER",
    "SPANVISOR_OTLP_ENDPOINT",
    "OTEL_RESOURCE_ATTRIBUTES",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_PROTOCOL",
)
ENV_DELIVERY = "SPANVISOR_HOOK_DELIVERY"


def note(kind: str, call: Call, basis: str, endpoint: str | None, **facts: Any) -> dict[str, Any] | None:
    """A note on the session's task (None when the call names no task):
    its id is stable for the call (``basis``) and the kind, its time fixed."""
    key = os.environ.get("SPANVISOR_TASK_ID") or call.session_id
    if not key and "OTEL_RESOURCE_ATTRIBUTES" not in os.environ:
        return None
    ident = hashlib.blake2b(f"{key}\x1f{basis}\x1f{kind}".encode(), digest_size=12).hexdigest()
    return {
        "id": ident,
        "kind": kind,
        "cli": call.cli,
        "session_id": call.session_id,
        "env": {k: os.environ[k] for k in NOTE_ENV if k in os.environ},
        "endpoint": endpoint,
        "tool": call.tool,
        "question": call.question(),
        "at": time.time_ns(),
        **facts,
    }


def keep(item: dict[str, Any] | None, otlp_token: str | None) -> None:
    """Spool ``item`` and start its delivery; a note that cannot be spooled
    is said on stderr and costs nothing else."""
    if item is None:
        return
    try:
        write(item)
    except OSError as exc:
        print(f"spanvisor hook: a note could not be spooled ({exc.strerror or exc})", file=sys.stderr)
        return
    spawn_delivery(otlp_token)


BACKOFF_FILE = ".retry-after"


def _delivery_due(where: Path) -> bool:
    """Whether a deliverer should start: none is running (it looks again
    before it stops) and the last one did not find the receiver away in
    the last while (its ``.retry-after``)."""
    try:
        if time.time() < float((where / BACKOFF_FILE).read_text() or 0):
            return False
    except (OSError, ValueError):
        pass
    try:
        fd = os.open(where / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    except OSError:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    finally:
        os.close(fd)
    return True


def spawn_delivery(otlp_token: str | None) -> None:
    """Start ``python -m spanvisor.cli.hook_notes`` in a session of its own,
    holding none of this process's pipes: the CLI reads the answer and goes
    on while the notes are sent."""
    if os.environ.get(ENV_DELIVERY) == "off" or not _delivery_due(spool_dir()):
        return
    try:
        pid = os.fork()
    except OSError:
        return
    if pid:
        return
    try:  # the child: detach, then become the deliverer
        os.setsid()
        fd = os.open(os.devnull, os.O_RDWR)
        for n in (0, 1, 2):
            os.dup2(fd, n)
        env = dict(os.environ)
        if otlp_token:
            env["SPANVISOR_OTLP_TOKEN"] = otlp_token
        os.execve(sys.executable, [sys.executable, "-m", "spanvisor.cli.hook_notes"], env)
    finally:
        os._exit(0)


__all__ = [
    "BACKOFF_FILE",
    "ENV_DELIVERY",
    "ENV_SPOOL",
    "GIVE_UP_S",
    "NOTE_ENV",
    "keep",
    "note",
    "pending",
    "spawn_delivery",
    "spool_dir",
    "undelivered",
    "write",
]
