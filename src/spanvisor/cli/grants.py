"""``spanvisor grants``: standing approvals, listed, made and revoked
(``/v1/control/grants``; docs/reference/interventions.md#standing-grants).

* ``spanvisor grants`` lists them (live first) in a table;
* ``spanvisor grants add --tool GLOB [--agent GLOB] --for 2h`` makes one
  (``--task T --run R``: for that run only); it needs your own token
  (``SPANVISOR_DECIDERS``), since the grant decides later on your word;
* ``spanvisor grants revoke ID`` ends one at once.

Exit status: 0 done, 1 refused (the reason is printed), 2 nothing answered.
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.parse
from typing import Any

from spanvisor.cli.approvals import clip
from spanvisor.cli.controlurl import control_target, unreachable_line
from spanvisor.cli.logins import token_for
from spanvisor.config import Config, ConfigError, p_duration
from spanvisor.control.client import DEFAULT_URL, ENV_URL, HttpSource


def _client(args: argparse.Namespace, config: Config) -> HttpSource:
    url, _ = control_target(args, config)
    token = token_for(args.token, config)
    return HttpSource(url, token, request_timeout_s=args.timeout, say=False)


def _left(seconds: Any) -> str:
    if not isinstance(seconds, int | float) or seconds <= 0:
        return "-"
    s = int(seconds)
    return f"{s}s" if s < 120 else f"{s // 60}m" if s < 7200 else f"{s // 3600}h"


def table(items: list[dict[str, Any]]) -> str:
    if not items:
        return "No standing grants."
    head = ("GRANT", "STATE", "BY", "TOOL", "AGENT", "SCOPE", "EXPIRES IN")
    rows = [
        (
            str(g.get("grant_id")),
            str(g.get("state")),
            clip(str(g.get("by")), 24),
            clip(str(g.get("tool")), 24),
            clip(str(g.get("agent")), 20),
            f"run {g.get('task_id')}/{g.get('run_id')}" if g.get("run_id") else "any run",
            _left(g.get("expires_in_s")) if g.get("state") == "live" else "-",
        )
        for g in items
    ]
    widths = [max(len(r[i]) for r in (head, *rows)) for i in range(len(head))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in (head, *rows))


def _said(status: int, doc: dict[str, Any], args: argparse.Namespace, config: Config) -> int:
    if status == 0:
        url, source = control_target(args, config)
        print(unreachable_line(url.rstrip("/"), source, doc.get("error")), file=sys.stderr)
        return 2
    print(f"spanvisor: refused (HTTP {status}): {doc.get('error') or ''}", file=sys.stderr)
    return 1


def cmd_list(args: argparse.Namespace, config: Config) -> int:
    client = _client(args, config)
    status, doc = client._request("GET", f"{client.url}/v1/control/grants", None, client.request_timeout_s)
    if status != 200:
        return _said(status, doc, args, config)
    items = [g for g in doc.get("grants") or [] if isinstance(g, dict)]
    print(json.dumps({"grants": items}, indent=2) if args.json else table(items))
    return 0


# What --agent matches is the agent's word, not a proof: any process holding
# the OTLP token can send spans that name any agent.
AGENT_CLAIM = (
    "Note: --agent matches the name a run's own spans give its agent (agent.approval.agent_id, else the run's "
    "agent): the agent's claim, not verified. Anything that may send spans to spanvisor can claim that name."
)


def cmd_add(args: argparse.Namespace, config: Config) -> int:
    try:
        for_s = p_duration(args.for_)
    except (ConfigError, ValueError) as exc:
        print(f"spanvisor: --for {args.for_!r}: {exc}", file=sys.stderr)
        return 1
    body: dict[str, Any] = {"tool": args.tool, "agent": args.agent, "for_s": for_s, "comment": args.comment}
    if args.task or args.run:
        body.update(task_id=args.task, run_id=args.run)
    client = _client(args, config)
    status, doc = client._request("POST", f"{client.url}/v1/control/grants", body, client.request_timeout_s)
    if status != 201:
        return _said(status, doc, args, config)
    scope = f"run {args.task}/{args.run}" if args.run else "any run"
    print(
        f"Granted {doc.get('grant_id')}: {doc.get('tool')} by agent {doc.get('agent')}, {scope}, "
        f"for {_left(doc.get('expires_in_s'))}, by {doc.get('by')} (revoke: spanvisor grants revoke {doc.get('grant_id')})"
    )
    if doc.get("agent") not in (None, "*"):
        print(AGENT_CLAIM)
    return 0


def cmd_revoke(args: argparse.Namespace, config: Config) -> int:
    client = _client(args, config)
    url = f"{client.url}/v1/control/grants/{urllib.parse.quote(args.grant_id, safe='')}"
    status, doc = client._request("DELETE", url, None, client.request_timeout_s)
    if status != 200:
        return _said(status, doc, args, config)
    print(f"Revoked {doc.get('grant_id')} (by {doc.get('revoked_by')})")
    return 0


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("grants", help="standing approvals: list, add, revoke")
    verbs = p.add_subparsers(dest="verb")

    def common(q: argparse.ArgumentParser) -> None:
        q.add_argument("--url", help=f"control API (default: ${ENV_URL} or {DEFAULT_URL})")
        q.add_argument("--token", help="bearer token (default: $SPANVISOR_DECIDE_TOKEN, then the control tokens)")
        q.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for the answer (default 10)")

    common(p)
    p.add_argument("--json", action="store_true", help="JSON, as the control API gives it")
    p.set_defaults(func=cmd_list)
    ls = verbs.add_parser("list", help="the grants kept, live first")
    ls.add_argument("--json", action="store_true", help="JSON, as the control API gives it")
    common(ls)
    ls.set_defaults(func=cmd_list)
    add = verbs.add_parser("add", help="approve a tool ahead of time, for a while (needs your own token)")
    add.add_argument("--tool", required=True, help="a glob over the action's tool, e.g. Read or db.*")
    add.add_argument(
        "--agent",
        default="*",
        help="a glob over the agent as its own spans name it: its claim, not verified (default: every agent)",
    )
    add.add_argument(
        "--for", dest="for_", required=True, metavar="DURATION", help="how long, e.g. 30m, 2h (at most 30d)"
    )
    add.add_argument("--task", help="with --run: only this run of this task")
    add.add_argument("--run", help="with --task: only this run")
    add.add_argument("--comment", help="why (kept with the grant)")
    common(add)
    add.set_defaults(func=cmd_add)
    rv = verbs.add_parser("revoke", help="end a grant now")
    rv.add_argument("grant_id")
    common(rv)
    rv.set_defaults(func=cmd_revoke)


__all__ = ["register", "table"]
