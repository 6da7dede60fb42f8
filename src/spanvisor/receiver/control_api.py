"""The control API: people's decisions on tasks, for agents in any language
and for tools (``spanvisor approve``), on the OTLP/HTTP port of ``spanvisor
serve`` behind the same bearer token as ``/v1/traces``. JSON in and out.

* ``GET /v1/control/tasks/{task_id}?after=N&wait=S``: the task's decisions
  past the first N, waiting up to S seconds (at most 60) for one; its status,
  open approval requests and budget when this process tracks it.
* ``POST /v1/control/tasks/{task_id}/decisions``: record a decision
  (``{"action", "approval_id"?, "actor", "comment"?, "intervention_id"?}``);
  200 when applied (or the same one again), 409 when refused.
* ``GET /v1/control/budgets``: the shared spending totals, when the pipeline
  keeps them.

docs/interventions.md has examples of each.
"""

from __future__ import annotations

import inspect
import json
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiohttp import web

from spanvisor.control.client import ACTIONS, MAX_WAIT_S
from spanvisor.control.log import decision_to_dict
from spanvisor.events import ApprovalRequest, Decision, TaskView
from spanvisor.receiver.ingest import bearer_matches

PREFIX = "/v1/control"
MAX_ID = 256
MAX_ACTOR = 128
MAX_COMMENT = 500
MAX_BODY = 16 * 1024
SOURCES = ("api", "cli")
Handler = Callable[[web.Request], Awaitable[web.Response]]


class _Bad(Exception):
    """Bad input: a 400 with this message."""


def _reply(status: int, doc: Mapping[str, Any], **headers: str) -> web.Response:
    return web.Response(
        status=status,
        text=json.dumps(doc, ensure_ascii=False, default=str),
        content_type="application/json",
        headers=headers or None,
    )


def _error(status: int, message: str, **headers: str) -> web.Response:
    return _reply(status, {"error": message}, **headers)


def _ident(value: Any, what: str, limit: int = MAX_ID) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _Bad(f"{what} must be a non-empty string")
    if len(value) > limit:
        raise _Bad(f"{what} is longer than {limit} characters")
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise _Bad(f"{what} holds control characters")
    return value


def _number(raw: str | None, what: str, default: float, lo: float, hi: float | None) -> float:
    if raw is None or raw == "":
        return default
    try:
        n = float(raw)
    except ValueError:
        raise _Bad(f"{what} must be a number, not {raw[:40]!r}") from None
    if not (n >= lo):  # also NaN
        raise _Bad(f"{what} must be at least {lo:g}")
    return n if hi is None else min(n, hi)


def approval_json(r: ApprovalRequest) -> dict[str, Any]:
    return {
        "approval_id": r.approval_id,
        "question": r.question,
        "options": list(r.options),
        "timeout_s": r.timeout_s,
        "requested_ns": r.requested_ns,
    }


def budget_json(v: TaskView) -> dict[str, Any]:
    return {
        "cost_usd": v.cost_usd,
        "budget_usd": v.budget_usd,
        "tokens": v.input_tokens + v.output_tokens,
        "budget_tokens": v.budget_tokens,
        "unpriced_calls": v.unpriced_calls,
    }


def decision_from_body(task_id: str, body: Any) -> Decision:
    if not isinstance(body, Mapping):
        raise _Bad("the body must be a JSON object")
    action = body.get("action")
    if action not in ACTIONS:
        raise _Bad(f"action must be one of {', '.join(ACTIONS)}")
    approval_id = body.get("approval_id")
    if action in ("approve", "reject"):
        approval_id = _ident(approval_id, "approval_id")
    elif approval_id is not None:
        raise _Bad(f"approval_id is only for approve and reject, not {action}")
    actor = _ident(body.get("actor"), "actor", MAX_ACTOR)
    comment = body.get("comment")
    if comment is not None and not isinstance(comment, str):
        raise _Bad("comment must be a string")
    comment = comment[:MAX_COMMENT] if comment else None
    iid = body.get("intervention_id")
    iid = _ident(iid, "intervention_id", MAX_ACTOR) if iid is not None else uuid.uuid4().hex
    source = body.get("source", "api")
    if source not in SOURCES:
        raise _Bad(f"source must be one of {', '.join(SOURCES)}")
    return Decision(
        intervention_id=iid,
        task_id=task_id,
        action=action,
        actor_id=actor,
        time_ns=time.time_ns(),
        approval_id=approval_id,
        actor_name=actor,
        comment=comment,
        source=source,
    )


