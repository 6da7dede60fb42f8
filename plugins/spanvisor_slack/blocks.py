# mypy: disable-error-code="no-untyped-call"
"""Block Kit payloads for the parent message and thread replies.

Built with ``slack_sdk.models.blocks`` (whose ``to_dict()`` checks the
per-element limits) and then checked again by :func:`problems` for what
slack_sdk leaves to Slack: the block count, field lengths and total size.
Every string from spans is escaped and clipped in :mod:`.text` first.

The parent's steps are a native ``plan`` block when :class:`~.plan.PlanSwitch`
allows (:mod:`.plan`), a line of text otherwise. Its buttons and people's
decisions are :mod:`.controls`' (open approvals above the steps, decisions
and the other buttons below them), its results a section of fields. Its
block ids end in the view's ``seq`` and a digest of its decisions, so each
edit of the message brings new ones, as Slack asks for every iteration of an
updated message, also when a decision on a finished task changes no ``seq``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    ContextBlock,
    HeaderBlock,
    MarkdownTextObject,
    PlainTextObject,
    SectionBlock,
)

from spanvisor.display.readable import decision_text, denied_text, duration, results
from spanvisor.display.task import (
    STATUS_STYLE,
    context_usage,
    cost_text,
    elapsed,
    last_action,
    progress_bar,
    progress_of,
    status_text,
    steps_line,
    tokens,
)
from spanvisor.display.thread import ThreadLine
from spanvisor.events import TaskView, stable_id

from . import controls
from . import text as t
from .plan import PlanSwitch, plan_block
from .worklog import WorkLog

Payload = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Look:
    """What every message of one sink shares."""

    prefix: str | None = None
    dashboard_url: str | None = None
    trace_url: str | None = None
    thresholds: tuple[float, ...] = (0.7, 0.85)
    # The sink's plan switch; None: the steps are text (SPANVISOR_SLACK_PLAN=off).
    plan: PlanSwitch | None = None


def link(template: str | None, view: TaskView, now_ns: int) -> str | None:
    """A template filled with URL-encoded values; None if unusable."""
    if not template:
        return None
    end_ns = view.ended_ns or now_ns
    values = {
        "task_id": view.task_id,
        "trace_id": view.trace_id,
        "agent_id": view.agent_id,
        "repo": view.repo or "",
        "start_ms": str(view.started_ns // 1_000_000 - 60_000),
        "end_ms": str(end_ns // 1_000_000 + 60_000),
    }
    try:
        url = template.format_map({k: quote(v, safe="") for k, v in values.items()})
    except (KeyError, IndexError, ValueError):
        return None
    return url if len(url) <= t.URL and url.startswith(("https://", "http://")) else None


def _md(s: str) -> MarkdownTextObject:
    return MarkdownTextObject(text=s, verbatim=True)


def _prefix(look: Look) -> str:
    return f"{t.escape(look.prefix)} " if look.prefix else ""


def parent_payload(view: TaskView, look: Look, now_ns: int, folded: WorkLog | None = None) -> Payload:
    """The full parent message, shrunk until it fits Slack's limits (at the
    last step, one open approval is shown with its buttons, the others counted).
    ``folded``: the task's tool calls and steps a busy channel folded here
    instead of its thread (.board), said in a line with the newest."""
    last: Payload = {}
    for scale in (1.0, 0.5, 0.2, 0.05, 0.01):
        last = _parent(view, look, now_ns, scale, folded)
        if not problems(last):
            return last
    raise ValueError(f"parent message does not fit Slack's limits: {problems(last)}")


def _suffix(view: TaskView) -> str:
    """What makes this version's block_ids new: the view's seq (none for a view
    no tracker numbered, seq 0), and its decisions (a decision on a finished
    task adds one without a new seq)."""
    sfx = f"-{view.seq}" if view.seq else ""
    if view.decisions:
        sfx += "-" + stable_id(*(d.intervention_id for d in view.decisions))[:6]
    return sfx


def _folded(log: WorkLog, sfx: str, scale: float) -> ContextBlock:
    """``🗒️ 37 tool calls, 2 step changes here and on the channel's board …``."""
    newest = log.newest[-1] if log.newest else None
    said = newest.detail or newest.summary if newest is not None else ""
    text = (
        f"🗒️ *{log.said()}* shown here and on the channel's board, not in the thread: "
        "the channel was too busy to post them"
        + (f" · newest: {t.safe(said, max(40, int(300 * scale)))}" if said else "")
    )
    return ContextBlock(block_id=f"sv-folded{sfx}-{log.lines}", elements=[_md(t.clip(text, t.SECTION_TEXT))])


