"""The gate's slow path: a person decides a call the policy asks about.

It opens an approval request on the session's task, the way ``spanvisor
emit approval`` does (a live-channel record to the OTLP endpoint, the
answer long-polled from the control API), waits for a person (Slack
buttons, ``spanvisor approve``, the control API), checks the approval
against this very call (consuming it) and answers, all before the
deadline (:mod:`spanvisor.gate.deadline`). A control API that answers 503
(its database restarting), or does not answer a read in time, is asked
again within the deadline; one that cannot be reached at all (nothing
listens) answers by the policy's ``on_unreachable`` at once.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import secrets
import time
from collections.abc import Callable, Mapping
from typing import Any

from spanvisor.canonical import NotCanonical, check_action
from spanvisor.config import Config
from spanvisor.control.client import ENV_URL, TRANSIENT, HttpSource, token_from_env
from spanvisor.control.feed import ApprovalDecision, TaskFeed
from spanvisor.control.permits import permit_url
from spanvisor.control.runs import Permit
from spanvisor.gate import contracts as gc
from spanvisor.gate import notes
from spanvisor.gate.answer import Answer
from spanvisor.gate.cancel import cancel_in
from spanvisor.gate.cancel import seen as cancel_seen
from spanvisor.gate.deadline import Deadline, wait_budget
from spanvisor.gate.policy import Policy, Ruling
from spanvisor.gate.requirement import ATTR_RULE
from spanvisor.hook import task as ct
from spanvisor.redaction import clip_middle, redact
from spanvisor.spans import conventions as cv

# The action a decision is bound to (tool and arguments, canonical JSON).
APPROVAL_ACTION = "agent.approval.action"
APPROVAL_DETAILS = "agent.approval.details"
# The longest one request to the control API or the receiver may take.
REQUEST_TIMEOUT_S = 5.0
# An action a request cannot carry is asked about as this stand-in
# argument, its arguments shown up to this many characters.
STAND_IN = "spanvisor.whole_action"
SHOWN = 60_000


def session_task(
    call: gc.Call, args: argparse.Namespace, timeout: float, env: Mapping[str, str]
) -> ct.SessionTask | None:
    """The session's task: the launcher's when it started the CLI, else the
    CLI's session id; None when there is neither."""
    launched = ct.launched_task(env)
    key = launched or call.session_id
    if not key:
        return None
    target = ct.otlp_args(ct.otlp_endpoint(args.endpoint, env), args.otlp_token, timeout)
    return ct.SessionTask(key, gc.adapter_of(call.cli).service, launched is not None, target)


def approval_id(task: ct.SessionTask, call: gc.Call, raw: bytes) -> str:
    """One per tool call: the CLI's call id, else the input itself (Gemini's
    carries a timestamp), so a hook run twice for one call asks once."""
    basis = call.call_id or hashlib.blake2b(raw, digest_size=16).hexdigest()
    return "h-" + hashlib.blake2b(f"{task.task_id}\x1f{basis}".encode(), digest_size=6).hexdigest()


def opened(task: ct.SessionTask) -> bool:
    """Open the task when no launcher did: the receiver opens a session's task
    from the CLI's own records too, but the hook may speak first."""
    if task.launched:
        return True
    return task.record(cv.LIVE_TASK_START, {cv.AGENT_ID: task.service})


def bound_action(call: gc.Call) -> dict[str, Any]:
    """The action a person's decision is bound to: the call's own when a
    request can carry it; else (over 1 MiB as canonical JSON, nested too
    deep, numbers JSON cannot hold) a stand-in a request can carry, which
    a person sees and decides like any other: the tool, the SHA-256 and
    size of the whole action, why it stands in, and the arguments as shown
    (masked, the start and the end). The digest binds the decision to the
    whole: only this process holds the call, built the stand-in from it,
    and presents that very stand-in at the check where it runs.
    :class:`NotCanonical` when not even a stand-in can be asked about."""
    action = call.action()
    try:
        return check_action(action)
    except NotCanonical as exc:
        why = str(exc)
    whole = json.dumps(action, sort_keys=True, separators=(",", ":"), default=str).encode("utf-8", "surrogatepass")
    shown = clip_middle(redact(json.dumps(call.tool_input, sort_keys=True, ensure_ascii=False, default=str)), SHOWN)
    stand_in = {"sha256": hashlib.sha256(whole).hexdigest(), "bytes": len(whole), "why": why, "shown": shown}
    return check_action({"tool": call.tool, "arguments": {STAND_IN: stand_in}})


