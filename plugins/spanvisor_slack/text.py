"""Making agent-controlled text safe for Slack, and Slack's size limits.

Everything that comes from spans goes through :func:`escape` (so ``<!channel>``
or ``<https://evil|click>`` render as typed, never as a mention or a link) and
then :func:`clip` (so a megabyte message becomes a visible "…" instead of an
``invalid_blocks`` from Slack). Clipping happens after escaping because the
limits apply to what is sent, and it never cuts an entity such as ``&amp;``
in half.
"""

from __future__ import annotations

import re
from typing import Final

from spanvisor.redaction import clip_middle

ELLIPSIS: Final = "…"

# Block Kit and Web API limits (docs.slack.dev, "Block Kit" reference).
MAX_BLOCKS: Final = 50
SECTION_TEXT: Final = 3000
HEADER_TEXT: Final = 150
FIELDS: Final = 10
FIELD_TEXT: Final = 2000
CONTEXT_ELEMENTS: Final = 10
ACTIONS_ELEMENTS: Final = 25
BUTTON_TEXT: Final = 75
URL: Final = 3000
BLOCK_ID: Final = 255
ACTION_ID: Final = 255
MESSAGE_TEXT: Final = 40_000
# chat.update answers msg_too_long above 4,000 characters of text, so the
# fallback text stays below that for both methods.
FALLBACK_TEXT: Final = 3_900
# Slack rejects messages whose blocks are too large overall
# (msg_blocks_too_long), undocumented, seen near 13k characters of JSON.
TOTAL_BLOCKS_JSON: Final = 12_000

# C0/C1 control characters except tab and newline, plus the bidi overrides
# that can make text read differently from what it is.
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
_PARTIAL_ENTITY = re.compile(r"&[a-z]{0,4}$")


def escape(raw: object) -> str:
    """Slack's three entities, ``&`` first, and control characters removed."""
    s = _CONTROL.sub("\ufffd", str(raw))
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def clip(s: str, limit: int) -> str:
    """``s`` cut to ``limit`` characters with a visible ellipsis."""
    if len(s) <= limit:
        return s
    head = s[: max(0, limit - 1)]
    head = _PARTIAL_ENTITY.sub("", head)
    return head + ELLIPSIS


def clip_tail(s: str, limit: int) -> str:
    """Keep the end of ``s`` (a stack trace's last lines matter most)."""
    if len(s) <= limit:
        return s
    tail = s[len(s) - max(0, limit - 1) :]
    # Do not start inside an entity: drop up to the first ';' if cut there.
    amp, semi = tail.find("&"), tail.find(";")
    if semi != -1 and (amp == -1 or semi < amp) and semi < 5:
        tail = tail[semi + 1 :]
    return ELLIPSIS + tail


def safe(raw: object, limit: int) -> str:
    return clip(escape(raw), limit)


def code_block(raw: str, limit: int) -> str:
    """A mrkdwn code block whose content cannot close it early."""
    body = escape(raw).replace("```", "`\u200b``")
    return "```\n" + clip_tail(body, limit - 8) + "\n```"


def middle(raw: object, limit: int) -> tuple[str, bool]:
    """Agent text escaped within ``limit`` characters, as its start and its
    end with "… N characters …" between when it is longer (a dangerous tail
    is never cut off), and whether it was cut. Clipped before escaping, so
    no entity is cut in half; escaping can lengthen it, so the raw budget
    shrinks until the escaped text fits."""
    text = str(raw)
    out = escape(text)
    if len(out) <= limit:
        return out, False
    budget = limit
    while True:
        out = escape(clip_middle(text, budget))
        if len(out) <= limit or budget <= 40:
            return (out if len(out) <= limit else clip(out, limit)), True
        budget = max(40, budget - (len(out) - limit) - 8)


def code_middle(raw: str, limit: int) -> tuple[str, bool]:
    """A mrkdwn code block of at most ``limit`` characters whose content
    cannot close it early, long content cut in the middle; and whether it was cut."""
    body, cut = middle(raw.replace("```", "`\u200b``"), limit - 8)
    return "```\n" + body + "\n```", cut
