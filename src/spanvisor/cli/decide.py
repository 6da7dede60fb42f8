"""``spanvisor approve|reject|cancel|retry|ack``: a person's decision on a
task, sent to the control API of ``spanvisor serve`` (or of ``spanvisor
demo``).

An answer (approve, reject) first looks its open request up and prints the
question, then sends the digest of that question with the decision: should
the question change in between (a new run, a request asked again), the
server refuses it rather than approve what was not shown. ``--run`` names
one run of a task id used more than once (default: the latest).

Exit status: 0 applied (or the same decision was already recorded), 1
refused (no such task or request, someone decided first, the request
expired, the task finished, a bad token or request; the reason is printed),
2 nothing answered at the URL, 3 the server answered but could not record
it now (its state store is unavailable): run the same command again, with
the ``--intervention-id`` the message prints, so it is recorded once.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
import uuid
from typing import Any

from spanvisor.cli.approvals import action_line, cut, needs_line, plain, policy_line
from spanvisor.cli.approvals import shown as shown_text
from spanvisor.cli.controlurl import control_target, unreachable_line
from spanvisor.cli.logins import token_for
from spanvisor.config import Config
from spanvisor.control.client import DEFAULT_URL, ENV_URL, STORE_DOWN, HttpSource, Sent
from spanvisor.control.deciders import ANONYMOUS_NAME, new_token, token_hash, valid_name

EXIT_APPLIED = 0
EXIT_REFUSED = 1
EXIT_UNREACHABLE = 2
EXIT_RETRY = 3
_DONE = {"approve": "approved", "reject": "rejected", "cancel": "cancel requested", "retry": "retry requested"}
_DONE["acknowledge"] = "acknowledged"


def default_actor() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no user name in this environment (a container)
        return "cli"


def exit_code(sent: Sent) -> int:
    if sent.ok:
        return EXIT_APPLIED
    if sent.retryable:
        return EXIT_RETRY
    return EXIT_UNREACHABLE if sent.outcome == "unreachable" else EXIT_REFUSED


def _as(sent: Sent) -> str:
    """Who the server recorded: a person its deciders file or the identity
    provider proved, or the anonymous operator of a shared token (what --as
    said is then not used)."""
    if sent.verified and sent.decided_by:
        by = "your identity provider's token" if sent.proof == "oidc" else "your token"
        return f", as {sent.decided_by} (verified by {by})"
    if sent.decided_by == ANONYMOUS_NAME:
        return f", as {ANONYMOUS_NAME} (no token of your own: SPANVISOR_DECIDERS gives people one)"
    return ""


def describe(sent: Sent, action: str, task: str, approval: str | None, intervention_id: str | None = None) -> str:
    what = f"task {task}" + (f", approval {approval}" if approval else "")
    if sent.retryable:
        cause = "its state store is unavailable" if sent.code == STORE_DOWN else sent.reason
        after = f"{sent.retry_after_s:g} s" if sent.retry_after_s is not None else "a few seconds"
        again = f" with --intervention-id {intervention_id}" if intervention_id else ""
        return (
            f"spanvisor: not recorded, retry: the server could not record the decision now ({cause}); "
            f"run the same command again in {after}{again} (it is recorded once)"
        )
    if sent.outcome == "applied":
        note = f" ({sent.reason})" if sent.reason else ""
        if sent.votes_needed > 1 and sent.votes < sent.votes_needed:
            more = sent.votes_needed - sent.votes
            return f"Approval {sent.votes} of {sent.votes_needed} counted: {what}{_as(sent)}; {more} more needed"
        glass = " by breaking glass (posted and audited)" if sent.break_glass else ""
        return f"{_DONE[action].capitalize()}{glass}: {what}{note}{_as(sent)}"
    if sent.outcome == "duplicate":
        return f"Already recorded (the same decision): {what}"
    if sent.outcome == "unreachable":
        return f"spanvisor: no answer from the control API: {sent.reason or 'unreachable'}{retry_hint(sent, intervention_id)}"
    code = f", {sent.code}" if sent.code and sent.code != sent.outcome else ""
    return f"Refused ({sent.outcome.replace('_', ' ')}{code}): {sent.reason or what}"


def retry_hint(sent: Sent, intervention_id: str | None) -> str:
    """A connection lost after the server may have recorded the decision:
    the same id again is told so ("Already recorded"), never a second one."""
    if not intervention_id or sent.http_status != 0:
        return ""
    return (
        f" It may have been recorded: run the same command again with --intervention-id {intervention_id} "
        "(it is recorded once)."
    )


def shown(client: HttpSource, task: str, approval: str, run: str | None) -> tuple[str | None, dict[str, Any] | None]:
    """The open request as the server has it: (run id, the request), the
    question printed first; (run, None) when it is not open (the server says why)."""
    status, doc = client.get_task(task, run_id=run)
    if status != 200:
        return run, None
    for r in doc.get("approvals") or ():
        if isinstance(r, dict) and r.get("approval_id") == approval:
            print(f"Question: {shown_text(str(r.get('question') or ''), 500)}", flush=True)
            if r.get("action") or r.get("details"):
                print(f"Action: {action_line(r)}", flush=True)
            if cut(r):
                print(f"(whole: spanvisor approvals --full {task}/{approval})", flush=True)
            if needs_line(r):
                print(f"Needs: {needs_line(r)}", flush=True)
            if policy_line(r):
                print(f"Policy: {policy_line(r)}", flush=True)
            if isinstance(r.get("approved_edit"), dict):
                args = json.dumps(r["approved_edit"].get("arguments"), sort_keys=True)
                print(f"Approved so far with other arguments: {args} (approve those: --edit-arguments '{args}')")
            rid = doc.get("run_id")
            return (rid if isinstance(rid, str) else run), r
    return run, None


def edited_action(request: dict[str, Any] | None, raw: str) -> dict[str, Any] | str:
    """The action with the arguments ``raw`` (a JSON object) in place of the
    request's, or why it cannot be."""
    action = (request or {}).get("action")
    if not isinstance(action, dict) or not isinstance(action.get("tool"), str):
        return "that request names no action whose arguments could be edited"
    try:
        arguments = json.loads(raw)
    except ValueError as exc:
        return f"--edit-arguments is not JSON: {exc}"
    if not isinstance(arguments, dict):
        return "--edit-arguments must be a JSON object"
    return {"tool": action["tool"], "arguments": arguments}


