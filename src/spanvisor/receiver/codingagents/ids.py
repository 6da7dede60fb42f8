"""The ids of a coding-agent session's task: derived in the gate
(:mod:`spanvisor.gate.taskids`), the one derivation the receiver, the
launcher and the hook share."""

from spanvisor.gate.taskids import NAMESPACES, launcher_task_ids, session_task, session_task_id, span_id, task_ids


def live_task_id(service: str, task_id: object, trace_id: str, root_id: str) -> object:
    """The task id a live record of a CLI's session names: a record that
    names it by the bare session id (a hook of an earlier version) names the
    namespaced one, when the record's ids prove it is that session's task;
    any other value as it is."""
    if not isinstance(task_id, str) or not task_id or service not in NAMESPACES:
        return task_id
    if task_ids(service, task_id) != (trace_id, root_id):
        return task_id
    return session_task_id(service, task_id)


__all__ = ["NAMESPACES", "launcher_task_ids", "live_task_id", "session_task", "session_task_id", "span_id", "task_ids"]
