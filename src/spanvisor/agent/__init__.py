"""Optional helpers for agent authors, in pure OpenTelemetry API.

They only write spans, attributes and events: nothing here knows about
Slack, databases or spanvisor's pipeline, and they work with any SDK setup::

    with task("Diagnose F47", agent_id="rivet") as t:
        t.checkpoint("Routed to siemens SME", progress=30)
        t.artifact("report.md", uri="s3://bucket/report.md")

``checkpoint()`` at module level finds the innermost open ``task`` through a
context variable, so deep helper code can report progress without passing
the handle around.

The way back, from people to the agent (docs/reference/interventions.md)::

    decision = t.request_approval("Apply migration 0007 to prod?", timeout=900)
    if decision.approved: ...
    t.raise_if_cancelled()

reads decisions from this process's pipeline, or from ``spanvisor serve``'s
control API when ``SPANVISOR_CONTROL_URL`` is set (:mod:`spanvisor.control.client`).

When the task's spans leave the process (OTLP to a Collector, or the
exporter path), what these helpers write on the open root is also said on
the live channel (:mod:`spanvisor.otel.live`): log records, so that
``spanvisor serve`` shows the task's name, progress and steps while it runs.
"""

from spanvisor.agent.handle import ApprovalDecision, CancelRequested, OverBudget, TaskHandle
from spanvisor.agent.task import agent_task, checkpoint, current_task, task

__all__ = [
    "ApprovalDecision",
    "CancelRequested",
    "OverBudget",
    "TaskHandle",
    "agent_task",
    "checkpoint",
    "current_task",
    "task",
]
