"""Audit notes: what the gate decided, on the session's task.

A note is made when the decision is, and handled only once the answer is
out (the hook process has told its waiting parent to exit, the launcher
has replied): nothing here holds the answer. It is written first to a
spool, one file named by its stable id, then delivered (by the released
process, or on the launcher's workers) and removed once the receiver took
it. Its id and time are fixed when it is made, so a second delivery is the
same record (the receiver's live facts are keyed by them).

The spool is delivered per destination: the endpoint a note carries, set
from the hook's configuration when the note was made (never read again
from a request). Within a destination notes go oldest first; one that
fails backs off alone for :data:`BACKOFF_S` (a file named by a hash of the
endpoint in ``.retry-after/``) while the pass goes on with the others. The
next hook call delivers what waits, skipping a destination while its
backoff runs (no deliverer starts when every one does); the launcher, at
the session's end, tries each once all the same (its notes go before the
end). One deliverer runs at a time (a ``flock`` on ``.lock``); it looks
again before it stops, and never twice at one file in a pass.

A note undelivered for a week moves to ``undelivered/``. Anything in the
spool that is not a note (a directory, FIFO or link named ``*.json``, bytes
that are not JSON or not a note, a note with no endpoint, a file past
:data:`MAX_NOTE_BYTES`) is junk: moved to ``junk/`` (or, when it cannot
be, listed in ``.stuck`` and skipped), never retried, never deleted. Both
are counted and said on the next delivered note's task (a warning
checkpoint), once per count. The spool is private to the user (mode 0700).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import stat
import sys
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from spanvisor.gate import otlp, readlimit
from spanvisor.gate.contracts import Call
from spanvisor.gate.session import TaskKey, otlp_endpoint, session_of

ENV_SPOOL = "SPANVISOR_HOOK_SPOOL"
ENV_DELIVERY = "SPANVISOR_HOOK_DELIVERY"
ENV_TOKEN = "SPANVISOR_OTLP_TOKEN"
# The count a lost-notes warning carries (a dashboard can sum it), and the
# count of junk it says was set aside.
NOTES_LOST = "spanvisor.gate.notes_lost"
SPOOL_JUNK = "spanvisor.gate.spool_junk"
REQUEST_TIMEOUT_S = 3.0
BACKOFF_S = 10.0
# A destination's backoff: a file named by a hash of its endpoint in this
# folder, apart from the notes: a hook call looks at every backoff, and
# never lists the notes an outage left waiting to find them.
BACKOFF_DIR = ".retry-after"
# How many notes could not even be spooled, and how many set-aside notes
# (and pieces of junk) the task was already told about.
DROPPED_FILE = ".dropped"
REPORTED_FILE = ".reported"
JUNK_REPORTED_FILE = ".junk-reported"
# Files that could be neither sent nor moved aside nor removed: skipped.
STUCK_FILE = ".stuck"
UNDELIVERED_DIR = "undelivered"
JUNK_DIR = "junk"
# A note undelivered this long is moved aside (kept, counted), not retried.
GIVE_UP_S = 7 * 86_400
# A note is a few records (an end, one span): anything this big is junk,
# and is never read whole into memory.
MAX_NOTE_BYTES = 8 * 1024 * 1024


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
    endpoint = str(item["endpoint"])
    # No token: the local serve's for a loopback endpoint, and only to this
    # user's listener (otlp.post asks); the local serve's token never goes
    # to another host's endpoint (the spool holds notes for every destination).
    if "spans" in item:  # a task's end (its root span) the receiver could not take when it was made
        body = json.dumps(item["spans"], separators=(",", ":")).encode()
        return otlp.post(endpoint, token, body, timeout_s, "traces")
    key, service, launched = item["session"]
    trace_hex, span_hex = TaskKey(str(key), str(service), bool(launched)).ids
    records = [(str(n), dict(a), int(t)) for n, a, t in item["records"]]
    return otlp.post(endpoint, token, otlp.encode(str(service), trace_hex, span_hex, records), timeout_s)


def keep(
    item: dict[str, Any] | None,
    token: str | None,
    env: Mapping[str, str] | None = None,
    released: bool = False,
    later: Callable[[Callable[[], object]], object] | None = None,
) -> None:
    """Spool ``item``, then deliver what waits: once the answer is released,
    here or by ``later`` (the launcher's workers), else in a detached
    deliverer. A note that cannot even be spooled is sent once, else dropped
    and counted in the spool's ``.dropped`` (said by the next delivery)."""
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
    endpoint = item.get("endpoint")
    endpoint = endpoint if isinstance(endpoint, str) else None
    if e.get(ENV_DELIVERY) == "off" or not _due(where, endpoint):
        return
    if not released:
        spawn_delivery(token, e, endpoint)
    elif later is None:
        deliver(where, token, backoff=True)
    else:
        later(lambda: deliver(where, token, True))


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
    """What waits, oldest first: the notes, and junk not yet set aside
    (what could not even be set aside, listed in ``.stuck``, is not)."""
    where = spool_dir() if directory is None else directory
    stuck = _stuck(where)
    try:
        return sorted(
            p for p in where.iterdir() if p.suffix == ".json" and not p.name.startswith(".") and p.name not in stuck
        )
    except OSError:
        return []


def undelivered(directory: Path | None = None) -> int:
    """How many notes were given up on (kept in ``undelivered/``, or left
    where they were when they could not be moved)."""
    return _aside(spool_dir() if directory is None else directory, UNDELIVERED_DIR)


def junk(directory: Path | None = None) -> int:
    """How many things in the spool were not notes (set aside in ``junk/``,
    or left where they were when they could not be moved)."""
    return _aside(spool_dir() if directory is None else directory, JUNK_DIR)


def _aside(where: Path, kind: str) -> int:
    stuck = sum(1 for k in _stuck(where).values() if k == kind)
    try:  # in undelivered/ only notes count (as ever); in junk/ anything does
        return stuck + sum(1 for p in (where / kind).iterdir() if kind == JUNK_DIR or p.suffix == ".json")
    except OSError:
        return stuck


def backoff_file(endpoint: str, directory: Path | None = None) -> Path:
    """Where the backoff of the destination ``endpoint`` is kept: named by
    a hash, as an endpoint is no file name."""
    where = spool_dir() if directory is None else directory
    return where / BACKOFF_DIR / hashlib.blake2b(endpoint.encode(), digest_size=8).hexdigest()


def _backing_off(path: Path) -> bool:
    try:
        return time.time() < float(path.read_text().split("\n", 1)[0] or 0)
    except (OSError, ValueError, UnicodeDecodeError):
        return False


def _backoffs(where: Path) -> list[Path]:
    try:
        return list((where / BACKOFF_DIR).iterdir())
    except OSError:
        return []


def _due(where: Path, endpoint: str | None) -> bool:
    """Whether a deliverer has anything to try: ``endpoint``'s destination
    is not backing off, or another destination's backoff ran out. (A
    destination with no backoff had its notes tried when they were kept.)"""
    if endpoint is not None and not _backing_off(backoff_file(endpoint, where)):
        return True
    backoffs = _backoffs(where)
    if endpoint is None and not backoffs:
        return True
    return any(not _backing_off(p) for p in backoffs)


def _back_off(where: Path, endpoint: str) -> None:
    path = backoff_file(endpoint, where)
    with contextlib.suppress(OSError):  # the endpoint too, for a person who looks
        path.parent.mkdir(mode=0o700, exist_ok=True)
        path.write_text(f"{time.time() + BACKOFF_S}\n{endpoint}\n")


def _clear_backoffs(where: Path) -> None:
    """Remove the backoffs that ran out: their destination was tried this
    pass and took its notes, or has none left (a backoff still running was
    just written, or its destination was not tried)."""
    for path in _backoffs(where):
        if not _backing_off(path):
            with contextlib.suppress(OSError):
                path.unlink(missing_ok=True)


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


def spawn_delivery(token: str | None, env: Mapping[str, str] | None = None, endpoint: str | None = None) -> None:
    """Start a deliverer in a session of its own, holding none of this
    process's pipes (the CLI goes on once the hook exits), unless one runs
    (it looks again before it stops) or nothing is due: ``endpoint``'s
    destination was away a moment ago and no other's backoff ran out."""
    e = os.environ if env is None else env
    where = spool_dir(e)
    if e.get(ENV_DELIVERY) == "off" or not _due(where, endpoint) or _locked(where):
        return
    if threading.active_count() > 1:
        # A process with threads (the launcher answering its hooks) is not
        # forked: it lives on, so a thread of its own delivers.
        threading.Thread(target=deliver, args=(where, token, True), name="spanvisor-notes", daemon=True).start()
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


def deliver(directory: Path | None = None, token: str | None = None, backoff: bool = False) -> int:
    """Deliver what waits, one deliverer at a time; how many were sent.
    Each destination in turn, oldest first within it; a failure backs that
    destination off and the pass goes on with the next. With ``backoff``
    (the deliveries a hook starts, one a call) a destination whose backoff
    runs is not tried; without it (the launcher's and a session end's last
    delivery, which go before the end) every destination is tried once.
    Junk is set aside as it is met. Once a note is taken, notes given up on
    (or never spooled) and junk set aside since the last report are said
    on that note's task."""
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
    # Every file is looked at once a pass (what cannot be moved is not met
    # again, so the pass ends), and a destination that failed is not tried
    # again in it (its new notes wait for its backoff, behind its older ones).
    seen: set[str] = set()
    failed: set[str] = set()
    try:
        while fresh := [p for p in pending(where) if p.name not in seen]:
            queues: dict[str, list[tuple[Path, dict[str, Any]]]] = {}
            for path in fresh:
                seen.add(path.name)
                item = _read(path)
                if item is _LATER:
                    continue
                if not isinstance(item, dict):
                    _set_aside(where, path, JUNK_DIR)
                elif _stale(path):
                    _set_aside(where, path, UNDELIVERED_DIR)
                else:
                    queues.setdefault(str(item["endpoint"]), []).append((path, item))
            for endpoint, queue in queues.items():
                if endpoint in failed or (backoff and _backing_off(backoff_file(endpoint, where))):
                    continue
                for path, item in queue:
                    try:
                        ok = send(item, token, REQUEST_TIMEOUT_S)
                    except (KeyError, TypeError, ValueError, IndexError, ArithmeticError):
                        _set_aside(where, path, JUNK_DIR)  # shaped like a note, yet none can be made of it
                        continue
                    if not ok:
                        failed.add(endpoint)
                        _back_off(where, endpoint)
                        break
                    _taken(where, path)
                    sent += 1
                    _report(where, item, token)
    finally:
        _clear_backoffs(where)
        os.close(lock)
    return sent


# What ``_read`` gives for a file to look at again in a later pass (it went,
# or the machine was short of something): neither a note nor junk.
_LATER = "later"
_TRANSIENT = {errno.ENOENT, errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.EINTR, errno.EAGAIN}


def _read(path: Path) -> dict[str, Any] | str | None:
    """The note in ``path``; None when it is junk; :data:`_LATER`. Only a
    regular file is opened (a FIFO would block, a link may lead anywhere),
    and no more than :data:`MAX_NOTE_BYTES` of it is read."""
    try:
        if not stat.S_ISREG(os.lstat(path).st_mode):
            return None
        with open(os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC), "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                return None  # it changed since it was looked at
            data = readlimit.read_at_most(f, MAX_NOTE_BYTES)
    except OSError as exc:
        return _LATER if exc.errno in _TRANSIENT else None
    if len(data) > MAX_NOTE_BYTES:
        return None
    try:
        item = json.loads(data)
    except (ValueError, RecursionError):  # not UTF-8, not JSON, nested past reason
        return None
    return item if _is_note(item) else None


def _is_note(item: Any) -> bool:
    """Shaped as :func:`note` or an end (``spans``) makes it: a destination,
    a session, and something to send."""
    if not isinstance(item, dict):
        return False
    endpoint = item.get("endpoint")
    if not isinstance(endpoint, str) or not endpoint or any(ord(c) <= 0x20 or ord(c) == 0x7F for c in endpoint):
        return False
    session = item.get("session")
    if not (isinstance(session, list) and len(session) == 3 and all(isinstance(s, str) for s in session[:2])):
        return False
    if "spans" in item:
        return isinstance(item["spans"], dict)
    records = item.get("records")
    return isinstance(records, list) and bool(records) and all(_record(r) == (str, dict, int) for r in records)


def _record(record: Any) -> tuple[type, ...]:
    return tuple(type(part) for part in record) if isinstance(record, list) else ()


def _set_aside(where: Path, path: Path, kind: str) -> None:
    """Move ``path`` to ``kind/`` (``undelivered`` or ``junk``), never over
    what is there; what cannot be moved is listed in ``.stuck`` instead,
    counted the same and skipped from then on (never deleted)."""
    aside = where / kind
    with contextlib.suppress(OSError):
        aside.mkdir(mode=0o700, exist_ok=True)
        target = aside / path.name
        if os.path.lexists(target):
            target = aside / f"{time.time_ns():020d}-{path.name}"
        os.rename(path, target)
        return
    _mark_stuck(where, kind, path.name)


def _taken(where: Path, path: Path) -> None:
    """Remove a note the receiver took; one that cannot be removed is
    listed in ``.stuck`` so that it is not sent again and again."""
    try:
        path.unlink(missing_ok=True)
    except OSError:
        _mark_stuck(where, "sent", path.name)


def _mark_stuck(where: Path, kind: str, name: str) -> None:
    _append(where / STUCK_FILE, (json.dumps([kind, name]) + "\n").encode())  # JSON: a name may hold any character


def _stuck(where: Path) -> dict[str, str]:
    """The files listed in ``.stuck``: name to kind."""
    try:
        lines = (where / STUCK_FILE).read_text().splitlines()
    except (OSError, ValueError):
        return {}
    found: dict[str, str] = {}
    for line in lines:
        with contextlib.suppress(ValueError, TypeError):
            kind, name = json.loads(line)
            found.setdefault(str(name), str(kind))
    return found


def unreported(directory: Path | None = None) -> int:
    """Notes lost to the audit trail (set aside after a week, or never
    spooled) and junk set aside that no task has been told about yet."""
    where = spool_dir() if directory is None else directory
    return _lost_unreported(where) + max(0, junk(where) - _read_count(where / JUNK_REPORTED_FILE))


def _lost_unreported(where: Path) -> int:
    return max(0, undelivered(where) + _dropped(where) - _read_count(where / REPORTED_FILE))


def _report(where: Path, item: Mapping[str, Any], token: str | None) -> None:
    """Say on ``item``'s task how many notes were lost, and how much junk
    set aside, since the last report."""
    lost = _lost_unreported(where)
    junk_total = junk(where)
    junked = max(0, junk_total - _read_count(where / JUNK_REPORTED_FILE))
    if lost <= 0 and junked <= 0:
        return
    key, service, launched = item["session"]
    total = undelivered(where) + _dropped(where)
    said = []
    if lost > 0:
        said.append(
            f"{lost} of the gate's audit notes could not be delivered "
            f"(kept in {where / UNDELIVERED_DIR} when they could be written)"
        )
    if junked > 0:
        said.append(f"{junked} files in the gate's audit-note spool were not notes (set aside in {where / JUNK_DIR})")
    text = "\u26a0 " + "; ".join(said)
    at = time.time_ns()
    basis = f"{key}\x1flost\x1f{total}" + (f"\x1fjunk\x1f{junk_total}" if junk_total else "")
    ident = hashlib.blake2b(basis.encode(), digest_size=12).hexdigest()
    task_id = TaskKey(str(key), str(service), bool(launched)).task_id
    attrs: dict[str, Any] = {otlp.TASK_ID: task_id, otlp.MESSAGE: text, NOTES_LOST: lost}
    if junked > 0:
        attrs[SPOOL_JUNK] = junked
    attrs[otlp.RECORD_ID] = f"{ident}.0"
    report = {"session": [key, service, launched], "endpoint": item["endpoint"]}
    report["records"] = [(otlp.EVENT_CHECKPOINT, attrs, at)]
    if send(report, token, REQUEST_TIMEOUT_S):
        _write_count(where / REPORTED_FILE, total)
        _write_count(where / JUNK_REPORTED_FILE, junk_total)


def _read_count(path: Path) -> int:
    try:
        return max(0, int(path.read_text().strip() or 0))
    except (OSError, ValueError):
        return 0


def _write_count(path: Path, n: int) -> None:
    with contextlib.suppress(OSError):
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(str(n))
        os.replace(tmp, path)


def _count(where: Path, name: str) -> None:
    """One more in ``name`` (a byte appended: no lock, nothing to lose)."""
    _append(where / name, b".")


def _append(path: Path, data: bytes) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            os.write(fd, data)
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
    "BACKOFF_DIR",
    "BACKOFF_S",
    "ENV_DELIVERY",
    "ENV_SPOOL",
    "GIVE_UP_S",
    "JUNK_DIR",
    "MAX_NOTE_BYTES",
    "NOTES_LOST",
    "SPOOL_JUNK",
    "UNDELIVERED_DIR",
    "backoff_file",
    "deliver",
    "junk",
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
    deliver(backoff=True)
