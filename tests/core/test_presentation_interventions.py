"""What the console and Slack share for people's decisions, results and log
tails: the thread lines of ``ThreadPolicy`` and the text
of ``summary_text``, on events as the tracker and the control hub make them."""

from __future__ import annotations

import dataclasses

from spanvisor.display import task as pr
from spanvisor.display import thread
from spanvisor.display.readable import log_tail_text, result_value, results
from spanvisor.events import (
    ApprovalRequest,
    Checkpoint,
    Decision,
    HumanIntervention,
    LogLine,
    ResultField,
    TaskFinished,
    TaskView,
)

S = 1_000_000_000
NOON = 1_763_812_980 * S  # 2025-11-22 12:03:00 UTC


def _view(**kw: object) -> TaskView:
    return TaskView(task_id="t-1", trace_id="1" * 32, root_span_id="1" * 16, agent_id="rivet", **kw)  # type: ignore[arg-type]


def _decision(action: str = "approve", **kw: object) -> Decision:
    base: dict[str, object] = {
        "intervention_id": f"i-{action}",
        "task_id": "t-1",
        "action": action,
        "actor_id": "U0ALICE",
        "time_ns": NOON,
        "source": "slack",
    }
    base.update(kw)
    return Decision(**base)  # type: ignore[arg-type]


def _finished(outcome: str = "complete", **kw: object) -> TaskFinished:
    view = _view(status=outcome, started_ns=NOON, updated_ns=NOON + 190 * S, ended_ns=NOON + 190 * S)
    view = dataclasses.replace(view, **{k: kw.pop(k) for k in list(kw) if k in ("results",)})
    return TaskFinished(event_id="f", time_ns=NOON + 190 * S, task=view, outcome=outcome, duration_s=190.0, **kw)  # type: ignore[arg-type]


def test_decisions_become_keyed_thread_lines() -> None:
    policy = thread.ThreadPolicy()
    d = _decision("approve", approval_id="a1", comment="<!channel> ship it")
    [line] = policy.lines(HumanIntervention(event_id=d.intervention_id, time_ns=NOON, task=_view(), decision=d))
    assert (line.kind, line.emoji, line.summary, line.detail) == (
        "intervention",
        "✅",
        "Approved by @U0ALICE",
        "<!channel> ship it",  # raw: each medium escapes it
    )
    assert line.reply_key == "intervention:i-approve" and line.decision == d and not line.broadcast
    named = _decision("acknowledge", actor_name="Alice <@U999>", source="cli")
    [ack] = policy.lines(HumanIntervention(event_id="x", time_ns=NOON, task=_view(), decision=named, known=False))
    assert (ack.emoji, ack.summary) == ("👀", "Acknowledged by Alice <@U999>")
    for action, text in (("reject", "❌ Rejected"), ("cancel", "🛑 Cancel requested"), ("retry", "🔁 Retry requested")):
        [ln] = policy.lines(HumanIntervention(event_id=action, time_ns=NOON, task=_view(), decision=_decision(action)))
        assert f"{ln.emoji} {ln.summary}".startswith(text)
    # Decisions on tasks it never saw leave the policy without state.
    assert policy._tasks == {}


def test_a_denied_click_is_a_thread_line_not_a_broadcast() -> None:
    d = _decision("approve", actor_id="U0BOB", approval_id="a1")
    ev = HumanIntervention(
        event_id="i-2", time_ns=NOON, task=_view(), decision=d, outcome="denied", reason="not an approver"
    )
    [line] = thread.ThreadPolicy(broadcast_errors=True).lines(ev)
    assert (line.kind, line.summary, line.detail, line.broadcast) == (
        "denied",
        "@U0BOB tried to approve",
        "not an approver",
        False,
    )
    assert line.reply_key == "denied:i-approve"


def test_an_opened_approval_is_announced_once() -> None:
    policy = thread.ThreadPolicy()
    ask = ApprovalRequest("a1", "Apply migration 0007 to prod?")
    v1 = _view(status="awaiting_approval", approvals=(ask,))
    first = policy.lines(Checkpoint(event_id="c1", time_ns=NOON, task=v1, changed=("approvals", "status")))
    assert [(x.kind, x.summary, x.detail, x.reply_key) for x in first] == [
        ("approval", "Approval needed", "Apply migration 0007 to prod?", "approval:a1")
    ]
    # The same request in later checkpoints, and another opening beside it.
    again = policy.lines(Checkpoint(event_id="c2", time_ns=NOON, task=v1, changed=("approvals",)))
    assert again == []
    v2 = _view(status="awaiting_approval", approvals=(ask, ApprovalRequest("a2", "And 0008?")))
    [second] = policy.lines(Checkpoint(event_id="c3", time_ns=NOON, task=v2, changed=("approvals",)))
    assert second.reply_key == "approval:a2"
    # Closing them says nothing here (the decision's own line does).
    assert policy.lines(Checkpoint(event_id="c4", time_ns=NOON, task=_view(), changed=("approvals", "status"))) == []


