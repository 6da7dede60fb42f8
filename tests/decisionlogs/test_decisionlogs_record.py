"""record.py: a decision as a log event's name, body, severity, attributes and ids (unit)."""

from __future__ import annotations

import dataclasses

from spanvisor.events import ApprovalRequest, TaskView
from spanvisor_decisionlogs.record import (
    EVENT_NAME,
    SEVERITY_INFO,
    SEVERITY_WARN,
    TEXT_LIMIT,
    decision_record,
    hex_id,
    tool_of,
)
from tests.decisionlogs.conftest import ROOT_SPAN, T0, TRACE, decision, intervention


def test_an_applied_approve_is_allow_with_the_tool_the_agent_the_person_and_the_trace() -> None:
    rec = decision_record(intervention())
    assert rec.event_name == EVENT_NAME == "spanvisor.decision"
    assert rec.body == "alice approved a1 on task T1"
    assert (rec.severity_number, rec.severity_text) == (SEVERITY_INFO, "INFO")
    assert rec.time_ns == T0
    assert rec.trace_id == int(TRACE, 16) and rec.span_id == int(ROOT_SPAN, 16)
    assert rec.attrs == {
        "gen_ai.agent.id": "deployer",
        "gen_ai.agent.name": "Deployer",
        "gen_ai.tool.name": "deploy",
        "user.id": "U1",
        "user.name": "alice",
        "spanvisor.decision.id": "iv-1",
        "spanvisor.decision.action": "approve",
        "spanvisor.decision.outcome": "allow",
        "spanvisor.decision.applied": True,
        "spanvisor.decision.by": "alice",
        "spanvisor.decision.verified": True,
        "spanvisor.decision.source": "slack",
        "spanvisor.decision.edited": False,
        "spanvisor.task.id": "T1",
        "spanvisor.task.name": "Deploy web to prod",
        "spanvisor.run.id": "r1",
        "spanvisor.approval.id": "a1",
        "spanvisor.approval.digest": "dg1",
        "spanvisor.approval.question": "Deploy to prod?",
        "spanvisor.approval.requester": "bot",
    }
    # One person decides: no vote counts, no refusal code.
    assert not {"spanvisor.decision.votes", "spanvisor.decision.code"} & rec.attrs.keys()


def test_a_vote_short_of_the_quorum_is_require_approval_and_the_last_one_allow() -> None:
    first = decision_record(intervention(votes=1, votes_needed=2))
    assert first.attrs["spanvisor.decision.outcome"] == "require_approval"
    assert first.attrs["spanvisor.decision.votes"] == 1 and first.attrs["spanvisor.decision.votes_needed"] == 2
    assert first.body == "alice approved a1 on task T1 (1 of 2)"
    second = decision_record(
        intervention(decision("approve", "iv-2", actor_id="U2", actor_name="bob"), votes=2, votes_needed=2)
    )
    assert second.attrs["spanvisor.decision.outcome"] == "allow"
    assert second.body == "bob approved a1 on task T1 (2 of 2)"


def test_a_refused_decision_is_deny_at_warn_with_its_code_and_reason() -> None:
    d = decision("approve", "iv-3", actor_id="U9", actor_name=None, verified=False)
    rec = decision_record(intervention(d, outcome="denied", code="not_approver", reason="U9 may not approve"))
    assert (rec.severity_number, rec.severity_text) == (SEVERITY_WARN, "WARN")
    a = rec.attrs
    assert a["spanvisor.decision.outcome"] == "deny" and a["spanvisor.decision.applied"] is False
    assert a["spanvisor.decision.code"] == "not_approver" and a["spanvisor.decision.reason"] == "U9 may not approve"
    assert a["spanvisor.decision.by"] == "U9" and a["user.id"] == "U9" and "user.name" not in a
    assert a["spanvisor.decision.verified"] is False
    assert rec.body == "U9 could not approve a1 on task T1: U9 may not approve"
    # A refusal without a code says "denied", as the event stream's body does.
    assert decision_record(intervention(d, outcome="denied")).attrs["spanvisor.decision.code"] == "denied"


