"""What Grafana's annotations API accepts, as the fake Grafana checks it.

From Grafana's own code (``pkg/api/annotations.go``, ``pkg/web/binding.go``,
``pkg/api/dtos/annotations.go`` and the annotation store's
``validateTimeRange``/``validateTagsLength``) and the HTTP API docs
(``docs/sources/developers/http_api/annotations.md``):

* **Binding.** The body is decoded with Go's ``encoding/json`` into the
  command struct, whatever the Content-Type: an empty body or ``null``
  leaves every field zero; anything but a JSON object, or a field of the
  wrong type, is ``400 {"message": "bad request data"}``. ``time``,
  ``timeEnd``, ``panelId``, ``dashboardId`` and ``id`` are ``int64``: a JSON
  integer (``1.0``, ``"1"``, ``true`` or out-of-range numbers fail);
  ``text`` and ``dashboardUID`` are strings; ``tags`` an array of strings;
  ``data`` any JSON; ``null`` is the zero value; unknown fields are ignored.
* **Create.** ``text`` is required: empty is ``400 "Failed to save
  annotation"``. A zero ``time`` becomes now; a zero ``timeEnd`` becomes
  ``time``; an end before the start is swapped. Tags are limited by
  ``[annotations] tags_length`` (500 by default) measured as the JSON array
  Grafana stores, in bytes: over it is ``400 "Tags length exceeds the maximum
  allowed."`` (``annotations.tag-limit-exceeded``). An unknown
  ``dashboardUID`` leaves an organization annotation.
* **Patch.** Only non-zero fields change (``tags`` when present, even
  empty); the result is checked like a create.
* **Times are epoch milliseconds** (the docs say so). Grafana stores any
  int64 and would draw seconds or nanoseconds in 1970 or far in the future;
  the fake refuses a time outside 2000..2100 in milliseconds, so a unit
  mistake fails a test instead of passing silently.
"""

from __future__ import annotations

import json
from typing import Any

INT64 = (-(2**63), 2**63 - 1)
INT_FIELDS = ("time", "timeEnd", "panelId", "dashboardId", "id")
STR_FIELDS = ("text", "dashboardUID")
TAGS_LENGTH = 500  # Grafana's [annotations] tags_length default
# 2000-01-01 and 2100-01-01 in epoch milliseconds.
PLAUSIBLE_MS = (946_684_800_000, 4_102_444_800_000)

BAD_REQUEST = {"message": "bad request data"}
SAVE_FAILED = {"message": "Failed to save annotation"}
TAGS_TOO_LONG = {
    "message": "Tags length exceeds the maximum allowed.",
    "messageId": "annotations.tag-limit-exceeded",
    "statusCode": 400,
}


class Rejected(Exception):
    """The request fails with this status and JSON body."""

    def __init__(self, status: int, body: dict[str, Any], why: str) -> None:
        super().__init__(why)
        self.status = status
        self.body = body


def bind(raw: bytes) -> dict[str, Any]:
    """The command Grafana decodes from ``raw``: known fields, zero values filled in."""
    if not raw.strip():
        value: Any = None
    else:
        try:
            value = json.loads(raw)
        except ValueError as exc:
            raise Rejected(400, BAD_REQUEST, f"not JSON: {exc}") from None
    if value is None:
        value = {}
    if not isinstance(value, dict):
        raise Rejected(400, BAD_REQUEST, f"the body is a JSON {type(value).__name__}, not an object")
    cmd: dict[str, Any] = {"time": 0, "timeEnd": 0, "panelId": 0, "dashboardId": 0, "id": 0}
    cmd.update(text="", dashboardUID="", tags=None, data=None)
    for key in INT_FIELDS:
        v = value.get(key)
        if v is None:
            continue
        if not isinstance(v, int) or isinstance(v, bool) or not INT64[0] <= v <= INT64[1]:
            raise Rejected(400, BAD_REQUEST, f"{key} must be an int64, got {v!r:.60}")
        cmd[key] = v
    for key in STR_FIELDS:
        v = value.get(key)
        if v is None:
            continue
        if not isinstance(v, str):
            raise Rejected(400, BAD_REQUEST, f"{key} must be a string, got {v!r:.60}")
        cmd[key] = v
    tags = value.get("tags")
    if tags is not None:
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            raise Rejected(400, BAD_REQUEST, f"tags must be an array of strings, got {tags!r:.60}")
        cmd["tags"] = list(tags)
    cmd["data"] = value.get("data")
    return cmd


def check_ms(cmd: dict[str, Any]) -> None:
    for key in ("time", "timeEnd"):
        v = cmd[key]
        if v and not PLAUSIBLE_MS[0] <= v <= PLAUSIBLE_MS[1]:
            raise Rejected(
                400,
                {"message": f"fake grafana: {key}={v} is not epoch milliseconds between 2000 and 2100"},
                f"{key} is not epoch milliseconds",
            )


def time_range(start: int, end: int, now_ms: int) -> tuple[int, int]:
    """Grafana's ``validateTimeRange`` (after a zero start became now on create)."""
    if start == 0:
        start = now_ms
    if end == 0:
        end = start
    if end < start:
        start, end = end, start
    return start, end


def check_tags(tags: list[str], limit: int = TAGS_LENGTH) -> None:
    """Grafana's ``validateTagsLength``: the stored JSON array's size, in bytes."""
    estimated = 2 + sum(len(t.encode("utf-8")) + 2 for t in tags) + max(0, len(tags) - 1)
    if estimated > limit:
        raise Rejected(400, TAGS_TOO_LONG, f"tags length ({estimated}) exceeds the maximum allowed ({limit})")
