"""The policy the gate applies before asking a person.

A TOML file (``SPANVISOR_HOOK_POLICY`` or ``--policy``)::

    default = "ask"            # allow | ask | deny: when no rule matches
    timeout = 300              # seconds a person has to decide
    on_timeout = "deny"        # allow | deny: the answer when nobody did
    on_unreachable = "deny"    # allow | deny: the control API cannot be reached
    unreadable = "ask"         # ask | deny: a shell command the gate cannot read

    [[rule]]
    name = "read-only"
    tool = ["Read", "Glob", "Grep", "read_file"]    # globs over the tool name
    decision = "allow"

    [[rule]]
    name = "no-force-push"
    tool = "Bash"
    command = ["git push *--force*", "git push *-f*"]   # globs over one simple command
    decision = "deny"
    reason = "force pushes are not allowed"

Shell commands are decided per simple command (:mod:`spanvisor.gate.shell`):
each one the command runs (``ls && rm x`` runs ``ls`` and ``rm x``) is
decided by the first rule that matches it, and the call is as strict as its
strictest part: any part denied denies the call, any part asked asks (with
the most approvers any part needs), and it is allowed only when every part
is. Deny and ask rules also match the command path's base name (``/bin/rm``
as ``rm``) and deny rules the whole command text, so a deny is never walked
past. A command that cannot be read is ``unreadable`` (ask, or deny),
never allowed; one longer than the gate reads (100,000 characters) is
denied, with the reason (``policy:size-cap``). Every file path the call
names is decided the same way (:mod:`spanvisor.gate.paths`: lists, nested
objects and patches too): any one denied denies the call, and it is
allowed only when every one is. Paths are matched normalised (``..``
removed, symlinks resolved where they exist), absolute and, inside the
working directory, relative to it. A rule matches when each of its
conditions does: ``tool``, ``command`` (globs) and ``command_regex``
(searched); a rule with a command condition never matches a call without
a target. A policy that cannot be
read denies every call.
"""

from __future__ import annotations

import fnmatch
import os.path
import re
import tomllib
from typing import Any, Literal, NamedTuple

from spanvisor.gate import shell
from spanvisor.gate.contracts import Call

Verdict = Literal["allow", "ask", "deny"]
Fallback = Literal["allow", "deny"]
Unreadable = Literal["ask", "deny"]
VERDICTS: tuple[Verdict, ...] = ("allow", "ask", "deny")
FALLBACKS: tuple[Fallback, ...] = ("allow", "deny")
UNREADABLE: tuple[Unreadable, ...] = ("ask", "deny")
DEFAULT_TIMEOUT_S = 300.0
# Most people one request may require (spanvisor.canonical.MAX_APPROVERS).
MAX_APPROVERS = 5
_TOP = {"default", "timeout", "on_timeout", "on_unreachable", "unreadable", "rule"}
_RULE = {"name", "tool", "command", "command_regex", "decision", "reason", "approvers"}
_STRICTNESS = {"allow": 0, "ask": 1, "deny": 2}


class PolicyError(ValueError):
    """The policy file cannot be read or says something unknown."""


class Subject(NamedTuple):
    """One thing a call does, in the forms rules are matched against: an
    allow rule must match one of ``exact`` (what runs, resolved); deny and
    ask rules may match any of ``loose`` as well."""

    shown: str | None
    exact: tuple[str, ...]
    loose: tuple[str, ...]


class Rule(NamedTuple):
    name: str
    decision: Verdict
    tools: tuple[str, ...] = ()
    commands: tuple[str, ...] = ()
    regex: re.Pattern[str] | None = None
    reason: str | None = None
    approvers: int = 1  # an "ask": how many distinct verified people must approve

    def matches(self, tool: str, subject: Subject) -> bool:
        if self.tools and not any(fnmatch.fnmatchcase(tool, g) for g in self.tools):
            return False
        if self.commands or self.regex is not None:
            forms = subject.exact if self.decision == "allow" else subject.loose
            if not forms:
                return False
            if self.commands and not any(fnmatch.fnmatchcase(f, g) for f in forms for g in self.commands):
                return False
            if self.regex is not None and not any(self.regex.search(f) for f in forms):
                return False
        return True


class Ruling(NamedTuple):
    """What the policy says of one call: the verdict and who said it
    (``policy:<rule name>``, ``policy:default`` or ``policy:unreadable``)."""

    verdict: Verdict
    by: str
    reason: str | None = None
    approvers: int = 1


class Policy(NamedTuple):
    rules: tuple[Rule, ...] = ()
    default: Verdict = "ask"
    timeout_s: float = DEFAULT_TIMEOUT_S
    on_timeout: Fallback = "deny"
    on_unreachable: Fallback = "deny"
    unreadable: Unreadable = "ask"

    def decide(self, call: Call) -> Ruling:
        command = call.command
        if command is None:
            subjects = _target_subjects(call)
            return _strictest([self._first(call.tool, s) for s in subjects], subjects)
        if len(command) > shell.MAX_COMMAND:
            # Above the cap nothing is read, so nothing may be allowed or asked about blind.
            why = f"the command is {len(command):,} characters, over the {shell.MAX_COMMAND:,} the gate reads"
            return Ruling("deny", "policy:size-cap", why)
        parsed = shell.parse(command)
        whole = " ".join(command.split())
        subjects = [Subject(u.text, (u.text,), (u.text, u.bare) if u.bare else (u.text,)) for u in parsed.units]
        if not subjects:
            subjects = [Subject(whole, (whole,), (whole,))]
        rulings = [self._first(call.tool, s) for s in subjects]
        # A deny rule matches the whole text too: what the parser flattened
        # (a here-document's body, a quoted script) is still seen by it.
        whole_subject = Subject(whole, (), (whole, command))
        rulings += [
            Ruling("deny", f"policy:{r.name}", r.reason, 1)
            for r in self.rules
            if r.decision == "deny" and r.matches(call.tool, whole_subject)
        ][:1]
        if not parsed.readable:
            why = "; ".join(parsed.unread)
            rulings.append(Ruling(self.unreadable, "policy:unreadable", f"the gate cannot read the command: {why}"))
        return _strictest(rulings, subjects)

    def _first(self, tool: str, subject: Subject) -> Ruling:
        for rule in self.rules:
            if rule.matches(tool, subject):
                return Ruling(rule.decision, f"policy:{rule.name}", rule.reason, rule.approvers)
        return Ruling(self.default, "policy:default")


