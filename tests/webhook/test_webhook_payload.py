"""The body, the filter and the settings (unit)."""

from __future__ import annotations

import asyncio
import dataclasses
import json

import pytest

from spanvisor.config import ConfigError
from spanvisor.events import ApprovalRequest, Decision, HumanIntervention, TaskStarted, TaskView, question_digest
from spanvisor_webhook import WebhookSink
from spanvisor_webhook.payload import encode, payload, rfc3339, wanted
from spanvisor_webhook.settings import config_problem, where
from tests.webhook.conftest import webhook_config

VIEW = TaskView(
    task_id="T1",
    trace_id="ab" * 16,
    root_span_id="cd" * 8,
    agent_id="deployer",
    task_name='Ship "it" <now>',
    status="error",
)
DECISION = Decision(
    "iv-1",
    "T1",
    "retry",
    "U42",
    1_795_000_000_123_456_789,
    actor_name="Alice & Bob",
    comment="go <@U1>",
    source="slack",
)


def intervention(**kw: object) -> HumanIntervention:
    fields: dict[str, object] = {"event_id": "iv-1", "time_ns": 1, "task": VIEW, "decision": DECISION, "known": False}
    fields.update(kw)
    return HumanIntervention(**fields)  # type: ignore[arg-type]


def test_the_body_has_ids_the_decision_and_the_task() -> None:
    body = payload(intervention())
    assert body == {
        "type": "spanvisor.intervention",
        "v": 1,
        "intervention_id": "iv-1",
        "task_id": "T1",
        "action": "retry",
        "approval_id": None,
        "actor": {"id": "U42", "name": "Alice & Bob"},
        "comment": "go <@U1>",  # a person's own text, as typed: JSON is no chat
        "time": "2026-11-18T11:06:40.123Z",
        "source": "slack",
        "run_id": None,
        "request": None,
        "task": {
            "agent_id": "deployer",
            "task_name": 'Ship "it" <now>',
            "status": "error",
            "trace_id": "ab" * 16,
            "former_id": None,
        },
        "outcome": "applied",
        "code": None,
        "reason": None,
        "decides": True,
        "votes": 0,
        "votes_needed": 0,
        "verified": False,
        "person": None,
        "edited": None,
        "grant_id": None,
        "groups": [],
        "proof": None,
        "break_glass": False,
    }
    raw = encode(body)
    assert b": " not in raw and b", " not in raw  # compact
    assert json.loads(raw) == body


def test_a_task_known_only_by_id_gives_nulls_not_placeholders() -> None:
    bare = TaskView(task_id="T9", trace_id="", root_span_id="", agent_id="unknown")
    task = payload(intervention(task=bare))["task"]
    assert task == {"agent_id": None, "task_name": None, "status": None, "trace_id": None, "former_id": None}


def test_text_that_is_not_valid_unicode_still_encodes() -> None:
    odd = TaskView(task_id="T1", trace_id="ab" * 16, root_span_id="", agent_id="a", task_name="bad \ud800 half")
    raw = encode(payload(intervention(task=odd)))
    assert raw.isascii() and json.loads(raw)["task"]["task_name"] == "bad \ud800 half"


def test_rfc3339() -> None:
    assert rfc3339(0) == "1970-01-01T00:00:00.000Z"


def test_a_refused_decision_says_so_with_its_code() -> None:
    """What the event stream sends for one (the webhook does not send it)."""
    body = payload(intervention(outcome="denied", reason="task T1 is not failed", code="not_failed"))
    assert (body["outcome"], body["code"], body["reason"]) == ("denied", "not_failed", "task T1 is not failed")
    assert payload(intervention(outcome="denied", reason="no"))["code"] == "denied"  # always a code when refused
    assert not wanted(intervention(outcome="denied", code="not_failed"), ())


def test_only_applied_interventions_of_the_chosen_actions_are_wanted() -> None:
    assert wanted(intervention(), ())
    assert wanted(intervention(), ("retry", "cancel"))
    assert not wanted(intervention(), ("cancel",))
    assert not wanted(intervention(outcome="denied", reason="not allowed"), ())
    assert not wanted(TaskStarted(event_id="e", time_ns=1, task=VIEW), ())