def add_routes(app: web.Application, pipeline: Any, token: str | None) -> None:
    """Add the control routes to ``app`` (the OTLP/HTTP app, or the demo's).
    Reads take the OTLP ``token``; posting a decision takes the decide token
    when one is configured (``SPANVISOR_DECIDE_TOKEN``): every agent holds the
    OTLP token, and must not be able to approve its own request."""
    expected = token.encode() if token else None
    config = getattr(pipeline, "config", None)
    decide = config.get("decide_token") if config is not None else None
    deciders = decide.encode() if isinstance(decide, str) and decide else expected

    def control() -> Any:
        c = getattr(pipeline, "control", None)
        if c is None:
            raise web.HTTPServiceUnavailable(
                text=json.dumps({"error": "this process records no decisions"}), content_type="application/json"
            )
        return c

    def guarded(handler: Handler, needs: bytes | None = expected) -> Handler:
        """The bearer token first, then the handler; bad input is a 400."""

        async def run(request: web.Request) -> web.Response:
            if needs is not None and not bearer_matches(request.headers.get("Authorization"), needs):
                return _error(401, "missing or wrong bearer token", **{"WWW-Authenticate": "Bearer"})
            try:
                return await handler(request)
            except _Bad as exc:
                return _error(400, str(exc))

        return run

    async def get_task(request: web.Request) -> web.Response:
        task_id = _ident(request.match_info["task_id"], "task id")
        after = _number(request.query.get("after"), "after", 0, 0, None)
        if after != int(after):
            raise _Bad("after must be a whole number")
        wait = _number(request.query.get("wait"), "wait", 0.0, 0.0, MAX_WAIT_S)
        c = control()
        new = await c.decisions(task_id, int(after), wait)
        every = await c.decisions(task_id, 0, 0.0) if int(after) > 0 else new
        view: TaskView | None = await c.task(task_id)
        doc: dict[str, Any] = {
            "task_id": task_id,
            "status": view.status if view is not None else "unknown",
            "approvals": [approval_json(r) for r in view.approvals] if view is not None else [],
            "decisions": [decision_to_dict(d) for d in new],
            "next": int(after) + len(new),
            "cancel_requested": any(d.action == "cancel" for d in every)
            or bool(view is not None and view.cancel_requested),
        }
        if view is not None:
            doc["budget"] = budget_json(view)
        return _reply(200, doc)

    async def post_decision(request: web.Request) -> web.Response:
        task_id = _ident(request.match_info["task_id"], "task id")
        if request.content_length is not None and request.content_length > MAX_BODY:
            raise _Bad(f"the body is larger than {MAX_BODY} bytes")
        # read(n) returns what has arrived so far, up to n: read to the end.
        raw = b""
        while len(raw) <= MAX_BODY:
            chunk = await request.content.read(MAX_BODY + 1 - len(raw))
            if not chunk:
                break
            raw += chunk
        if len(raw) > MAX_BODY:
            raise _Bad(f"the body is larger than {MAX_BODY} bytes")
        try:
            body = json.loads(raw or b"null")
        except ValueError as exc:
            raise _Bad(f"the body is not JSON: {exc}") from None
        decision = decision_from_body(task_id, body)
        verdict = await control().decide(decision)
        doc = {"outcome": verdict.outcome, "reason": verdict.reason, "intervention_id": decision.intervention_id}
        return _reply(200 if verdict.ok else 409, doc)

    async def budgets(request: web.Request) -> web.Response:
        report = getattr(getattr(pipeline, "spend", None), "report", None)
        if report is None:
            return _error(404, "this spanvisor keeps no shared spending totals (no spend report)")
        result = report()
        if inspect.isawaitable(result):
            result = await result
        return _reply(200, result if isinstance(result, Mapping) else {"report": result})

    async def unknown(request: web.Request) -> web.Response:
        return _error(404, f"no control route {request.method} {request.path}")

    app.router.add_get(PREFIX + "/tasks/{task_id}", guarded(get_task))
    app.router.add_post(PREFIX + "/tasks/{task_id}/decisions", guarded(post_decision, deciders))
    app.router.add_get(PREFIX + "/budgets", guarded(budgets))
    app.router.add_route("*", PREFIX + "/{tail:.*}", guarded(unknown))


def make_app(pipeline: Any, token: str | None = None) -> web.Application:
    """An app with the control routes only (the demo serves this)."""
    app = web.Application(client_max_size=MAX_BODY)
    add_routes(app, pipeline, token)
    return app


__all__ = ["PREFIX", "add_routes", "decision_from_body", "make_app"]
