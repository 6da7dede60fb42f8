"""Under the system gate, a session run without the launcher ends by the
gate's word (issue 63).

Every agent holds the OTLP token, and a session's task ids are derived from
its session id, which the agent knows: it could send its task's root end,
marked complete, and ``spanvisor cancel`` would answer "already finished"
while the CLI went on. ``spanvisor run`` keys the tasks it starts
(:mod:`spanvisor.tracking.launcherend`); a session run without it had
nothing to key it with, since each of its hooks is a process of its own,
the agent's user's.

The system gate (``spanvisor gate serve``) is not the agent's user, and
every hook of a session it guards is decided in its one process. So it
keys the session: at the session's first tool call, before answering, it
makes a secret (kept in its own state folder, beside the session's turn
file, which the agent cannot read) and sends the task's start record
naming the secret's SHA-256. Its end of the task, at the CLI's
``SessionEnd`` (:mod:`.end`), carries the secret once the CLI the session
was keyed under has exited (the gate knows it by the kernel's word: the
nearest ancestor of the hook's client that is no shell): any process of
the agents' group can hand the gate a session's end, the agent's too, but
the CLI sends its own as it exits. Any other root end, and the gate's
while that CLI still runs, is a claim: said on the task, which stays open,
so a cancel still denies the session's next call and the session's real
end is the one that counts.

Keyed at the first *tool call*: only a tool call can run the agent's code,
and none runs before the gate has answered it, by which time the receiver
has the key. A session whose first call finds the receiver unreachable is
keyed at a later call (one attempt per :data:`RETRY_S`; the call is
answered either way, and its answer never waits more than
:data:`SEND_TIMEOUT_S` on this); until then its end is unproved, as
before. Only the gate passes ``--key-sessions``: a hook of the agent's
own user that passed it would hold a secret the agent can read, worth
nothing.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Mapping

from spanvisor.gate import contracts as gc
from spanvisor.gate import session, turns
from spanvisor.gate.deadline import Deadline
from spanvisor.hook import task as ct
from spanvisor.spans import conventions as cv

SEND_TIMEOUT_S = 1.0
RETRY_S = 10.0
# How long the session's end waits for its CLI to exit (it sends its end as it
# exits): after the answer, so nothing waits for it; a CLI slow to exit on a
# loaded machine must not turn its own end into an unproved claim.
CLI_EXIT_WAIT_S = 15.0


def ensure(
    cli: gc.Cli,
    raw: bytes,
    endpoint: str | None,
    token: str | None,
    env: Mapping[str, str],
    deadline: Deadline,
    under: str | None = None,
) -> bool:
    """Key the session of this tool call unless it is keyed already (or is
    the launcher's, which keys its own): whether its key is at the receiver.
    ``under``: the CLI the call came from (``<pid>:<start time>``, the
    gate's word), whose exit the proof of the session's end waits for."""
    key = session.session_of(cli, gc.session_id_of(cli, raw), env)
    if key is None or key.launched:
        return False
    held = turns.secret_of(key.task_id, env)
    if held is not None and held.sent:
        return True
    now = time.time()
    if held is not None and now - held.tried < RETRY_S:
        return False
    held = held or turns.made_secret(key.task_id, secrets.token_hex(32), env, under or "")
    wait = min(SEND_TIMEOUT_S, max(0.0, deadline.left() / 4))
    task = ct.SessionTask(key.key, key.service, False, ct.otlp_args(ct.otlp_endpoint(endpoint, env), token, wait))
    digest = hashlib.sha256(held.secret.encode("ascii")).hexdigest()
    sent = task.post(cv.LIVE_TASK_START, {cv.AGENT_ID: task.service, cv.SESSION_KEY: digest}, wait)
    # Another call of the session may have sent it meanwhile: a "sent" is never taken back.
    if not sent and (again := turns.secret_of(key.task_id, env)) is not None and again.sent:
        return True
    turns.secret_said(key.task_id, held._replace(sent=time.time_ns() if sent else 0, tried=now), env)
    return sent


def proof(task_id: str, env: Mapping[str, str], within_s: float = CLI_EXIT_WAIT_S) -> str | None:
    """The secret the session's end carries, once the CLI it was keyed
    under has exited (waiting ``within_s`` for it): None when the session
    was never keyed, or its CLI is unknown or still runs. Any process of
    the agents' group can send the gate a session's end, the agent's too;
    the CLI sends its own as it exits, so an end while it still runs is the
    agent's word, sent unproved: a claim."""
    held = turns.secret_of(task_id, env)
    if held is None or not held.sent:
        return None
    pid, _, started = held.cli.partition(":")
    if not pid.isdigit() or not started:
        return None
    until = time.monotonic() + within_s
    while _runs(int(pid), started):
        if time.monotonic() >= until:
            return None
        time.sleep(0.05)
    return held.secret


def _runs(pid: int, started: str) -> bool:
    """Whether the process ``pid`` that started at ``started`` (clock ticks
    since boot, /proc/<pid>/stat) still runs (not a zombie)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            fields = f.read().rsplit(")", 1)[-1].split()
    except OSError:
        return False
    return len(fields) > 19 and fields[19] == started and fields[0] != "Z"


__all__ = ["CLI_EXIT_WAIT_S", "RETRY_S", "SEND_TIMEOUT_S", "ensure", "proof"]