def probe(client: HttpSource, task_id: str, deadline: Deadline) -> int:
    """The control API's answer to a read of the task: a 503 (its state
    store away) is asked again until the deadline; what cannot be reached
    at all (status 0) is said at once."""
    return view(client, task_id, deadline)[0]


def view(client: HttpSource, task_id: str, deadline: Deadline) -> tuple[int, dict[str, Any]]:
    """:func:`probe`'s status and the task's view (its ``cancel``)."""
    return patiently(lambda: client._get_task(task_id, 0, 0.0, None), deadline)


def patiently(
    send: Callable[[], tuple[int, dict[str, Any], float | None]], deadline: Deadline
) -> tuple[int, dict[str, Any]]:
    """``send``'s answer, asked again while it is a 503 (the control API's
    state store away, e.g. PostgreSQL restarting) or no answer came in time
    (a read that timed out, a reset: a busy server), after the answer's
    ``Retry-After`` (else a doubling pause), as long as the deadline leaves
    time for it; any other answer as it stands (a refused connection: at
    once, the policy's ``on_unreachable`` decides)."""
    pause = 0.2
    while True:
        status, doc, retry_after = send()
        wait = max(pause, retry_after or 0.0)
        again = status == 503 or (status == 0 and doc.get(TRANSIENT) is True)
        if not again or deadline.left() <= wait:
            return status, doc
        time.sleep(wait)
        pause = min(2.0, pause * 2)


def check(
    client: HttpSource, task_id: str, aid: str, action: dict[str, Any], run_id: str | None, key: str, deadline: Deadline
) -> Permit:
    """The check where it runs: the approval is for this very action, and
    used here, once (a 503 waited out within the deadline, like every
    control-API call of the hook)."""
    body: dict[str, Any] = {"action": action, "key": key}
    if run_id:
        body["run_id"] = run_id
    url = permit_url(client.url, task_id, aid)

    def send() -> tuple[int, dict[str, Any], float | None]:
        timeout = min(REQUEST_TIMEOUT_S, max(0.1, deadline.left()))
        return client._exchange("POST", url, body, timeout)

    status, doc = patiently(send, deadline)
    reason = doc.get("reason") or doc.get("error")
    if status == 200 and isinstance(doc.get("permitted"), bool):
        code = doc.get("code")
        return Permit(doc["permitted"], str(reason or ""), code if isinstance(code, str) else None)  # type: ignore[arg-type]
    why = f"HTTP {status}: {reason}" if status else f"the control API did not answer: {reason}"
    return Permit(False, why, "denied")