def _strictest(rulings: list[Ruling], subjects: list[Subject]) -> Ruling:
    top = max(_STRICTNESS[r.verdict] for r in rulings)
    worst = [r for r in rulings if _STRICTNESS[r.verdict] == top]
    if top == _STRICTNESS["allow"]:
        names = list(dict.fromkeys(r.by for r in worst))
        return Ruling("allow", names[0] if len(names) == 1 else "policy:" + "+".join(n[7:] for n in names))
    chosen = max(worst, key=lambda r: r.approvers)
    if chosen.reason is None and len(subjects) > 1:
        # Say which part decided, so a person sees why `ls && rm x` was stopped.
        index = rulings.index(chosen)
        part = subjects[index].shown if index < len(subjects) else None
        if part:
            word = "denied" if chosen.verdict == "deny" else "needs a person"
            return Ruling(chosen.verdict, chosen.by, f"{part[:200]!r} {word} ({chosen.by})", chosen.approvers)
    return chosen


def _target_subjects(call: Call) -> list[Subject]:
    """Each path the call names (any one denied denies it, every one must
    be allowed), else its other target, else nothing."""
    named = call.paths
    if named:
        out = []
        for path in named:
            exact, loose = path_forms(path, call.cwd)
            out.append(Subject(path, exact, loose))
        return out
    target = call.target
    if target is None:
        return [Subject(None, (), ())]
    return [Subject(target, (target,), (target,))]


def path_forms(path: str, cwd: str | None) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """A file path's forms: (what an allow rule must match: the resolved
    absolute path, and the path relative to the working directory when it
    lies inside it; what a deny or ask rule may match: those, as given and
    normalised without resolving)."""
    base = cwd or os.getcwd()
    joined = path if os.path.isabs(path) else os.path.join(base, path)
    norm = os.path.normpath(joined)
    try:
        real = os.path.realpath(norm)
        real_base = os.path.realpath(base)
    except (OSError, ValueError):
        real, real_base = norm, base
    exact = [real]
    rel = os.path.relpath(real, real_base) if real.startswith(real_base.rstrip("/") + "/") else None
    if rel is not None:
        exact.append(rel)
    loose = [*exact, path, norm]
    if cwd is not None and norm.startswith(base.rstrip("/") + "/"):
        loose.append(os.path.relpath(norm, base))
    return tuple(dict.fromkeys(exact)), tuple(dict.fromkeys(loose))


def _choice(value: Any, allowed: tuple[str, ...], what: str) -> Any:
    if not isinstance(value, str) or value not in allowed:
        raise PolicyError(f"{what} must be one of {', '.join(allowed)}, not {_shown(value)}")
    return value


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


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
    where = f"rule {_shown(name)}"
    decision = _choice(raw.get("decision"), VERDICTS, f"{where}: decision")
    tools = _globs(raw["tool"], f"{where}: tool") if "tool" in raw else ()
    commands = _globs(raw["command"], f"{where}: command") if "command" in raw else ()
    regex = None
    if "command_regex" in raw:
        if not isinstance(raw["command_regex"], str):
            raise PolicyError(f"{where}: command_regex must be a string")
        try:
            regex = re.compile(raw["command_regex"])
        except (re.error, RecursionError, OverflowError) as exc:
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
        raise PolicyError(f"timeout must be a number of seconds in (0, 86400], not {_shown(timeout)}")
    return Policy(
        rules=rules,
        default=_choice(doc.get("default", "ask"), VERDICTS, "default"),
        timeout_s=float(timeout),
        on_timeout=_choice(doc.get("on_timeout", "deny"), FALLBACKS, "on_timeout"),
        on_unreachable=_choice(doc.get("on_unreachable", "deny"), FALLBACKS, "on_unreachable"),
        unreadable=_choice(doc.get("unreadable", "ask"), UNREADABLE, "unreadable"),
    )


def load(path: str | None) -> Policy:
    """The policy at ``path``; with none, every call asks a person. Any
    problem is a :class:`PolicyError` saying what to fix."""
    if not path:
        return Policy()
    try:
        with open(path, "rb") as f:
            data = f.read(16 * 1024 * 1024 + 1)
    except OSError as exc:
        raise PolicyError(f"cannot read the policy file {path}: {exc.strerror or exc}") from None
    if len(data) > 16 * 1024 * 1024:
        raise PolicyError(f"the policy file {path} is over 16 MiB")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PolicyError(f"the policy file {path} is not UTF-8 (byte {exc.start})") from None
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PolicyError(f"the policy file {path} is not valid TOML: {exc}") from None
    except RecursionError:
        raise PolicyError(f"the policy file {path} is nested too deeply") from None
    return parse(doc)


__all__ = ["DEFAULT_TIMEOUT_S", "Policy", "PolicyError", "Rule", "Ruling", "Subject", "load", "parse", "path_forms"]
