"""``spanvisor hook claude-code|codex|gemini``: the permission hook command.

The CLI runs it before a tool call with the call as JSON on stdin
(:mod:`spanvisor.cli.hook_contract`). It applies the policy
(:mod:`spanvisor.cli.hook_policy`); when the policy says ``ask``, it opens
an approval request on the session's task, the way ``spanvisor emit
approval`` does (live-channel records to the OTLP endpoint, the answer
long-polled from the control API), waits for a person (Slack buttons,
``spanvisor approve``, the control API) up to the policy's timeout, and
answers in the CLI's contract. Every decision is on the task's record: a
person's by the control API (``human_interventions``), the policy's as an
``agent.checkpoint`` naming ``policy:<rule>`` as the decider.

It fails closed: a policy it cannot read, input it cannot read, a control
API or receiver it cannot reach (unless ``on_unreachable = "allow"``) and
any error of its own deny the call, with the reason shown to the agent.
Gemini CLI runs the call when its hook times out, so under it the hook
answers by the policy's ``on_timeout`` a few seconds before that limit
(``--cli-timeout``, else Gemini CLI's default of 60 s).
The tool input never reaches spanvisor's own logs or stderr.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import sys
import time
from collections.abc import Mapping
from typing import Any

from spanvisor.cli import codingtask as ct
from spanvisor.cli import hook_contract as hc
from spanvisor.cli.hook_policy import Policy, PolicyError, Ruling, load
from spanvisor.config import Config
from spanvisor.spans import conventions as cv

ENV_POLICY = "SPANVISOR_HOOK_POLICY"
# The action a decision is bound to (tool and arguments, canonical JSON).
APPROVAL_ACTION = "agent.approval.action"
APPROVAL_DETAILS = "agent.approval.details"
MAX_INPUT = 4 * 1024 * 1024
# Records that only audit a policy decision must not hold the agent long.
AUDIT_TIMEOUT_S = 3.0
EXIT_BLOCK = 2
# What each CLI gives a hook when its settings name no timeout, in seconds:
# Gemini CLI runs the tool call when its hook times out, so the hook must
# answer before then (Claude Code and Codex ask as usual, so no cap there).
CLI_TIMEOUT_DEFAULT: dict[hc.Cli, float | None] = {"claude-code": None, "codex": None, "gemini": 60.0}
# Room left before the CLI's limit for the answer, and for this process's
# own start, which ``started`` does not see.
MIN_MARGIN_S, MAX_MARGIN_S = 2.0, 10.0


def _emit(cli: hc.Cli, event: str, answer: hc.Answer, reason: str) -> int:
    sys.stdout.write(json.dumps(hc.reply(cli, event, answer, reason)) + "\n")
    sys.stdout.flush()
    return 0


def _refuse(cli: hc.Cli, reason: str) -> int:
    """Input that cannot be read: denied in the common shape and by exit
    status 2, which each CLI takes as "block, show stderr to the model"."""
    event = "BeforeTool" if cli == "gemini" else "PreToolUse"
    _emit(cli, event, "deny", reason)
    print(reason, file=sys.stderr, flush=True)
    return EXIT_BLOCK


def session_task(call: hc.Call, args: argparse.Namespace, timeout: float) -> ct.SessionTask | None:
    """The session's task: the launcher's when it started the CLI, else the
    CLI's session id; None when there is neither."""
    launched = ct.launched_task(os.environ)
    key = launched or call.session_id
    if not key:
        return None
    service = ct.SERVICES[call.cli]
    target = ct.otlp_args(otlp_endpoint(args), args.otlp_token, timeout)
    return ct.SessionTask(key, service, launched is not None, target)


