"""The ids of a coding-agent session's task, derived, never drawn.

Every record of a session, on every replica and after every replay, must
name the same task, and the launcher (``spanvisor run``) must be able to end
that task without having seen a record: so the trace id and the root span id
are a hash of the task's key. Pure standard library, in the gate (which
the receiver may import, never the reverse): the receiver
(:mod:`spanvisor.receiver.codingagents.ids`), the launcher and the hook
derive them here, once.

The key is the resource attribute ``spanvisor.task.id`` when the launcher
set one (unique by itself, so the service is left out: Codex names itself
``codex_exec`` or ``codex_tui``), else the CLI's session id together with its
``service.name`` (session ids of two CLIs could collide).

A launcher run may carry a run of its own (``spanvisor.task.run``, a
random :data:`RUN_DIGITS`-hex-digit nonce the launcher draws): its ids are
then derived from the task id *and* the run, so a ``--task-id`` given to a
launcher again, after the task's earlier run ended, is a new root, a new run
of the task, never the ended run read as late (issue 64). Without a run the
ids are the task id's alone, as before: what older launchers, hooks and
records name keeps its task.

A session's task id is then the launcher's id, else the session id in its
CLI's namespace (its adapter's: ``claude-code:<session id>``,
``codex:<…>``, …; :func:`session_task_id`). A session id is whatever a
record says, so without the namespace a session could name itself after
another task and become a new run of it (its approvals gone, its cancel
taken); in the namespace it only ever names a session of its CLI.
"""

from __future__ import annotations

import hashlib

from spanvisor.clis import registry

# Changing the prefix changes every derived id: existing tasks would split.
_PREFIX = b"spanvisor.coding-agent.v1\x00"


def namespace_of(service: str | None) -> str | None:
    """The namespace of the session task ids of the CLI whose telemetry
    reports ``service`` (its adapter's), or None for any other service."""
    adapter = registry.by_service(service) if service else None
    return adapter.namespace if adapter is not None else None


def _digest(*parts: str) -> bytes:
    h = hashlib.sha256(_PREFIX)
    for p in parts:
        b = p.encode("utf-8", "surrogatepass")
        h.update(len(b).to_bytes(4, "big"))
        h.update(b)
    return h.digest()


def _nonzero(b: bytes) -> bytes:
    # An all-zero id is invalid in OTLP; one in 2**64 digests, so flip a bit.
    return b if any(b) else b[:-1] + b"\x01"


def task_ids(service: str, key: str) -> tuple[str, str]:
    """(trace id, root span id) in lower-case hex (32 and 16 digits) of the
    task keyed ``key``. Pass ``service=""`` with a launcher's
    ``spanvisor.task.id``; the CLI's ``service.name`` with a session id."""
    d = _digest("task", service, key)
    return _nonzero(d[:16]).hex(), _nonzero(d[16:24]).hex()


# A launcher run's nonce: 32 lower-case hex digits (16 random bytes).
RUN_DIGITS = 32
_HEX = frozenset("0123456789abcdef")


def is_run(value: object) -> bool:
    """Whether ``value`` is a launcher run's nonce (what else a record or an
    environment says is no run: the task id's own ids apply)."""
    return isinstance(value, str) and len(value) == RUN_DIGITS and _HEX.issuperset(value)


def launcher_task_ids(task_id: str, run: str | None = None) -> tuple[str, str]:
    """The ids of the task ``spanvisor run`` started with
    ``OTEL_RESOURCE_ATTRIBUTES=spanvisor.task.id=<task_id>``, in its run
    ``run`` (``spanvisor.task.run``) when it has one. Without a run (None,
    or not a run's nonce) the ids are the task id's alone: the derivation of
    launchers before runs, kept so that what they and their hooks name is
    still the same task."""
    if run is None or not is_run(run):
        return task_ids("", task_id)
    d = _digest("task", "", task_id, run)
    return _nonzero(d[:16]).hex(), _nonzero(d[16:24]).hex()


def span_id(trace_id: str, *parts: str) -> str:
    """A span id within the task's trace, stable for the same ``parts`` (a
    record's kind and sequence), so a resent record is the same span."""
    return _nonzero(_digest("span", trace_id, *parts)[:8]).hex()


def session_task_id(service: str, session_id: str) -> str:
    """The task id of a session the launcher did not start: the session id
    (the ``session_id`` its hooks read on stdin) in its CLI's namespace."""
    return f"{namespace_of(service) or service or 'session'}:{session_id}"


def session_task(
    service: str, session_id: str, launcher_task_id: str | None = None, run: str | None = None
) -> tuple[str, str, str]:
    """(task id, trace id, root span id) of a session: the launcher's
    ``spanvisor.task.id`` (in its ``spanvisor.task.run``, if any) when set,
    else :func:`session_task_id`."""
    if launcher_task_id:
        return (launcher_task_id, *launcher_task_ids(launcher_task_id, run))
    return (session_task_id(service, session_id), *task_ids(service, session_id))


def is_session(task_id: str, trace_id: str, root_span_id: str) -> bool:
    """Whether these are the ids of a session the launcher did not start
    (:func:`session_task`): a task id in a CLI's namespace whose trace and
    root ids derive from its session id, never a task id that only looks
    like one."""
    ns, sep, session_id = task_id.partition(":")
    if not sep or not session_id:
        return False
    services = {ns, *registry.services_by_namespace().get(ns, ())}
    return any(task_ids(s, session_id) == (trace_id, root_span_id) for s in services)


__all__ = [
    "RUN_DIGITS",
    "is_run",
    "is_session",
    "launcher_task_ids",
    "namespace_of",
    "session_task",
    "session_task_id",
    "span_id",
    "task_ids",
]
