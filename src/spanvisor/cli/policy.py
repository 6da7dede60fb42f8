"""``spanvisor policy``: the central policy, seen, checked and tested
(docs/reference/policy.md).

* ``spanvisor policy show`` prints the version the server enforces and its
  rules (``GET /v1/control/policy``);
* ``spanvisor policy check FILE`` reads a policy (a file or a directory)
  and says what is wrong: syntax, unknown keys or values, rules no call can
  reach (``--hook``: as a hook's policy, whose default is ``ask``);
* ``spanvisor policy test FILE CASES`` runs a table of calls and the
  decisions they must get (TOML ``[[case]]`` or JSON), a line per case and
  what differs: the policy's own unit tests, for a team's CI.

Exit status: 0 all good, 1 a finding or a mismatch, 2 a file that cannot
be read or a server that does not answer.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from spanvisor.cli.controlurl import control_target, unreachable_line
from spanvisor.cli.logins import token_for
from spanvisor.config import Config
from spanvisor.control.client import DEFAULT_URL, ENV_URL, HttpSource

CASE_KEYS = {"name", "tool", "command", "input", "cwd", "agent", "cli", "owner", "task", "expect", "approvers"}
CASE_KEYS |= {"from", "rule"}


def cmd_show(args: argparse.Namespace, config: Config) -> int:
    url, source = control_target(args, config)
    client = HttpSource(url, token_for(args.token, config), request_timeout_s=args.timeout, say=False)
    status, doc = client._request("GET", f"{client.url}/v1/control/policy", None, client.request_timeout_s)
    if status == 0:
        print(unreachable_line(url.rstrip("/"), source, doc.get("error")), file=sys.stderr)
        return 2
    if status == 404 and doc.get("central") is False:
        print(f"The server at {url} enforces no central policy (SPANVISOR_POLICY is not set there).")
        return 0
    if status != 200:
        print(f"spanvisor: refused (HTTP {status}): {doc.get('error') or ''}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(doc, indent=2))
        return 0
    print(shown(doc))
    return 0


def shown(doc: dict[str, Any]) -> str:
    """The version, when it was loaded, the last reload's error, the rules."""
    loaded = doc.get("loaded_ns")
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(loaded / 1e9)) if isinstance(loaded, int) else "?"
    lines = [f"Central policy {doc.get('version')} (loaded {when}; default: {doc.get('default')})"]
    files = [str(f.get("name")) for f in doc.get("files") or [] if isinstance(f, dict)]
    if files:
        lines.append("Files: " + ", ".join(files))
    if doc.get("reload_error"):
        lines.append(f"⚠ the last reload failed, this version stays in force: {doc['reload_error']}")
    rules = [r for r in doc.get("rules") or [] if isinstance(r, dict)]
    lines.append("")
    lines += [f"  {i}. {rule_line(r)}" for i, r in enumerate(rules, 1)] or ["  (no rules)"]
    return "\n".join(lines)


def rule_line(r: dict[str, Any]) -> str:
    what = str(r.get("decision"))
    if what == "ask":
        n = r.get("approvers") or 1
        only = [str(w).removeprefix("group:") for w in r.get("from") or ()]
        what = f"ask {n} {'person' if n == 1 else 'people'}" + (f" from {' or '.join(only)}" if only else "")
    reason = f": {r['reason']}" if r.get("reason") else ""
    return f"{r.get('name')}: {what}{reason}"


def _read(path: str, hook: bool) -> Any:
    """The policy at ``path`` (a Central; a hook's Policy with ``hook``)."""
    from spanvisor.gate import central, policy

    if hook:
        return policy.load(path)
    return central.load(path)


def cmd_check(args: argparse.Namespace, config: Config) -> int:
    from spanvisor.gate.lint import findings
    from spanvisor.gate.policy import PolicyError

    try:
        got = _read(args.file, args.hook)
    except PolicyError as exc:
        print(f"✗ {exc}", file=sys.stderr)
        return 1
    rules = got.rules if args.hook else got.policy.rules
    found = findings(rules)
    what = f"{len(rules)} rule{'s' if len(rules) != 1 else ''}"
    for f in found:
        print(f"✗ rule {f.rule!r}: {f.message}" if f.rule != "default" else f"✗ default: {f.message}")
    if found:
        print(f"{args.file}: reads ({what}), but {len(found)} finding{'s' if len(found) != 1 else ''} above")
        return 1
    version = "" if args.hook else f", version {got.version}"
    print(f"✓ {args.file}: {what}, every one reachable{version}")
    return 0