def handler(args: argparse.Namespace, config: Config) -> int:
    url, source = control_target(args, config)
    glass, reason = getattr(args, "break_glass", False), getattr(args, "reason", None)
    if reason is not None and args.comment is not None:
        print("spanvisor: --reason is the decision's comment: give one of --reason and --comment", file=sys.stderr)
        return EXIT_REFUSED
    if glass and not (reason or "").strip():
        print(
            "spanvisor: --break-glass needs --reason: why this cannot wait (it is posted and audited)", file=sys.stderr
        )
        return EXIT_REFUSED
    client = HttpSource(url, token_for(args.token, config), request_timeout_s=args.timeout, say=False)
    approval = getattr(args, "approval", None)
    run, digest = args.run, getattr(args, "digest", None)
    request: dict[str, Any] | None = None
    if approval is not None and (
        digest is None or getattr(args, "edit_arguments", None) or getattr(args, "for_run", False)
    ):
        run, request = shown(client, args.task, approval, run)
        digest = digest or (str(request.get("digest") or "") or None if request is not None else None)
    edited = None
    if getattr(args, "edit_arguments", None):
        got = edited_action(request, args.edit_arguments)
        if isinstance(got, str):
            print(f"spanvisor: {got}", file=sys.stderr)
            return EXIT_REFUSED
        edited = got
        print(f"Approving with arguments: {json.dumps(got['arguments'], sort_keys=True)}", flush=True)
    # Named here, so that the line asking to retry can name it too.
    iid = args.intervention_id or uuid.uuid4().hex
    sent = client.decide(
        args.task,
        args.action,
        args.actor or default_actor(),
        approval_id=approval,
        comment=reason if reason is not None else args.comment,
        break_glass=glass,
        intervention_id=iid,
        source="cli",
        run_id=run,
        digest=digest,
        edited=edited,
    )
    line = plain(describe(sent, args.action, args.task, approval, iid))
    if sent.outcome == "unreachable":
        line = unreachable_line(client.url, source, sent.reason) + retry_hint(sent, iid)
    print(line, file=sys.stdout if sent.ok else sys.stderr, flush=True)
    if sent.outcome == "applied" and getattr(args, "for_run", False):
        if sent.votes_needed > 1 and sent.votes < sent.votes_needed:
            print("spanvisor: no grant for the run: your approval was one vote, not the decision", file=sys.stderr)
            return EXIT_REFUSED
        return grant_run(client, args.task, run, request) or exit_code(sent)
    return exit_code(sent)