def test_an_applied_reject_is_deny_but_applied_and_info() -> None:
    rec = decision_record(intervention(decision("reject", comment="not on a Friday")))
    a = rec.attrs
    assert a["spanvisor.decision.outcome"] == "deny" and a["spanvisor.decision.applied"] is True
    assert a["spanvisor.decision.comment"] == "not on a Friday"
    assert rec.severity_number == SEVERITY_INFO and rec.body == "alice rejected a1 on task T1"


def test_a_grant_decision_names_the_grant_and_an_edit_the_edited_tool() -> None:
    edited = '{"arguments":{"env":"staging"},"tool":"deploy"}'
    d = decision("approve", "iv-4", source="grant", grant_id="g-7", edited=edited, actor_name="alice")
    rec = decision_record(intervention(d, request=None))
    a = rec.attrs
    assert a["spanvisor.decision.source"] == "grant" and a["spanvisor.decision.grant_id"] == "g-7"
    assert a["spanvisor.decision.edited"] is True
    assert a["gen_ai.tool.name"] == "deploy"  # from the edited action: the request is not known
    assert "spanvisor.approval.question" not in a
    assert rec.body == "alice approved a1 on task T1 with edited arguments by grant g-7"


def test_a_cancel_is_its_own_outcome_without_approval_or_tool() -> None:
    rec = decision_record(intervention(decision("cancel", "iv-5", comment="wrong branch")))
    a = rec.attrs
    assert a["spanvisor.decision.outcome"] == "cancel" and a["spanvisor.decision.action"] == "cancel"
    assert not {k for k in a if k.startswith("spanvisor.approval.") or k == "gen_ai.tool.name"}
    assert rec.body == "alice cancelled task T1" and rec.severity_number == SEVERITY_INFO


def test_a_task_known_only_by_ids_has_no_trace_link_and_no_placeholder_agent() -> None:
    bare = TaskView(task_id="T1", trace_id="", root_span_id="", agent_id="unknown")
    rec = decision_record(intervention(decision("retry", "iv-6"), task=bare, known=False))
    assert rec.trace_id is None and rec.span_id is None
    assert "gen_ai.agent.id" not in rec.attrs and "spanvisor.task.name" not in rec.attrs
    assert rec.attrs["spanvisor.run.id"] == "r1"  # the decision's own
    # The request names its agent when the view cannot.
    req = ApprovalRequest("a1", "ok?", agent="deployer")
    assert decision_record(intervention(task=bare, request=req)).attrs["gen_ai.agent.id"] == "deployer"


def test_long_text_is_cut_and_odd_text_still_encodes() -> None:
    view = dataclasses.replace(intervention().task, task_name="x" * 5000)
    d = decision("reject", comment="bad \ud800 half <b>&</b>")
    a = decision_record(intervention(d, task=view)).attrs
    name = a["spanvisor.task.name"]
    assert isinstance(name, str) and len(name) == TEXT_LIMIT and name.endswith("…")
    comment = a["spanvisor.decision.comment"]
    assert comment == "bad ? half <b>&</b>"  # not escaped: telemetry, not markup
    assert isinstance(comment, str) and comment.encode("utf-8")


def test_ids_and_actions_that_do_not_parse_are_left_out() -> None:
    assert hex_id(TRACE, 32) == int(TRACE, 16)
    for bad in ("", "0" * 32, "0x" + "a" * 30, "g" * 32, " " + "a" * 31, "a_" * 16):
        assert hex_id(bad, 32) is None, bad
    assert hex_id(ROOT_SPAN, 32) is None  # a span id is no trace id
    assert tool_of('{"tool":"deploy","arguments":{}}') == "deploy"
    for bad_action in (None, "", "not json", "[1]", '{"tool":7}', '{"tool":""}', "[" * 100_000):
        assert tool_of(bad_action) is None
    view = dataclasses.replace(intervention().task, root_span_id="zz")
    rec = decision_record(intervention(task=view))
    assert rec.trace_id == int(TRACE, 16) and rec.span_id is None
