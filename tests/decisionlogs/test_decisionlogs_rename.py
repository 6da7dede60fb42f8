"""A decision made on a button from before its task's root renamed it (issue
66): the decision log names the task's id and its former one."""

from __future__ import annotations

from spanvisor.events import Decision, HumanIntervention, TaskView
from spanvisor_decisionlogs.record import decision_record
from spanvisor_webhook.payload import payload

DERIVED = "0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331"


def test_renamed_task_decision_names_both_ids() -> None:
    v = TaskView(
        task_id="job-42",
        trace_id="0af7651916cd43dd8448eb211c80319c",
        root_span_id="b7ad6b7169203331",
        agent_id="rivet",
        run_id="run-1",
        former_id=DERIVED,
    )
    d = Decision("iv-1", DERIVED, "cancel", "U1", 1, source="slack", run_id="run-1")
    ev = HumanIntervention(event_id="iv-1", time_ns=1, task=v, decision=d)
    attrs = dict(decision_record(ev).attributes)
    assert attrs["spanvisor.task.id"] == "job-42" and attrs["spanvisor.task.former_id"] == DERIVED
    assert payload(ev)["run_id"] == "run-1"  # the webhook's body: see the report (stream/body.py names no former_id)
