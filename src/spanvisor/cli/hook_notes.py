"""``python -m spanvisor.cli.hook_notes``: deliver the gate's spooled notes.

The hook starts it detached after answering (and ``spanvisor run`` at a
session's end). One deliverer works at a time (a lock on the spool); it
sends every note, oldest first, to the receiver it names, as the record it
stands for on the session's task (a policy's decision as an
``agent.checkpoint`` naming ``policy:<rule>`` as the decider, a person's
as ``agent.approval.decision``), and removes a note only once the receiver
took it. At the first failure it stops (the receiver is away): the notes
wait for the next delivery. A note older than a week is moved to
``undelivered/`` and counted, never retried again.
"""

from __future__ import annotations

import fcntl
import json
import os
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from spanvisor.gate import notes

if TYPE_CHECKING:
    from spanvisor.cli import codingtask as ct

REQUEST_TIMEOUT_S = 3.0
BACKOFF_S = 10.0


def records(item: Mapping[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The live-channel records a note stands for."""
    from spanvisor.spans import conventions as cv

    if item.get("kind") == "policy":
        allowed = item.get("verdict") == "allow"
        shown = str(item.get("question", "")).removeprefix("Allow ").removesuffix("?")
        return [
            (
                cv.EVENT_CHECKPOINT,
                {
                    cv.MESSAGE: f"{shown}: {'allowed' if allowed else 'denied'} by {item.get('by')}",
                    cv.APPROVAL_OUTCOME: "approve" if allowed else "reject",
                    cv.APPROVAL_DECIDED_BY: str(item.get("by")),
                    "gen_ai.tool.name": str(item.get("tool")),
                },
            )
        ]
    if item.get("kind") == "decision":
        return [
            (
                cv.EVENT_APPROVAL_DECISION,
                {
                    cv.APPROVAL_ID: str(item.get("approval_id")),
                    cv.APPROVAL_OUTCOME: str(item.get("outcome")),
                    cv.APPROVAL_DECIDED_BY: str(item.get("by")),
                },
            )
        ]
    return []


def task_of(item: Mapping[str, Any]) -> ct.SessionTask | None:
    from spanvisor.cli import codingtask as ct

    env: dict[str, str] = {k: str(v) for k, v in dict(item.get("env") or {}).items()}
    launched = ct.launched_task(env)
    key = launched or item.get("session_id")
    cli = item.get("cli")
    if not key or cli not in ct.SERVICES:
        return None
    endpoint = ct.otlp_endpoint(item.get("endpoint"), env)
    target = ct.otlp_args(endpoint, os.environ.get("SPANVISOR_OTLP_TOKEN"), REQUEST_TIMEOUT_S)
    return ct.SessionTask(str(key), ct.SERVICES[str(cli)], launched is not None, target)


def deliver_one(path: Path) -> bool:
    """Send one note; True when it is done with (sent, or not a note)."""
    try:
        item = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return True  # unreadable: nothing can be sent, nothing retried
    from spanvisor.spans import conventions as cv

    task = task_of(item)
    if task is None:
        return True
    at = int(item.get("at") or time.time_ns())
    if not task.launched and not task.record(cv.LIVE_TASK_START, {cv.AGENT_ID: task.service}, at=at):
        return False
    return all(task.record(name, attrs, at=at) for name, attrs in records(item))


def deliver(directory: Path | None = None) -> int:
    """Deliver what waits; the number of notes delivered."""
    where = notes.spool_dir() if directory is None else directory
    try:
        where.mkdir(mode=0o700, parents=True, exist_ok=True)
        lock = os.open(where / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    except OSError:
        return 0
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(lock)
        return 0  # another deliverer works; it looks again before it stops
    sent = 0
    try:
        while waiting := notes.pending(where):
            for path in waiting:
                if _stale(path):
                    _give_up(path, where)
                    continue
                if not deliver_one(path):
                    _back_off(where)
                    return sent
                path.unlink(missing_ok=True)
                sent += 1
    finally:
        os.close(lock)
    return sent


def _back_off(where: Path) -> None:
    """The receiver is away: no deliverer starts for a while (the next
    hook call after it tries again)."""
    try:
        (where / notes.BACKOFF_FILE).write_text(str(time.time() + BACKOFF_S))
    except OSError:
        pass


def _stale(path: Path) -> bool:
    try:
        return time.time() - path.stat().st_mtime > notes.GIVE_UP_S
    except OSError:
        return False


def _give_up(path: Path, where: Path) -> None:
    aside = where / "undelivered"
    aside.mkdir(mode=0o700, exist_ok=True)
    path.replace(aside / path.name)


if __name__ == "__main__":
    deliver()
    sys.exit(0)
