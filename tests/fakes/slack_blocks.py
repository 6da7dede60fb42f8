"""What the fake Slack accepts in a message: Block Kit, attachments, metadata.

Each rule follows Slack's reference (docs.slack.dev, "Block Kit" blocks,
block elements and composition objects; "Using message metadata"); a
payload Slack would reject raises :class:`InvalidBlocks` with the error code
Slack answers (``invalid_blocks``, ``msg_blocks_too_long``,
``invalid_attachments``, ``invalid_metadata_format``), which the server turns
into HTTP 200 ``{"ok": false, "error": ...}`` as Slack does.

Checked per block type:

- ``header``: a ``plain_text`` object of at most 150 characters;
- ``section``: ``text`` (at most 3,000) or ``fields`` (1 to 10, each at most
  2,000), an optional ``accessory`` (an interactive element or an image);
- ``context``: 1 to 10 elements, only text objects and image elements;
- ``actions``: 1 to 25 elements, only interactive elements, their
  ``action_id`` unique within the block;
- ``image``: ``alt_text`` (at most 2,000) and exactly one of ``image_url``
  (at most 3,000) or ``slack_file``; an optional ``plain_text`` title;
- ``rich_text``: a non-empty list of ``rich_text_section`` / ``_list`` /
  ``_preformatted`` / ``_quote``, each with its inline elements' required
  fields (a list needs ``style`` bullet or ordered and sections inside);
- ``divider``, ``markdown`` (text at most 12,000);
- ``plan``: a plain-string ``title`` and ``tasks``, a list of ``task_card``
  blocks with distinct task ids; ``task_card``: plain-string ``task_id``
  and ``title``, ``status`` one of ``pending``, ``in_progress``, ``complete``,
  ``error`` (not ``completed``), ``details``/``output`` one ``rich_text``
  each, ``sources`` url elements; both take only their documented fields and
  only at the top level of a message (not in attachments), and not both in
  one message (docs.slack.dev, "Plan block", "Task card block"). Slack states
  no length for their titles and ids nor a count of cards: the fake allows
  255 characters and 50 cards, an assumption spanvisor stays well inside;
- every block: ``block_id`` a string of at most 255 characters, unique within
  the message (a plan's cards included); at most 50 blocks; the whole list
  under the undocumented total size Slack enforces (``msg_blocks_too_long``,
  seen near 13k).

Slack also asks for a new ``block_id`` on each *iteration* of an updated
message ("should", for interactive state); it does not reject a reused one,
so neither does the fake.
"""

from __future__ import annotations

import json
from typing import Any

MAX_BLOCKS = 50
TOTAL_BLOCKS_JSON = 13_000
MAX_ATTACHMENTS = 100

TEXT_KINDS = ("plain_text", "mrkdwn")
# Block elements a user can interact with: the only ones an actions block takes.
INTERACTIVE = frozenset(
    {
        "button",
        "checkboxes",
        "datepicker",
        "datetimepicker",
        "timepicker",
        "overflow",
        "radio_buttons",
        "static_select",
        "external_select",
        "users_select",
        "conversations_select",
        "channels_select",
        "multi_static_select",
        "multi_external_select",
        "multi_users_select",
        "multi_conversations_select",
        "multi_channels_select",
        "workflow_button",
    }
)
RICH_CONTAINERS = frozenset({"rich_text_section", "rich_text_preformatted", "rich_text_quote"})
# Inline rich-text elements and the field each one cannot do without.
RICH_INLINE: dict[str, str | None] = {
    "text": "text",
    "link": "url",
    "emoji": "name",
    "user": "user_id",
    "channel": "channel_id",
    "usergroup": "usergroup_id",
    "broadcast": "range",
    "date": "timestamp",
    "color": "value",
    "team": "team_id",
}
TASK_STATUSES = frozenset({"pending", "in_progress", "complete", "error"})
TASK_CARD_FIELDS = frozenset({"type", "block_id", "task_id", "title", "details", "output", "sources", "status"})
PLAN_FIELDS = frozenset({"type", "block_id", "title", "tasks"})
# Not documented by Slack; what the fake allows (see the module docstring).
PLAN_TEXT = 255
PLAN_CARDS = 50


