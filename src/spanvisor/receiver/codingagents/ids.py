"""The ids of a coding-agent session's task: derived in the gate
(:mod:`spanvisor.gate.taskids`), the one derivation the receiver, the
launcher and the hook share."""

from spanvisor.gate import taskids
from spanvisor.gate.session import own_run
from spanvisor.gate.taskids import namespace_of, session_task, session_task_id, span_id, task_ids


def launcher_task_ids(task_id: str, run: str | None = None) -> tuple[str, str]:
    """The ids of launched task ``task_id`` in its run ``run``; None: the run
    this process is part of, if it is one of ``task_id``'s
    (:func:`spanvisor.gate.session.own_run`: the launcher's, or the one a
    hook's environment names), else the task id's own ids. What
    :class:`spanvisor.hook.task.SessionTask` derives, in the launcher
    and the hooks; the receiver reads each record's run from its resource
    (:func:`spanvisor.gate.taskids.session_task`), never from here."""
    return taskids.launcher_task_ids(task_id, run if run is not None else own_run(task_id))


def live_task_id(service: str, task_id: object, trace_id: str, root_id: str) -> object:
    """The task id a live record of a CLI's session names: a record that
    names it by the bare session id (a hook of an earlier version) names the
    namespaced one, when the record's ids prove it is that session's task;
    any other value as it is."""
    if not isinstance(task_id, str) or not task_id or namespace_of(service) is None:
        return task_id
    if task_ids(service, task_id) != (trace_id, root_id):
        return task_id
    return session_task_id(service, task_id)


__all__ = [
    "launcher_task_ids",
    "live_task_id",
    "namespace_of",
    "session_task",
    "session_task_id",
    "span_id",
    "task_ids",
]
