"""One rule of a policy, and what it is matched against.

The same rules serve the coding agents' hook (``SPANVISOR_HOOK_POLICY``)
and the server's central policy (``SPANVISOR_POLICY``). A rule matches a
call when each condition it names does:

* ``tool``: globs over the tool's name;
* ``command`` (globs) and ``command_regex`` (searched): over what the call
  acts on, each simple command of a shell command, each path, else its URL
  or pattern;
* ``path``: globs over the paths only; ``url``: globs over a URL only;
* ``agent``, ``cli``, ``owner``: globs over the agent's id (its
  ``service.name`` for a coding agent), the coding-agent CLI (its
  adapter's name: ``spanvisor hook CLI``) and the person the agent works
  for (``agent.owner``);
* ``task``: a table of globs over the task's ``id``, ``name`` and ``repo``.

What a rule is matched against may be *unknown* where it is evaluated
(a hook does not know every fact the server knows of the task): such a
condition may or may not hold, and the policy then takes the stricter of
the rule and what the rules after it say (:meth:`Policy.decide`). A fact
known to be absent (a task without an owner) matches no glob.

Standard library only: the server's request path imports this without
the shell parser.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping
from typing import Any, Literal, NamedTuple

from spanvisor.clis import registry

Verdict = Literal["allow", "ask", "deny"]
VERDICTS: tuple[Verdict, ...] = ("allow", "ask", "deny")
# Most people one request may require (spanvisor.canonical.MAX_APPROVERS).
MAX_APPROVERS = 5
# Most entries of a rule's ``from``, and the longest (spanvisor.canonical.check_from).
MAX_FROM = 20
MAX_FROM_ENTRY = 128
TASK_KEYS = frozenset({"id", "name", "repo"})
RULE_KEYS = frozenset(
    {
        "name",
        "tool",
        "command",
        "command_regex",
        "path",
        "url",
        "agent",
        "cli",
        "owner",
        "task",
        "decision",
        "reason",
        "approvers",
        "from",
    }
)
# A match: True, False, or None when it depends on a fact unknown here.
Match = bool | None
# A fact: the values it may have (one when known; () when known to be absent); None: unknown.
Fact = tuple[str, ...] | None


class PolicyError(ValueError):
    """The policy file cannot be read or says something unknown."""


class Facts(NamedTuple):
    """What is known of the call's agent and task where a rule is matched."""

    agent: Fact = None
    cli: Fact = None
    owner: Fact = None
    task: Mapping[str, Fact] = {}

    def task_fact(self, key: str) -> Fact:
        return self.task.get(key) if key in self.task else None


KNOWN_NOTHING = Facts()


def fact(value: str | None) -> tuple[str, ...]:
    """A known fact: its one value, or () when it is absent."""
    return (value,) if value else ()


def cli_of(agent: str) -> str | None:
    """The coding-agent CLI an agent id names (its ``service.name``, as
    the CLI's adapter lists it), for ``cli`` rules; None for any other agent."""
    adapter = registry.by_service(agent)
    return adapter.name if adapter is not None else None


def server_facts(agent: str, owner: str | None, task_id: str, task_name: str | None, repo: str | None) -> Facts:
    """Everything the server knows of a request's agent and task (each
    known: absent is absent, never unknown)."""
    return Facts(
        agent=fact(agent),
        cli=fact(cli_of(agent)),
        owner=fact(owner),
        task={"id": fact(task_id), "name": fact(task_name), "repo": fact(repo)},
    )


class Subject(NamedTuple):
    """One thing a call does, in the forms rules are matched against: an
    allow rule must match one of ``exact`` (what runs, resolved); deny and
    ask rules may match any of ``loose`` as well. ``kind``: ``command``,
    ``path``, ``url``, ``pattern`` (a search), or None (nothing)."""

    shown: str | None
    exact: tuple[str, ...]
    loose: tuple[str, ...]
    kind: str | None = None


class Rule(NamedTuple):
    name: str
    decision: Verdict
    tools: tuple[str, ...] = ()
    commands: tuple[str, ...] = ()
    regex: re.Pattern[str] | None = None
    reason: str | None = None
    approvers: int = 1  # an "ask": how many distinct verified people must approve
    paths: tuple[str, ...] = ()
    urls: tuple[str, ...] = ()
    agents: tuple[str, ...] = ()
    clis: tuple[str, ...] = ()
    owners: tuple[str, ...] = ()
    task: tuple[tuple[str, tuple[str, ...]], ...] = ()
    approvers_from: tuple[str, ...] = ()  # an "ask": whose approvals count ("group:sre", "alice")

    def matches(self, tool: str, subject: Subject, facts: Facts = KNOWN_NOTHING) -> Match:
        if self.tools and (not tool or not any(fnmatch.fnmatchcase(tool, g) for g in self.tools)):
            return False
        forms = subject.exact if self.decision == "allow" else subject.loose
        if self.commands or self.regex is not None:
            if not forms:
                return False
            if self.commands and not any(fnmatch.fnmatchcase(f, g) for f in forms for g in self.commands):
                return False
            if self.regex is not None and not any(self.regex.search(f) for f in forms):
                return False
        if self.paths and (subject.kind != "path" or not _any(forms, self.paths)):
            return False
        if self.urls and (subject.kind != "url" or not _any(forms, self.urls)):
            return False
        found: Match = True
        return self._facts_hold(facts, found)

    def _facts_hold(self, facts: Facts, found: Match) -> Match:
        """``found``, unless a fact this rule names rules it out (False) or
        is not known (None: the rule may match)."""
        for globs, known in (
            (self.agents, facts.agent),
            (self.clis, facts.cli),
            (self.owners, facts.owner),
            *((g, facts.task_fact(k)) for k, g in self.task),
        ):
            if globs:
                one = _fact_matches(known, globs)
                if one is False:
                    return False
                if one is None:
                    found = None
        return found

    def may_match_unread(self, tool: str, facts: Facts = KNOWN_NOTHING) -> Match:
        """Whether this rule matches a shell command the gate cannot read:
        what it runs is unknown, so a ``command`` or ``command_regex``
        condition may hold (a command name ``$k`` may be ``kubectl``): None
        (it may), True (it matches every command: no such condition, or the
        glob ``*``, and every fact holds), False (its tool or a fact rules
        it out; a rule on paths or URLs never matches a shell command)."""
        if self.tools and (not tool or not any(fnmatch.fnmatchcase(tool, g) for g in self.tools)):
            return False
        if self.paths or self.urls:
            return False
        found: Match = True if self.regex is None and (not self.commands or "*" in self.commands) else None
        return self._facts_hold(facts, found)