class InvalidBlocks(Exception):
    """Slack would answer ``error``; ``why`` is for the test's failure message."""

    def __init__(self, error: str, why: str) -> None:
        super().__init__(why)
        self.error = error


def _bad(why: str) -> InvalidBlocks:
    return InvalidBlocks("invalid_blocks", why)


def _string(value: Any, what: str, limit: int) -> str:
    if not isinstance(value, str) or not value:
        raise _bad(f"{what} must be a non-empty string")
    if len(value) > limit:
        raise _bad(f"{what} must be less than {limit + 1} characters")
    return value


def text_object(obj: Any, limit: int, kinds: tuple[str, ...] = TEXT_KINDS) -> None:
    if not isinstance(obj, dict) or obj.get("type") not in kinds:
        raise _bad(f"text object must be one of {kinds}")
    _string(obj.get("text"), f"{obj.get('type')} text", limit)


def _image_source(el: dict[str, Any], what: str, alt_limit: int | None) -> None:
    alt = el.get("alt_text")
    if not isinstance(alt, str) or not alt:
        raise _bad(f"{what} needs alt_text")
    if alt_limit is not None and len(alt) > alt_limit:
        raise _bad(f"{what} alt_text must be less than {alt_limit + 1} characters")
    url, file = el.get("image_url"), el.get("slack_file")
    if (url is None) == (file is None):
        raise _bad(f"{what} needs exactly one of image_url and slack_file")
    if url is not None:
        _string(url, f"{what} image_url", 3000)
    if file is not None and not (isinstance(file, dict) and (file.get("url") or file.get("id"))):
        raise _bad(f"{what} slack_file needs url or id")


def _interactive(el: Any, action_ids: set[str]) -> None:
    if not isinstance(el, dict) or el.get("type") not in INTERACTIVE:
        kind = el.get("type") if isinstance(el, dict) else type(el).__name__
        raise _bad(f"{kind!r} is not an interactive element")
    aid = el.get("action_id")
    if aid is not None:
        _string(aid, "action_id", 255)
        if aid in action_ids:
            raise _bad(f"action_id {aid!r} is not unique in its block")
        action_ids.add(aid)
    if el["type"] == "button":
        text_object(el.get("text"), 75, ("plain_text",))
        if el.get("url") is not None:
            _string(el["url"], "button url", 3000)
        if el.get("value") is not None:
            _string(el["value"], "button value", 2000)
        if el.get("style") not in (None, "primary", "danger"):
            raise _bad("button style must be primary or danger")


def _context_element(el: Any) -> None:
    if isinstance(el, dict) and el.get("type") == "image":
        _image_source(el, "image element", None)
    elif isinstance(el, dict) and el.get("type") in TEXT_KINDS:
        text_object(el, 3000)
    else:
        kind = el.get("type") if isinstance(el, dict) else type(el).__name__
        raise _bad(f"a context block takes text objects and images, not {kind!r}")


def _elements(block: dict[str, Any], most: int) -> list[Any]:
    els = block.get("elements")
    if not isinstance(els, list) or not 1 <= len(els) <= most:
        raise _bad(f"{block.get('type')} needs 1 to {most} elements")
    return els


def _section(b: dict[str, Any]) -> None:
    if "text" not in b and "fields" not in b:
        raise _bad("section needs text or fields")
    if "text" in b:
        text_object(b["text"], 3000)
    if "fields" in b:
        fields = b["fields"]
        if not isinstance(fields, list) or not 1 <= len(fields) <= 10:
            raise _bad("section fields: 1 to 10 items")
        for f in fields:
            text_object(f, 2000)
    accessory = b.get("accessory")
    if accessory is not None:
        if isinstance(accessory, dict) and accessory.get("type") == "image":
            _image_source(accessory, "accessory image", None)
        else:
            _interactive(accessory, set())


