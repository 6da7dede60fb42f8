# mypy: disable-error-code="no-untyped-call"
"""A channel's board as Slack shows it: one row per task, and the message listing them.

A row is what the board says of a task (shared between replicas in the state
store, raw text: escaped when rendered): its name, agent, status, last step,
the question it waits on and a link to its own message. The message groups
the rows (waiting for a person, failed, working, finished lately), waiting
and failed first so they are the last left out when the rows do not all fit
Slack's limits. :mod:`.board` decides when a board is posted and edited.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

from slack_sdk.models.blocks import Block, ContextBlock, HeaderBlock, MarkdownTextObject, PlainTextObject, SectionBlock

from spanvisor.display.task import STATUS_STYLE
from spanvisor.events import TERMINAL, stable_id

from . import text as t
from .blocks import Look, problems
from .channels import is_channel_id
from .record import SlackTaskRecord
from .shared import version_of

# Rows of each kind a board shows at most (the rest are counted), and the
# characters of a row's parts: about 100 tasks fit Slack's size limit.
MAX_ROWS = 100
MAX_FINISHED = 30
NAME, AGENT, LAST = 32, 24, 48
# The board's blocks stay this far below Slack's undocumented total.
BOARD_JSON = t.TOTAL_BLOCKS_JSON - 1_500
WAITING, FAILED, WORKING, FINISHED = "waiting", "failed", "working", "finished"
GROUPS = (
    (WAITING, "✋ *Waiting for a person*"),
    (FAILED, "❌ *Failed*"),
    (WORKING, "⚙️ *Working*"),
    (FINISHED, "✅ *Finished lately*"),
)


@dataclass(frozen=True, slots=True)
class Row:
    """One task on a board, as shared between replicas (raw text: escaped when rendered)."""

    task_id: str
    name: str
    agent: str
    status: str
    version: int  # shared.version_of the view it was made from
    last: str = ""  # the last step or tool call
    question: str = ""  # the first open approval's question
    link: str = ""  # "<channel ID>/<ts>" of the task's parent
    stalled: bool = False
    changed: float = 0.0  # wall clock, when its content last changed
    since: float = 0.0  # wall clock, when its status began (here: first seen in it)

    @property
    def final(self) -> bool:
        return self.status in TERMINAL

    @property
    def group(self) -> str:
        if self.final:
            return FAILED if self.status == "error" else FINISHED
        return WAITING if self.status == "awaiting_approval" or self.question else WORKING

    def same(self, other: Row | None) -> bool:
        """Equal but for when it changed."""
        return other is not None and all(
            getattr(self, f.name) == getattr(other, f.name) for f in fields(self) if f.name not in ("changed", "since")
        )

    def newer_than(self, other: Row | None) -> bool:
        return other is None or (self.version, self.changed) > (other.version, other.changed)

    def dump(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def load(cls, raw: Any) -> Row | None:
        if not isinstance(raw, Mapping):
            return None
        try:
            return cls(
                task_id=str(raw["task_id"]),
                name=str(raw.get("name") or ""),
                agent=str(raw.get("agent") or ""),
                status=str(raw.get("status") or "working"),
                version=int(raw.get("version") or 0),
                last=str(raw.get("last") or ""),
                question=str(raw.get("question") or ""),
                link=str(raw.get("link") or ""),
                stalled=bool(raw.get("stalled")),
                changed=float(raw.get("changed") or 0.0),
                since=float(raw.get("since") or 0.0),
            )
        except (KeyError, TypeError, ValueError):
            return None


def row_of(st: SlackTaskRecord, before: Row | None, wall: float) -> Row:
    """The row of a task's record now (``before``: its previous row here)."""
    v = st.shown_view
    row = Row(
        task_id=v.task_id,
        name=(v.task_name or v.task_id).strip() or v.task_id,
        agent=v.agent_name or v.agent_id,
        status=v.status,
        version=version_of(st.view, st.view_final),
        last=(st.last_call if st.last_call and v.status not in TERMINAL else None) or v.message or v.step or "",
        question=v.approvals[0].question if v.approvals else "",
        link=f"{st.ref[0]}/{st.ref[1]}" if st.ref is not None else "",
        stalled=v.stalled,
        changed=wall,
        since=wall,
    )
    if before is None:
        return row
    since = before.since if before.status == row.status else wall
    changed = before.changed if row.same(before) else wall
    return Row(**{**row.dump(), "changed": changed, "since": since})


