# mypy: disable-error-code="no-untyped-call"
"""The parent's buttons, by the task's state, and the decisions people made.

* running, no approval open: *Cancel* (Slack asks to confirm), or, once
  someone asked, who did and when;
* approvals open: for each of the first :data:`MAX_ASKS`, its question,
  details and action (secrets masked, long text as its start and its end)
  and *Approve* / *Reject* / *Comment…* (the comment modal approves or
  rejects), plus *Show full action* when any of it was cut (a modal with
  the whole request, :mod:`.fullview`);
* failed (finished with status error): *Retry* and *Acknowledge*, each until
  someone used it;
* any state: a line per decision, ``✅ Approved by @alice · 12:03: “ok”``.

A button carries ids only (:func:`.actions.button_value`: task, run,
approval, the digest of the question it was shown with), never agent text; questions, comments and names are escaped like agent text. The
``<@U…>`` of a click from Slack is a mention (an id Slack gave us, checked
for its shape); any other actor shows as the text it is.
"""

from __future__ import annotations

import re

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    ConfirmObject,
    ContextBlock,
    MarkdownTextObject,
    SectionBlock,
)

from spanvisor.display.approval import shown_action as display_action
from spanvisor.display.readable import DECISION_STYLE, actor, clock, decision_text, from_text, required_text
from spanvisor.display.task import cancel_effect
from spanvisor.events import TERMINAL, ApprovalRequest, Decision, TaskView

from . import actions as ids
from . import text as t

# Approvals shown with their buttons; the rest are counted.
MAX_ASKS = 3
_USER_ID = re.compile(r"[UW][A-Z0-9]{2,20}")


def _md(s: str) -> MarkdownTextObject:
    return MarkdownTextObject(text=s, verbatim=True)


def who(d: Decision) -> str:
    """``<@U…>`` for a click from Slack, else the actor's name or id, escaped."""
    if d.source == "slack" and _USER_ID.fullmatch(d.actor_id):
        return f"<@{d.actor_id}>"
    return t.safe(actor(d), 80)


def when(time_ns: int) -> str:
    """The time in each reader's own time zone (Slack's date token), ``12:03 UTC`` as the fallback."""
    return f"<!date^{max(0, time_ns // 1_000_000_000)}^{{time}}|{clock(time_ns)}>"


def decision_line(d: Decision, comment_limit: int = 300) -> str:
    """``✅ Approved by <@U1> · 12:03: “ship it”``."""
    line = f"{DECISION_STYLE[d.action][0]} {decision_text(d, who(d))} · {when(d.time_ns)}"
    return line + (f": “{t.safe(d.comment, comment_limit)}”" if d.comment else "")


def finished(view: TaskView) -> bool:
    return view.ended_ns is not None and view.status in TERMINAL


def _button(
    label: str, action_id: str, value: str, style: str | None = None, confirm: ConfirmObject | None = None
) -> ButtonElement | None:
    if len(value) > ids.MAX_VALUE:
        return None  # ids too long for Slack's value: no button rather than a rejected message
    return ButtonElement(text=label, action_id=action_id, value=value, style=style, confirm=confirm)


def action_text(req: ApprovalRequest, scale: float = 1.0) -> str:
    """What the approval would let the agent run, and the request's details:
    shown before the buttons, since the decision binds to them (agent text,
    secrets masked, escaped; long text as its start and its end)."""
    return shown_action(req, scale)[0]


def shown_action(req: ApprovalRequest, scale: float = 1.0) -> tuple[str, bool]:
    """:func:`action_text` and whether it had to cut any of it (the message
    then offers the whole in a modal)."""
    parts = []
    cut = False
    if req.details:
        details, cut = t.middle(req.details, max(80, int(600 * scale)))
        parts.append(details)
    action = display_action(req.action)
    if action is not None:
        args, cut_args = t.code_middle(action.arguments, max(200, int(1200 * scale)))
        cut = cut or cut_args
        parts.append(f"*Action:* `{t.safe(action.tool, 120)}`\n" + args)
    return "\n".join(parts), cut


def quorum_text(req: ApprovalRequest) -> str:
    """``Needs 2 people's approvals · alice asked for this and may not
    approve it``: who may settle it, said before anyone clicks (each vote's
    count is its own thread line)."""
    only = t.safe(from_text(req), 300) if req.approvers_from else ""  # agent text: escaped
    parts = [f"Needs {req.approvers} people's approvals{only}"] if req.approvers > 1 else []
    parts = parts or ([f"Needs an approval{only}"] if only else [])
    if req.requester:
        parts.append(f"{t.safe(req.requester, 60)} asked for this and may not approve it")
    if req.required_by and req.required_by.startswith("central:"):
        parts.append(t.safe(required_text(req.policy_version, req.required_by), 200))
    return "\n" + " · ".join(parts) if parts else ""