def _rich_inline(el: Any) -> None:
    if not isinstance(el, dict) or el.get("type") not in RICH_INLINE:
        raise _bad(f"unknown rich text element {el!r:.60}")
    need = RICH_INLINE[el["type"]]
    if need is not None and el.get(need) in (None, ""):
        raise _bad(f"rich text {el['type']} needs {need}")
    if el["type"] == "broadcast" and el["range"] not in ("here", "channel", "everyone"):
        raise _bad("broadcast range must be here, channel or everyone")


def rich_text(b: Any) -> None:
    if not isinstance(b, dict) or b.get("type") != "rich_text":
        raise _bad("expected a rich_text block")
    parts = b.get("elements")
    if not isinstance(parts, list) or not parts:
        raise _bad("rich_text needs a non-empty elements list")
    for part in parts:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "rich_text_list":
            if part.get("style") not in ("bullet", "ordered"):
                raise _bad("rich_text_list style must be bullet or ordered")
            items = part.get("elements")
            if not isinstance(items, list) or not items:
                raise _bad("rich_text_list needs sections")
            for item in items:
                if not isinstance(item, dict) or item.get("type") != "rich_text_section":
                    raise _bad("rich_text_list takes only rich_text_section items")
                _rich_container(item)
        elif kind in RICH_CONTAINERS:
            _rich_container(part)
        else:
            raise _bad(f"{kind!r} cannot be an element of rich_text")


def _rich_container(part: dict[str, Any]) -> None:
    inline = part.get("elements")
    if not isinstance(inline, list):
        raise _bad(f"{part['type']} needs an elements list")
    for el in inline:
        _rich_inline(el)


def _only(b: dict[str, Any], fields: frozenset[str]) -> None:
    unknown = sorted(set(b) - fields)
    if unknown:
        raise _bad(f"{b.get('type')} does not take {unknown}")


def _task_card(b: dict[str, Any]) -> None:
    _only(b, TASK_CARD_FIELDS)
    for key in ("task_id", "title"):
        # A plain string, not a text object.
        _string(b.get(key), f"task_card {key}", PLAN_TEXT)
    if b.get("status") is not None and b["status"] not in TASK_STATUSES:
        raise _bad(f"task_card status must be one of {sorted(TASK_STATUSES)}")
    for key in ("details", "output"):
        if b.get(key) is not None:
            rich_text(b[key])
    sources = b.get("sources")
    if sources is not None and not isinstance(sources, list):
        raise _bad("task_card sources must be a list")
    for src in sources or []:
        if not isinstance(src, dict) or src.get("type") != "url":
            raise _bad("task_card sources are url elements")
        _string(src.get("url"), "source url", 3000)


def _plan(b: dict[str, Any]) -> None:
    _only(b, PLAN_FIELDS)
    _string(b.get("title"), "plan title", PLAN_TEXT)
    tasks = b.get("tasks", [])
    if not isinstance(tasks, list) or len(tasks) > PLAN_CARDS:
        raise _bad(f"plan tasks must be a list of at most {PLAN_CARDS} task cards")
    task_ids: set[str] = set()
    for task in tasks:
        if not isinstance(task, dict) or task.get("type") != "task_card":
            raise _bad("plan tasks are task_card blocks")
        _task_card(task)
        if task["task_id"] in task_ids:
            raise _bad(f"task_id {task['task_id']!r} is not unique in the plan")
        task_ids.add(task["task_id"])


def _block(b: dict[str, Any]) -> None:
    kind = b.get("type")
    if kind == "header":
        text_object(b.get("text"), 150, ("plain_text",))
    elif kind == "section":
        _section(b)
    elif kind == "context":
        for el in _elements(b, 10):
            _context_element(el)
    elif kind == "actions":
        seen: set[str] = set()
        for el in _elements(b, 25):
            _interactive(el, seen)
    elif kind == "image":
        _image_source(b, "image block", 2000)
        if b.get("title") is not None:
            text_object(b["title"], 2000, ("plain_text",))
    elif kind == "rich_text":
        rich_text(b)
    elif kind == "markdown":
        _string(b.get("text"), "markdown text", 12_000)
    elif kind == "plan":
        _plan(b)
    elif kind == "task_card":
        _task_card(b)
    elif kind != "divider":
        raise _bad(f"unknown block type {kind!r}")


