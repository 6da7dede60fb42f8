"""The approval message shows the action before the buttons: the tool and
its arguments (agent text, escaped: it never pings anyone)."""

from __future__ import annotations

from spanvisor.events import ApprovalRequest, TaskView
from spanvisor_slack import controls


def _texts(blocks: list) -> list[str]:
    return [b.text.text for b in blocks if getattr(b, "text", None) is not None]


def _asking(req: ApprovalRequest) -> list[str]:
    """The texts of the approval blocks of a task waiting on ``req``."""
    view = TaskView(task_id="t1", trace_id="", root_span_id="", agent_id="rivet", run_id="r1", approvals=(req,))
    return _texts(controls.asks(view, "-x"))


def test_the_action_and_details_are_shown_escaped() -> None:
    req = ApprovalRequest(
        "a1",
        "Run the migration?",
        digest="d" * 64,
        details="orders DB <!channel>",
        action='{"arguments":{"target":"prod <@U1>","version":7},"tool":"migrate"}',
    )
    shown = next(t for t in _asking(req) if "Action:" in t)
    assert "`migrate`" in shown and '"target": "prod &lt;@U1&gt;"' in shown and "&lt;!channel&gt;" in shown
    assert "<@U1>" not in shown and "<!channel>" not in shown
    # A plain question: no action block.
    assert not any("Action:" in t for t in _asking(ApprovalRequest("a2", "Ship?", digest="e" * 64)))


def test_who_must_approve_is_said_before_anyone_clicks() -> None:
    req = ApprovalRequest("a1", "Run the migration?", digest="d" * 64, approvers=2, requester="alice <!here>")
    [ask] = [t for t in _asking(req) if "Approval needed" in t]
    assert "Needs 2 people's approvals · alice &lt;!here&gt; asked for this and may not approve it" in ask
    assert "<!here>" not in ask
    # One approver and no requester: nothing more to say.
    [ask] = [t for t in _asking(ApprovalRequest("a2", "Ship?", digest="e" * 64)) if "Approval needed" in t]
    assert ask == "✋ *Approval needed*\nShip?"
