"""A task's message and its thread lines as Telegram HTML.

Telegram's HTML takes ``<b>``, ``<i>``, ``<code>``, ``<pre>`` and ``<a>``;
every other ``<``, ``>`` and ``&`` must be escaped, which :func:`text` and
:func:`clip` do to everything that came from spans or people. A message
holds at most 4,096 characters, counted in UTF-16 code units after the tags
are parsed; we count the escaped source, which is never shorter, so a
message built here is never refused for its length (:class:`Message`).
What is cut ends in "…".
"""

from __future__ import annotations

import html

from spanvisor.display import task as pr
from spanvisor.display.approval import shown_action
from spanvisor.display.readable import answer_command, duration, from_text, required_text
from spanvisor.display.thread import ThreadLine
from spanvisor.events import ApprovalRequest, TaskView
from spanvisor.redaction import clip_middle

from .buttons import MAX_REQUESTS

MAX_TEXT = 4096
# A piece of agent text in the parent: a long one must not push the status out.
PIECE = 300
# An action's arguments in the parent: start and end, the whole one click away.
ACTION_CHARS = 900


def units(s: str) -> int:
    """Length as Telegram counts it: UTF-16 code units."""
    return len(s.encode("utf-16-le")) // 2


def text(raw: object, limit: int = PIECE) -> str:
    """Agent or person text, escaped and cut to ``limit`` characters before escaping."""
    s = str(raw)
    if len(s) > limit:
        s = s[: limit - 1] + "…"
    return html.escape(s, quote=False)


def clip(raw: str, room: int) -> str:
    """``raw`` escaped, at most ``room`` UTF-16 units (cut, ending in "…")."""
    whole = html.escape(raw, quote=False)
    if units(whole) <= room:
        return whole
    lo, hi = 0, len(raw)
    while lo < hi:  # the longest prefix whose escaped form and "…" fit
        mid = (lo + hi + 1) // 2
        if units(html.escape(raw[:mid], quote=False)) + 1 <= room:
            lo = mid
        else:
            hi = mid - 1
    return html.escape(raw[:lo], quote=False) + "…"


def pieces(raw: str, room: int) -> list[str]:
    """``raw`` escaped and cut into pieces of at most ``room`` UTF-16 units
    each, nothing left out (a cut never falls inside an escaped character)."""
    out: list[str] = []
    piece: list[str] = []
    size = 0
    for ch in raw:
        esc = html.escape(ch, quote=False)
        n = units(esc)
        if size + n > room and piece:
            out.append("".join(piece))
            piece, size = [], 0
        piece.append(esc)
        size += n
    if piece:
        out.append("".join(piece))
    return out


class Message:
    """Lines of HTML added while they fit in ``limit``: a line of ours
    (already escaped, each tag closed on it) whole or not at all, a block of
    agent text cut to the room left. What did not fit is said by a last "…"."""

    def __init__(self, limit: int = MAX_TEXT) -> None:
        self.lines: list[str] = []
        self.left = limit - 2  # kept for the "\n…" that says something was left out
        self.cut = False

    def line(self, markup: str) -> None:
        need = units(markup) + (1 if self.lines else 0)
        if self.cut or need > self.left:
            self.cut = True
            return
        self.lines.append(markup)
        self.left -= need

    def block(self, raw: str, open_: str = "", close: str = "") -> None:
        room = self.left - (1 if self.lines else 0) - units(open_) - units(close)
        if self.cut or room < 2:
            self.cut = True
            return
        self.line(open_ + clip(raw, room) + close)

    def text(self) -> str:
        return "\n".join([*self.lines, "…"] if self.cut else self.lines)


