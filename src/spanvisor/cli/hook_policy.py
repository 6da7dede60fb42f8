"""The policy ``spanvisor hook`` applies before asking a person.

A TOML file (``SPANVISOR_HOOK_POLICY`` or ``--policy``)::

    default = "ask"            # allow | ask | deny: when no rule matches
    timeout = 300              # seconds a person has to decide
    on_timeout = "deny"        # allow | deny: the answer when nobody did
    on_unreachable = "deny"    # allow | deny: the control API cannot be reached

    [[rule]]
    name = "read-only"
    tool = ["Read", "Glob", "Grep", "read_file"]    # globs over the tool name
    decision = "allow"

    [[rule]]
    name = "no-force-push"
    tool = "Bash"
    command = "git push*--force*"                   # a glob over the whole target
    decision = "deny"
    reason = "force pushes are not allowed"

    [[rule]]
    name = "prod"
    command_regex = "\\bkubectl\\b.*\\bprod\\b"    # searched in the target
    decision = "ask"
    approvers = 2                                   # two people, never the requester

The first rule that matches decides. A rule matches when each of its
conditions does: ``tool`` (one glob or a list), ``command`` (globs over the
call's target: a shell command, else a file path, else a URL or pattern)
and ``command_regex``. A rule with a command condition never matches a call
without a target. An unreadable policy is an error the hook turns into a
denial: a policy that cannot be read must not allow anything.
"""

from __future__ import annotations

import fnmatch
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from spanvisor.canonical import MAX_APPROVERS

Verdict = Literal["allow", "ask", "deny"]
Fallback = Literal["allow", "deny"]
VERDICTS: tuple[Verdict, ...] = ("allow", "ask", "deny")
FALLBACKS: tuple[Fallback, ...] = ("allow", "deny")
DEFAULT_TIMEOUT_S = 300.0
_TOP = {"default", "timeout", "on_timeout", "on_unreachable", "rule"}
_RULE = {"name", "tool", "command", "command_regex", "decision", "reason", "approvers"}


class PolicyError(ValueError):
    """The policy file cannot be read or says something unknown."""


@dataclass(frozen=True, slots=True)
class Rule:
    name: str
    decision: Verdict
    tools: tuple[str, ...] = ()
    commands: tuple[str, ...] = ()
    regex: re.Pattern[str] | None = None
    reason: str | None = None
    approvers: int = 1  # an "ask": how many distinct verified people must approve

    def matches(self, tool: str, target: str | None) -> bool:
        if self.tools and not any(fnmatch.fnmatchcase(tool, g) for g in self.tools):
            return False
        if self.commands or self.regex is not None:
            if target is None:
                return False
            if self.commands and not any(fnmatch.fnmatchcase(target, g) for g in self.commands):
                return False
            if self.regex is not None and not self.regex.search(target):
                return False
        return True


@dataclass(frozen=True, slots=True)
class Ruling:
    """What the policy says of one call: the verdict and who said it
    (``policy:<rule name>`` or ``policy:default``)."""

    verdict: Verdict
    by: str
    reason: str | None = None
    approvers: int = 1


@dataclass(frozen=True, slots=True)
class Policy:
    rules: tuple[Rule, ...] = ()
    default: Verdict = "ask"
    timeout_s: float = DEFAULT_TIMEOUT_S
    on_timeout: Fallback = "deny"
    on_unreachable: Fallback = "deny"

    def decide(self, tool: str, target: str | None) -> Ruling:
        for rule in self.rules:
            if rule.matches(tool, target):
                return Ruling(rule.decision, f"policy:{rule.name}", rule.reason, rule.approvers)
        return Ruling(self.default, "policy:default")


def _choice(value: Any, allowed: tuple[str, ...], what: str) -> Any:
    if value not in allowed:
        raise PolicyError(f"{what} must be one of {', '.join(allowed)}, not {value!r}")
    return value


def _globs(value: Any, what: str) -> tuple[str, ...]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items or not all(isinstance(x, str) and x for x in items):
        raise PolicyError(f"{what} must be a glob or a non-empty list of globs")
    return tuple(items)


def _rule(raw: Any, index: int) -> Rule:
    if not isinstance(raw, dict):
        raise PolicyError(f"rule {index + 1} is not a table")
    unknown = set(raw) - _RULE
    if unknown:
        raise PolicyError(f"rule {index + 1}: unknown key(s) {', '.join(sorted(unknown))}")
    name = raw.get("name", f"rule-{index + 1}")
    if not isinstance(name, str) or not name:
        raise PolicyError(f"rule {index + 1}: name must be a string")
    where = f"rule {name!r}"
    decision = _choice(raw.get("decision"), VERDICTS, f"{where}: decision")
    tools = _globs(raw["tool"], f"{where}: tool") if "tool" in raw else ()
    commands = _globs(raw["command"], f"{where}: command") if "command" in raw else ()
    regex = None
    if "command_regex" in raw:
        if not isinstance(raw["command_regex"], str):
            raise PolicyError(f"{where}: command_regex must be a string")
        try:
            regex = re.compile(raw["command_regex"])
        except re.error as exc:
            raise PolicyError(f"{where}: command_regex does not compile: {exc}") from None
    reason = raw.get("reason")
    if reason is not None and not isinstance(reason, str):
        raise PolicyError(f"{where}: reason must be a string")
    approvers = raw.get("approvers", 1)
    if isinstance(approvers, bool) or not isinstance(approvers, int) or not 1 <= approvers <= MAX_APPROVERS:
        raise PolicyError(f"{where}: approvers must be a whole number from 1 to {MAX_APPROVERS}")
    if approvers > 1 and decision != "ask":
        raise PolicyError(f'{where}: approvers is for decision = "ask"')
    return Rule(name, decision, tools, commands, regex, reason, approvers)


def parse(doc: dict[str, Any]) -> Policy:
    unknown = set(doc) - _TOP
    if unknown:
        raise PolicyError(f"unknown key(s) {', '.join(sorted(unknown))}")
    raw_rules = doc.get("rule", [])
    if not isinstance(raw_rules, list):
        raise PolicyError("rule must be an array of tables ([[rule]])")
    rules = tuple(_rule(r, i) for i, r in enumerate(raw_rules))
    names = [r.name for r in rules]
    if len(set(names)) != len(names):
        raise PolicyError("two rules have the same name: the audit trail could not tell them apart")
    timeout = doc.get("timeout", DEFAULT_TIMEOUT_S)
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not 0 < timeout <= 86_400:
        raise PolicyError(f"timeout must be a number of seconds in (0, 86400], not {timeout!r}")
    return Policy(
        rules=rules,
        default=_choice(doc.get("default", "ask"), VERDICTS, "default"),
        timeout_s=float(timeout),
        on_timeout=_choice(doc.get("on_timeout", "deny"), FALLBACKS, "on_timeout"),
        on_unreachable=_choice(doc.get("on_unreachable", "deny"), FALLBACKS, "on_unreachable"),
    )


def load(path: str | None) -> Policy:
    """The policy at ``path``; with none, every call asks a person."""
    if not path:
        return Policy()
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise PolicyError(f"cannot read the policy file {path}: {exc.strerror or exc}") from None
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PolicyError(f"the policy file {path} is not valid TOML: {exc}") from None
    return parse(doc)


__all__ = ["DEFAULT_TIMEOUT_S", "Policy", "PolicyError", "Rule", "Ruling", "load", "parse"]