def grant_run(client: HttpSource, task: str, run: str | None, request: dict[str, Any] | None) -> int:
    """``approve --for-run``: a standing grant of the request's tool for the
    rest of this run (a day at most). 0 granted, else 1 (why is printed)."""
    action = (request or {}).get("action")
    tool = action.get("tool") if isinstance(action, dict) else None
    if not isinstance(tool, str) or not run or any(c in tool for c in "*?["):
        print("spanvisor: --for-run needs a request with an action (its tool is granted)", file=sys.stderr)
        return EXIT_REFUSED
    body = {"tool": tool, "for_s": 86_400, "task_id": task, "run_id": run, "comment": "approve --for-run"}
    status, doc = client._request("POST", f"{client.url}/v1/control/grants", body, client.request_timeout_s)
    if status != 201:
        print(f"spanvisor: approved, but no grant for the run (HTTP {status}): {doc.get('error')}", file=sys.stderr)
        return EXIT_REFUSED
    print(
        f"Granted {doc.get('grant_id')}: {tool} for the rest of run {run} (spanvisor grants revoke {doc.get('grant_id')})"
    )
    return EXIT_APPLIED


def register(subparsers: Any) -> None:
    def add(name: str, action: str, help_: str, approval: bool) -> None:
        p = subparsers.add_parser(name, help=help_)
        p.add_argument("task", help="task id")
        if approval:
            p.add_argument("approval", help="approval id (agent.approval.id), e.g. a1")
            p.add_argument(
                "--digest",
                help="the digest of the question you were shown (`spanvisor approvals` prints it); "
                "default: the open request's, after printing its question",
            )
        if action == "approve":
            p.add_argument(
                "--edit-arguments",
                metavar="JSON",
                help="approve the request's action with these arguments instead (a JSON object; same tool): "
                "the agent runs them, and the audit keeps both",
            )
            p.add_argument(
                "--break-glass",
                action="store_true",
                help="approve alone, whatever people or groups the request needs (members of "
                "SPANVISOR_BREAK_GLASS_GROUP only; needs --reason; posted, counted and audited as such)",
            )
            p.add_argument("--reason", help="why (with --break-glass): kept as the decision's comment")
            p.add_argument(
                "--for-run",
                action="store_true",
                help="and approve this tool for the rest of this run (a standing grant; needs your own token)",
            )
        p.add_argument("--run", help="the run of a task id used more than once (default: the latest)")
        p.add_argument("--comment", help="a note kept with the decision (at most 500 characters)")
        p.add_argument("--as", dest="actor", metavar="NAME", help="who decides (default: your user name)")
        p.add_argument("--url", help=f"control API (default: ${ENV_URL} or {DEFAULT_URL})")
        p.add_argument(
            "--token",
            help="bearer token (default: your spanvisor login, $SPANVISOR_DECIDE_TOKEN, $SPANVISOR_CONTROL_TOKEN "
            "or $SPANVISOR_OTLP_TOKEN)",
        )
        p.add_argument(
            "--intervention-id", help="an id for this decision, so a retried command is recorded once (default: new)"
        )
        p.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for the answer (default 10)")
        p.set_defaults(func=handler, action=action)

    add("approve", "approve", "approve a task's open approval request", True)
    add("reject", "reject", "reject a task's open approval request", True)
    add("cancel", "cancel", "ask a running task to stop (the agent reads it back)", False)
    add("retry", "retry", "ask for a failed task to be retried", False)
    add("ack", "acknowledge", "acknowledge a failed task (someone is on it)", False)
    token = subparsers.add_parser(
        "decider-token", help="make a person's own token for deciding, and the SPANVISOR_DECIDERS lines naming it"
    )
    token.add_argument("name", help="the person (letters, digits and ._@-), as decisions will name them")
    token.set_defaults(func=cmd_decider_token)


def cmd_decider_token(args: argparse.Namespace, config: Config) -> int:
    """A new token for one person: theirs to keep; the server keeps its hash."""
    name = args.name
    if not valid_name(name):
        print(f"spanvisor: {name!r} is not a decider's name: 1-64 letters, digits and ._@-", file=sys.stderr)
        return 2
    secret = new_token()
    print(f"token for {name} (give it to {name} only; the server keeps only its hash):\n  {secret}\n")
    print("add to the server's SPANVISOR_DECIDERS file:")
    print(f'  [people.{name}]\n  token_sha256 = "{token_hash(secret)}"\n')
    print(f"{name} decides with it: SPANVISOR_DECIDE_TOKEN=<the token> spanvisor approve TASK APPROVAL")
    return 0


__all__ = ["EXIT_APPLIED", "EXIT_REFUSED", "EXIT_RETRY", "EXIT_UNREACHABLE", "exit_code", "handler", "register"]
