"""The control API: people's decisions on tasks, for agents in any language
and for tools (``spanvisor approve``), on the OTLP/HTTP port of ``spanvisor
serve`` behind the same bearer token as ``/v1/traces``. JSON in and out.

* ``GET /v1/control/tasks/{task_id}?after=N&wait=S&run=R``: the run's
  decisions past the first N (the task id's latest run without ``run``),
  waiting up to S seconds (at most 60) for one; its state, open approval
  requests and cancel (who, why) from the shared record, its status,
  whether it is stalled and its budget when this process tracks it. A task id may hold ``/`` (percent-encoded).
* ``POST /v1/control/tasks/{task_id}/decisions``: apply a decision
  (``{"action", "approval_id"?, "digest"?, "run_id"?, "actor", "comment"?,
  "intervention_id"?, "edited"?, "break_glass"?}``) to the open request or
  run it names; 200 when applied (or the same one again), 404 for an
  unknown task or request, 409 when refused otherwise, with the reason.

Who calls is the bearer token's (:mod:`spanvisor.receiver.proof`): a
person's own token, their identity provider's signed token (401 or 403
with the reason when it does not verify), an agent's own token, or a
shared one.
* ``GET /v1/control/approvals?agent=A``: every open approval request.
* ``GET /v1/control/budgets``: the shared spending totals, when the pipeline
  keeps them.

While the state store is unavailable every route answers 503 with
``Retry-After`` and a JSON body naming the cause; anything else that fails
is a JSON 500 (:mod:`spanvisor.receiver.control_errors`). A body nested
deeper than :data:`spanvisor.receiver.json_body.MAX_DEPTH` is a 400, and a
query value that is not a finite number where one is asked for too.

docs/reference/interventions.md has examples of each.
"""

from __future__ import annotations

import inspect
import json
import math
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiohttp import web

from spanvisor.canonical import MAX_ACTION_BYTES, canonical_json, check_action
from spanvisor.control import runs
from spanvisor.control.bearer import bearer_matches, bearer_token
from spanvisor.control.client import ACTIONS, MAX_WAIT_S
from spanvisor.control.deciders import Person
from spanvisor.control.hub import NOT_FOUND
from spanvisor.control.log import decision_to_dict
from spanvisor.control.oidc import TokenRefused
from spanvisor.control.people import from_config as people_of
from spanvisor.events import Decision, TaskView
from spanvisor.receiver import browser_guard, grants_api, hook_http, permit_api, policy_api
from spanvisor.receiver.browser_guard import HostPolicy
from spanvisor.receiver.control_errors import ControlFailures
from spanvisor.receiver.control_views import approval_json, budget_json, open_json, votes_json
from spanvisor.receiver.json_body import BadJson, read_json
from spanvisor.receiver.proof import as_decided, break_glass_refusal, prove, refused
from spanvisor.stream import sse

PREFIX = "/v1/control"
# The request's key for the person its token names (SPANVISOR_DECIDERS); absent: none.
PERSON = web.RequestKey("spanvisor.person", Person)
# The agent its own token names ([agents.ID] in SPANVISOR_DECIDERS); absent: none.
AGENT = web.RequestKey("spanvisor.agent", str)
MAX_ID = 256
MAX_ACTOR = 128
MAX_COMMENT = 500
# A decision is small, but for the arguments an approver sets instead
# (``edited``: an action, up to MAX_ACTION_BYTES of canonical JSON; escapes
# may make its JSON longer).
MAX_BODY = 2 * MAX_ACTION_BYTES + 16 * 1024
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
    if not math.isfinite(n):  # inf would pass the bounds and fail later (int(inf))
        raise _Bad(f"{what} must be a finite number")
    if not (n >= lo):
        raise _Bad(f"{what} must be at least {lo:g}")
    return n if hi is None else min(n, hi)


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
    run_id = body.get("run_id") or ""
    if run_id:
        run_id = _ident(run_id, "run_id", 64)
    digest = body.get("digest")
    if digest is not None:
        if action not in ("approve", "reject"):
            raise _Bad(f"digest is only for approve and reject, not {action}")
        digest = _ident(digest, "digest", 64)
    glass = body.get("break_glass", False)
    if not isinstance(glass, bool) or (glass and action != "approve"):
        raise _Bad("break_glass is true or false, and only for approve")
    edited = body.get("edited")
    if edited is not None:
        if action != "approve":
            raise _Bad(f"edited is only for approve, not {action}")
        try:
            edited = canonical_json(check_action(edited))
        except (ValueError, RecursionError) as exc:
            raise _Bad(f"edited must be an action {{tool, arguments}}: {exc}") from None
    return Decision(
        edited=edited,
        intervention_id=iid,
        task_id=task_id,
        action=action,
        actor_id=actor,
        time_ns=time.time_ns(),
        approval_id=approval_id,
        actor_name=actor,
        comment=comment,
        source=source,
        run_id=run_id,
        digest=digest,
        break_glass=glass,
    )