def ask(
    call: gc.Call,
    raw: bytes,
    policy: Policy,
    ruling: Ruling,
    args: argparse.Namespace,
    deadline: Deadline,
    out: Answer,
    env: Mapping[str, str],
) -> int:
    """A person decides (or ``ruling.approvers`` people do): open the
    request, wait, check the approval against this very call (consuming
    it), answer, then note the answer on the task."""

    def unreachable(why: str) -> int:
        if policy.on_unreachable == "allow":
            return out.allow(f"spanvisor: {why}; allowed (on_unreachable = allow)")
        return out.deny(f"spanvisor: {why}; denied until a person can be asked")

    try:
        action = bound_action(call)
    except NotCanonical as exc:  # not even its stand-in can be asked about (a tool name no request carries)
        return out.deny(f"spanvisor: no one can be asked about this call ({exc}); denied")
    task = session_task(call, args, min(REQUEST_TIMEOUT_S, deadline.left()), env)
    if task is None:
        return unreachable("the hook input has no session_id and no spanvisor task is set, so no one can be asked")
    wait_s = wait_budget(policy.timeout_s, deadline)
    if wait_s <= 0:
        word = "allowed" if policy.on_timeout == "allow" else "denied"
        why = f"the CLI's hook timeout ({deadline.cli_timeout:g} s) leaves no time to ask a person"
        reason = f"spanvisor: {why}; {word} by policy:on_timeout"
        return out.allow(reason) if policy.on_timeout == "allow" else out.deny(reason)
    config = Config.load(env=env)
    token = args.token or config.get("control_token") or token_from_env(env)
    explicit = args.url or env.get(ENV_URL) or config.get("control_url")
    url = str(explicit) if explicit else ct.otlp_endpoint(args.endpoint, env)
    client = HttpSource(url, token, request_timeout_s=min(REQUEST_TIMEOUT_S, max(0.5, deadline.left())))
    status, doc = view(client, task.task_id, deadline)
    if status != 200:
        return unreachable(f"the control API at {client.url} cannot be reached ({_why(status, doc)})")
    aid = approval_id(task, call, raw)
    stop = cancel_in(doc) if task.launched else cancel_seen(task.task_id, status, doc, env)
    if stop is not None:  # nobody is asked about a call of a cancelled session
        code = out.deny(stop.reason())
        note = notes.note(
            "cancel", call, aid, args.endpoint, time.time_ns(), env, said=stop.text(), by=f"cancel:{stop.by}"
        )
        notes.keep(note, args.otlp_token, env, released=out.release is not None, later=out.later)
        return code
    # Only this process consumes the approval: the request carries the
    # secret's digest, the permit the secret (never written anywhere).
    secret = secrets.token_hex(16)
    request: dict[str, Any] = {
        cv.APPROVAL_PERMIT_KEY: hashlib.sha256(secret.encode()).hexdigest(),
        cv.APPROVAL_ID: aid,
        cv.APPROVAL_QUESTION: call.question(),
        cv.APPROVAL_TIMEOUT_S: wait_s,
        APPROVAL_DETAILS: call.details(),
        APPROVAL_ACTION: json.dumps(action, sort_keys=True, separators=(",", ":"), default=str),
        "gen_ai.tool.name": call.tool,
    }
    if ruling.approvers > 1:
        request[cv.APPROVAL_APPROVERS] = ruling.approvers
    if ruling.approvers_from:  # whose approvals count, as the rules (local and central) say
        request[cv.APPROVAL_FROM] = list(ruling.approvers_from)
    request[ATTR_RULE] = ruling.by  # the rule that asked: the server records what decided the requirement
    if (asker := ct.task_owner(env)) is not None:
        request[cv.APPROVAL_REQUESTER] = asker
    if not (opened(task) and task.record(cv.EVENT_APPROVAL_REQUEST, request)):
        return unreachable(f"the approval request could not be sent to {task.target.endpoint}")
    # The probe and the request took time too: what is left of the deadline.
    wait_s = min(wait_s, wait_budget(policy.timeout_s, deadline))
    found = TaskFeed(task.task_id, lambda: client).wait_approval(aid, wait_s)
    # The probe reached the control API: a wait that hears nothing after it
    # (a short timeout on a slow link, an outage) is nobody deciding in
    # time, answered by the policy's on_timeout (deny unless it says allow).
    result = ApprovalDecision.of(found) if found is not None else ApprovalDecision.timed_out(aid)
    if result.outcome == "timed_out":
        answer: gc.Answer = policy.on_timeout
        by = "policy:on_timeout"
        reason = f"no decision in {wait_s:g} s; {'allowed' if answer == 'allow' else 'denied'} by {by}"
    else:
        answer = "allow" if result.approved else "deny"
        by = result.by or "someone"
        word = "approved" if answer == "allow" else "cancelled" if result.outcome == "cancelled" else "rejected"
        reason = f"{word} by {by}" + (f": {result.comment}" if result.comment else "")
    if answer == "allow" and result.edited is not None:
        answer, reason = "deny", f"{by} approved other arguments, which a hook cannot hand to the CLI: run it again"
    elif answer == "allow" and result.outcome == "approve":
        if out.given:
            return out.code or 0  # a backstop answered first: this approval stays unused
        # The approval must be for this very call, and is used here, once;
        # a check that cannot finish before the deadline is a denial.
        checked = check(client, task.task_id, aid, action, result.run_id or None, secret, deadline)
        if not checked.permitted:
            answer, reason = "deny", f"approved, but the check where it runs refused it: {checked.reason}"
    if out.given:
        return out.code or 0  # a backstop answered first: nothing to note
    decided_at = time.time_ns()
    code = out.allow(f"spanvisor: {reason}") if answer == "allow" else out.deny(f"spanvisor: {reason}")
    notes.keep(
        notes.note(
            "decision", call, aid, args.endpoint, decided_at, env, approval_id=aid, outcome=result.outcome, by=by
        ),
        args.otlp_token,
        env,
        released=out.release is not None,
        later=out.later,
    )
    return code


def _why(status: int, doc: dict[str, Any]) -> str:
    if status == 0:  # why nothing answered: refused, timed out, not this user's serve
        return str(doc.get("error") or "no answer")
    if status in (401, 403):
        return f"HTTP {status}: the token was refused"
    return f"HTTP {status}"


__all__ = [
    "APPROVAL_ACTION",
    "APPROVAL_DETAILS",
    "approval_id",
    "ask",
    "check",
    "patiently",
    "probe",
    "session_task",
    "view",
]