def parent(
    view: TaskView, now_ns: int, thresholds: tuple[float, ...] = (0.7, 0.85), *, answered_here: bool = False
) -> str:
    """The task's message: who, status, what, progress, context, time, cost,
    and each question waiting (with the command that answers it, unless its
    buttons do: ``answered_here``)."""
    _, emoji, _ = pr.STATUS_STYLE.get(view.status, pr.STATUS_STYLE["working"])
    msg = Message()
    msg.line(f"{emoji} <b>{text(view.agent_name or view.agent_id, 60)}</b> · {text(pr.status_text(view), 120)}")
    msg.line(f"<b>{text(view.task_name or view.task_id, 200)}</b>")
    where = " · ".join(text(x, 120) for x in (view.repo, view.branch) if x)
    if where:
        msg.line(where)
    msg.line(
        f"{pr.progress_bar(pr.progress_of(view))} · context {text(pr.context_usage(view, thresholds))}"
        f" · {duration(pr.elapsed(view, now_ns))}"
    )
    steps = pr.steps_line(view)
    if steps:
        msg.line(text(steps))
    cost = pr.cost_text(view)
    if cost:
        msg.line(text(cost))
    last = pr.last_action(view)
    if last and view.ended_ns is None:
        msg.line(f"<i>{text(last)}</i>")
    if view.cancel_requested:
        effect = pr.cancel_effect(view)
        msg.line("🛑 <i>Cancel requested" + (f": {text(effect)}" if effect else "") + "</i>")
    many = len(view.approvals) > 1
    for n, request in enumerate(view.approvals[:MAX_REQUESTS], 1):
        _request(msg, request, n if many else None)
        if not answered_here and not request.policy_denied:
            command = answer_command(view.task_id, view.run_id, request.approval_id, request.digest)
            msg.line(f"<code>{text(command, 400)}</code>")
    if len(view.approvals) > MAX_REQUESTS:
        more = len(view.approvals) - MAX_REQUESTS
        msg.line(f"<i>… and {more} more waiting: <code>spanvisor approvals</code> lists them</i>")
    return msg.text()


def action_clipped(request: ApprovalRequest) -> bool:
    """Whether the message shows less than the whole action (its arguments cut)."""
    shown = shown_action(request.action)
    return shown is not None and shown.chars > ACTION_CHARS


def _request(msg: Message, req: ApprovalRequest, n: int | None) -> None:
    """A question for a person: what it asks, the action masked (its start and
    its end when long), whose approvals count, and what the policy says."""
    number = f" {n}" if n is not None else ""
    if req.policy_denied:
        msg.line(f"⛔ <b>Denied{number}:</b> {text(req.question)}")
        msg.line(
            f"<i>{text(required_text(req.policy_version, req.required_by, req.policy_denied))}: nobody may approve it</i>"
        )
        return
    msg.line(f"✋ <b>Approval needed{number}:</b> {text(req.question)}")
    shown = shown_action(req.action)
    if shown is not None:
        msg.line(
            f"<pre>{text(shown.tool, 80)} {text(clip_middle(shown.arguments, ACTION_CHARS), ACTION_CHARS + 40)}</pre>"
        )
    needs = f"needs {req.approvers} people" if req.approvers > 1 else ""
    rule = required_text(req.policy_version, req.required_by)
    said = " · ".join(
        x for x in ((needs + from_text(req)).strip(), f"asked by {req.requester}" if req.requester else "", rule) if x
    )
    if said:
        msg.line(f"<i>{text(said)}</i>")


def topic_name(view: TaskView) -> str:
    """A task's forum topic: its agent and name, plain (a topic's name takes no HTML), 1-128 characters."""
    name = f"{view.agent_name or view.agent_id} · {view.task_name or view.task_id}".strip() or view.task_id
    return name if len(name) <= 128 else name[:127] + "…"


def line(item: ThreadLine) -> str:
    """One reply in the task's thread."""
    msg = Message()
    msg.line(f"{item.emoji} <b>{text(item.summary, 500)}</b>")
    if item.detail:
        msg.block(item.detail[:1500])
    if item.code:
        msg.block(item.code[-2000:], "<pre>", "</pre>")  # a stack trace's end says most
    if item.logs:
        msg.block(item.logs[-1500:], "<pre>", "</pre>")
    return msg.text()