def _parent(view: TaskView, look: Look, now_ns: int, scale: float, folded: WorkLog | None = None) -> Payload:
    shortcode, _, colour = STATUS_STYLE.get(view.status, STATUS_STYLE["working"])
    sfx = _suffix(view)
    agent = view.agent_name or view.agent_id
    status = status_text(view)
    header = t.clip(f"{_prefix(look)}{shortcode} {t.escape(agent)} · {status}", t.HEADER_TEXT)
    name = view.task_name or view.task_id
    n = lambda limit: max(40, int(limit * scale))  # noqa: E731
    top: list[Block] = [
        HeaderBlock(block_id=f"sv-header{sfx}", text=PlainTextObject(text=header, emoji=True)),
        SectionBlock(block_id=f"sv-task{sfx}", text=_md(f"*{t.safe(name, n(500))}*")),
    ]
    top.extend(controls.asks(view, sfx, scale))
    plan = plan_block(view, sfx, scale) if look.plan is not None and look.plan.active else None
    if plan is not None and look.plan is not None:
        look.plan.plan_built = True
    after_plan = controls.decided(view, sfx, scale)
    fields = [
        f"*Progress*\n{progress_bar(progress_of(view))}",
        f"*Context*\n{context_usage(view, look.thresholds)}",
        f"*Elapsed*\n{duration(elapsed(view, now_ns))}",
        f"*Tokens*\nin {tokens(view.input_tokens)} · out {tokens(view.output_tokens)}"
        + (f"\n{cost}" if (cost := cost_text(view)) else ""),
    ]
    if view.repo:
        fields.insert(1, f"*Repo*\n{t.safe(view.repo, n(300))}")
    if view.model:
        fields.append(f"*Model*\n{t.safe(view.model, n(200))}")
    body: list[Block] = [
        SectionBlock(block_id=f"sv-fields{sfx}", fields=[_md(t.clip(f, t.FIELD_TEXT)) for f in fields]),
    ]
    if view.results:
        body.append(_results(results(view.results), f"sv-results{sfx}", scale))
    if last := last_action(view):
        body.append(SectionBlock(block_id=f"sv-last{sfx}", text=_md(f"*Last action*\n{t.safe(last, n(1500))}")))
    if folded is not None and folded.lines:
        body.append(_folded(folded, sfx, scale))
    steps = steps_line(view)
    if steps and plan is None:
        body.append(SectionBlock(block_id=f"sv-steps{sfx}", text=_md(f"*Steps*\n{t.safe(steps, n(1000))}")))
    if view.artifacts:
        body.append(SectionBlock(block_id=f"sv-artifacts{sfx}", text=_md(_artifacts(view, scale))))
    ids = f"task `{t.safe(view.task_id, 100)}` · trace `{t.safe(view.trace_id, 40)}`"
    body.append(ContextBlock(block_id=f"sv-ids{sfx}", elements=[_md(ids)]))
    buttons = [
        ButtonElement(text=label, url=url, action_id=f"sv-{label.lower()}")
        for label, url in (
            ("Dashboard", link(look.dashboard_url, view, now_ns)),
            ("Trace", link(look.trace_url, view, now_ns)),
        )
        if url
    ]
    if buttons:
        body.append(ActionsBlock(block_id=f"sv-links{sfx}", elements=buttons))
    fallback = f"{_prefix(look)}{t.escape(agent)} · {status} — {t.escape(name)} ({progress_bar(progress_of(view))})"
    return {
        "text": t.clip(fallback, min(t.FALLBACK_TEXT, n(t.FALLBACK_TEXT))),
        # The plan among the top-level blocks: Slack's AI apps show it there.
        "blocks": [b.to_dict() for b in top] + ([plan] if plan is not None else []) + [b.to_dict() for b in after_plan],
        "attachments": [{"color": colour, "blocks": [b.to_dict() for b in body]}],
    }


def _artifacts(view: TaskView, scale: float) -> str:
    """As many artifacts as fit, then a count of the rest."""
    budget, out = int(2500 * scale) + 200, ["*Artifacts*"]
    for i, a in enumerate(view.artifacts[:10]):
        line = f"• {t.safe(a.name, 200)}" + (f" — {t.safe(a.uri, 300)}" if a.uri else "")
        if i and sum(map(len, out)) + len(line) > budget:
            break
        out.append(line)
    if len(view.artifacts) > len(out) - 1:
        out.append(f"… and {len(view.artifacts) - len(out) + 1} more")
    return t.clip("\n".join(out), t.SECTION_TEXT)


def _results(pairs: Sequence[tuple[str, str]], block_id: str, scale: float) -> SectionBlock:
    """``*ARR gain (1h)*  $4,820`` as a section's fields (at most 10)."""
    limit = max(40, int(500 * scale))
    shown = [_md(t.clip(f"*{t.safe(name, 200)}*\n{t.safe(value, limit)}", t.FIELD_TEXT)) for name, value in pairs]
    return SectionBlock(block_id=block_id, text=_md("*Results*"), fields=shown[: t.FIELDS])


def reply_payload(lines: Sequence[ThreadLine], look: Look) -> Payload:
    """One thread reply for one line, or for a run of lines of one kind."""
    last: Payload = {}
    for scale in (1.0, 0.5, 0.2, 0.05):
        last = _reply(lines, look, scale)
        if not problems(last):
            return last
    raise ValueError(f"thread reply does not fit Slack's limits: {problems(last)}")