def add_routes(
    app: web.Application, pipeline: Any, token: str | None, own_url: Callable[[], str] | None = None
) -> None:
    """Add the control routes to ``app`` (the OTLP/HTTP app, or the demo's).
    Reads take the OTLP ``token``; posting a decision takes the decide token
    when one is configured (``SPANVISOR_DECIDE_TOKEN``): every agent holds the
    OTLP token, and must not be able to approve its own request. ``own_url``:
    the URL of serve's own port, for the hook route (:mod:`.hook_http`)."""
    expected = token.encode() if token else None
    config = getattr(pipeline, "config", None)
    decide = config.get("decide_token") if config is not None else None
    deciders = decide.encode() if isinstance(decide, str) and decide else expected
    # People known by their own tokens or their identity provider's: their decisions are verified.
    people = people_of(config)
    glass_group = config.get("break_glass_group") if config is not None else None
    failures = ControlFailures()

    def control() -> Any:
        c = getattr(pipeline, "control", None)
        if c is None:
            raise web.HTTPServiceUnavailable(
                text=json.dumps({"error": "this process records no decisions"}), content_type="application/json"
            )
        return c

    def guarded(handler: Handler, needs: bytes | None = expected, agents: bool = False) -> Handler:
        """The bearer token first, then the handler; bad input is a 400.
        ``agents``: an agent's own token is let in too (reads, permits)."""

        async def run(request: web.Request) -> web.Response:
            header = request.headers.get("Authorization")
            token = bearer_token(header)
            shared = any(t is not None and bearer_matches(header, t) for t in (needs, expected))
            try:
                person = await prove(people, token, shared)
            except TokenRefused as exc:
                return refused(exc)
            # An agent's own token ([agents.ID]) reads, and permits its own approvals.
            agent = people.agent(token) if agents else None
            if person is None and agent is None and needs is not None and not bearer_matches(header, needs):
                return _error(401, "missing or wrong bearer token", **{"WWW-Authenticate": "Bearer"})
            if person is not None:  # looked up once: the handler reads it here
                request[PERSON] = person
            if agent is not None:
                request[AGENT] = agent
            try:
                return await handler(request)
            except _Bad as exc:
                return _error(400, str(exc))
            except web.HTTPException:
                raise
            except Exception as exc:
                return failed(request, exc)

        return run

    def failed(request: web.Request, exc: Exception) -> web.Response:
        status, doc, headers = failures.answer(request.method, request.path, exc)
        return _reply(status, doc, **headers)

    async def get_task(request: web.Request) -> web.Response:
        task_id = _ident(request.match_info["task_id"], "task id")
        after = _number(request.query.get("after"), "after", 0, 0, None)
        if after != int(after):
            raise _Bad("after must be a whole number")
        wait = _number(request.query.get("wait"), "wait", 0.0, 0.0, MAX_WAIT_S)
        run_q = request.query.get("run") or None
        run_id = _ident(run_q, "run", 64) if run_q else None
        c = control()
        new = await c.decisions(task_id, int(after), wait, run_id)
        rec = await c.run(task_id, run_id)
        every = runs.decisions_of(rec)
        rid = rec.get("run_id") if rec is not None else None
        view: TaskView | None = await c.task(task_id, rid if isinstance(rid, str) else None)
        now = time.time_ns()
        state = runs.state_of(rec)
        doc: dict[str, Any] = {
            "task_id": task_id,
            "run_id": rid if isinstance(rid, str) else None,
            "runs": await c.runs(task_id),
            "state": state or "unknown",
            "status": view.status if view is not None else (state or "unknown"),
            # No sign of life for its agent's stall time (TaskStalled) until it
            # shows one (TaskResumed); a task lost while stalled keeps it.
            "stalled": bool(view is not None and view.stalled),
            "approvals": [
                {**approval_json(r), **votes_json(runs.votes_of(runs.requests_of(rec)[r.approval_id]), r)}
                for r in runs.open_requests(rec, now)
            ],
            "decisions": [decision_to_dict(d) for d in new],
            "next": int(after) + len(new),
            "cancel_requested": any(d.action == "cancel" for d in every)
            or bool(view is not None and view.cancel_requested),
            "cancel": runs.cancel_of(every),  # who asked it to stop, and why
        }
        if view is not None:
            doc["budget"] = budget_json(view)
        return _reply(200, doc)

    async def list_approvals(request: web.Request) -> web.Response:
        agent_q = request.query.get("agent") or None
        agent = _ident(agent_q, "agent") if agent_q else None
        now = time.time_ns()
        items = [open_json(x, now) for x in await control().open_requests()]
        shown = [x for x in items if x is not None and (agent is None or x["agent_id"] == agent)]
        for x in shown:  # what each request that takes several people, or some only, still waits for
            if x["approvers"] > 1 or x["approvers_from"]:
                req = runs.requests_of(await control().run(x["task_id"], x["run_id"])).get(x["approval_id"])
                r = runs.request_from_dict(req)
                x.update(votes_json(runs.votes_of(req or {}), r) if r is not None else {})
        shown.sort(key=lambda x: (x["requested_ns"], x["task_id"], x["approval_id"]))
        return _reply(200, {"approvals": shown})

    async def post_decision(request: web.Request) -> web.Response:
        task_id = _ident(request.match_info["task_id"], "task id")
        body = await read_json(request, MAX_BODY)
        if isinstance(body, BadJson):
            raise _Bad(body.message)
        # Who decided is the token's, never what the body says.
        decision = as_decided(decision_from_body(task_id, body.value), request.get(PERSON), people)
        glass = break_glass_refusal(decision, glass_group)
        if glass is not None:  # refused, and audited as a refused decision
            verdict = await control().decide(decision, denied=glass[1], code=glass[0])
        else:
            verdict = await control().decide(decision)
        doc: dict[str, Any] = {
            "outcome": verdict.outcome,
            "reason": verdict.reason,
            "code": verdict.code,
            "intervention_id": decision.intervention_id,
            "run_id": verdict.run_id or None,
            "decided_by": decision.actor_name or decision.actor_id,
            "verified": decision.verified,
            "groups": list(decision.groups),
            "proof": decision.proof,
            "break_glass": decision.break_glass,
            "votes": verdict.votes,
            "votes_needed": verdict.votes_needed,
        }
        if verdict.request is not None:
            doc["question"] = verdict.request.question
            doc["digest"] = verdict.request.digest
        status = 200 if verdict.ok else 404 if verdict.code in NOT_FOUND else 409
        return _reply(status, doc)

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

    app.router.add_get(PREFIX + "/tasks/{task_id}", guarded(get_task, agents=True))
    app.router.add_post(PREFIX + "/tasks/{task_id}/decisions", guarded(post_decision, deciders))
    app.router.add_get(PREFIX + "/budgets", guarded(budgets, agents=True))
    app.router.add_get(PREFIX + "/approvals", guarded(list_approvals, agents=True))
    # Checking an approved action where it runs (the agent's OTLP token).
    app.router.add_post(
        PREFIX + "/tasks/{task_id}/approvals/{approval_id}/permit",
        guarded(permit_api.handler(control, lambda r: r.get(AGENT), bool(people.agents)), agents=True),
    )
    listing, make, revoke = grants_api.handlers(control, lambda r: r.get(PERSON))
    app.router.add_get(PREFIX + "/grants", guarded(listing))
    app.router.add_post(PREFIX + "/grants", guarded(make, deciders))
    app.router.add_delete(PREFIX + "/grants/{grant_id}", guarded(revoke, deciders))
    policy_api.add_routes(app, pipeline, guarded)  # the central policy (docs/reference/policy.md)
    app.router.add_route("*", PREFIX + "/{tail:.*}", guarded(unknown))
    # The event stream (docs/reference/events.md) takes the same token, read scope.
    sse.add_routes(app, pipeline, token)
    # The CLIs' http hooks, answered by the gate (docs/reference/coding-agents-hooks.md).
    hook_http.add_routes(app, token, own_url)


def make_app(pipeline: Any, token: str | None = None) -> web.Application:
    """An app with the control routes only (the demo and an agent's own
    control listener serve this), refusing browsers as serve does: it
    listens on loopback, so only loopback names and addresses pass ``Host``."""
    guard = browser_guard.middleware(HostPolicy(), json_writes=lambda path: True, answer=_refused)
    app = web.Application(client_max_size=MAX_BODY, middlewares=[guard])
    add_routes(app, pipeline, token)
    return app


def _refused(request: web.Request, refusal: browser_guard.Refused) -> web.StreamResponse:
    hooks = hook_http.refusal(request.path, f"spanvisor: {refusal.message}; denied")  # its CLI's deny
    return hooks if hooks is not None else browser_guard.json_answer(request, refusal)


__all__ = ["PREFIX", "add_routes", "decision_from_body", "make_app", "open_json"]
