"""Audit notes: what the gate decided, on the session's task.

A note is made when the decision is, and handled only once the answer is
out: the hook process has already told its waiting parent to exit (the CLI
goes on) and the launcher has already replied, so nothing here can hold
the answer. The note is first written to a spool, one file named by its
stable id (so it survives whatever happens next), then delivered at once
by that same released process (or the launcher's thread), oldest first,
and removed only once the receiver took it. A note's id and time are fixed
when it is made, so a second delivery is the same record (the receiver's
live facts are keyed by them). With the receiver away, deliveries back off
for :data:`BACKOFF_S` and the next hook call (or the launcher, at the
session's end) delivers what waits; a note undelivered for a week moves to
``undelivered/`` and is counted: the next delivery says how many on the
session's task (a warning checkpoint), once per count. The spool is
private to the user (mode 0700).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from spanvisor.gate import otlp
from spanvisor.gate.contracts import Call
from spanvisor.gate.session import TaskKey, otlp_endpoint, session_of

ENV_SPOOL = "SPANVISOR_HOOK_SPOOL"
ENV_DELIVERY = "SPANVISOR_HOOK_DELIVERY"
ENV_TOKEN = "SPANVISOR_OTLP_TOKEN"
# The count a lost-notes warning carries (a dashboard can sum it).
NOTES_LOST = "spanvisor.gate.notes_lost"
REQUEST_TIMEOUT_S = 3.0
BACKOFF_S = 10.0
BACKOFF_FILE = ".retry-after"
# How many notes could not even be spooled, and how many set-aside notes
# the task was already told about.
DROPPED_FILE = ".dropped"
REPORTED_FILE = ".reported"
# A note undelivered this long is moved aside (kept, counted), not retried.
GIVE_UP_S = 7 * 86_400


def spool_dir(env: Mapping[str, str] | None = None) -> Path:
    e = os.environ if env is None else env
    explicit = e.get(ENV_SPOOL)
    if explicit:
        return Path(explicit)
    if e.get("SPANVISOR_DATA_DIR"):
        return Path(e["SPANVISOR_DATA_DIR"]) / "hook-spool"
    state = e.get("XDG_STATE_HOME") or os.path.join(e.get("HOME") or os.path.expanduser("~"), ".local", "state")
    return Path(state) / "spanvisor" / "hook-spool"


def note(
    kind: str, call: Call, basis: str, endpoint: str | None, at: int, env: Mapping[str, str], **facts: Any
) -> dict[str, Any] | None:
    """A note on the session's task (None when the call names no task): its
    id is stable for the call (``basis``) and the kind, and its time is
    ``at``, when the decision was made."""
    session = session_of(call.cli, call.session_id, env)
    if session is None:
        return None
    ident = hashlib.blake2b(f"{session.key}\x1f{basis}\x1f{kind}".encode(), digest_size=12).hexdigest()
    records: list[tuple[str, dict[str, Any], int]] = []
    if kind in ("policy", "cancel"):
        allowed = kind == "policy" and facts.get("verdict") == "allow"
        shown = call.question().removeprefix("Allow ").removesuffix("?")
        if not session.launched:  # the hook may speak before the CLI's own records open the task
            records.append((otlp.LIVE_TASK_START, {otlp.TASK_ID: session.task_id, otlp.AGENT_ID: session.service}, at))
        if kind == "cancel":  # the task was cancelled: the hook blocks the session's every call
            said = f"⏹ {facts.get('said')}: spanvisor hook blocked {shown}"
        else:
            said = f"{shown}: {'allowed' if allowed else 'denied'} by {facts.get('by')}"
        attrs = {
            otlp.TASK_ID: session.task_id,
            otlp.MESSAGE: said,
            otlp.APPROVAL_OUTCOME: "approve" if allowed else "reject",
            otlp.APPROVAL_DECIDED_BY: str(facts.get("by")),
            "gen_ai.tool.name": call.tool,
        }
        records.append((otlp.EVENT_CHECKPOINT, attrs, at))
    else:
        attrs = {
            otlp.TASK_ID: session.task_id,
            otlp.APPROVAL_ID: str(facts.get("approval_id")),
            otlp.APPROVAL_OUTCOME: str(facts.get("outcome")),
            otlp.APPROVAL_DECIDED_BY: str(facts.get("by")),
        }
        records.append((otlp.EVENT_APPROVAL_DECISION, attrs, at))
    # Each record carries its own id: the receiver reads a resent one once.
    records = [(name, {**attrs, otlp.RECORD_ID: f"{ident}.{i}"}, t) for i, (name, attrs, t) in enumerate(records)]
    return {
        "id": ident,
        "kind": kind,
        "session": [session.key, session.service, session.launched],
        "endpoint": otlp_endpoint(endpoint, env),
        "records": records,
    }


def send(item: Mapping[str, Any], token: str | None, timeout_s: float) -> bool:
    if "spans" in item:  # a task's end (its root span) the receiver could not take when it was made
        body = json.dumps(item["spans"], separators=(",", ":")).encode()
        return otlp.post(str(item["endpoint"]), token, body, timeout_s, "traces")
    key, service, launched = item["session"]
    trace_hex, span_hex = TaskKey(str(key), str(service), bool(launched)).ids
    records = [(str(n), dict(a), int(t)) for n, a, t in item["records"]]
    return otlp.post(str(item["endpoint"]), token, otlp.encode(str(service), trace_hex, span_hex, records), timeout_s)


def keep(
    item: dict[str, Any] | None, token: str | None, env: Mapping[str, str] | None = None, released: bool = False
) -> None:
    """Spool ``item``, then deliver what waits: here when the answer is
    already released (this process or thread holds nothing up), else in a
    detached deliverer. A note that cannot even be spooled is sent once,
    else dropped and counted in the spool's ``.dropped`` (said by the next
    delivery)."""
    if item is None:
        return
    e = os.environ if env is None else env
    where = spool_dir(e)
    try:
        write(item, where)
    except OSError:
        if not (released and send(item, token, REQUEST_TIMEOUT_S)):
            _count(where, DROPPED_FILE)
        return
    if _backing_off(where) or e.get(ENV_DELIVERY) == "off":
        return
    if released:
        deliver(where, token)
    else:
        spawn_delivery(token, e)


def write(item: Mapping[str, Any], directory: Path | None = None) -> Path:
    """Put ``item`` (with its ``id``) in the spool, atomically."""
    where = spool_dir() if directory is None else directory
    where.mkdir(mode=0o700, parents=True, exist_ok=True)
    name = f"{time.time_ns():020d}-{item['id']}.json"
    tmp = where / f".{name}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, json.dumps(item, separators=(",", ":"), default=str).encode())
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


def _backing_off(where: Path) -> bool:
    try:
        return time.time() < float((where / BACKOFF_FILE).read_text() or 0)
    except (OSError, ValueError):
        return False


def _locked(where: Path) -> bool:
    try:
        fd = os.open(where / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)
    return False


def spawn_delivery(token: str | None, env: Mapping[str, str] | None = None) -> None:
    """Start a deliverer in a session of its own, holding none of this
    process's pipes (the CLI goes on once the hook exits), unless one runs
    (it looks again before it stops) or the receiver was away a moment ago."""
    e = os.environ if env is None else env
    where = spool_dir(e)
    if e.get(ENV_DELIVERY) == "off" or _backing_off(where) or _locked(where):
        return
    if threading.active_count() > 1:
        # A process with threads (the launcher answering its hooks) is not
        # forked: it lives on, so a thread of its own delivers.
        threading.Thread(target=deliver, args=(where, token), name="spanvisor-notes", daemon=True).start()
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
        child_env = dict(e)
        if token:
            child_env[ENV_TOKEN] = token
        os.execve(sys.executable, [sys.executable, "-I", "-m", "spanvisor.gate.notes"], child_env)
    finally:
        os._exit(0)


def deliver(directory: Path | None = None, token: str | None = None) -> int:
    """Deliver what waits, one deliverer at a time; how many were sent.
    Once one is taken, notes given up on (or never spooled) since the last
    report are said on that note's task."""
    where = spool_dir() if directory is None else directory
    token = token if token is not None else os.environ.get(ENV_TOKEN)
    try:
        where.mkdir(mode=0o700, parents=True, exist_ok=True)
        lock = os.open(where / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    except OSError:
        return 0
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(lock)
        return 0
    sent = 0
    try:
        while waiting := pending(where):
            for path in waiting:
                if _stale(path):
                    aside = where / "undelivered"
                    aside.mkdir(mode=0o700, exist_ok=True)
                    path.replace(aside / path.name)
                    continue
                try:
                    item = json.loads(path.read_bytes())
                    ok = send(item, token, REQUEST_TIMEOUT_S)
                except (OSError, ValueError, KeyError, TypeError):
                    item, ok = None, True  # not a note: nothing to send, nothing to retry
                if not ok:
                    (where / BACKOFF_FILE).write_text(str(time.time() + BACKOFF_S))
                    return sent
                path.unlink(missing_ok=True)
                sent += 1
                if item is not None:
                    _report(where, item, token)
    finally:
        os.close(lock)
    return sent


def unreported(directory: Path | None = None) -> int:
    """Notes lost to the audit trail (set aside after a week, or never
    spooled) that no task has been told about yet."""
    where = spool_dir() if directory is None else directory
    return max(0, undelivered(where) + _dropped(where) - _read_count(where / REPORTED_FILE))


def _report(where: Path, item: Mapping[str, Any], token: str | None) -> None:
    """Say on ``item``'s task how many notes were lost since the last report."""
    lost = unreported(where)
    if lost <= 0:
        return
    key, service, launched = item["session"]
    total = undelivered(where) + _dropped(where)
    text = (
        f"\u26a0 {lost} of the gate's audit notes could not be delivered "
        f"(kept in {where / 'undelivered'} when they could be written)"
    )
    at = time.time_ns()
    ident = hashlib.blake2b(f"{key}\x1flost\x1f{total}".encode(), digest_size=12).hexdigest()
    task_id = TaskKey(str(key), str(service), bool(launched)).task_id
    attrs = {otlp.TASK_ID: task_id, otlp.MESSAGE: text, NOTES_LOST: lost, otlp.RECORD_ID: f"{ident}.0"}
    report = {"session": [key, service, launched], "endpoint": item["endpoint"]}
    report["records"] = [(otlp.EVENT_CHECKPOINT, attrs, at)]
    if send(report, token, REQUEST_TIMEOUT_S):
        _write_count(where / REPORTED_FILE, total)


def _read_count(path: Path) -> int:
    try:
        return max(0, int(path.read_text().strip() or 0))
    except (OSError, ValueError):
        return 0


def _write_count(path: Path, n: int) -> None:
    try:
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(str(n))
        os.replace(tmp, path)
    except OSError:
        pass


def _count(where: Path, name: str) -> None:
    """One more in ``name`` (a byte appended: no lock, nothing to lose)."""
    try:
        fd = os.open(where / name, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    except OSError:
        return
    try:
        os.write(fd, b".")
    except OSError:
        pass
    finally:
        os.close(fd)


def _dropped(where: Path) -> int:
    try:
        return (where / DROPPED_FILE).stat().st_size
    except OSError:
        return 0


def _stale(path: Path) -> bool:
    try:
        return time.time() - path.stat().st_mtime > GIVE_UP_S
    except OSError:
        return False


__all__ = [
    "BACKOFF_S",
    "ENV_DELIVERY",
    "ENV_SPOOL",
    "GIVE_UP_S",
    "NOTES_LOST",
    "deliver",
    "keep",
    "note",
    "pending",
    "send",
    "spawn_delivery",
    "spool_dir",
    "undelivered",
    "unreported",
    "write",
]

if __name__ == "__main__":
    deliver()
