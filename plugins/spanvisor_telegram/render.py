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
import re
from dataclasses import dataclass

from spanvisor.chat.buttons import MAX_REQUESTS
from spanvisor.display import task as pr
from spanvisor.display.approval import shown_action
from spanvisor.display.readable import answer_command, duration, from_text, required_text
from spanvisor.display.thread import ThreadLine
from spanvisor.events import ApprovalRequest, TaskView
from spanvisor.redaction import clip_middle

MAX_TEXT = 4096
# A piece of agent text in the parent, in escaped UTF-16 units: a long one
# must not push the status or a question out.
PIECE = 300
# A request's action in the parent: its start and end, the whole one press away.
ACTION_ROOM = 900
# A lone surrogate (a file name Python decoded with surrogateescape) is no
# text Telegram takes, nor one UTF-16 can count.
_SURROGATE = re.compile("[\ud800-\udfff]")


def clean(s: str) -> str:
    return _SURROGATE.sub("\ufffd", s)


def units(s: str) -> int:
    """Length as Telegram counts it: UTF-16 code units."""
    return len(s.encode("utf-16-le", "surrogatepass")) // 2


def text(raw: object, limit: int = PIECE) -> str:
    """Agent or person text, escaped, at most ``limit`` UTF-16 units as sent."""
    return clip(str(raw), limit)


def middle(raw: str, room: int) -> str:
    """``raw`` escaped in at most ``room`` units, its start and its end kept
    with "… N characters …" between (a dangerous tail is never cut off)."""
    raw = clean(raw)
    whole = html.escape(raw, quote=False)
    if units(whole) <= room:
        return whole
    lo, hi = 0, len(raw)
    while lo < hi:  # the longest clip_middle whose escaped form fits
        mid = (lo + hi + 1) // 2
        if units(html.escape(clip_middle(raw, mid), quote=False)) <= room:
            lo = mid
        else:
            hi = mid - 1
    return html.escape(clip_middle(raw, lo), quote=False)


def clip(raw: str, room: int) -> str:
    """``raw`` escaped, at most ``room`` UTF-16 units (cut, ending in "…")."""
    raw = clean(raw)
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
    for ch in clean(raw):
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

    def fits(self, lines: list[str]) -> bool:
        """Whether all of ``lines`` fit in what is left."""
        need = sum(units(x) for x in lines) + len(lines) - (0 if self.lines else 1)
        return not self.cut and need <= self.left

    def block(self, raw: str, open_: str = "", close: str = "") -> None:
        room = self.left - (1 if self.lines else 0) - units(open_) - units(close)
        if self.cut or room < 2:
            self.cut = True
            return
        self.line(open_ + clip(raw, room) + close)

    def text(self) -> str:
        return "\n".join([*self.lines, "…"] if self.cut else self.lines)


@dataclass(frozen=True, slots=True)
class Card:
    """A task's message: its text, and the requests it shows whole (only
    those get buttons: a question the text could not hold is never
    answered from it)."""

    text: str
    asks: tuple[str, ...]


def parent(
    view: TaskView, now_ns: int, thresholds: tuple[float, ...] = (0.7, 0.85), *, answered_here: bool = False
) -> Card:
    """The task's message: who and its status, each question waiting (first,
    so nothing the agent writes elsewhere can push one out), then what, where,
    progress, context, time, steps, cost, the last thing said."""
    _, emoji, _ = pr.STATUS_STYLE.get(view.status, pr.STATUS_STYLE["working"])
    msg = Message()
    msg.line(f"{emoji} <b>{text(view.agent_name or view.agent_id, 120)}</b> · {text(pr.status_text(view), 120)}")
    msg.line(f"<b>{text(view.task_name or view.task_id, PIECE)}</b>")
    asks: list[str] = []
    many = len(view.approvals) > 1
    for n, request in enumerate(view.approvals[:MAX_REQUESTS], 1):
        lines = _request(request, n if many else None)
        if not answered_here and not request.policy_denied:
            lines.append(f"<code>{_command(view, request)}</code>")
        if not msg.fits(lines):
            break
        for x in lines:
            msg.line(x)
        if not request.policy_denied:
            asks.append(request.approval_id)
    if len(asks) + sum(1 for r in view.approvals[:MAX_REQUESTS] if r.policy_denied) < len(view.approvals):
        msg.line("<i>… more waiting: <code>spanvisor approvals</code> lists them all</i>")
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
    return Card(msg.text(), tuple(asks))