def _md(s: str) -> MarkdownTextObject:
    return MarkdownTextObject(text=s, verbatim=True)


def _when(wall: float) -> str:
    """A time each reader sees in their own zone (Slack's date token)."""
    secs = max(0, int(wall))
    return f"<!date^{secs}^{{time}}|{time.strftime('%H:%M', time.gmtime(secs))} UTC>"


def _label(name: str) -> str:
    """Agent text fit for a link's label (no ``|`` or ``>`` to end it early)."""
    return t.safe(name, NAME).replace("|", "¦")


def row_text(r: Row, team_url: str | None, compact: bool = False) -> str:
    """One line, as short as it can say it (a board lists a hundred tasks
    within Slack's size limit): ``✋ <link|Deploy api> · rivet · since 12:03:
    Allow `git push`?``; a working task is ``⚙️ *Deploy api* · rivet · its
    last step`` (``compact``: without its last step), a finished one
    ``✅ *Deploy api* · rivet · complete``. Only the rows that need a person
    link to the task's message."""
    emoji = STATUS_STYLE.get(r.status, STATUS_STYLE["working"])[1]
    g = r.group
    cid, _, ts = r.link.partition("/")
    url = f"{team_url}archives/{cid}/p{ts.replace('.', '')}" if team_url and is_channel_id(cid) and ts else ""
    linked = bool(url) and g in (WAITING, FAILED)
    name = f"<{url}|{_label(r.name)}>" if linked else f"*{t.safe(r.name, NAME)}*"
    parts = [f"{emoji} {name}", t.safe(r.agent, AGENT)]
    if g == WAITING:
        parts.append(f"since {_when(r.since)}" + (f": {t.safe(r.question, 90)}" if r.question else ""))
    elif g == FAILED:
        parts.append(f"failed at {_when(r.since)}" + (f": {t.safe(r.last, LAST)}" if r.last else ""))
    elif g == FINISHED:
        parts.append(r.status)
    else:
        said = status_text_of(r)
        if said != "working":
            parts.append(said)
        if r.last and not compact:
            parts.append(t.safe(r.last, LAST))
    return " · ".join(parts)


def status_text_of(r: Row) -> str:
    return r.status.replace("_", " ") + (" · ⏸ stalled" if r.stalled and not r.final else "")


def ordered(rows: Iterable[Row]) -> dict[str, list[Row]]:
    """Rows by group: waiting longest first, failed and finished newest
    first, working in a stable order (by agent, then name)."""
    out: dict[str, list[Row]] = {g: [] for g, _ in GROUPS}
    for r in rows:
        out[r.group].append(r)
    out[WAITING].sort(key=lambda r: (r.since, r.task_id))
    out[FAILED].sort(key=lambda r: (-r.since, r.task_id))
    out[FINISHED].sort(key=lambda r: (-r.since, r.task_id))
    out[WORKING].sort(key=lambda r: (r.agent, r.name, r.task_id))
    return out


