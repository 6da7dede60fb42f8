"""What ``spanvisor policy check`` says of a policy that reads: rules no
call can reach, because a rule before them matches every call they match.

Rule E (earlier) *covers* rule L (later) when each condition of E is
absent or at least as wide as L's: E's globs match L's glob patterns taken
as text (``git push*`` covers ``git push --force*``), a regex only covers
the same regex, and E names no condition L lacks. The first matching rule
decides, so a covered rule never decides a call; two exceptions keep it
reachable: an allow rule matches fewer forms of a command than a deny or
ask rule (never a command path's base name), so an allow never covers a
deny or ask; and a deny rule is also matched against a shell command's
whole text whatever comes first, so a deny covered by an earlier rule of
another decision is named with what it still does (and that it should
move up). The check is conservative: it names a rule only when it is sure.
"""

from __future__ import annotations

import fnmatch
from typing import NamedTuple

from spanvisor.gate.rules import Rule


class Finding(NamedTuple):
    rule: str
    message: str


def _covers(wide: tuple[str, ...], narrow: tuple[str, ...]) -> bool:
    """Whether globs ``wide`` match whatever ``narrow`` matches (``wide``
    empty: no condition, everything)."""
    if not wide:
        return True
    if not narrow:
        return False
    return all(any(fnmatch.fnmatchcase(n, w) for w in wide) for n in narrow)


def covers(e: Rule, later: Rule) -> bool:
    if e.decision == "allow" and later.decision != "allow":
        return False
    if e.regex is not None and (later.regex is None or later.regex.pattern != e.regex.pattern):
        return False
    pairs = (
        (e.tools, later.tools),
        (e.commands, later.commands),
        (e.paths, later.paths),
        (e.urls, later.urls),
        (e.agents, later.agents),
        (e.clis, later.clis),
        (e.owners, later.owners),
    )
    if not all(_covers(w, n) for w, n in pairs):
        return False
    theirs = dict(later.task)
    return all(_covers(globs, theirs.get(key, ())) for key, globs in e.task)


def _everything(r: Rule) -> bool:
    return not (r.tools or r.commands or r.regex or r.paths or r.urls or r.agents or r.clis or r.owners or r.task)


def findings(rules: tuple[Rule, ...]) -> list[Finding]:
    """Each rule that can never decide a call, and why."""
    out: list[Finding] = []
    for i, later in enumerate(rules):
        for e in rules[:i]:
            if not covers(e, later):
                continue
            if later.decision == "deny" and e.decision != "deny":
                why = (
                    f"shadowed by rule {e.name!r} for each command a shell runs and every other call: it only "
                    "denies a shell command whose whole text it matches (not one chained after another); "
                    f"put it before {e.name!r}"
                )
            elif _everything(e):
                why = f"unreachable: rule {e.name!r} before it matches every call"
            else:
                why = f"shadowed by rule {e.name!r}: every call it matches, {e.name!r} matches first"
            out.append(Finding(later.name, why))
            break
    every = next((r for r in rules if _everything(r)), None)
    if every is not None:
        out.append(Finding("default", f"never used: rule {every.name!r} matches every call"))
    return out


__all__ = ["Finding", "covers", "findings"]