def otlp_endpoint(args: argparse.Namespace) -> str:
    if args.endpoint or os.environ.get(ct.ENV_ENDPOINT):
        return ct.endpoint_from(args.endpoint)
    grpc = os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL") == "grpc"
    return (("" if grpc else os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")) or ct.DEFAULT_ENDPOINT).rstrip("/")


def control_url(args: argparse.Namespace, config: Config) -> str:
    from spanvisor.control.client import ENV_URL

    explicit = args.url or os.environ.get(ENV_URL) or config.get("control_url")
    return str(explicit) if explicit else otlp_endpoint(args)


def approval_id(task: ct.SessionTask, call: hc.Call, raw: bytes) -> str:
    """One per tool call: the CLI's call id, else the input itself (Gemini's
    carries a timestamp), so a hook run twice for one call asks once."""
    basis = call.call_id or hashlib.blake2b(raw, digest_size=16).hexdigest()
    return "h-" + hashlib.blake2b(f"{task.task_id}\x1f{basis}".encode(), digest_size=6).hexdigest()


def audit(task: ct.SessionTask | None, call: hc.Call, ruling: Ruling, answer: hc.Answer) -> None:
    """The policy's decision on the task's record (best effort: the answer
    stands either way, and the failure is said on stderr)."""
    if task is None:
        return
    word = "allowed" if answer == "allow" else "denied"
    attrs = {
        cv.MESSAGE: f"{call.question().removeprefix('Allow ').removesuffix('?')}: {word} by {ruling.by}",
        cv.APPROVAL_OUTCOME: "approve" if answer == "allow" else "reject",
        cv.APPROVAL_DECIDED_BY: ruling.by,
        "gen_ai.tool.name": call.tool,
    }
    try:
        ok = opened(task) and task.record(cv.EVENT_CHECKPOINT, attrs)
    except Exception as exc:  # the receiver's problem must not change the answer
        ok = False
        print(f"spanvisor hook: the policy decision was not recorded ({type(exc).__name__})", file=sys.stderr)
    if not ok:
        print("spanvisor hook: the policy decision could not be sent to the receiver", file=sys.stderr)


def opened(task: ct.SessionTask) -> bool:
    """Open the task when no launcher did: the receiver opens a session's task
    from the CLI's own records too, but the hook may speak first."""
    if ct.launched_task(os.environ) is not None:
        return True
    return task.record(cv.LIVE_TASK_START, {cv.AGENT_ID: task.service})


def wait_budget(policy: Policy, cli_timeout: float | None, elapsed: float) -> float:
    """How long a person has: the policy's timeout, cut short so the answer
    reaches the CLI before its own hook timeout (``cli_timeout``) does; 0
    when there is no time left to ask."""
    if cli_timeout is None:
        return policy.timeout_s
    margin = min(MAX_MARGIN_S, max(MIN_MARGIN_S, 0.15 * cli_timeout))
    left = math.floor(cli_timeout - margin - elapsed)
    return float(min(policy.timeout_s, max(0, left)))


def ask(
    call: hc.Call,
    raw: bytes,
    policy: Policy,
    task: ct.SessionTask | None,
    args: argparse.Namespace,
    config: Config,
    approvers: int = 1,
    started: float | None = None,
) -> int:
    """A person decides (or ``approvers`` people do): open the request, wait,
    check the approval against this very call (consuming it), answer."""
    from spanvisor.control.client import HttpSource, token_from_env
    from spanvisor.control.feed import ApprovalDecision, TaskFeed
    from spanvisor.control.permits import permit_http

    def unreachable(why: str) -> int:
        if policy.on_unreachable == "allow":
            return _emit(call.cli, call.event, "allow", f"spanvisor: {why}; allowed (on_unreachable = allow)")
        return _emit(call.cli, call.event, "deny", f"spanvisor: {why}; denied until a person can be asked")

    if task is None:
        return unreachable("the hook input has no session_id and no spanvisor task is set, so no one can be asked")
    t0 = time.monotonic() if started is None else started
    limit = cli_timeout(args, call.cli)
    wait_s = wait_budget(policy, limit, time.monotonic() - t0)
    if wait_s <= 0:
        word = "allowed" if policy.on_timeout == "allow" else "denied"
        why = f"the CLI's hook timeout ({limit:g} s) leaves no time to ask a person; {word} by policy:on_timeout"
        return _emit(call.cli, call.event, policy.on_timeout, f"spanvisor: {why}")
    token = args.token or config.get("control_token") or token_from_env()
    client = HttpSource(control_url(args, config), token, request_timeout_s=5.0)
    status, _ = client.get_task(task.task_id)
    if status != 200:
        return unreachable(f"the control API at {client.url} cannot be reached ({_why(status)})")
    aid = approval_id(task, call, raw)
    request: dict[str, Any] = {
        cv.APPROVAL_ID: aid,
        cv.APPROVAL_QUESTION: call.question(),
        cv.APPROVAL_TIMEOUT_S: wait_s,
        APPROVAL_DETAILS: call.details(),
        APPROVAL_ACTION: json.dumps(call.action(), sort_keys=True, separators=(",", ":"), default=str),
        "gen_ai.tool.name": call.tool,
    }
    if approvers > 1:
        request[cv.APPROVAL_APPROVERS] = approvers
    if (asker := owner(os.environ)) is not None:
        request[cv.APPROVAL_REQUESTER] = asker
    if not (opened(task) and task.record(cv.EVENT_APPROVAL_REQUEST, request)):
        return unreachable(f"the approval request could not be sent to {task.target.endpoint}")
    # The probe and the request took time too: what is left of the CLI's limit.
    wait_s = min(wait_s, wait_budget(policy, limit, time.monotonic() - t0))
    found = TaskFeed(task.task_id, lambda: client).wait_approval(aid, wait_s)
    # The probe reached the control API: a wait that hears nothing after it
    # (a short timeout on a slow link, an outage) is nobody deciding in
    # time, answered by the policy's on_timeout (deny unless it says allow).
    result = ApprovalDecision.of(found) if found is not None else ApprovalDecision.timed_out(aid)
    if result.outcome == "timed_out":
        answer: hc.Answer = policy.on_timeout
        by = "policy:on_timeout"
        reason = f"no decision in {wait_s:g} s; {'allowed' if answer == 'allow' else 'denied'} by {by}"
    else:
        answer = "allow" if result.approved else "deny"
        by = result.by or "someone"
        reason = f"{'approved' if answer == 'allow' else 'rejected'} by {by}" + (
            f": {result.comment}" if result.comment else ""
        )
    if answer == "allow" and result.edited is not None:
        answer, reason = "deny", f"{by} approved other arguments, which a hook cannot hand to the CLI: run it again"
    elif answer == "allow" and result.outcome == "approve":
        # The approval must be for this very call, and is used here, once.
        checked = permit_http(client, task.task_id, aid, json.loads(request[APPROVAL_ACTION]), result.run_id or None)
        if not checked.permitted:
            answer, reason = "deny", f"approved, but the check where it runs refused it: {checked.reason}"
    note = {cv.APPROVAL_ID: aid, cv.APPROVAL_OUTCOME: result.outcome, cv.APPROVAL_DECIDED_BY: by}
    if not task.record(cv.EVENT_APPROVAL_DECISION, note):
        print("spanvisor hook: the answer could not be noted on the task", file=sys.stderr)
    return _emit(call.cli, call.event, answer, f"spanvisor: {reason}")


def owner(env: Mapping[str, str]) -> str | None:
    """The person the coding agent works for, who may not approve its
    requests: ``SPANVISOR_TASK_OWNER`` (the launcher copies it there), else
    ``agent.owner`` in OTEL_RESOURCE_ATTRIBUTES (which Claude Code does not
    pass to hooks)."""
    return ct.task_owner(env)


def cli_timeout(args: argparse.Namespace, cli: hc.Cli) -> float | None:
    given: float | None = getattr(args, "cli_timeout", None)
    return given if given is not None else CLI_TIMEOUT_DEFAULT[cli]


def _why(status: int) -> str:
    if status == 0:
        return "no answer"
    if status in (401, 403):
        return f"HTTP {status}: the token was refused"
    return f"HTTP {status}"


def handler(args: argparse.Namespace, config: Config) -> int:
    started = time.monotonic()
    cli: hc.Cli = args.cli
    raw = sys.stdin.buffer.read(MAX_INPUT + 1)
    if len(raw) > MAX_INPUT:
        return _refuse(cli, f"spanvisor: the hook input is over {MAX_INPUT} bytes; denied")
    try:
        call = hc.parse(cli, raw)
    except hc.BadInput as exc:
        return _refuse(cli, f"spanvisor: {exc}; denied")
    try:
        policy = load(args.policy)
    except PolicyError as exc:
        return _emit(cli, call.event, "deny", f"spanvisor: {exc}; denied until the policy is fixed")
    try:
        ruling = policy.decide(call.tool, call.target)
        if ruling.verdict != "ask":
            task = session_task(call, args, AUDIT_TIMEOUT_S)
            audit(task, call, ruling, ruling.verdict)
            word = "allowed" if ruling.verdict == "allow" else "denied"
            return _emit(
                call.cli, call.event, ruling.verdict, f"spanvisor: {ruling.reason or word + ' by ' + ruling.by}"
            )
        return ask(call, raw, policy, session_task(call, args, 10.0), args, config, ruling.approvers, started)
    except Exception as exc:  # never a traceback, never the input: deny and say why
        return _emit(cli, call.event, "deny", f"spanvisor hook failed ({type(exc).__name__}); denied")


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "hook",
        help="the permission hook a coding-agent CLI runs before a tool call (the call's JSON on stdin)",
    )
    p.add_argument("cli", choices=hc.CLIS, help="which CLI calls (its input and answer shapes)")
    p.add_argument(
        "--policy",
        default=os.environ.get(ENV_POLICY),
        help=f"policy TOML file (default: ${ENV_POLICY}; none: every call asks a person)",
    )
    p.add_argument(
        "--cli-timeout",
        type=float,
        metavar="SECONDS",
        help="the hook timeout the CLI's settings give this hook: a person then has until a few seconds before it "
        "(Gemini CLI runs the call when its hook times out; default for gemini: 60, its own default)",
    )
    p.add_argument("--url", help="control API (default: $SPANVISOR_CONTROL_URL, else the OTLP endpoint)")
    p.add_argument("--token", help="control API token (default: $SPANVISOR_CONTROL_TOKEN)")
    p.add_argument(
        "--endpoint",
        help=f"OTLP/HTTP endpoint the request goes to (default: ${ct.ENV_ENDPOINT}, $OTEL_EXPORTER_OTLP_ENDPOINT, "
        f"or {ct.DEFAULT_ENDPOINT})",
    )
    p.add_argument(
        "--otlp-token",
        default=os.environ.get("SPANVISOR_OTLP_TOKEN"),
        help="bearer token of the OTLP endpoint (default: $SPANVISOR_OTLP_TOKEN)",
    )
    p.set_defaults(func=handler)


__all__ = ["APPROVAL_ACTION", "ENV_POLICY", "handler", "register"]