def validate_blocks(blocks: Any, *, top_level: bool = True) -> None:
    """Raise :class:`InvalidBlocks` for a list of blocks Slack would reject;
    ``top_level=False`` for the blocks of an attachment."""
    if not isinstance(blocks, list):
        raise InvalidBlocks("invalid_blocks_format", "blocks must be an array")
    if len(blocks) > MAX_BLOCKS:
        raise _bad(f"no more than {MAX_BLOCKS} items allowed")
    ids: set[str] = set()
    for b in blocks:
        if not isinstance(b, dict):
            raise _bad("block must be an object")
        if not top_level and b.get("type") in ("plan", "task_card"):
            raise _bad(f"{b['type']} blocks go at the top level of a message, not in an attachment")
        nested = b.get("tasks") if b.get("type") == "plan" and isinstance(b.get("tasks"), list) else []
        for item in [b, *nested]:
            bid = item.get("block_id") if isinstance(item, dict) else None
            if bid is not None:
                _string(bid, "block_id", 255)
                if bid in ids:
                    raise _bad(f"block_id {bid!r} is not unique in the message")
                ids.add(bid)
        _block(b)
    kinds = {b.get("type") for b in blocks}
    if {"plan", "task_card"} <= kinds:
        raise _bad("plan and task_card cannot both be top-level blocks of one message")
    if len(json.dumps(blocks, ensure_ascii=False)) > TOTAL_BLOCKS_JSON:
        raise InvalidBlocks("msg_blocks_too_long", "blocks are too long")


def validate_attachments(attachments: Any) -> None:
    if not isinstance(attachments, list) or len(attachments) > MAX_ATTACHMENTS:
        raise InvalidBlocks("invalid_attachments", f"attachments: a list of at most {MAX_ATTACHMENTS}")
    for a in attachments:
        if not isinstance(a, dict):
            raise InvalidBlocks("invalid_attachments", "attachment must be an object")
        if a.get("color") is not None and not isinstance(a["color"], str):
            raise InvalidBlocks("invalid_attachments", "color must be a string")
        if "blocks" in a:
            validate_blocks(a["blocks"], top_level=False)


def validate_metadata(metadata: Any) -> None:
    """Message metadata: an ``event_type`` string and an ``event_payload`` object."""
    if not isinstance(metadata, dict):
        raise InvalidBlocks("invalid_metadata_format", "metadata must be an object")
    event_type, payload = metadata.get("event_type"), metadata.get("event_payload")
    if not isinstance(event_type, str) or not event_type:
        raise InvalidBlocks("invalid_metadata_format", "metadata needs an event_type string")
    if not isinstance(payload, dict):
        raise InvalidBlocks("invalid_metadata_format", "metadata needs an event_payload object")


def message_error(args: dict[str, Any], text_limit: int) -> str | None:
    """The error Slack answers for a post or edit with these arguments, if any."""
    if "__invalid__" in args or "__invalid__" in (args.get("blocks"), args.get("attachments"), args.get("metadata")):
        return "invalid_arguments"
    if args.get("link_names") not in (None, False, "0", "false") or args.get("parse") == "full":
        return "invalid_arguments"  # never acceptable for agent text; flags a client bug
    text, blocks, attachments = args.get("text"), args.get("blocks"), args.get("attachments")
    if not text and not blocks and not attachments:
        return "no_text"
    if text is not None and len(str(text)) > text_limit:
        return "msg_too_long"
    try:
        if blocks is not None:
            validate_blocks(blocks)
        if attachments is not None:
            validate_attachments(attachments)
        if args.get("metadata") is not None:
            validate_metadata(args["metadata"])
    except InvalidBlocks as exc:
        return exc.error
    return None
