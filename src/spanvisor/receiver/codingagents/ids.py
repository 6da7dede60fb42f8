"""The ids of a coding-agent session's task: derived in the gate
(:mod:`spanvisor.gate.taskids`), the one derivation the receiver, the
launcher and the hook share."""

from spanvisor.gate.taskids import launcher_task_ids, session_task, span_id, task_ids

__all__ = ["launcher_task_ids", "session_task", "span_id", "task_ids"]
