"""``spanvisor emit approval``: a shell agent asks a person and waits.

    spanvisor emit approval --task T --question "Apply the fix to prod?" --wait 900
    case $? in 0) apply;; 1) skip;; 2) timed_out;; esac

It sends ``agent.approval.request`` on a child span of task T (as the other
``emit`` calls do), long-polls the control API of ``spanvisor serve`` for a
decision on that approval, then sends ``agent.approval.decision`` with what
it read (so the task leaves awaiting_approval, whoever answered) and prints
it. Exit status (:data:`EXIT_STATUSES`): 0 approved, 1 rejected, 2 timed
out (no decision in ``--wait`` seconds), 3 the request was not accepted by
the receiver, or the control API never answered in all that time (a wrong
URL or token: nothing is sent back then, and the request stays open), 4
approved but the action was not permitted (``--action``: already used once,
or not the action approved), 5 cancelled (someone asked the task to stop). ``--approvers 2`` asks for two distinct, verified people;
``--requester NAME`` names who asked (they may not approve); ``--from
group:sre`` (repeatable) counts only the approvals of those. An approver
may approve other arguments for the same tool: the action then checked
is that one, printed as ``edited: {json}`` for the script to run.

With ``--action '{"tool": "migrate", "arguments": {"target": "prod"}}'``
(and ``--details TEXT``) the person is shown what will run and approves
exactly that: after an approve, the action is checked and consumed on the
control API (``POST …/approvals/{id}/permit``), and the exit status is 0
only when it is permitted, once.

The approval id defaults to one derived from the question (with the action
and details when given; ``q-`` and 8 hex digits), so the same question in the same task is the same approval, from
any process: a script rerun after a crash reads the answer already given.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import secrets
import sys
import time
from typing import Any
from urllib.parse import urlsplit

from spanvisor.canonical import canonical_json, check_action, check_from
from spanvisor.cli.emit_spans import build_spans, state_file
from spanvisor.config import Config
from spanvisor.control.client import DEFAULT_URL, ENV_URL, HttpSource, token_from_env
from spanvisor.control.feed import ApprovalDecision, TaskFeed
from spanvisor.control.permits import permit_http
from spanvisor.hook.live import ForeignListener, otlp_exporter

EXIT_APPROVED = 0
EXIT_REJECTED = 1
EXIT_TIMED_OUT = 2
EXIT_NOT_SENT = 3
# Approved, but the check before running refused the action (already used,
# or not the action approved).
EXIT_NOT_PERMITTED = 4
# Someone asked the task to stop while (or before) it waited.
EXIT_CANCELLED = 5
# What `spanvisor emit approval --help` shows under the options.
EXIT_STATUSES = """exit status:
  0  approved (and, with --action, permitted: run it)
  1  rejected
  2  timed out: no decision in --wait seconds
  3  not sent: the receiver refused the request, or the control API never
     answered (a wrong --url or token; the request stays open)
  4  approved, but --action was not permitted (already used, or not the
     action approved)
  5  cancelled: someone asked the task to stop"""


def approval_id_for(question: str, action_json: str | None = None, details: str | None = None) -> str:
    """From the question alone (as before) for a plain question; with an
    action or details, from all of them: another action is another request."""
    key = question if action_json is None and details is None else f"{question}\x1f{action_json}\x1f{details}"
    return "q-" + hashlib.blake2b(key.encode(), digest_size=4).hexdigest()


def action_arg(raw: str | None) -> tuple[dict[str, Any] | None, str | None]:
    """--action JSON: the checked action and its canonical JSON (or Nones)."""
    if raw is None:
        return None, None
    action = check_action(json.loads(raw))
    return action, canonical_json(action)


def control_url(args: argparse.Namespace, config: Config) -> str:
    """--url, then SPANVISOR_CONTROL_URL, then the OTLP/HTTP endpoint's host
    (``serve`` answers both on one port), then the local default."""
    explicit = args.url or config.get("control_url") or os.environ.get(ENV_URL)
    if explicit:
        return str(explicit)
    endpoint = (
        args.endpoint
        or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    )
    if endpoint and args.protocol != "grpc":
        parts = urlsplit(endpoint if "://" in endpoint else f"http://{endpoint}")
        if parts.scheme and parts.netloc:
            return f"{parts.scheme}://{parts.netloc}"
    return DEFAULT_URL


def permit_secret(config: Config, task: str, aid: str) -> str:
    """The secret whose SHA-256 the request carries (only its holder consumes
    the approval): kept next to the task's emit state in the data dir, so the
    same question asked again (a script run again) keeps its first secret."""
    path = state_file(config, task).with_suffix(".keys.json")
    try:
        known = json.loads(path.read_text())
    except (OSError, ValueError):
        known = {}
    if not isinstance(known, dict):
        known = {}
    got = known.get(aid)
    if isinstance(got, str) and got:
        return got
    known[aid] = secrets.token_hex(16)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump(known, out)
    except OSError:
        pass  # this run still holds it; a later run of the script asks anew
    return str(known[aid])


def _send(args: argparse.Namespace, config: Config, kind: str, **values: Any) -> bool:
    from opentelemetry.sdk.trace.export import SpanExportResult

    ns = argparse.Namespace(**{**vars(args), "kind": kind, **values})
    spans = build_spans(ns, config, time.time_ns())
    try:
        exporter = otlp_exporter(args)
    except ForeignListener as exc:
        print(f"spanvisor emit approval: nothing sent: {exc}", file=sys.stderr)
        return False
    try:
        return exporter.export(spans) is SpanExportResult.SUCCESS
    finally:
        exporter.shutdown()


def handler(args: argparse.Namespace, config: Config) -> int:
    try:
        action, action_json = action_arg(args.action)
    except (ValueError, RecursionError) as exc:
        print(f"spanvisor emit approval: --action is not a valid action: {exc}", file=sys.stderr)
        return EXIT_NOT_SENT
    try:
        raw_from = [w for x in args.approvers_from or () for w in x.split(",") if w.strip()]
        approvers_from = list(check_from(raw_from)) if raw_from else None
    except ValueError as exc:
        print(f"spanvisor emit approval: --from: {exc}", file=sys.stderr)
        return EXIT_NOT_SENT
    args = argparse.Namespace(**{**vars(args), "approvers_from": approvers_from})
    aid = args.approval_id or approval_id_for(args.question, action_json, args.details)
    key = permit_secret(config, args.task, aid)
    permit_key = hashlib.sha256(key.encode()).hexdigest()
    if not _send(args, config, "approval", approval_id=aid, action_json=action_json, permit_key=permit_key):
        print("spanvisor emit approval: the receiver did not accept the request (see the log above)", file=sys.stderr)
        return EXIT_NOT_SENT
    print(f"asked: task={args.task} approval={aid}", flush=True)
    token = args.token or config.get("control_token") or token_from_env()
    client = HttpSource(control_url(args, config), token)
    found = TaskFeed(args.task, lambda: client).wait_approval(aid, args.wait)
    if found is None and not client.answered:
        # Never heard from the control API (a wrong URL or token): not a
        # timeout, and the request stays open for whoever can answer it.
        print(
            f"spanvisor emit approval: the control API at {client.url} never answered "
            f"({client.last_failure or 'no reply'}); check --url and the token",
            file=sys.stderr,
        )
        return EXIT_NOT_SENT
    result = ApprovalDecision.of(found) if found is not None else ApprovalDecision.timed_out(aid)
    if not _send(args, config, "approval_decision", approval_id=aid, outcome=result.outcome, decided_by=result.by):
        print("spanvisor emit approval: the answer could not be sent back as a span", file=sys.stderr)
    words = {"approve": "approved", "reject": "rejected", "timed_out": "timed out", "cancelled": "cancelled"}[
        result.outcome
    ]
    line = words + (f" by {result.by}" if result.by else "") + (f": {result.comment}" if result.comment else "")
    print(line, flush=True)
    if result.outcome == "approve" and action is not None:
        # Checked where it runs: approved for exactly this action (or the
        # arguments the approver set instead: printed for the script), once.
        run = found.run_id if found is not None else None
        if result.edited is not None:
            action = dict(result.edited)
            print(f"edited: {canonical_json(action)}", flush=True)
        got = permit_http(client, args.task, aid, action, run or None, key)
        if not got.permitted:
            print(f"spanvisor emit approval: not permitted: {got.reason}", file=sys.stderr)
            return EXIT_NOT_PERMITTED
        print(f"permitted: {action['tool']}", flush=True)
    return {"approve": EXIT_APPROVED, "reject": EXIT_REJECTED, "cancelled": EXIT_CANCELLED}.get(
        result.outcome, EXIT_TIMED_OUT
    )


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--question", required=True, help="what to ask (agent.approval.question)")
    p.add_argument("--id", dest="approval_id", help="approval id (default: derived from the question)")
    p.add_argument(
        "--action",
        help='what will run if approved, JSON {"tool": NAME, "arguments": {...}}: shown to the person, bound into '
        "the approval, and checked (once) before the exit status 0",
    )
    p.add_argument("--details", help="more text for the person (part of what the approval binds to)")
    p.add_argument(
        "--approvers", type=int, help="how many distinct people with proven identities must approve (1-5; default 1)"
    )
    p.add_argument("--requester", help="who asks (the person this agent works for): they may not approve it")
    p.add_argument(
        "--from",
        dest="approvers_from",
        action="append",
        metavar="WHO",
        help="whose approvals count: group:NAME or a person's name (repeat, or comma-separated; default anyone's)",
    )
    p.add_argument("--wait", type=float, default=900.0, help="seconds to wait for an answer (default 900)")
    p.add_argument("--url", help=f"control API (default: ${ENV_URL}, the OTLP/HTTP endpoint's host, or {DEFAULT_URL})")
    p.set_defaults(func=handler)


__all__ = [
    "EXIT_APPROVED",
    "EXIT_CANCELLED",
    "EXIT_NOT_PERMITTED",
    "EXIT_NOT_SENT",
    "EXIT_REJECTED",
    "EXIT_STATUSES",
    "EXIT_TIMED_OUT",
    "add_arguments",
    "handler",
]
