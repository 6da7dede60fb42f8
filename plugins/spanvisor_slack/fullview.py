"""The modal *Show full action* opens: a request whole, one click from the
message that had to cut it.

The message shows an approval's question, details and action within Block
Kit's limits, long text as its start and its end. This modal shows all of
it, secrets masked like everywhere else (:mod:`spanvisor.display.approval`):
the arguments as indented JSON in as many code sections as it takes (a
section holds 3,000 characters, a modal 100 blocks). An action larger than
``max_chunks`` sections is shown as its start and its end, with the
command that prints it whole. Slack also refuses views that are too large
overall (``view_too_large``, its size undocumented): the intake then asks
again with :data:`SMALL_CHUNKS`.
"""

from __future__ import annotations

import json
from typing import Any

from spanvisor.display.approval import shown_action
from spanvisor.events import ApprovalRequest
from spanvisor.redaction import clip_middle

from . import actions as A
from . import text as t

# Characters of escaped text a section holds here (Slack: 3,000, less the
# code fence), and the most sections of arguments a first and a second try use.
CHUNK = 2_800
MAX_CHUNKS = 60
SMALL_CHUNKS = 8
TITLE = "Approval request"


def chunks(raw: str, limit: int = CHUNK) -> list[str]:
    """``raw`` escaped, in pieces of at most ``limit`` characters (each piece
    cut before escaping, so no entity is split; at a line's end when one is
    in its second half, so a line is not split between two sections)."""
    out: list[str] = []
    i = 0
    while i < len(raw):
        size = limit
        while True:
            if i + size < len(raw):
                end = raw.rfind("\n", i + size // 2, i + size)
                size = end + 1 - i if end != -1 else size
            piece = t.escape(raw[i : i + size])
            if len(piece) <= limit or size <= 1:
                break
            size = max(1, size - (len(piece) - limit))
        out.append(piece)
        i += size
    return out


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text, "verbatim": True}}


def _fenced(raw: str) -> str:
    return raw.replace("```", "`\u200b``")  # a code block's content cannot close it early


def _readable(args: Any) -> list[tuple[str | None, list[str]]] | None:
    """The arguments as a person reads them: the one-line ones as ``key:
    JSON`` in one code block, each text of several lines (a file a Write
    would create) under its name as those lines; None when they are not an
    object (shown as JSON)."""
    if not isinstance(args, dict):
        return None
    short = [f"{k}: {json.dumps(v, ensure_ascii=False, sort_keys=True)}" for k, v in sorted(args.items())]
    short = [line for line, (_, v) in zip(short, sorted(args.items()), strict=True) if not _lines(v)]
    parts: list[tuple[str | None, list[str]]] = [(None, chunks(_fenced("\n".join(short))))] if short else []
    for key, value in sorted(args.items()):
        if _lines(value):
            n = value.count("\n") + 1
            parts.append((f"*{t.safe(key, 200)}* ({n:,} lines)", chunks(_fenced(value))))
    return parts


def _lines(value: Any) -> bool:
    return isinstance(value, str) and "\n" in value


def full_modal(req: ApprovalRequest, task_id: str, max_chunks: int = MAX_CHUNKS) -> dict[str, Any]:
    """The modal for ``req`` of task ``task_id`` (no inputs: nothing is
    decided here; the message's buttons decide)."""
    question, _ = t.middle(req.question, CHUNK)
    blocks: list[dict[str, Any]] = [_section(f"*Question*\n{question}")]
    if req.details:
        details = chunks(clip_middle(req.details, CHUNK * 4))
        blocks.append(_section("*Details*\n" + details[0]))
        blocks += [_section(d) for d in details[1:]]
    action = shown_action(req.action)
    if action is not None:
        blocks.append(_section(f"*Action:* `{t.safe(action.tool, 120)}` · {action.chars:,} characters of arguments"))
        parts = _readable(action.value)
        whole = parts is not None and sum(len(p) for _, p in parts) <= max_chunks
        if parts is not None and whole:
            for heading, pieces in parts:
                if heading:
                    blocks.append(_section(heading))
                blocks += [_section(f"```\n{p}\n```") for p in pieces]
        else:
            body = _fenced(action.arguments)
            pieces = chunks(body)
            whole = len(pieces) <= max_chunks
            if not whole:
                pieces = chunks(clip_middle(body, max_chunks * CHUNK * 9 // 10))[:max_chunks]
            blocks += [_section(f"```\n{p}\n```") for p in pieces]
        if not whole:
            command = f"spanvisor approvals --full {task_id}/{req.approval_id}"
            note = f"Too long for Slack: its start and its end are shown. The whole: `{t.escape(command)}`"
            blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": t.clip(note, 2000)}]})
    return {
        "type": "modal",
        "callback_id": A.FULL_CALLBACK,
        "title": {"type": "plain_text", "text": TITLE},
        "close": {"type": "plain_text", "text": "Close"},
        "blocks": blocks[:100],
    }


__all__ = ["CHUNK", "MAX_CHUNKS", "SMALL_CHUNKS", "chunks", "full_modal"]