def _ask(view: TaskView, req: ApprovalRequest, i: int, sfx: str, scale: float) -> list[Block]:
    by = quorum_text(req)
    if req.timeout_s and req.requested_ns:
        by += f"\n_Times out {when(req.requested_ns + int(req.timeout_s * 1e9))}_"
    question, cut = t.middle(req.question, max(80, int(1000 * scale)))
    blocks: list[Block] = [
        SectionBlock(
            block_id=f"sv-ask-{i}{sfx}", text=_md(t.clip(f"✋ *Approval needed*\n{question}{by}", t.SECTION_TEXT))
        )
    ]
    shown, cut_action = shown_action(req, scale)
    if shown:
        blocks.append(SectionBlock(block_id=f"sv-ask-action-{i}{sfx}", text=_md(t.clip(shown, t.SECTION_TEXT))))
    value = ids.button_value(view.task_id, req.approval_id, view.run_id, req.digest or None)
    options = set(req.options) & {"approve", "reject"} or {"approve", "reject"}
    buttons = [
        b
        for b in (
            _button("Approve", ids.APPROVE, value, "primary") if "approve" in options else None,
            _button("Reject", ids.REJECT, value, "danger") if "reject" in options else None,
            _button("Comment…", ids.COMMENT, value),
            # The whole request, a click away, when the message shows only part of it.
            _button(
                "Show full action" if req.action else "Show full text",
                ids.SHOW_FULL,
                ids.button_value(view.task_id, req.approval_id, view.run_id),  # viewing binds to no digest
            )
            if cut or cut_action
            else None,
        )
        if b is not None
    ]
    if buttons:
        blocks.append(ActionsBlock(block_id=f"sv-ask-buttons-{i}{sfx}", elements=buttons))
    return blocks


def asks(view: TaskView, sfx: str, scale: float = 1.0) -> list[Block]:
    """The open approvals with their buttons (none once the task finished)."""
    if finished(view) or not view.approvals:
        return []
    out: list[Block] = []
    most = MAX_ASKS if scale >= 0.05 else 1  # the smallest message: one, and a count
    for i, req in enumerate(view.approvals[:most]):
        out.extend(_ask(view, req, i, sfx, scale))
    if len(view.approvals) > most:
        more = len(view.approvals) - most
        out.append(
            ContextBlock(
                block_id=f"sv-asks-more{sfx}",
                elements=[
                    _md(f"… and {more} more open approval{'s' if more != 1 else ''}, shown as these are answered")
                ],
            )
        )
    return out


def decided(view: TaskView, sfx: str, scale: float = 1.0) -> list[Block]:
    """Who did what and when, a line per decision, then the buttons the state allows."""
    out: list[Block] = []
    if view.decisions:
        lines = [_md(t.clip(decision_line(d, max(60, int(300 * scale))), t.SECTION_TEXT)) for d in view.decisions[-5:]]
        out.append(ContextBlock(block_id=f"sv-decided{sfx}", elements=lines))
    used = {d.action for d in view.decisions}
    task = ids.button_value(view.task_id, run_id=view.run_id)
    buttons: list[ButtonElement | None] = []
    # A task that says it failed is offered Retry and Acknowledge from its
    # first render: its end may reach us a moment after its status.
    if not finished(view) and view.status != "error":
        if view.cancel_requested:
            said = "🛑 Cancel requested" if "cancel" not in used else ""  # asked before the decisions the view keeps
            effect = cancel_effect(view)  # a coding agent's session: what the cancel does to it
            if effect is not None:
                said = f"{said}: {effect}" if said else f"⏹ {effect[0].upper()}{effect[1:]}"
            if said:
                out.append(ContextBlock(block_id=f"sv-cancelled{sfx}", elements=[_md(said)]))
        elif not view.approvals:
            confirm = ConfirmObject(
                title="Cancel this task?",
                text="The agent is asked to stop; it decides when.",
                confirm="Cancel task",
                deny="Keep running",
                style="danger",
            )
            buttons.append(_button("Cancel", ids.CANCEL, task, "danger", confirm=confirm))
    elif view.status in ("error", "lost"):
        if "retry" not in used:
            buttons.append(_button("Retry", ids.RETRY, task, "primary"))
        if "acknowledge" not in used:
            buttons.append(_button("Acknowledge", ids.ACKNOWLEDGE, task))
    shown = [b for b in buttons if b is not None]
    if shown:
        out.append(ActionsBlock(block_id=f"sv-controls{sfx}", elements=shown))
    return out
