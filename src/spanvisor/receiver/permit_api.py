"""``POST /v1/control/tasks/{task_id}/approvals/{approval_id}/permit``: the
check an agent in any language makes right before it runs an approved
action. Body ``{"action": {"tool", "arguments"} | null, "run_id"?, "key"?}``
(``key``: the secret whose SHA-256 the request carried, when it did);
answer ``{"permitted": bool, "reason", "code", "digest"}`` (200 either
way: a refusal is an answer, not an error). Permitted once: the approval is
consumed in the run's shared record (docs/reference/interventions.md). When the
deciders file names agents' own tokens, only the asking agent's token
consumes (403 for the shared OTLP token; ``wrong_agent`` for another's)."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiohttp import web

from spanvisor.canonical import MAX_ACTION_BYTES
from spanvisor.receiver.json_body import BadJson, read_json

# The action an agent presents is as large as the one it asked about (up to
# MAX_ACTION_BYTES as canonical JSON; escapes may make its JSON longer).
MAX_BODY = 2 * MAX_ACTION_BYTES + 16 * 1024
_ID_LIMIT = 256


def _reply(status: int, doc: Mapping[str, Any]) -> web.Response:
    return web.Response(status=status, text=json.dumps(doc, ensure_ascii=False), content_type="application/json")


def _ident(value: Any, limit: int = _ID_LIMIT) -> str | None:
    if not isinstance(value, str) or not value.strip() or len(value) > limit:
        return None
    return None if any(ord(c) < 32 or ord(c) == 127 for c in value) else value


def handler(
    control: Callable[[], Any], agent_of: Callable[[web.Request], str | None] = lambda r: None, agents: bool = False
) -> Callable[[web.Request], Awaitable[web.Response]]:
    """``agents``: the deciders file names agents' own tokens, so only those
    consume (the agent ``agent_of`` the request's token names, and only its
    own approvals); the shared OTLP token then only reads."""

    async def permit(request: web.Request) -> web.Response:
        agent = agent_of(request)
        if agents and agent is None:
            why = (
                "the shared OTLP token only reads: consuming an approval takes the asking agent's own token "
                "([agents.ID] in SPANVISOR_DECIDERS)"
            )
            return _reply(403, {"error": why})
        task_id = _ident(request.match_info["task_id"])
        approval_id = _ident(request.match_info["approval_id"])
        if task_id is None or approval_id is None:
            return _reply(400, {"error": "task id and approval id must be short printable strings"})
        got = await read_json(request, MAX_BODY, empty=b"{}")
        if isinstance(got, BadJson):  # too large, not JSON, or nested too deep
            return _reply(400, {"error": got.message})
        body = got.value
        if not isinstance(body, Mapping):
            return _reply(400, {"error": "the body must be a JSON object"})
        action = body.get("action")
        if action is not None and not isinstance(action, Mapping):
            return _reply(400, {"error": "action must be a JSON object {tool, arguments} or null"})
        run_id = body.get("run_id") or None
        if run_id is not None and _ident(run_id, 64) is None:
            return _reply(400, {"error": "run_id must be a short printable string"})
        key = body.get("key")
        if key is not None and _ident(key) is None:
            return _reply(400, {"error": "key must be a short printable string (the request's permit secret)"})
        check = getattr(control(), "permit", None)
        if check is None:
            return _reply(503, {"error": "this process cannot check approvals"})
        if agent is not None:
            got = await check(task_id, approval_id, action, run_id, f"agent:{agent}", agent=agent, key=key)
        else:
            got = await check(task_id, approval_id, action, run_id, "api", key=key)
        return _reply(200, {"permitted": got.permitted, "reason": got.reason, "code": got.code, "digest": got.digest})

    return permit


__all__ = ["handler"]
