"""The parent's buttons by state and the decisions it shows, its
results: rendered from views as the tracker makes them, in both
layouts (plan block and steps as text), and checked against what Slack
accepts (the fake's validator) and against live mentions."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from typing import Any

import pytest
from tests.fakes.slack_blocks import message_error

from spanvisor.events import ApprovalRequest, Artifact, Decision, ResultField, TaskView
from spanvisor_slack import actions
from spanvisor_slack.blocks import Look, parent_payload, problems
from spanvisor_slack.plan import PlanSwitch
from spanvisor_slack.record import with_decisions

S = 1_000_000_000
NOON = 1_763_812_980 * S  # 12:03 UTC
HOSTILE = "<!channel> <@U123> <https://evil|click> &lt;"
LIVE = re.compile(r"<!channel>|<!here>|<@U123>|<https://evil")


def _look(layout: str) -> Look:
    return Look(plan=PlanSwitch("on")) if layout == "plan" else Look()


LAYOUTS = pytest.mark.parametrize("layout", ["plan", "text"])


def _view(**kw: Any) -> TaskView:
    base: dict[str, Any] = {
        "task_id": "task-1",
        "trace_id": "a" * 32,
        "root_span_id": "b" * 16,
        "agent_id": "rivet",
        "task_name": "Migrate",
        "status": "working",
        "steps": ("dump", "migrate", "verify"),
        "step": "migrate",
        "started_ns": NOON,
        "updated_ns": NOON,
        "seq": 4,
    }
    base.update(kw)
    return TaskView(**base)


def _decision(action: str, iid: str, **kw: Any) -> Decision:
    return Decision(
        **{"intervention_id": iid, "task_id": "task-1", "action": action, "actor_id": "U0ALICE", "time_ns": NOON}
        | {"source": "slack"}
        | kw
    )


def _failed(**kw: Any) -> TaskView:
    return _view(status="error", ended_ns=NOON + 60 * S, seq=9, **kw)


def _render(view: TaskView, layout: str) -> dict[str, Any]:
    payload = parent_payload(view, _look(layout), NOON + 90 * S)
    assert problems(payload) == []
    assert message_error(dict(payload), 4000) is None, message_error(dict(payload), 4000)
    return payload


def _buttons(payload: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """(action_id, label, value) of every interactive button, top level and attachments."""
    blocks = list(payload["blocks"]) + [b for a in payload.get("attachments", []) for b in a["blocks"]]
    return [
        (el["action_id"], el["text"]["text"], json.loads(el["value"]))
        for b in blocks
        if b["type"] == "actions"
        for el in b["elements"]
        if "value" in el
    ]


def _texts(payload: dict[str, Any]) -> str:
    return json.dumps(payload, ensure_ascii=False)


@LAYOUTS
def test_an_open_approval_shows_its_question_and_three_buttons_and_no_cancel(layout: str) -> None:
    ask = ApprovalRequest("a-7", f"Apply migration 0007 to prod? {HOSTILE}", timeout_s=900, requested_ns=NOON)
    payload = _render(_view(status="awaiting_approval", approvals=(ask,)), layout)
    assert _buttons(payload) == [
        (actions.APPROVE, "Approve", {"t": "task-1", "a": "a-7"}),
        (actions.REJECT, "Reject", {"t": "task-1", "a": "a-7"}),
        (actions.COMMENT, "Comment…", {"t": "task-1", "a": "a-7"}),
    ]
    [buttons] = [b for b in payload["blocks"] if b["type"] == "actions"]
    assert [e.get("style") for e in buttons["elements"]] == ["primary", "danger", None]
    text = _texts(payload)
    assert "Apply migration 0007 to prod? &lt;!channel&gt; &lt;@U123&gt;" in text
    assert "Times out <!date^1763813880^{time}|12:18 UTC>" in text
    assert not LIVE.search(text)
    # The question stays above the steps: people see it first.
    kinds = [b["type"] for b in payload["blocks"]]
    assert kinds.index("actions") < (kinds.index("plan") if "plan" in kinds else len(kinds))


@LAYOUTS
def test_more_approvals_than_shown_are_counted_and_ids_stay_unique(layout: str) -> None:
    asks = tuple(ApprovalRequest(f"a{i}", f"question {i}") for i in range(5))
    payload = _render(_view(status="awaiting_approval", approvals=asks), layout)
    approvals = [v["a"] for aid, _, v in _buttons(payload) if aid == actions.APPROVE]
    assert approvals == ["a0", "a1", "a2"]
    assert "… and 2 more open approvals" in _texts(payload)


@LAYOUTS
def test_a_running_task_has_cancel_until_someone_asks(layout: str) -> None:
    payload = _render(_view(), layout)
    [(aid, label, value)] = _buttons(payload)
    assert (aid, label, value) == (actions.CANCEL, "Cancel", {"t": "task-1"})
    [cancel] = [e for b in payload["blocks"] if b["type"] == "actions" for e in b["elements"]]
    assert cancel["style"] == "danger" and cancel["confirm"]["confirm"]["text"] == "Cancel task"

    asked = _view(seq=5, cancel_requested=True, decisions=(_decision("cancel", "i-c"),))
    after = _render(asked, layout)
    assert _buttons(after) == []
    assert "🛑 Cancel requested by <@U0ALICE> · <!date^1763812980^{time}|12:03 UTC>" in _texts(after)


@LAYOUTS
def test_a_failed_task_offers_retry_and_acknowledge_each_until_used(layout: str) -> None:
    payload = _render(_failed(), layout)
    assert [(a, label) for a, label, _ in _buttons(payload)] == [
        (actions.RETRY, "Retry"),
        (actions.ACKNOWLEDGE, "Acknowledge"),
    ]
    ack = _decision("acknowledge", "i-ack", actor_id="U0BOB")
    acked = _render(with_decisions(_failed(), [ack]), layout)
    assert [a for a, _, _ in _buttons(acked)] == [actions.RETRY]
    assert "👀 Acknowledged by <@U0BOB>" in _texts(acked)
    both = _render(with_decisions(_failed(), [ack, _decision("retry", "i-r", time_ns=NOON + S)]), layout)
    assert _buttons(both) == []
    assert "🔁 Retry requested by <@U0ALICE>" in _texts(both)
    # A task that completed or was cancelled offers nothing.
    assert _buttons(_render(_view(status="complete", ended_ns=NOON + S), layout)) == []
    assert _buttons(_render(_view(status="cancelled", ended_ns=NOON + S), layout)) == []


@LAYOUTS
def test_an_answered_approval_shows_who_and_loses_its_buttons(layout: str) -> None:
    ask = ApprovalRequest("a-7", "Apply?")
    waiting = _view(status="awaiting_approval", approvals=(ask,))
    ok = _decision("approve", "i-1", approval_id="a-7", comment=f"fine {HOSTILE}")
    # From the tracker (known) and merged by the sink (a decision it only noted): the same parent.
    for view in (
        replace(waiting, status="working", approvals=(), decisions=(ok,), seq=5),
        with_decisions(waiting, [ok]),
    ):
        payload = _render(view, layout)
        text = _texts(payload)
        assert "✅ Approved by <@U0ALICE> · <!date^1763812980^{time}|12:03 UTC>: “fine &lt;!channel&gt;" in text
        assert [a for a, _, _ in _buttons(payload)] == [actions.CANCEL]
        assert not LIVE.search(text)


def test_actor_names_and_ids_from_outside_slack_are_text() -> None:
    by_cli = _decision("acknowledge", "i-1", actor_id="U0ALICE", actor_name="<!here> Mallory", source="cli")
    by_api = _decision("retry", "i-2", actor_id="U1> <!channel", source="slack")
    text = _texts(_render(with_decisions(_failed(), [by_cli, by_api]), "text"))
    assert "👀 Acknowledged by &lt;!here&gt; Mallory" in text
    assert "Retry requested by @U1&gt; &lt;!channel" in text
    assert "<!here>" not in text and "<!channel>" not in text


def test_block_ids_change_when_a_decision_comes_without_a_new_seq() -> None:
    before = _render(_failed(), "plan")
    after = _render(with_decisions(_failed(), [_decision("acknowledge", "i-ack")]), "plan")

    def ids(p: dict[str, Any]) -> set[str]:
        blocks = list(p["blocks"]) + [b for a in p["attachments"] for b in a["blocks"]]
        return {b["block_id"] for b in blocks} | {c["block_id"] for b in blocks for c in b.get("tasks", [])}

    assert ids(before).isdisjoint(ids(after))


@LAYOUTS
def test_results_are_fields_of_the_parent(layout: str) -> None:
    res = (
        ResultField("ARR gain (1h)", 4820, "usd"),
        ResultField("PRs opened", 3),
        ResultField("precision", 0.94),
        ResultField(HOSTILE, HOSTILE),
    )
    payload = _render(_view(status="complete", ended_ns=NOON + S, results=res), layout)
    [section] = [b for b in payload["attachments"][0]["blocks"] if b["block_id"].startswith("sv-results")]
    fields = [f["text"] for f in section["fields"]]
    assert fields[:3] == ["*ARR gain (1h)*\n$4,820", "*PRs opened*\n3", "*precision*\n0.94"]
    assert not LIVE.search(_texts(payload))
    many = tuple(ResultField(f"r{i}", i * 1000) for i in range(30))
    section = next(
        b
        for b in _render(_view(results=many), layout)["attachments"][0]["blocks"]
        if b["block_id"].startswith("sv-results")
    )
    assert len(section["fields"]) == 10 and section["fields"][-1]["text"] == "*More results*\n21 not shown"


@LAYOUTS
def test_a_parent_with_everything_at_its_limits_still_fits(layout: str) -> None:
    big = "<&>" * 2000
    asks = tuple(ApprovalRequest(f"a{i}" * 40, big, timeout_s=60, requested_ns=NOON) for i in range(20))
    decisions = tuple(_decision("approve", f"i{i}", approval_id=f"x{i}", comment=big, actor_name=big) for i in range(5))
    view = _view(
        status="awaiting_approval",
        task_name=big,
        message=big,
        repo=big,
        model=big,
        steps=tuple(f"{big[:300]}{i}" for i in range(40)),
        step=f"{big[:300]}7",
        artifacts=tuple(Artifact(big, "https://x.example/" + "a" * 500) for _ in range(12)),
        approvals=asks,
        decisions=decisions,
        results=tuple(ResultField(big, big, "usd") for _ in range(12)),
    )
    payload = _render(view, layout)  # fits: problems() and the fake's validator both pass
    assert [a for a, _, _ in _buttons(payload)][:3] == [actions.APPROVE, actions.REJECT, actions.COMMENT]


@pytest.mark.parametrize("status", ["lost", "evicted", "complete", "error", "cancelled"])
def test_an_ended_task_is_what_it_ended_as_and_keeps_no_warning_as_its_last_action(status: str) -> None:
    """A task that ended stalled reads ``lost``, not ``lost · ⏸ stalled``; a
    warning (``⚠ Denied: Bash``) stays in the thread, not as the ended
    task's last action. The console's card says the same."""
    import io

    from spanvisor_console import ConsoleSink

    ended = _view(status=status, stalled=True, message="⚠ Denied: Bash (by hook)", ended_ns=NOON + S)
    shown = json.dumps(ensure_ascii=False, obj=parent_payload(ended, Look(), NOON + 2 * S))
    assert "stalled" not in shown and "Denied" not in shown and "Last action" not in shown
    card = ConsoleSink(stream=io.StringIO(), interval_s=3600).render_card(ended, NOON + 2 * S)
    assert "stalled" not in card and "Denied" not in card
    # While it runs, both still show.
    running = _view(status="working", stalled=True, message="⚠ Denied: Bash (by hook)")
    shown = json.dumps(ensure_ascii=False, obj=parent_payload(running, Look(), NOON + 2 * S))
    assert "working · ⏸ stalled" in shown and "Denied: Bash" in shown
    # An ended task's own last action (the launcher's end) is shown.
    done = _view(status="cancelled", message="Cancelled by alice · stopped by spanvisor run", ended_ns=NOON + S)
    assert "stopped by spanvisor run" in json.dumps(ensure_ascii=False, obj=parent_payload(done, Look(), NOON + 2 * S))