def board_payload(rows: Iterable[Row], look: Look, *, folded: bool, team_url: str | None) -> tuple[dict[str, Any], str]:
    """The board's message and a digest of what it shows (the same digest:
    nothing new to show). Waiting and failed rows come first, so they are
    the last to be left out when the rows do not all fit Slack's limits
    (each row is short: about a hundred fit)."""
    groups = ordered(rows)
    payload: dict[str, Any] = {}
    digest = ""
    for budget in (BOARD_JSON, BOARD_JSON * 3 // 4, BOARD_JSON // 2, BOARD_JSON // 4):
        payload, digest, left_out = _board(groups, look, folded, team_url, budget, compact=False)
        if left_out.get(WORKING):
            # Working rows left out (many tasks wait with their questions):
            # all of them without their last steps before some with, since
            # a task left out may have no message of its own yet (a busy
            # channel posts one a second): bench_fleet's setup (d) had three
            # tasks, answered, unseen for 12-17 s.
            payload, digest, left_out = _board(groups, look, folded, team_url, budget, compact=True)
        if not problems(payload):
            break
    return payload, digest


def _board(
    groups: dict[str, list[Row]], look: Look, folded: bool, team_url: str | None, budget: int, compact: bool
) -> tuple[dict[str, Any], str, dict[str, int]]:
    n = {g: len(rs) for g, rs in groups.items()}
    prefix = f"{t.escape(look.prefix)} " if look.prefix else ""
    head = (
        f"*{n[WORKING] + n[WAITING]}* running · *{n[WAITING]}* waiting for a person · *{n[FAILED]}* failed · "
        f"*{n[FINISHED]}* finished lately"
    )
    said = (
        "🗂️ This channel is busy: tool calls and steps show here and on each task's message instead of its "
        "thread until it catches up; approvals, decisions, errors and results still get their replies, first."
        if folded
        else "Each task's thread is current; this board keeps listing the channel's tasks."
    )
    texts: list[tuple[str, str]] = []  # (block kind, text)
    size = len(head) + len(said) + 400
    left_out: dict[str, int] = {}
    for g, title in GROUPS:
        section = ""
        shown = 0
        for r in groups[g][: MAX_FINISHED if g == FINISHED else MAX_ROWS]:
            line = row_text(r, team_url, compact)
            if size + len(line) + 40 > budget or len(texts) >= t.MAX_BLOCKS - 6:
                break
            if section and len(section) + len(line) + 1 > t.SECTION_TEXT - 100:
                texts.append(("section", section))
                section = ""
                size += 120
            section = f"{section}\n{line}" if section else f"{title}\n{line}"
            size += len(line) + 1
            shown += 1
        if section:
            texts.append(("section", section))
            size += 120
        if len(groups[g]) > shown:
            left_out[g] = len(groups[g]) - shown
    if left_out:
        words = {WAITING: "waiting", FAILED: "failed", WORKING: "working", FINISHED: "finished"}
        more = ", ".join(f"{k} {words[g]}" for g, k in left_out.items())
        texts.append(("context", f"… and {more}: each task's own message has them."))
    if not any(g for g in n.values()):
        texts.append(("context", "No tasks right now."))
    digest = stable_id(head, said, *(x for _, x in texts))[:10]
    blocks: list[Block] = [
        HeaderBlock(block_id=f"sv-board-{digest}", text=PlainTextObject(text=f"{prefix}📋 Tasks here"[:150])),
        ContextBlock(block_id=f"sv-board-head-{digest}", elements=[_md(head)]),
        ContextBlock(block_id=f"sv-board-said-{digest}", elements=[_md(said)]),
    ]
    for i, (kind, text) in enumerate(texts):
        bid = f"sv-board-{i}-{digest}"
        if kind == "section":
            blocks.append(SectionBlock(block_id=bid, text=_md(t.clip(text, t.SECTION_TEXT))))
        else:
            blocks.append(ContextBlock(block_id=bid, elements=[_md(t.clip(text, t.SECTION_TEXT))]))
    fallback = (
        f"{prefix}Tasks here: {n[WORKING] + n[WAITING]} running, {n[WAITING]} waiting for a person, {n[FAILED]} failed"
    )
    payload = {"text": t.clip(fallback, t.FALLBACK_TEXT), "blocks": [b.to_dict() for b in blocks]}
    return payload, digest, left_out
