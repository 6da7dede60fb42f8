"""``spanvisor approvals``: the approval requests waiting for an answer, of
every task and every replica (``GET /v1/control/approvals``), with the
exact command that answers each.

What each would let run is shown with its secrets masked (the same rules
everywhere: spanvisor.redaction), and, when long, as its start and its end
with "… N characters …" between: a dangerous tail is never cut off.
``spanvisor approvals --full APPROVAL`` prints one request whole.

Exit status: 0 listed (even none), 1 refused (a bad token), 2 nothing
answered at the URL.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from typing import Any

from spanvisor.canonical import canonical_json
from spanvisor.cli.controlurl import control_target, unreachable_line
from spanvisor.cli.logins import token_for
from spanvisor.cli.pasteable import command_name, with_name
from spanvisor.config import Config
from spanvisor.control.client import DEFAULT_URL, ENV_URL, HttpSource
from spanvisor.display.readable import required_text
from spanvisor.redaction import clip_middle, redact, redact_json

QUESTION_WIDTH = 48
# Characters of an action (and of details) the list and ``approve`` show.
ACTION_WIDTH = 300


def _age(seconds: Any) -> str:
    if not isinstance(seconds, int | float):
        return "-"
    s = int(seconds)
    return f"{s}s" if s < 120 else f"{s // 60}m" if s < 7200 else f"{s // 3600}h"


def _timeout(item: dict[str, Any]) -> str:
    t = item.get("timeout_s")
    return "none" if not isinstance(t, int | float) else f"{t:g}s"


def _flat(text: str) -> str:
    return " ".join("".join(c if c.isprintable() else " " for c in text).split())


def clip(text: str, width: int) -> str:
    """One line, at most ``width`` characters (agent text: control characters go)."""
    flat = _flat(text)
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def shown(text: str, width: int) -> str:
    """Agent text as a person is shown it: one line, secrets masked, and
    over ``width`` characters its start and its end (never only the start)."""
    return clip_middle(_flat(redact(text)), width)


def action_line(item: dict[str, Any], width: int = ACTION_WIDTH) -> str:
    """The action a request would let run (tool and arguments as canonical
    JSON) and its details, on one line, secrets masked and long text cut in
    the middle; "" for a plain question."""
    parts = []
    action = item.get("action")
    if isinstance(action, dict):
        try:
            args = canonical_json(redact_json(action.get("arguments", {})))
        except ValueError:
            args = "?"
        parts.append(f"runs {shown(str(action.get('tool')), 64)} {shown(args, width)}")
    if item.get("details"):
        parts.append(f"details: {shown(str(item['details']), width)}")
    return "; ".join(parts)


def cut(item: dict[str, Any], width: int = ACTION_WIDTH) -> bool:
    """Whether :func:`action_line` leaves part of the request out."""
    action = item.get("action")
    args = action.get("arguments", {}) if isinstance(action, dict) else None
    try:
        long_args = args is not None and len(canonical_json(redact_json(args))) > width
    except ValueError:
        long_args = False
    return long_args or len(str(item.get("details") or "")) > width or len(str(item.get("question") or "")) > width


def needs_line(item: dict[str, Any]) -> str:
    """``2 people from sre or alice (approved so far: bob; 1 more from sre)``
    for a request that takes several people or only some; "" otherwise."""
    raw = item.get("approvers")
    n = raw if isinstance(raw, int) else 1
    only = [str(w) for w in item.get("approvers_from") or () if isinstance(w, str)]
    if n <= 1 and not only:
        return ""
    names = [w.removeprefix("group:") for w in only]
    whom = (" from " + (", ".join(names[:-1]) + " or " + names[-1] if len(names) > 1 else names[0])) if names else ""
    by = ", ".join(clip(plain(str(x)), 40) for x in item.get("approved_by") or ()) or "nobody yet"
    still = f"; {item['still_needed']}" if item.get("still_needed") else ""
    return f"{n} {'people' if n > 1 else 'person'}{whom} (approved so far: {by}{still})"


def policy_line(item: dict[str, Any]) -> str:
    """``required by rule prod-two-sre of policy acme@7c1e9a2b40d3`` ("" without a central policy)."""
    got = [item.get(k) for k in ("policy_version", "required_by", "policy_denied")]
    return required_text(*(str(v) if isinstance(v, str) else None for v in got))


_SLACK_MARKUP = re.compile(r"<([@#!])([^<>|]*)(?:\|([^<>]*))?>")


def plain(text: str) -> str:
    """What the server says in Slack's markup (a person as ``<@U0ALICE>``),
    as a terminal reads it: ``@U0ALICE``, or the label it carries
    (``<@U0ALICE|alice>``: ``@alice``); ``<!channel>``: ``@channel``."""

    def one(m: re.Match[str]) -> str:
        sigil, ident, label = m.group(1), m.group(2), m.group(3)
        return ("#" if sigil == "#" else "@") + (label or ident)

    return _SLACK_MARKUP.sub(one, text)


def visible(text: str) -> str:
    """Agent text safe for a terminal: every character that is not printable
    (escape sequences, bidi overrides, zero-width ones) shown as its code,
    so nothing can hide or reorder what is printed; newlines and tabs kept."""
    return "".join(c if c.isprintable() or c in "\n\t" else f"\\u{ord(c):04x}" for c in text)


def full(item: dict[str, Any]) -> str:
    """One request whole (``--full``): its question, details and action,
    secrets masked. Each argument on its own line as JSON; a text of several
    lines (a file a Write would create) then as those lines, each after ``|``."""
    lines = [
        f"Task:      {item.get('task_id')}  (run {item.get('run_id')})",
        f"Approval:  {item.get('approval_id')}  digest {item.get('digest')}",
        f"Question:  {visible(redact(str(item.get('question') or '')))}",
    ]
    if item.get("details"):
        lines.append(f"Details:   {visible(redact(str(item['details'])))}")
    action = item.get("action")
    if isinstance(action, dict):
        args = redact_json(action.get("arguments", {}))
        size = len(canonical_json(args)) if isinstance(args, dict) else 0
        lines.append(f"Action:    {visible(redact(str(action.get('tool'))))}")
        lines.append(f"Arguments ({size:,} characters as canonical JSON):")
        for key, value in sorted(args.items()) if isinstance(args, dict) else ():
            if isinstance(value, str) and "\n" in value:
                text = value.split("\n")
                lines.append(f"  {visible(json.dumps(key, ensure_ascii=False))}: ({len(text):,} lines)")
                lines += [f"    | {visible(x)}" for x in text]
            else:
                lines.append(f"  {visible(json.dumps(key, ensure_ascii=False))}: {json.dumps(value, sort_keys=True)}")
    if item.get("answer"):
        lines.append("")
        lines.append(f"Answer with: {item['answer']}   (or: reject)")
    return "\n".join(lines)


def table(items: list[dict[str, Any]], url: str | None = None) -> str:
    """A plain table, one request a line, then the command that answers
    each, as it works when pasted (``url``: the ``--url`` this was given)."""
    if not items:
        return "No open approval requests."
    head = ("TASK", "RUN", "APPROVAL", "QUESTION", "AGENT", "AGE", "TIMEOUT")
    rows = [
        (
            clip(str(x.get("task_id")), 32),
            str(x.get("run_id")),
            clip(str(x.get("approval_id")), 16),
            shown(str(x.get("question") or ""), QUESTION_WIDTH),
            clip(str(x.get("agent_id")), 20),
            _age(x.get("age_s")),
            _timeout(x),
        )
        for x in items
    ]
    widths = [max(len(r[i]) for r in (head, *rows)) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in (head, *rows)]
    for x in items:
        line = action_line(x)
        if line:
            lines.append(f"  {clip(str(x.get('task_id')), 32)} {clip(str(x.get('approval_id')), 16)}: {line}")
        if cut(x):
            lines.append(f"    (whole: spanvisor approvals --full {x.get('approval_id')})")
        if needs_line(x):
            lines.append(
                f"  {clip(str(x.get('task_id')), 32)} {clip(str(x.get('approval_id')), 16)}: needs {needs_line(x)}"
            )
        if policy_line(x):
            lines.append(f"  {clip(str(x.get('task_id')), 32)} {clip(str(x.get('approval_id')), 16)}: {policy_line(x)}")
    lines.append("")
    lines.append("Answer with:")
    lines += [f"  {with_name(str(x.get('answer')), url)}   (or: reject)" for x in items]
    people = [x for x in items if isinstance(x.get("approvers"), int) and x["approvers"] > 1]
    if people:
        # A shared token is nobody in particular: these count only people's own tokens (or Slack clicks).
        lines.append("")
        lines += [
            f"{clip(str(x.get('task_id')), 32)} {x.get('approval_id')} needs {x['approvers']} people, each approving "
            "with a token of their own (--token, or SPANVISOR_DECIDE_TOKEN): "
            f"`{command_name()} decider-token NAME` makes one for serve's SPANVISOR_DECIDERS file; "
            f"with an identity provider, `{command_name()} login`"
            for x in people
        ]
    return "\n".join(lines)


def handler(args: argparse.Namespace, config: Config) -> int:
    url, source = control_target(args, config)
    token = token_for(args.token, config)
    client = HttpSource(url, token, request_timeout_s=args.timeout, say=False)
    status, doc = client.approvals(args.agent)
    if status == 0:
        print(unreachable_line(client.url, source, doc.get("error")), file=sys.stderr)
        return 2
    if status != 200:
        print(f"spanvisor: the control API said HTTP {status}: {doc.get('error') or ''}", file=sys.stderr)
        return 1
    items = [x for x in doc.get("approvals") or [] if isinstance(x, dict)]
    if args.full is not None:
        return print_full(items, args.full)
    if args.json:
        print(json.dumps({"approvals": items}, ensure_ascii=False, indent=2))
    else:
        print(table(items, args.url))
    return 0


def print_full(items: list[dict[str, Any]], wanted: str) -> int:
    """``--full APPROVAL`` (or ``TASK/APPROVAL`` when two tasks use one id)."""
    task, _, approval = wanted.rpartition("/")
    found = [x for x in items if x.get("approval_id") == approval and (not task or x.get("task_id") == task)]
    if not found:
        print(f"spanvisor: no open approval request {wanted!r}", file=sys.stderr)
        return 1
    if len(found) > 1:
        names = ", ".join(f"{x.get('task_id')}/{approval}" for x in found)
        print(f"spanvisor: {len(found)} open requests are called {approval!r}: name one ({names})", file=sys.stderr)
        return 1
    print(full(found[0]))
    return 0


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("approvals", help="list the approval requests waiting for an answer")
    p.add_argument("--agent", help="only this agent's requests")
    p.add_argument("--json", action="store_true", help="JSON, as the control API gives it")
    p.add_argument(
        "--full",
        metavar="APPROVAL",
        help="print this one request whole: question, details and every argument of its action, secrets masked "
        "(TASK/APPROVAL when two tasks have one approval id)",
    )
    p.add_argument("--url", help=f"control API (default: ${ENV_URL} or {DEFAULT_URL})")
    p.add_argument(
        "--token",
        help="bearer token (default: your spanvisor login, $SPANVISOR_DECIDE_TOKEN, $SPANVISOR_CONTROL_TOKEN "
        "or $SPANVISOR_OTLP_TOKEN)",
    )
    p.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for the answer (default 10)")
    p.set_defaults(func=handler)


__all__ = [
    "action_line",
    "clip",
    "cut",
    "full",
    "handler",
    "needs_line",
    "policy_line",
    "register",
    "shown",
    "table",
    "visible",
]
