"""What every sink shows of an approval request is what a person may see:
the request is read once (tracking.approvals.request_from), its question and
details redacted there, so Slack, the control API, webhooks, the event
stream, the decision logs and the audit table all get the same masked text;
the action stays raw in the request (the digest binds it, the permit
compares it) and is masked wherever it is shown."""

from __future__ import annotations

import json
from typing import Any

from spanvisor.canonical import approval_digest, canonical_json
from spanvisor.display.approval import action_json, shown_action
from spanvisor.events import Decision, HumanIntervention, TaskView
from spanvisor.receiver.control_api import approval_json
from spanvisor.spans import conventions as cv
from spanvisor.stream.body import intervention_body, task_json
from spanvisor.tracking.approvals import request_from
from spanvisor_decisionlogs.record import body_of, decision_record
from spanvisor_webhook.payload import payload

ANTHROPIC = "sk-ant-api03-" + "Xy7Qp2Lm9Vb4Nc8Rt1Zw" * 3
GH = "ghp_" + "a1B2c3D4e5F6g7H8i9J0" * 2
AWS = "AKIAIOSFODNN7EXAMPLE"
# The issue's question, word for word but for the secrets' lengths.
QUESTION = (
    f"Allow Bash: export ANTHROPIC_API_KEY={ANTHROPIC} GITHUB_TOKEN={GH} AWS_ACCESS_KEY_ID={AWS} "
    "&& ./deploy.sh --token=tok-live-9f8e7d6c5b4a?"
)
COMMAND = "curl -H 'Authorization: Bearer sk-live-abcdef123456' https://admin:hunter2@db.example.com/dump"
DETAILS = json.dumps({"command": COMMAND, "env": {"GITHUB_TOKEN": GH}})
ACTION = {"tool": "Bash", "arguments": {"command": COMMAND, "headers": {"Authorization": "Basic dXNlcjpwYXNz"}}}
SECRETS = (ANTHROPIC[13:], GH[4:], AWS[4:], "tok-live-9f8e7d6c5b4a", "sk-live-abcdef123456", "hunter2", "dXNlcjpwYXNz")


def _leaks(text: str) -> list[str]:
    return [s for s in SECRETS if s in text]


def _request() -> Any:
    attrs = {
        cv.APPROVAL_ID: "h-1",
        cv.APPROVAL_QUESTION: QUESTION,
        cv.APPROVAL_DETAILS: DETAILS,
        cv.APPROVAL_ACTION: json.dumps(ACTION),
    }
    notes: list[str] = []
    req = request_from(attrs, 1_750_000_000 * 10**9, notes, "T1", "r1")
    assert req is not None, notes
    return req


def test_the_request_holds_the_shown_question_and_the_raw_action() -> None:
    req = _request()
    assert not _leaks(req.question) and not _leaks(req.details)
    assert "./deploy.sh --token=****" in req.question and req.question.endswith("?")
    # The action is kept as the agent will present it: the digest binds it raw.
    assert req.action == canonical_json(ACTION) and "hunter2" in req.action
    assert req.digest == approval_digest(
        agent="", task="T1", run="r1", approval_id="h-1", question=req.question, options=req.options,
        details=req.details, action=ACTION,
    )  # fmt: skip
    # Shown: masked, the tool and the shape kept.
    shown = shown_action(req.action)
    assert shown is not None and shown.tool == "Bash" and not _leaks(shown.arguments)
    assert "https://admin:****@db.example.com/dump" in shown.arguments
    assert action_json(req.action) == {
        "tool": "Bash",
        "arguments": {
            "command": "curl -H 'Authorization: Bearer ****' https://admin:****@db.example.com/dump",
            "headers": {"Authorization": "****"},
        },
    }


def test_a_long_question_keeps_its_end() -> None:
    attrs = {
        cv.APPROVAL_ID: "a1",
        cv.APPROVAL_QUESTION: "Allow Bash: " + "echo ok; " * 200 + "rm -rf / --no-preserve-root?",
    }
    notes: list[str] = []
    req = request_from(attrs, 0, notes, "T1", "r1")
    assert req is not None and len(req.question) <= 500
    assert req.question.startswith("Allow Bash: echo ok;") and req.question.endswith("rm -rf / --no-preserve-root?")
    assert "characters …" in req.question and any("start and end" in n for n in notes)


def _decided(req: Any) -> HumanIntervention:
    view = TaskView(task_id="T1", trace_id="a" * 32, root_span_id="b" * 16, agent_id="claude-code", run_id="r1")
    edited = canonical_json({"tool": "Bash", "arguments": {"command": f"gh release --token {GH}"}})
    d = Decision(
        "i-1", "T1", "approve", "U1", 1_750_000_001 * 10**9, approval_id="h-1", run_id="r1", digest=req.digest,
        edited=edited,
    )  # fmt: skip
    return HumanIntervention(event_id="i-1", time_ns=d.time_ns, task=view, decision=d, request=req)


def test_every_sink_s_view_of_the_request_is_masked() -> None:
    req = _request()
    event = _decided(req)
    view = TaskView(task_id="T1", trace_id="a" * 32, root_span_id="b" * 16, agent_id="x", approvals=(req,))
    shown = {
        "control API": json.dumps(approval_json(req)),
        "webhook": json.dumps(payload(event)),
        "event stream (decision)": json.dumps(intervention_body(event)),
        "event stream (task)": json.dumps(task_json(view)),
        "decision log body": body_of(event),
        "decision log attributes": json.dumps(decision_record(event).attributes, default=str),
    }
    for where, text in shown.items():
        assert not _leaks(text), (where, _leaks(text))
    assert approval_json(req)["action"]["tool"] == "Bash" and approval_json(req)["digest"] == req.digest
    assert payload(event)["edited"] == {"tool": "Bash", "arguments": {"command": "gh release --token ****"}}


def test_steps_messages_and_errors_are_masked_too() -> None:
    """Everything else a task shows people reads through the same rules:
    its step, steps and message, and its error's message and stack trace."""
    from spanvisor.events import TaskFinished
    from spanvisor.testing import InMemorySink

    from ._sdk import Agent

    sink = InMemorySink()
    agent = Agent([sink])
    try:
        root = agent.tracer.start_span("deploy", attributes={cv.TASK_ID: "masked-1", cv.TASK_NAME: "deploy"})
        root.set_attribute(cv.STEP, f"push with GITHUB_TOKEN={GH}")
        root.set_attribute(cv.STEPS, ["build", f"curl -H 'Authorization: Bearer {ANTHROPIC}' x"])
        root.set_attribute(cv.MESSAGE, "connecting to postgresql://svc:hunter2@db/app")
        try:
            raise RuntimeError(f"login failed for https://admin:hunter2@db.example.com with {AWS}")
        except RuntimeError as exc:
            root.record_exception(exc)
        root.end()
        assert agent.flush()
        shown = repr(sink.events)
        assert not _leaks(shown), _leaks(shown)
        [done] = [e for e in sink.events if isinstance(e, TaskFinished)]
        assert done.task.step == "push with GITHUB_TOKEN=****"
        assert "postgresql://svc:****@db/app" in (done.task.message or "")
    finally:
        agent.close()