def _any(forms: tuple[str, ...], globs: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatchcase(f, g) for f in forms for g in globs)


def _fact_matches(known: Fact, globs: tuple[str, ...]) -> Match:
    """Whether a fact matches: every value it may have does (True), none
    does (False), or it depends (None: unknown, or some of its values)."""
    if known is None:
        return None
    if not known:
        return False
    hits = [any(fnmatch.fnmatchcase(v, g) for g in globs) for v in known]
    return True if all(hits) else False if not any(hits) else None


# --- reading a rule ---------------------------------------------------------


def choice(value: Any, allowed: tuple[str, ...], what: str) -> Any:
    if not isinstance(value, str) or value not in allowed:
        raise PolicyError(f"{what} must be one of {', '.join(allowed)}, not {shown(value)}")
    return value


def shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def globs(value: Any, what: str) -> tuple[str, ...]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items or not all(isinstance(x, str) and x for x in items):
        raise PolicyError(f"{what} must be a glob or a non-empty list of globs")
    return tuple(items)


def approvers_from(value: Any, what: str) -> tuple[str, ...]:
    """A rule's ``from``: groups (``group:NAME``) and people, as a request's
    ``agent.approval.approvers_from`` takes them."""
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items or len(items) > MAX_FROM:
        raise PolicyError(f"{what} must be a name or a list of 1 to {MAX_FROM} names (group:NAME for a group)")
    out: list[str] = []
    for x in items:
        text = x.strip() if isinstance(x, str) else ""
        name = text[6:].strip() if text.startswith("group:") else text
        if not name or len(text) > MAX_FROM_ENTRY or not text.isprintable():
            raise PolicyError(
                f"{what}: {shown(x)} is not group:NAME or a person's name (printable, 1 to {MAX_FROM_ENTRY})"
            )
        out.append(f"group:{name}" if text.startswith("group:") else name)
    return tuple(dict.fromkeys(out))


def _task(value: Any, where: str) -> tuple[tuple[str, tuple[str, ...]], ...]:
    if not isinstance(value, dict) or not value:
        raise PolicyError(f'{where}: task must be a table, e.g. task = {{ repo = "*/infra" }}')
    unknown = set(value) - TASK_KEYS
    if unknown:
        raise PolicyError(f"{where}: task: unknown key(s) {', '.join(sorted(unknown))} (known: id, name, repo)")
    return tuple((k, globs(v, f"{where}: task.{k}")) for k, v in sorted(value.items()))


def rule(raw: Any, index: int) -> Rule:
    if not isinstance(raw, dict):
        raise PolicyError(f"rule {index + 1} is not a table")
    unknown = set(raw) - RULE_KEYS
    if unknown:
        raise PolicyError(f"rule {index + 1}: unknown key(s) {', '.join(sorted(unknown))}")
    name = raw.get("name", f"rule-{index + 1}")
    if not isinstance(name, str) or not name:
        raise PolicyError(f"rule {index + 1}: name must be a string")
    where = f"rule {shown(name)}"
    decision = choice(raw.get("decision"), VERDICTS, f"{where}: decision")

    def opt(key: str) -> tuple[str, ...]:
        return globs(raw[key], f"{where}: {key}") if key in raw else ()

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
    only = approvers_from(raw["from"], f"{where}: from") if "from" in raw else ()
    if only and decision != "ask":
        raise PolicyError(f'{where}: from is for decision = "ask"')
    return Rule(
        name=name,
        decision=decision,
        tools=opt("tool"),
        commands=opt("command"),
        regex=regex,
        reason=reason,
        approvers=approvers,
        paths=opt("path"),
        urls=opt("url"),
        agents=opt("agent"),
        clis=opt("cli"),
        owners=opt("owner"),
        task=_task(raw["task"], where) if "task" in raw else (),
        approvers_from=only,
    )


__all__ = [
    "KNOWN_NOTHING",
    "MAX_APPROVERS",
    "RULE_KEYS",
    "Fact",
    "Facts",
    "Match",
    "PolicyError",
    "Rule",
    "Subject",
    "Verdict",
    "approvers_from",
    "choice",
    "cli_of",
    "fact",
    "globs",
    "rule",
    "server_facts",
    "shown",
]
