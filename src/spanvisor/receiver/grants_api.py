"""Standing approvals over the control API (docs/reference/interventions.md#standing-grants).

* ``GET /v1/control/grants``: every grant kept, live first, with its state.
* ``POST /v1/control/grants``: ``{"tool", "agent"?, "for_s", "task_id"?,
  "run_id"?, "comment"?}`` makes one. Only a person known by their own token
  (``SPANVISOR_DECIDERS``) may: a grant decides on its own later, so who
  made it must be proven, never the shared token's anonymous operator (403).
* ``DELETE /v1/control/grants/{grant_id}``: revokes one at once (anyone who
  may decide may stop a grant: the safe direction).

The caller's person is read by the control API's guard (its decide token).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import asdict
from typing import Any

from aiohttp import web

from spanvisor.control import grants
from spanvisor.control.deciders import ANONYMOUS_NAME, Person
from spanvisor.receiver.json_body import BadJson, read_json

MAX_BODY = 4 * 1024
_LIMIT = 128
Handler = Callable[[web.Request], Awaitable[web.Response]]


def _reply(status: int, doc: Mapping[str, Any]) -> web.Response:
    return web.Response(status=status, text=json.dumps(doc, ensure_ascii=False), content_type="application/json")


def _text(body: Mapping[str, Any], key: str, default: str | None = None) -> str | None:
    value = body.get(key, default)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip() or len(value) > _LIMIT or not value.isprintable():
        raise ValueError(f"{key} must be a short printable string")
    return value


def grant_json(g: grants.Grant, now_ns: int) -> dict[str, Any]:
    doc = asdict(g)
    doc["state"] = g.state(now_ns)
    doc["expires_in_s"] = max(0.0, (g.expires_ns - now_ns) / 1e9)
    return doc


def new_grant(body: Any, by: str, now_ns: int) -> grants.Grant:
    """The grant a request body asks for (ValueError: why not)."""
    if not isinstance(body, Mapping):
        raise ValueError("the body must be a JSON object")
    tool = _text(body, "tool")
    if tool is None:
        raise ValueError("tool is required (a glob over the action's tool, e.g. Bash or db.*)")
    for_s = body.get("for_s")
    if isinstance(for_s, bool) or not isinstance(for_s, int | float) or not 0 < for_s <= grants.MAX_DURATION_S:
        raise ValueError(f"for_s must be a number of seconds in (0, {grants.MAX_DURATION_S}]")
    task_id, run_id = _text(body, "task_id"), _text(body, "run_id")
    if (task_id is None) != (run_id is None):
        raise ValueError("task_id and run_id go together (a grant for one run)")
    comment = body.get("comment")
    if comment is not None and not isinstance(comment, str):
        raise ValueError("comment must be a string")
    return grants.Grant(
        grant_id=f"g-{uuid.uuid4().hex[:10]}",
        by=by,
        tool=tool,
        created_ns=now_ns,
        expires_ns=now_ns + int(for_s * 1e9),
        agent=_text(body, "agent", "*") or "*",
        task_id=task_id,
        run_id=run_id,
        comment=comment[:500] if comment else None,
    )


def handlers(control: Callable[[], Any], person: Callable[[web.Request], Person | None]) -> tuple[Handler, ...]:
    """(list, make, revoke) for the routes above."""

    async def listing(request: web.Request) -> web.Response:
        now = time.time_ns()
        got = await control().list_grants()
        got.sort(key=lambda g: (not g.live(now), -g.created_ns))
        return _reply(200, {"grants": [grant_json(g, now) for g in got]})

    async def make(request: web.Request) -> web.Response:
        who = person(request)
        if who is None:
            why = (
                "a standing grant needs a person's own token (SPANVISOR_DECIDERS): the shared token is the "
                f"{ANONYMOUS_NAME}, and a grant decides later on its maker's word"
            )
            return _reply(403, {"error": why})
        got = await read_json(request, MAX_BODY)
        if isinstance(got, BadJson):  # too large, not JSON, or nested too deep
            return _reply(400, {"error": got.message})
        try:
            g = new_grant(got.value, who.name, time.time_ns())
        except ValueError as exc:
            return _reply(400, {"error": str(exc)})
        if not await control().add_grant(g):
            why = f"{grants.MAX_GRANTS} grants are live already: revoke some (spanvisor grants revoke ID)"
            return _reply(409, {"error": why})
        return _reply(201, grant_json(g, time.time_ns()))

    async def revoke(request: web.Request) -> web.Response:
        gid = request.match_info["grant_id"]
        who = person(request)
        got = await control().revoke_grant(gid, who.name if who is not None else ANONYMOUS_NAME)
        if got is None:
            return _reply(404, {"error": f"no grant {gid}"})
        return _reply(200, grant_json(got, time.time_ns()))

    return listing, make, revoke


__all__ = ["grant_json", "handlers", "new_grant"]