def test_results_read_as_people_write_them() -> None:
    assert result_value(ResultField("ARR gain (1h)", 4820, "usd")) == "$4,820"
    assert result_value(ResultField("spend", 1.5, "USD")) == "$1.50"
    assert result_value(ResultField("PRs opened", 3)) == "3"
    assert result_value(ResultField("precision", 0.94)) == "0.94"
    assert result_value(ResultField("coverage", 87.5, "percent")) == "87.5%"
    assert result_value(ResultField("runtime", 190, "s")) == "3m 10s"
    assert result_value(ResultField("latency", 250, "ms")) == "250 ms"
    assert result_value(ResultField("rows", 1234567.891, "rows")) == "1,234,567.89 rows"
    assert result_value(ResultField("merged", True)) == "yes"
    assert result_value(ResultField("branch", "main")) == "main"
    many = [ResultField(f"r{i}", i) for i in range(14)]
    shown = results(many)
    assert len(shown) == 10 and shown[-1] == ("More results", "5 not shown")


def test_the_summary_carries_results_and_the_error_line_the_log_tail() -> None:
    res = (ResultField("ARR gain (1h)", 4820, "usd"), ResultField("PRs opened", 3))
    lines = thread.ThreadPolicy().lines(_finished("complete", results=res))
    [summary] = lines
    assert summary.summary.endswith("· ARR gain (1h): $4,820 · PRs opened: 3")
    assert summary.lead == "Complete in 3m 10s · tokens in 0 / out 0"
    assert summary.fields == (("ARR gain (1h)", "$4,820"), ("PRs opened", "3"))
    assert pr.summary_text(_finished("complete", results=res), with_results=False) == summary.lead

    tail = (
        LogLine(NOON + 1 * S, "WARNING", "retrying <@U123> & co", "app.db"),
        LogLine(NOON + 2 * S, "ERROR", "connection refused"),
    )
    error, _ = thread.ThreadPolicy().lines(_finished("error", error_type="OperationalError", log_tail=tail))
    assert error.kind == "error"
    assert error.logs == "12:03:01 WARNING app.db: retrying <@U123> & co\n12:03:02 ERROR connection refused"
    assert log_tail_text(()) is None
    long = log_tail_text((LogLine(NOON, "INFO", "x" * 2000),), per_line=100)
    assert long is not None and len(long) == 100 and long.endswith("…")


def test_a_request_nobody_answered_leaves_a_line_saying_it_was_not_approved() -> None:
    """A hook's request closed by its own timeout (its note says timed_out):
    the thread says nobody answered, quoting the request; one a person
    answered says who instead (its intervention line), never both."""
    from spanvisor.spans import conventions as cv
    from spanvisor.spans.live import LiveFact
    from spanvisor.tracking.tracker import TaskTracker

    tracker, policy = TaskTracker(), thread.ThreadPolicy()
    trace, root, res = "2" * 32, "2" * 16, {cv.SERVICE_NAME: "claude-code"}

    def fact(name: str, t: int, **attrs: object) -> list[thread.ThreadLine]:
        events = tracker.live([LiveFact(trace, root, name, NOON + t, dict(attrs), res, NOON + t)])
        return [line for e in events for line in policy.lines(e)]

    fact(cv.LIVE_TASK_START, 0, **{cv.TASK_ID: "claude-code:s1", cv.TASK_NAME: "clean up"})
    asked = fact(
        cv.EVENT_APPROVAL_REQUEST, 1, **{cv.APPROVAL_ID: "h-1", cv.APPROVAL_QUESTION: "Allow Bash(rm -rf build)?"}
    )
    assert [(x.summary, x.detail) for x in asked] == [("Approval needed", "Allow Bash(rm -rf build)?")]
    gave_up = {cv.APPROVAL_ID: "h-1", cv.APPROVAL_OUTCOME: "timed_out", cv.APPROVAL_DECIDED_BY: "policy:on_timeout"}
    lines = fact(cv.EVENT_APPROVAL_DECISION, 2, **gave_up)
    assert [(x.kind, x.emoji, x.summary, x.detail) for x in lines] == [
        ("unanswered", "⌛", "No answer in time: not approved", "Allow Bash(rm -rf build)?")
    ]
    # A request a person answered: its note closes nothing new, and says no such thing.
    fact(cv.EVENT_APPROVAL_REQUEST, 3, **{cv.APPROVAL_ID: "h-2", cv.APPROVAL_QUESTION: "Allow Bash(ls)?"})
    answered = {cv.APPROVAL_ID: "h-2", cv.APPROVAL_OUTCOME: "approve", cv.APPROVAL_DECIDED_BY: "alice"}
    assert [x.kind for x in fact(cv.EVENT_APPROVAL_DECISION, 4, **answered)] == []