def _reply(lines: Sequence[ThreadLine], look: Look, scale: float) -> Payload:
    blocks: list[Block] = []
    per_line = max(60, int((t.SECTION_TEXT if len(lines) == 1 else 2000 // len(lines)) * scale))
    for i, line in enumerate(lines[: t.MAX_BLOCKS // 4]):
        blocks.append(
            SectionBlock(block_id=f"sv-line-{i}", text=_md(t.clip(_line_text(line, per_line), t.SECTION_TEXT)))
        )
        if line.fields:
            blocks.append(_results(line.fields, f"sv-fields-{i}", scale))
        if line.code:
            code = t.code_block(line.code, max(200, int(2500 * scale)))
            blocks.append(SectionBlock(block_id=f"sv-code-{i}", text=_md(code)))
        if line.logs:
            logs = t.code_block(line.logs, max(200, int(2900 * scale)))
            blocks.append(SectionBlock(block_id=f"sv-logs-{i}", text=_md(f"*Last log lines*\n{logs}")))
    first = lines[0]
    summary = _line_text(first, t.FALLBACK_TEXT, plain=True)
    if len(lines) > 1:
        summary += f" (+{len(lines) - 1} more)"
    return {
        "text": t.clip(f"{_prefix(look)}{summary}", max(200, int(t.FALLBACK_TEXT * scale))),
        "blocks": [b.to_dict() for b in blocks],
    }


def _line_text(line: ThreadLine, limit: int, plain: bool = False) -> str:
    """A thread line's text: ``emoji *summary*`` and its detail on the next
    line; a decision or a request inline, with the actor as a mention."""
    detail = t.safe(line.detail, limit) if line.detail else ""
    d = line.decision
    if d is not None and line.kind in ("intervention", "denied"):
        who = controls.who(d)
        said = decision_text(d, who, line.tally) if line.kind == "intervention" else denied_text(d, who)
        return f"{line.emoji} {said}" + (f": {detail}" if detail else "")
    called = (" " + " ".join(line.mentions)) if line.mentions else ""
    if plain:  # the notification's text: the whole summary, results included
        return t.escape(line.summary) + (f": {detail}" if detail else "") + called
    if line.kind == "approval":
        return f"{line.emoji} *{t.escape(line.summary)}:* {detail}{called}"
    head = f"{line.emoji} *{t.escape(line.lead or line.summary)}*"
    return head + (f"\n{detail}" if detail else "")


def alert_payload(view: TaskView, permalink: str | None, look: Look) -> Payload:
    """A one-line pointer, for a status-routed channel, to the task's thread."""
    shortcode = STATUS_STYLE.get(view.status, STATUS_STYLE["working"])[0]
    name = t.safe(view.task_name or view.task_id, 300)
    agent = t.safe(view.agent_name or view.agent_id, 200)
    where = (
        f" <{permalink}|open thread>"
        if permalink and permalink.startswith("https://") and "|" not in permalink and ">" not in permalink
        else ""
    )
    line = f"{_prefix(look)}{shortcode} {agent} · {view.status.replace('_', ' ')} — *{name}*{where}"
    return {
        "text": t.clip(line, t.FALLBACK_TEXT),
        "blocks": [SectionBlock(block_id="sv-alert", text=_md(t.clip(line, t.SECTION_TEXT))).to_dict()],
    }


def _all_blocks(payload: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    out = list(payload.get("blocks") or [])
    for a in payload.get("attachments") or []:
        out.extend(a.get("blocks") or [])
    return out


def problems(payload: Mapping[str, Any]) -> list[str]:
    """What Slack would reject that slack_sdk's ``to_dict()`` lets through."""
    found: list[str] = []
    blocks = _all_blocks(payload)
    if len(blocks) > t.MAX_BLOCKS:
        found.append(f"{len(blocks)} blocks > {t.MAX_BLOCKS}")
    ids = [b["block_id"] for b in blocks if "block_id" in b]
    ids += [c["block_id"] for b in blocks for c in b.get("tasks") or [] if "block_id" in c]
    if len(ids) != len(set(ids)) or any(len(i) > t.BLOCK_ID for i in ids):
        found.append("block_id not unique or too long")
    for b in blocks:
        for f in b.get("fields") or []:
            if len(f.get("text", "")) > t.FIELD_TEXT:
                found.append("field text too long")
        if len(b.get("fields") or []) > t.FIELDS:
            found.append("too many fields")
        if len((b.get("text") or {}).get("text", "")) > t.SECTION_TEXT:
            found.append("section text too long")
    size = len(json.dumps(blocks, ensure_ascii=False))
    if size > t.TOTAL_BLOCKS_JSON:
        found.append(f"blocks total {size} characters > {t.TOTAL_BLOCKS_JSON}")
    if len(payload.get("text") or "") > t.FALLBACK_TEXT:
        found.append("fallback text too long")
    return found