def load_cases(path: str) -> list[dict[str, Any]]:
    """The cases of a TOML (``[[case]]``) or JSON (a list, or ``{"case": […]}``) file."""
    import tomllib

    with open(path, "rb") as f:
        data = f.read()
    if path.endswith(".json"):
        doc: Any = json.loads(data)
    else:
        doc = tomllib.loads(data.decode("utf-8"))
    cases = doc.get("case") if isinstance(doc, dict) else doc
    if not isinstance(cases, list) or not all(isinstance(c, dict) for c in cases):
        raise ValueError('the cases must be a list of tables ([[case]] in TOML, a list or {"case": [...]} in JSON)')
    for i, c in enumerate(cases, 1):
        unknown = set(c) - CASE_KEYS
        if unknown:
            raise ValueError(f"case {i}: unknown key(s) {', '.join(sorted(unknown))}")
        if c.get("expect") not in ("allow", "ask", "deny"):
            raise ValueError(f"case {i}: expect must be allow, ask or deny")
        if not isinstance(c.get("tool"), str) or not c["tool"]:
            raise ValueError(f"case {i}: tool must name the tool (e.g. Bash)")
    return cases


def run_case(policy: Any, case: dict[str, Any]) -> tuple[bool, str, str]:
    """(passed, expected, got) for one case, each said in words."""
    from spanvisor.clis import registry
    from spanvisor.gate import contracts as gc
    from spanvisor.gate.rules import Facts, cli_of

    tool_input = dict(case.get("input") or {})
    if "command" in case:
        tool_input["command"] = case["command"]
    # A case names its CLI, else its agent's, else the first built-in one (as docs/reference/policy.md says).
    cli = case.get("cli") or cli_of(str(case.get("agent") or "")) or registry.NAMES[0]
    call = gc.Call(cli, "", None, case["tool"], tool_input, None, case.get("cwd"))
    task = case.get("task") or {}

    def known(value: Any) -> tuple[str, ...]:
        return (str(value),) if value else ()

    facts = Facts(
        agent=known(case.get("agent")),
        cli=(cli,),
        owner=known(case.get("owner")),
        task={k: known(task.get(k)) for k in ("id", "name", "repo")},
    )
    got = policy.decide(call, facts, resolve=False)
    rule = got.by.split(":", 1)[1]
    said = _words(got.verdict, got.approvers, got.approvers_from, rule)
    want_from = tuple(case.get("from") or ())
    ok = got.verdict == case["expect"]
    if case["expect"] == "ask" and "approvers" in case:
        ok = ok and got.approvers == case["approvers"]
    if "from" in case:
        ok = ok and {w.casefold() for w in got.approvers_from} == {w.casefold() for w in want_from}
    if "rule" in case:
        ok = ok and rule == case["rule"]
    expected = _words(case["expect"], case.get("approvers"), want_from if "from" in case else None, case.get("rule"))
    return ok, expected, said


def _words(verdict: str, approvers: Any, only: Any, rule: Any) -> str:
    text = verdict
    if verdict == "ask" and approvers is not None:
        text += f" {approvers} {'person' if approvers == 1 else 'people'}"
    if verdict == "ask" and only:
        text += " from " + " or ".join(str(w).removeprefix("group:") for w in only)
    return text + (f" (rule {rule})" if rule else "")


def cmd_test(args: argparse.Namespace, config: Config) -> int:
    from spanvisor.gate.policy import PolicyError

    try:
        got = _read(args.file, args.hook)
    except PolicyError as exc:
        print(f"✗ {exc}", file=sys.stderr)
        return 2
    try:
        cases = load_cases(args.cases)
    except (OSError, ValueError) as exc:
        print(f"✗ {args.cases}: {exc}", file=sys.stderr)
        return 2
    policy = got if args.hook else got.policy
    failed = 0
    for i, case in enumerate(cases, 1):
        ok, expected, said = run_case(policy, case)
        name = case.get("name") or f"case {i}: {case['tool']} {case.get('command') or ''}".rstrip()
        if ok:
            print(f"ok    {name}: {said}")
            continue
        failed += 1
        print(f"FAIL  {name}\n      expected: {expected}\n      got:      {said}")
    version = "" if args.hook else f" of {got.version}"
    print(f"{len(cases) - failed} passed, {failed} failed{version}")
    return 1 if failed else 0


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("policy", help="the central policy: show the server's, check and test a file")
    verbs = p.add_subparsers(dest="verb", required=True)
    show = verbs.add_parser("show", help="the version the server enforces, and its rules")
    show.add_argument("--url", help=f"control API (default: ${ENV_URL} or {DEFAULT_URL})")
    show.add_argument("--token", help="bearer token (default: your login, then the control tokens)")
    show.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for the answer (default 10)")
    show.add_argument("--json", action="store_true", help="JSON, as the control API gives it")
    show.set_defaults(func=cmd_show)
    check = verbs.add_parser("check", help="read a policy file (or directory) and say what is wrong with it")
    check.add_argument("file")
    check.add_argument("--hook", action="store_true", help="check it as a hook's policy (default: ask)")
    check.set_defaults(func=cmd_check)
    test = verbs.add_parser("test", help="run a table of calls against a policy: non-zero on a mismatch")
    test.add_argument("file")
    test.add_argument("cases", help="TOML ([[case]]) or JSON: tool, command or input, expect, approvers, from, rule")
    test.add_argument("--hook", action="store_true", help="test it as a hook's policy (default: ask)")
    test.set_defaults(func=cmd_test)


__all__ = ["load_cases", "register", "run_case", "shown"]
