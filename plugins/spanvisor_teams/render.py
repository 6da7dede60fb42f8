"""A task's card and its thread replies as Microsoft Teams Adaptive Cards.

The content and its order are the Telegram plugin's (who and its status,
each open question first, then where, progress, context, time, steps, cost,
the last thing said), taken from :mod:`spanvisor.display`.

**Text is shown literally.** A TextBlock's text is Markdown: an agent could
write a link ``[Approve](https://evil)`` or a bold "Approved". A TextRun's
text is not ("Markdown is not supported", Adaptive Cards schema, TextRun),
so every string here is a TextRun in a RichTextBlock; this module writes no
TextBlock at all, our own labels included, which keeps the rule simple to
check. Renderers still expand ``{{DATE(…)}}``/``{{TIME(…)}}`` inside a
TextRun (the JavaScript renderer's TextRun passes its text through
``TextFormatters.formatText``), so :func:`clean` puts a WORD JOINER
(U+2060, invisible) between every two ``{``. It also turns a lone surrogate
(a file name decoded with surrogateescape: no UTF-8 holds it) into U+FFFD,
as it does control characters other than newline and the bidirectional
overrides (text that reads otherwise than it is written).

**Size.** Teams takes about 100 KB a bot message, older pages say 40 KB and
webhooks 28 KB, and whether it counts UTF-8 or UTF-16 is not documented: a
card's JSON stays within :data:`MAX_CARD` however it is counted or sent
(:func:`size`: UTF-8, UTF-16, and written with non-ASCII escaped, as
aiohttp's ``json=`` sends it, where one emoji takes 12 bytes). Each piece of
agent text is cut first (:data:`PIECE`, :data:`ACTION_ROOM`); then the
lowest parts are dropped, never the status, nor a request's question or
buttons. What is cut ends in "…".
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from spanvisor.chat import record
from spanvisor.chat.buttons import MAX_REQUESTS, Button
from spanvisor.display import task as pr
from spanvisor.display.approval import shown_action
from spanvisor.display.readable import answer_command, duration, from_text, required_text
from spanvisor.display.thread import ThreadLine
from spanvisor.events import ApprovalRequest, TaskView
from spanvisor.redaction import clip_middle

MAX_CARD = 24_000
# A piece of agent text in the task's card, in UTF-16 units: a long one must
# not push the status or a question out. A request's action gets more (its
# start and end, the whole one press away); names and the command less.
PIECE = 300
ACTION_ROOM = 900
NAME_ROOM = 120
COMMAND_ROOM = 400
SUMMARY_ROOM = 200  # an activity's ``summary``: the notification's plain text
MAX_COMMENT = 500  # as Slack's comment modal takes
WHOLE_PIECES = 4  # 'Show all' replies at most; past them, the CLI shows the rest

SCHEMA = "http://adaptivecards.io/schemas/adaptive-card.json"
VERSION = "1.5"  # Action.Execute (Universal Actions) needs 1.4+; Teams' documentation says 1.5
CONTENT_TYPE = "application/vnd.microsoft.card.adaptive"
VERBS = {"approve": "spanvisor.approve", "reject": "spanvisor.reject", "show": "spanvisor.show"}
LABELS = {"approve": "✅ Approve", "reject": "❌ Reject", "show": "📄 Show all"}
_STYLES = {"approve": "positive", "reject": "destructive"}
DATA_KEY = "sv"  # a press's data: {"sv": token}, nothing else (what it decides is stored)

JOINER = "\u2060"
_SURROGATE = re.compile("[\ud800-\udfff]")
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
_BRACES = re.compile(r"\{(?=\{)")
_LINE_BREAKS = str.maketrans({"\r": "\n", "\u2028": "\n", "\u2029": "\n"})

BOLD: dict[str, Any] = {"weight": "bolder"}
ITALIC: dict[str, Any] = {"italic": True}
SUBTLE: dict[str, Any] = {"italic": True, "isSubtle": True}
MONO: dict[str, Any] = {"fontType": "monospace"}


def clean(s: str) -> str:
    """``s`` as a TextRun may show it, literally (see the module's docstring). Idempotent."""
    s = _SURROGATE.sub("\ufffd", s).replace("\r\n", "\n").translate(_LINE_BREAKS).replace("\t", "    ")
    return _BRACES.sub("{" + JOINER, _CONTROL.sub("\ufffd", s))


def units(s: str) -> int:
    """Length in UTF-16 code units."""
    return len(s.encode("utf-16-le", "surrogatepass")) // 2


def _cost(s: str) -> int:
    """Bytes ``s`` takes inside a JSON string, non-ASCII escaped (the most it can take)."""
    return len(json.dumps(s)) - 2


def size(card: Any) -> int:
    """A card's JSON size, the largest of its UTF-8 bytes (non-ASCII as is), its
    UTF-16 code units, and its bytes with non-ASCII escaped (``\\uXXXX``, what
    ``json.dumps`` and aiohttp's ``json=`` send). The last is never smaller than
    the others; all are counted so the rule reads as stated."""
    text = json.dumps(card, ensure_ascii=False)
    return max(len(text.encode("utf-8")), units(text), len(json.dumps(card)))


def clip(raw: object, room: int = PIECE) -> str:
    """Agent or person text as shown, at most ``room`` UTF-16 units (cut, ending in "…")."""
    text = str(raw)
    head = text[: 2 * room + 2]  # every raw character shows as a unit or more ("\r\n" as one): enough to cut
    s = clean(head)
    if len(head) == len(text) and units(s) <= room:
        return s
    out, n = [], 0
    for ch in s:
        n += 2 if ord(ch) > 0xFFFF else 1
        if n + 1 > room:
            break
        out.append(ch)
    return "".join(out) + "…"


def clip_end(raw: str, room: int) -> str:
    """``raw`` as shown, at most ``room`` units, its end kept (a stack trace's last lines say most)."""
    tail = raw[-(2 * room + 2) :]
    s = clean(tail)
    if len(tail) == len(raw) and units(s) <= room:
        return s
    out, n = [], 0
    for ch in reversed(s):
        n += 2 if ord(ch) > 0xFFFF else 1
        if n + 1 > room:
            break
        out.append(ch)
    return "…" + "".join(reversed(out))


def middle(raw: str, room: int) -> str:
    """``raw`` as shown in at most ``room`` units, its start and its end kept
    with "… N characters …" between (a dangerous tail is never cut off)."""
    s = clean(raw)
    if units(s) <= room:
        return s
    # clip_middle(s, n) keeps n - 30 characters at least, each a unit or more:
    # past room + 64 none fits, so a 1 MB action costs no more than a short one.
    lo, hi = 0, min(len(s), room + 64)
    while lo < hi:  # the longest clip_middle that fits
        mid = (lo + hi + 1) // 2
        if units(clean(clip_middle(s, mid))) <= room:
            lo = mid
        else:
            hi = mid - 1
    return clean(clip_middle(s, lo))


def run(text: str, style: dict[str, Any] | None = None) -> dict[str, Any]:
    """A TextRun: shown as written (cleaned again here: whatever reaches a card went through :func:`clean`)."""
    return {"type": "TextRun", "text": clean(text), **(style or {})}


def rich(*runs: dict[str, Any]) -> dict[str, Any]:
    """A RichTextBlock of the runs that have text (an empty run is no valid inline)."""
    return {"type": "RichTextBlock", "inlines": [r for r in runs if r["text"]]}


def adaptive(body: list[dict[str, Any]]) -> dict[str, Any]:
    """An Adaptive Card; full width in Teams, where a task's text needs it."""
    return {"type": "AdaptiveCard", "$schema": SCHEMA, "version": VERSION, "msteams": {"width": "Full"}, "body": body}


def _execute(button: Button, n: int | None) -> dict[str, Any]:
    """A button: Action.Execute (an ``adaptiveCard/action`` invoke the bot can
    answer with the updated card) with an Action.Submit of the same data as its
    fallback, which Teams recommends for clients without Universal Actions."""
    title = LABELS[button.action] + (f" {n}" if n else "")
    style = {"style": _STYLES[button.action]} if button.action in _STYLES else {}
    data = {DATA_KEY: button.token}
    submit = {"type": "Action.Submit", "title": title, "data": dict(data), **style}
    return {
        "type": "Action.Execute",
        "title": title,
        "verb": VERBS[button.action],
        "data": data,
        "fallback": submit,
        **style,
    }


def comment_id(approval_id: str) -> str:
    """The id of a request's comment box: a card's inputs come with every
    press (Teams merges them into the button's data), so each request's has
    its own, and the bot reads the one of the request pressed for."""
    return "comment-" + hashlib.sha256(approval_id.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def _comment(approval_id: str) -> dict[str, Any]:
    """The comment a person may add to their decision (Slack's comment modal, in Teams' idiom)."""
    return {
        "type": "Input.Text",
        "id": comment_id(approval_id),
        "placeholder": "Comment (optional)",
        "maxLength": MAX_COMMENT,
    }


def _action_set(buttons: Sequence[Button], n: int | None) -> dict[str, Any] | None:
    """A request's buttons, one per action, in a fixed order."""
    by_action = {b.action: b for b in reversed(buttons) if b.action in LABELS}
    actions = [_execute(by_action[a], n) for a in LABELS if a in by_action]
    return {"type": "ActionSet", "actions": actions} if actions else None


# Room kept for a shown request's buttons while measuring: the largest set there
# can be. So whether a request fits never depends on its buttons, and the requests
# a card shows without ``rows`` are the ones it shows with them.
_RESERVE = (
    len(json.dumps(_action_set([Button("", "", "", "", "", a) for a in LABELS], MAX_REQUESTS)))
    + len(json.dumps(_comment("")))
    + 4
)


@dataclass(frozen=True, slots=True)
class Card:
    """A task's card, and the requests it shows whole (only those get buttons:
    a question the card could not hold is never answered from it)."""

    card: dict[str, Any]
    asks: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class _Shown:
    request: ApprovalRequest
    n: int | None
    items: list[dict[str, Any]]

    @property
    def askable(self) -> bool:
        return not self.request.policy_denied

    def container(self, buttons: Sequence[Button]) -> dict[str, Any]:
        """The request and, right under it, its buttons: each question's buttons sit
        with it (and Teams shows no more than six of a card's own actions)."""
        items = list(self.items)
        actions = _action_set(buttons, self.n) if self.askable else None
        if actions is not None:
            if any(b.action in ("approve", "reject") for b in buttons):
                items.append(_comment(self.request.approval_id))
            items.append(actions)
        return {"type": "Container", "style": "emphasis" if self.askable else "attention", "items": items}


# The card's lower parts, dropped in this order while the card is too big.
_DROPS = ("last message", "cost", "steps", "where", "progress", "cancel request")


def parent(
    view: TaskView,
    now_ns: int,
    thresholds: tuple[float, ...] = (0.7, 0.85),
    *,
    answered_here: bool = False,
    rows: Sequence[tuple[int | None, list[Button]]] = (),
) -> Card:
    """The task's card: who and its status, each question waiting (first, so
    nothing the agent writes elsewhere can push one out) with its buttons from
    ``rows`` (:func:`spanvisor.chat.buttons.buttons`), then where, progress,
    context, time, steps, cost, the last thing said."""
    _, emoji, _ = pr.STATUS_STYLE.get(view.status, pr.STATUS_STYLE["working"])
    head = [
        rich(
            run(f"{emoji} "),
            run(clip(view.agent_name or view.agent_id, NAME_ROOM), BOLD),
            run(" · " + clip(pr.status_text(view), NAME_ROOM)),
        ),
        rich(run(clip(view.task_name or view.task_id), {"weight": "bolder", "size": "medium"})),
    ]
    many = len(view.approvals) > 1
    shown: list[_Shown] = []
    for n, request in enumerate(view.approvals[:MAX_REQUESTS], 1):
        items = _request(request, n if many else None)
        if not answered_here and not request.policy_denied:
            items.append(rich(run(_command(view, request), MONO)))
        shown.append(_Shown(request, n if many else None, items))
    lower = _lower(view, now_ns, thresholds)
    cut: list[str] = []

    def card(buttons: dict[str, list[Button]] | None) -> dict[str, Any]:
        body = [*head, *(s.container((buttons or {}).get(s.request.approval_id, [])) for s in shown)]
        if len(shown) < len(view.approvals):
            body.append(
                rich(run("… more waiting: ", SUBTLE), run("spanvisor approvals", MONO), run(" lists them all", SUBTLE))
            )
        body.extend(element for name, element in lower if name not in cut)
        if cut:
            body.append(rich(run(f"… not shown, to fit: {', '.join(cut)}", SUBTLE)))
        return adaptive(body)

    while size(card(None)) + _RESERVE * sum(s.askable for s in shown) > MAX_CARD:
        present = {name for name, _ in lower}
        droppable = [name for name in _DROPS if name in present and name not in cut]
        if droppable:
            cut.append(droppable[0])
        elif shown:  # the last request shown; never the first in fact: the head and one
            shown.pop()  # request fit at the worst, by their pieces' rooms (tested)
        else:
            break
    asks = tuple(s.request.approval_id for s in shown if s.askable)
    by_request: dict[str, list[Button]] = {}
    for _, row in rows:
        for b in row:
            if b.approval_id in asks:
                by_request.setdefault(b.approval_id, []).append(b)
    return Card(card(by_request), asks)


def _lower(view: TaskView, now_ns: int, thresholds: tuple[float, ...]) -> list[tuple[str, dict[str, Any]]]:
    """What follows the questions, in the order shown, each named for the note saying it was cut."""
    parts: list[tuple[str, dict[str, Any]]] = []
    where = " · ".join(clip(x, NAME_ROOM) for x in (view.repo, view.branch) if x)
    if where:
        parts.append(("where", rich(run(where))))
    progress = (
        f"{pr.progress_bar(pr.progress_of(view))} · context {clip(pr.context_usage(view, thresholds))}"
        f" · {duration(pr.elapsed(view, now_ns))}"
    )
    parts.append(("progress", rich(run(progress))))
    steps = pr.steps_line(view)
    if steps:
        parts.append(("steps", rich(run(clip(steps)))))
    cost = pr.cost_text(view)
    if cost:
        parts.append(("cost", rich(run(clip(cost)))))
    last = pr.last_action(view)
    if last and view.ended_ns is None:
        parts.append(("last message", rich(run(clip(last), ITALIC))))
    if view.cancel_requested:
        effect = pr.cancel_effect(view)
        said = "🛑 Cancel requested" + (f": {clip(effect)}" if effect else "")
        parts.append(("cancel request", rich(run(said, ITALIC))))
    return parts


def _command(view: TaskView, request: ApprovalRequest) -> str:
    """The command that answers, or where to find it when an id makes it too long to show whole."""
    command = answer_command(view.task_id, view.run_id, request.approval_id, request.digest)
    return command if len(command) <= COMMAND_ROOM else "spanvisor approvals (prints the command)"


def _request(req: ApprovalRequest, n: int | None) -> list[dict[str, Any]]:
    """A question for a person: what it asks and its details, the action
    masked (its start and its end when long), whose approvals count, and
    what the policy says."""
    number = f" {n}" if n is not None else ""
    if req.policy_denied:
        rule = clip(required_text(req.policy_version, req.required_by, req.policy_denied))
        return [
            rich(run(f"⛔ Denied{number}: ", BOLD), run(clip(req.question))),
            rich(run(f"{rule}: nobody may approve it", SUBTLE)),
        ]
    items = [rich(run(f"✋ Approval needed{number}: ", BOLD), run(clip(req.question)))]
    if req.details:
        items.append(rich(run(clip(req.details), ITALIC)))
    shown = shown_action(req.action)
    if shown is not None:
        items.append(rich(run(middle(f"{shown.tool} {shown.arguments}", ACTION_ROOM), MONO)))
    needs = f"needs {req.approvers} people" if req.approvers > 1 else ""
    rule = required_text(req.policy_version, req.required_by)
    said = " · ".join(
        x for x in ((needs + from_text(req)).strip(), f"asked by {req.requester}" if req.requester else "", rule) if x
    )
    if said:
        items.append(rich(run(clip(said), SUBTLE)))
    return items


def request_clipped(request: ApprovalRequest) -> bool:
    """Whether the card shows less than the whole request (its question,
    details or action cut): then a button shows all of it."""
    shown = shown_action(request.action)
    action = f"{shown.tool} {shown.arguments}" if shown is not None else ""
    return _over(request.question, PIECE) or _over(request.details or "", PIECE) or _over(action, ACTION_ROOM)


def _over(raw: str, room: int) -> bool:
    """Whether :func:`clip` cuts ``raw`` (what :func:`middle` cuts too, at the same room)."""
    return len(raw) > 2 * room + 2 or units(clean(raw)) > room


def whole_request(request: ApprovalRequest) -> str:
    """All a person is shown of a request, plain: question, details, the masked action."""
    shown = shown_action(request.action)
    parts = [request.question, request.details or "", f"{shown.tool} {shown.arguments}" if shown is not None else ""]
    return "\n\n".join(p for p in parts if p)


# A thread reply's last element when something did not fit.
CUT = rich(run("…", SUBTLE))


class _Body:
    """Elements added while the card stays within ``limit``: one of ours whole
    or not at all, a block of agent text cut to the room left. What did not
    fit is said by a last :data:`CUT` (room for it is kept)."""

    def __init__(self, limit: int = MAX_CARD) -> None:
        self.items: list[dict[str, Any]] = []
        self.left = limit - size(adaptive([])) - (_cost_of(CUT) + 2)
        self.cut = False

    def add(self, element: dict[str, Any]) -> None:
        need = _cost_of(element) + (2 if self.items else 0)
        if self.cut or need > self.left:
            self.cut = True
            return
        self.items.append(element)
        self.left -= need

    def block(self, text: str, style: dict[str, Any], keep_end: bool = False) -> None:
        """``text`` (already shown form) in a run of ``style``, cut to the room left."""
        if self.cut or not text:
            return
        wrapper = _cost_of(rich(run("x", style))) - 1 + (2 if self.items else 0)
        room = self.left - wrapper
        if _cost(text) <= room:
            self.add(rich(run(text, style)))
            return
        fitted = _fit(text, room - _cost("…"), keep_end)
        if fitted:
            self.add(rich(run(("…" + fitted) if keep_end else (fitted + "…"), style)))
        self.cut = True

    def card(self) -> dict[str, Any]:
        return adaptive([*self.items, CUT] if self.cut else self.items)


def _cost_of(element: dict[str, Any]) -> int:
    """Bytes an element takes in a card's JSON (as :func:`size` counts: non-ASCII escaped)."""
    return len(json.dumps(element))


def _fit(text: str, room: int, keep_end: bool = False) -> str:
    """The longest start (or end) of ``text`` taking at most ``room`` bytes in JSON."""
    lo, hi = 0, min(len(text), max(0, room))  # every character takes a byte or more
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if _cost(text[len(text) - mid :] if keep_end else text[:mid]) <= room:
            lo = mid
        else:
            hi = mid - 1
    return text[len(text) - lo :] if keep_end else text[:lo]


def _line_parts(item: ThreadLine) -> list[tuple[str, dict[str, Any], bool]]:
    """A thread line's blocks: (text as shown, its style, whether a cut keeps its end)."""
    parts: list[tuple[str, dict[str, Any], bool]] = []
    if item.detail:
        parts.append((clip(item.detail, 1500), {}, False))
    if item.code:
        parts.append((clip_end(item.code, 2000), MONO, True))  # a stack trace's end says most
    if item.logs:
        parts.append((clip_end(item.logs, 1500), MONO, True))
    return parts


def _line_head(item: ThreadLine) -> dict[str, Any]:
    return rich(run(f"{item.emoji} "), run(clip(item.summary, 1000), BOLD))


def line_card(lines: Sequence[ThreadLine]) -> dict[str, Any]:
    """One reply in the task's thread, holding one or more of its lines."""
    body = _Body()
    for item in lines:
        body.add(_line_head(item))
        for text, style, keep_end in _line_parts(item):
            body.block(text, style, keep_end)
    return body.card()


def _line_cost(item: ThreadLine) -> int:
    """Bytes a line's elements take in a card's body, separators included."""
    elements = [_line_head(item), *(rich(run(t, s)) for t, s, _ in _line_parts(item))]
    return sum(_cost_of(e) + 2 for e in elements)


def next_batch(lines: Iterable[ThreadLine]) -> list[ThreadLine]:
    """The next reply's lines: progress lines folded (as on Telegram,
    :func:`spanvisor.chat.record.next_batch`) while all fit one card whole
    (:func:`line_card` cuts none of them). A line's cost counts the
    separator before it, which the first one has not."""
    return record.next_batch(lines, lambda item: _line_cost(item) - 1, _Body().left + 1)


def whole_pieces(request: ApprovalRequest) -> list[dict[str, Any]]:
    """The 'Show all' replies: the whole request (question, details, the masked
    action) in at most :data:`WHOLE_PIECES` cards; the last says where the rest is when cut."""
    text = clean(whole_request(request))
    rest = rich(run("… the rest: ", SUBTLE), run("spanvisor approvals --full", MONO))
    heading = rich(run("📄 Request 9999 of about 9999", BOLD))  # the longest heading there is
    room = MAX_CARD - (size(adaptive([heading, rich(run("x", MONO)), rest])) - 1)
    parts: list[str] = []
    start = 0
    while start < len(text) and len(parts) < WHOLE_PIECES:
        piece = _fit(text[start : start + room], room)  # every character takes a byte or more
        parts.append(piece)
        start += len(piece)
    cut = start < len(text)
    # Counting every piece of a megabyte would take a while for a heading: estimated when cut.
    total = max(WHOLE_PIECES + 1, math.ceil(_cost(text) / room)) if cut else len(parts)
    if not parts:  # a request with nothing to show still answers the press
        return [adaptive([rich(run("📄 Request 1 of 1", BOLD)), rich(run("(empty)", SUBTLE))])]
    cards: list[dict[str, Any]] = []
    for n, part in enumerate(parts, 1):
        of = f"of about {total}" if cut else f"of {total}"
        body = [rich(run(f"📄 Request {n} {of}", BOLD)), rich(run(part, MONO))]
        if cut and n == WHOLE_PIECES:
            body.append(rest)
        cards.append(adaptive(body))
    return cards


def activity(card: dict[str, Any], summary: str) -> dict[str, Any]:
    """A message activity carrying ``card``; ``summary`` is the plain text a
    notification shows (at most :data:`SUMMARY_ROOM` characters, one line)."""
    return {
        "type": "message",
        "summary": clip(" ".join(summary.split()), SUMMARY_ROOM),
        "attachments": [{"contentType": CONTENT_TYPE, "content": card}],
    }


def summary(view: TaskView) -> str:
    """A task card's notification text: ``✋ agent · awaiting approval · task``."""
    _, emoji, _ = pr.STATUS_STYLE.get(view.status, pr.STATUS_STYLE["working"])
    name = view.task_name or view.task_id
    return f"{emoji} {view.agent_name or view.agent_id} · {pr.status_text(view)} · {name}"


__all__ = [
    "ACTION_ROOM",
    "CONTENT_TYPE",
    "CUT",
    "DATA_KEY",
    "LABELS",
    "MAX_CARD",
    "PIECE",
    "VERBS",
    "Card",
    "activity",
    "clean",
    "clip",
    "line_card",
    "next_batch",
    "parent",
    "request_clipped",
    "size",
    "summary",
    "units",
    "whole_pieces",
    "whole_request",
]