def _command(view: TaskView, request: ApprovalRequest) -> str:
    """The command that answers, or where to find it when an id makes it too long to show whole."""
    command = answer_command(view.task_id, view.run_id, request.approval_id, request.digest)
    return html.escape(command, quote=False) if len(command) <= 400 else "spanvisor approvals (prints the command)"


def request_clipped(request: ApprovalRequest) -> bool:
    """Whether the message shows less than the whole request (its question,
    details or action cut): then a press shows all of it."""
    shown = shown_action(request.action)
    action = f"{shown.tool} {shown.arguments}" if shown is not None else ""
    return (
        units(html.escape(clean(request.question), quote=False)) > PIECE
        or units(html.escape(clean(request.details or ""), quote=False)) > PIECE
        or units(html.escape(clean(action), quote=False)) > ACTION_ROOM
    )


def whole_request(request: ApprovalRequest) -> str:
    """All a person is shown of a request, plain: question, details, the masked action."""
    shown = shown_action(request.action)
    parts = [request.question, request.details or "", f"{shown.tool} {shown.arguments}" if shown is not None else ""]
    return "\n\n".join(p for p in parts if p)


def _request(req: ApprovalRequest, n: int | None) -> list[str]:
    """A question for a person: what it asks and its details, the action
    masked (its start and its end when long), whose approvals count, and
    what the policy says."""
    number = f" {n}" if n is not None else ""
    if req.policy_denied:
        return [
            f"⛔ <b>Denied{number}:</b> {text(req.question)}",
            f"<i>{text(required_text(req.policy_version, req.required_by, req.policy_denied))}: nobody may approve it</i>",
        ]
    lines = [f"✋ <b>Approval needed{number}:</b> {text(req.question)}"]
    if req.details:
        lines.append(f"<i>{text(req.details)}</i>")
    shown = shown_action(req.action)
    if shown is not None:
        lines.append(f"<pre>{middle(f'{shown.tool} {shown.arguments}', ACTION_ROOM)}</pre>")
    needs = f"needs {req.approvers} people" if req.approvers > 1 else ""
    rule = required_text(req.policy_version, req.required_by)
    said = " · ".join(
        x for x in ((needs + from_text(req)).strip(), f"asked by {req.requester}" if req.requester else "", rule) if x
    )
    if said:
        lines.append(f"<i>{text(said)}</i>")
    return lines


def topic_name(view: TaskView) -> str:
    """A task's forum topic: its agent and name, plain (a topic's name takes no HTML), 1-128 characters."""
    name = clean(f"{view.agent_name or view.agent_id} · {view.task_name or view.task_id}".strip() or view.task_id)
    while units(name) > 128:  # counted as Telegram counts, in UTF-16 units
        name = name[: len(name) - max(1, (units(name) - 128) // 2) - 1] + "…"
    return name


def line(item: ThreadLine) -> str:
    """One reply in the task's thread."""
    msg = Message()
    msg.line(f"{item.emoji} <b>{text(item.summary, 1000)}</b>")
    if item.detail:
        msg.block(item.detail[:1500])
    if item.code:
        msg.block(item.code[-2000:], "<pre>", "</pre>")  # a stack trace's end says most
    if item.logs:
        msg.block(item.logs[-1500:], "<pre>", "</pre>")
    return msg.text()
