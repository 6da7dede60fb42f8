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
past. A command that cannot be read may be any command: it needs what the
strictest rule that could match any command needs, and at least
``unreadable`` (ask, or deny), never allowed, so that it never lowers a
rule such as two people from sre. A command that does more than its words
(:mod:`spanvisor.gate.escapes`: ``git diff --output=…``, ``find -delete``)
is never allowed by an allow rule (``policy:beyond-allow`` asks). One
longer than the gate reads (100,000 characters) is
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

import os.path
import threading
import tomllib
from typing import Any, Literal, NamedTuple

from spanvisor.gate import paths, shell
from spanvisor.gate.contracts import Call
from spanvisor.gate.readlimit import read_at_most
from spanvisor.gate.requirement import STRICTNESS, narrower
from spanvisor.gate.rules import (
    KNOWN_NOTHING,
    MAX_APPROVERS,
    VERDICTS,
    Facts,
    PolicyError,
    Rule,
    Subject,
    Verdict,
    choice,
    rule,
    shown,
)

Fallback = Literal["allow", "deny"]
Unreadable = Literal["ask", "deny"]
FALLBACKS: tuple[Fallback, ...] = ("allow", "deny")
UNREADABLE: tuple[Unreadable, ...] = ("ask", "deny")
DEFAULT_TIMEOUT_S = 300.0
# How a patch in Codex's format starts.
PATCH_START = "*** Begin Patch"
_TOP = {"name", "default", "timeout", "on_timeout", "on_unreachable", "unreadable", "rule"}


class Ruling(NamedTuple):
    """What the policy says of one call: the verdict and who said it
    (``policy:<rule name>``, ``policy:default`` or ``policy:unreadable``;
    ``central:…`` for the server's central policy), and for an ask, how
    many people and whose approvals count."""

    verdict: Verdict
    by: str
    reason: str | None = None
    approvers: int = 1
    approvers_from: tuple[str, ...] = ()


class Policy(NamedTuple):
    rules: tuple[Rule, ...] = ()
    default: Verdict = "ask"
    timeout_s: float = DEFAULT_TIMEOUT_S
    on_timeout: Fallback = "deny"
    on_unreachable: Fallback = "deny"
    unreadable: Unreadable = "ask"
    name: str | None = None
    label: str = "policy"  # how its rulings name it: "policy" (the hook's), "central" (the server's)

    @property
    def uses_facts(self) -> bool:
        """Whether a rule looks at the agent, the CLI, the owner or the task."""
        return any(r.agents or r.clis or r.owners or r.task for r in self.rules)

    def decide(self, call: Call, facts: Facts = KNOWN_NOTHING, resolve: bool = True) -> Ruling:
        """The policy's ruling on ``call``; ``facts``: what is known of its
        agent and task; ``resolve``: paths are resolved on this machine
        (symlinks, the working directory), not where they are only named."""
        command = call.command
        if command is None:
            subjects = _target_subjects(call, resolve)
            return _strictest([self._first(call.tool, s, facts) for s in subjects], subjects)
        if len(command) > shell.MAX_COMMAND:
            # Above the cap nothing is read, so nothing may be allowed or asked about blind.
            why = f"the command is {len(command):,} characters, over the {shell.MAX_COMMAND:,} the gate reads"
            return Ruling("deny", f"{self.label}:size-cap", why)
        parsed = shell.parse(command)
        whole = " ".join(command.split())
        subjects = [
            Subject(u.text, (u.text,), (u.text, u.bare) if u.bare else (u.text,), "command") for u in parsed.units
        ]
        if not subjects:
            subjects = [Subject(whole, (whole,), (whole,), "command")]
        # A patch given as a command (Codex's ``apply_patch`` through its
        # shell) names files as surely as a file tool: path rules see them.
        named = dict.fromkeys((*call.paths, *(paths.patched(command) if PATCH_START in command else ())))
        subjects += _path_subjects(tuple(named), call.cwd, resolve)
        rulings = [self._first(call.tool, s, facts) for s in subjects]
        for i, unit in enumerate(parsed.units):
            if unit.risk is not None and rulings[i].verdict == "allow":
                # It does more than its words (:mod:`.escapes`): no allow rule allows that.
                rulings[i] = self._beyond(unit, rulings[i])
        # A deny rule matches the whole text too: what the parser flattened
        # (a here-document's body, a quoted script) is still seen by it.
        whole_subject = Subject(whole, (), (whole, command), "command")
        rulings += [
            self._ruling(r) for r in self.rules if r.decision == "deny" and r.matches(call.tool, whole_subject, facts)
        ][:1]
        if not parsed.readable:
            rulings.append(self._unread(call.tool, facts, "; ".join(parsed.unread)))
        return _strictest(rulings, subjects)

    def _beyond(self, unit: shell.Unit, allowed: Ruling) -> Ruling:
        """An allowed command that does more than its words: asked about."""
        rule = allowed.by.split(":", 1)[1]
        why = f"{unit.text[:200]!r} {unit.risk}: {rule} allows only what a command's words say"
        return Ruling("ask", f"{self.label}:beyond-allow", why)

    def _unread(self, tool: str, facts: Facts, why: str) -> Ruling:
        """The ruling on a command the gate cannot read: it may be any
        command, so it needs what the strictest rule that could match any
        command needs (and the default, and at least ``unreadable``). A
        plain one-person ask would lower a rule such as two people from sre
        (``k=kubectl; $k apply -f prod.yaml``) to anyone."""
        said = f"the gate cannot read the command: {why}"
        own = Ruling(self.unreadable, f"{self.label}:unreadable", said)
        could: list[Ruling] = []
        for r in self.rules:
            found = r.may_match_unread(tool, facts)
            if found is not False:
                could.append(self._ruling(r))
            if found is True:
                break  # every command stops here: no rule after it, nor the default, decides one
        else:
            could.append(Ruling(self.default, f"{self.label}:default"))
        strictest = _stricter(could)
        if STRICTNESS[strictest.verdict] < STRICTNESS[own.verdict]:
            return own
        if strictest.verdict == own.verdict and strictest.approvers == 1 and not strictest.approvers_from:
            return own
        rule = strictest.by.split(":", 1)[1]
        what = "the policy's default" if rule == "default" else f"rule {rule}"
        return strictest._replace(reason=f"{said}; it may be a command {what} {_needs(strictest)}")

    def _ruling(self, rule: Rule) -> Ruling:
        return Ruling(rule.decision, f"{self.label}:{rule.name}", rule.reason, rule.approvers, rule.approvers_from)

    def _first(self, tool: str, subject: Subject, facts: Facts) -> Ruling:
        """The first rule that matches decides; a rule that may match (a fact
        unknown here) counts as the stricter of it and what comes after."""
        maybe: list[Ruling] = []
        for r in self.rules:
            found = r.matches(tool, subject, facts)
            if found is True:
                return _stricter([*maybe, self._ruling(r)])
            if found is None:
                maybe.append(self._ruling(r))
        return _stricter([*maybe, Ruling(self.default, f"{self.label}:default")])