def test_settings() -> None:
    cfg = webhook_config({"SPANVISOR_WEBHOOK_URL": "https://hooks.example/x?token=abc"})
    assert WebhookSink.enabled(cfg)
    assert cfg["webhook_actions"] == () and cfg["webhook_max_age_s"] == 3600.0
    assert not WebhookSink.enabled(webhook_config({}))
    assert webhook_config({"SPANVISOR_WEBHOOK_ACTIONS": "Retry, cancel,retry"})["webhook_actions"] == (
        "retry",
        "cancel",
    )
    assert webhook_config({"SPANVISOR_WEBHOOK_ACTIONS": "all"})["webhook_actions"] == ()
    with pytest.raises(ConfigError, match="webhook_actions"):
        webhook_config({"SPANVISOR_WEBHOOK_ACTIONS": "retry,reboot"})
    with pytest.raises(ConfigError, match="webhook_max_attempts"):
        webhook_config({"SPANVISOR_WEBHOOK_MAX_ATTEMPTS": "-1"})


def test_spanvisor_check_masks_the_secret_and_the_url_password() -> None:
    cfg = webhook_config(
        {"SPANVISOR_WEBHOOK_URL": "https://u:pw@hooks.example/x?token=abc", "SPANVISOR_WEBHOOK_SECRET": "s3cr3t-value"}
    )
    shown = {name: value for name, _env, value, _src in cfg.rows()}
    assert "s3cr3t-value" not in shown["webhook_secret"]
    assert "pw" not in shown["webhook_url"] and "abc" not in shown["webhook_url"]
    result = asyncio.run(WebhookSink.check(cfg))
    assert result == [("webhook", True, "POST to https://hooks.example, signed; all actions")]


def test_config_problems() -> None:
    assert config_problem(None, "s") == "SPANVISOR_WEBHOOK_URL is not set"
    assert "http(s)" in (config_problem("ftp://x/y", "s") or "")
    assert "http(s)" in (config_problem("http://host:notaport/", "s") or "")
    assert "SECRET" in (config_problem("https://x/y", None) or "")
    assert config_problem("https://x/y", "s") is None
    assert where("https://user:pw@hooks.example:8443/path/tok?x=1") == "https://hooks.example:8443"


def test_an_answer_quotes_the_question_it_answered_clipped() -> None:
    asked = ApprovalRequest("a1", "Delete prod <db>? " + "x" * 600, digest=question_digest("q"))
    d = dataclasses.replace(DECISION, action="approve", approval_id="a1", run_id="0123456789ab")
    body = payload(intervention(decision=d, request=asked))
    assert body["run_id"] == "0123456789ab"
    assert body["request"]["digest"] == asked.digest
    question = body["request"]["question"]
    # Its start and its end, and how much is left out between: never only the start.
    assert question.startswith("Delete prod <db>? ") and len(question) <= 500 and question.endswith("x" * 100)
    assert " characters … " in question


def test_one_vote_of_two_is_not_sent_and_says_it_decides_nothing() -> None:
    """An orchestrator acting on approve must not act on the first of two."""
    vote = dataclasses.replace(DECISION, action="approve", approval_id="a1", verified=True, person="bob")
    first = intervention(decision=vote, votes=1, votes_needed=2)
    assert not wanted(first, ()) and payload(first)["decides"] is False
    last = intervention(decision=dataclasses.replace(vote, intervention_id="iv-2"), votes=2, votes_needed=2)
    assert wanted(last, ()) and payload(last)["decides"] is True
    edited = dataclasses.replace(vote, edited='{"arguments":{"target":"dev"},"tool":"migrate"}', grant_id=None)
    body = payload(intervention(decision=edited))
    assert body["edited"] == {"arguments": {"target": "dev"}, "tool": "migrate"} and body["person"] == "bob"


def test_a_refused_decision_says_it_decides_nothing() -> None:
    """A decision the server refused (an approve of an expired request) did
    nothing: its public body (the stream's, the webhook's) says so."""
    refused = intervention(
        decision=dataclasses.replace(DECISION, action="approve", approval_id="a1"),
        outcome="denied",
        reason="the request expired",
        code="expired",
    )
    body = payload(refused)
    assert (body["outcome"], body["code"], body["decides"]) == ("denied", "expired", False)
    assert not wanted(refused, ())
    # A refused vote of several decides nothing either.
    vote = intervention(decision=dataclasses.replace(DECISION, action="approve"), outcome="denied", votes_needed=2)
    assert payload(vote)["decides"] is False


def test_a_decision_naming_the_id_a_task_showed_under_carries_the_tasks_id_now() -> None:
    """A button posted while the task showed under its derived id, clicked
    after its root named its own (tracking: the rename)."""
    derived = f"{'ab' * 16}-{'cd' * 8}"
    renamed = dataclasses.replace(VIEW, task_id="fix-42", former_id=derived)
    body = payload(intervention(task=renamed, decision=dataclasses.replace(DECISION, task_id=derived)))
    assert body["task_id"] == "fix-42" and body["task"]["former_id"] == derived
    other = payload(intervention(task=renamed))  # a decision naming another id is said as named
    assert other["task_id"] == "T1"