def _needs(ruling: Ruling) -> str:
    """What a ruling requires, in words (``asks 2 people from group:sre``)."""
    if ruling.verdict != "ask":
        return "denies" if ruling.verdict == "deny" else "allows"
    people = "1 person" if ruling.approvers == 1 else f"{ruling.approvers} people"
    only = f" from {' or '.join(ruling.approvers_from)}" if ruling.approvers_from else ""
    return f"asks {people}{only} for"


def _stricter(rulings: list[Ruling]) -> Ruling:
    """The strictest of rulings on one thing (the last is the one that
    certainly applies): deny > ask (the most people, the narrower from) > allow."""
    if len(rulings) == 1:
        return rulings[0]
    top = max(STRICTNESS[r.verdict] for r in rulings)
    worst = [r for r in rulings if STRICTNESS[r.verdict] == top]
    chosen = max(worst, key=lambda r: r.approvers) if top == STRICTNESS["ask"] else worst[-1]
    only = chosen.approvers_from
    for r in worst:
        only = narrower(only, r.approvers_from)
    return chosen._replace(approvers_from=only)


def _strictest(rulings: list[Ruling], subjects: list[Subject]) -> Ruling:
    top = max(STRICTNESS[r.verdict] for r in rulings)
    worst = [r for r in rulings if STRICTNESS[r.verdict] == top]
    if top == STRICTNESS["allow"]:
        names = list(dict.fromkeys(r.by for r in worst))
        if len(names) == 1:
            return Ruling("allow", names[0])
        label = names[0].split(":", 1)[0]
        return Ruling("allow", f"{label}:" + "+".join(n.split(":", 1)[1] for n in names))
    chosen = max(worst, key=lambda r: r.approvers)
    index = rulings.index(chosen)
    if top == STRICTNESS["ask"]:
        only = chosen.approvers_from
        for r in worst:
            only = narrower(only, r.approvers_from)
        chosen = chosen._replace(approvers_from=only)
    if chosen.reason is None and len(subjects) > 1:
        # Say which part decided, so a person sees why `ls && rm x` was stopped.
        part = subjects[index].shown if index < len(subjects) else None
        if part:
            word = "denied" if chosen.verdict == "deny" else "needs a person"
            return chosen._replace(reason=f"{part[:200]!r} {word} ({chosen.by})")
    return chosen


def _target_subjects(call: Call, resolve: bool = True) -> list[Subject]:
    """Each path the call names (any one denied denies it, every one must
    be allowed), else its other target, else nothing."""
    named = call.paths
    if named:
        return _path_subjects(named, call.cwd, resolve)
    target = call.target
    if target is None:
        return [Subject(None, (), ())]
    kind = "url" if isinstance(call.tool_input.get("url"), str) and call.tool_input.get("url") else "pattern"
    return [Subject(target, (target,), (target,), kind)]


def _path_subjects(named: tuple[str, ...], cwd: str | None, resolve: bool) -> list[Subject]:
    out = []
    for path in named:
        exact, loose = path_forms(path, cwd, resolve)
        out.append(Subject(path, exact, loose, "path"))
    return out


def path_forms(path: str, cwd: str | None, resolve: bool = True) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """A file path's forms: (what an allow rule must match: the resolved
    absolute path, and the path relative to the working directory when it
    lies inside it; what a deny or ask rule may match: those, as given and
    normalised without resolving). Without ``resolve`` (the server, where
    the path is only named), the path normalised as given."""
    if not resolve:
        norm = os.path.normpath(path) if path else path
        if cwd is not None and not os.path.isabs(path):
            joined = os.path.normpath(os.path.join(cwd, path))
            return (joined, norm), tuple(dict.fromkeys((joined, norm, path)))
        return (norm,), tuple(dict.fromkeys((norm, path)))
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


def parse(doc: dict[str, Any], central: bool = False) -> Policy:
    """A policy from its TOML document. ``central``: the server's, whose
    ``default`` is ``allow`` (a floor: a call no central rule names is left
    to the local policy and the request) and whose rulings say ``central:``."""
    unknown = set(doc) - _TOP
    if unknown:
        raise PolicyError(f"unknown key(s) {', '.join(sorted(unknown))}")
    raw_rules = doc.get("rule", [])
    if not isinstance(raw_rules, list):
        raise PolicyError("rule must be an array of tables ([[rule]])")
    rules = tuple(rule(r, i) for i, r in enumerate(raw_rules))
    names = [r.name for r in rules]
    if len(set(names)) != len(names):
        raise PolicyError("two rules have the same name: the audit trail could not tell them apart")
    timeout = doc.get("timeout", DEFAULT_TIMEOUT_S)
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not 0 < timeout <= 86_400:
        raise PolicyError(f"timeout must be a number of seconds in (0, 86400], not {shown(timeout)}")
    name = doc.get("name")
    if name is not None and (not isinstance(name, str) or not name.strip() or len(name) > 64 or not name.isprintable()):
        raise PolicyError(f"name must be a short printable string, not {shown(name)}")
    return Policy(
        rules=rules,
        default=choice(doc.get("default", "allow" if central else "ask"), VERDICTS, "default"),
        timeout_s=float(timeout),
        on_timeout=choice(doc.get("on_timeout", "deny"), FALLBACKS, "on_timeout"),
        on_unreachable=choice(doc.get("on_unreachable", "deny"), FALLBACKS, "on_unreachable"),
        unreadable=choice(doc.get("unreadable", "ask"), UNREADABLE, "unreadable"),
        name=name.strip() if isinstance(name, str) else None,
        label="central" if central else "policy",
    )


def read_text(path: str) -> str:
    """A policy file's text; :class:`PolicyError` saying what is wrong."""
    try:
        with open(path, "rb") as f:
            data = read_at_most(f, 16 * 1024 * 1024)
    except OSError as exc:
        raise PolicyError(f"cannot read the policy file {path}: {exc.strerror or exc}") from None
    if len(data) > 16 * 1024 * 1024:
        raise PolicyError(f"the policy file {path} is over 16 MiB")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PolicyError(f"the policy file {path} is not UTF-8 (byte {exc.start})") from None


def toml_doc(text: str, path: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PolicyError(f"the policy file {path} is not valid TOML: {exc}") from None
    except RecursionError:
        raise PolicyError(f"the policy file {path} is nested too deeply") from None


# Policies parsed from a file's exact text, the newest few: the launcher
# decides every call of a session in one process, from the same file. The
# file is read on every call and its text is the key (never its time or
# size), so an edit counts from the next call, however soon it comes.
_PARSED: dict[tuple[str, str], Policy] = {}
_PARSED_MOST = 8
_PARSING = threading.Lock()


def load(path: str | None) -> Policy:
    """The policy at ``path``; with none, every call asks a person. Any
    problem is a :class:`PolicyError` saying what to fix."""
    if not path:
        return Policy()
    text = read_text(path)
    key = (path, text)
    found = _PARSED.get(key)
    if found is not None:
        return found
    policy = parse(toml_doc(text, path))
    with _PARSING:  # the launcher's calls run on several threads
        while len(_PARSED) >= _PARSED_MOST:
            _PARSED.pop(next(iter(_PARSED)))
        _PARSED[key] = policy
    return policy


__all__ = [
    "DEFAULT_TIMEOUT_S",
    "MAX_APPROVERS",
    "Facts",
    "Policy",
    "PolicyError",
    "Rule",
    "Ruling",
    "Subject",
    "load",
    "parse",
    "path_forms",
    "read_text",
    "toml_doc",
]
