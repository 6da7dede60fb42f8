"""Which budgets model calls' spending crosses (their prices are
:mod:`.prices`').

A task may carry ``agent.budget.usd`` / ``agent.budget.tokens``
on its root (or get its agent's default); an agent may have a daily dollar
budget, and all agents together a daily and a monthly one. Each level (80 %
and 100 % by default) is said once per scope and per day or month. Day and
month totals are this process's spending plus what other owners stored:
:class:`spanvisor.budgets.spend.SpendSync` shares them through the state
store (PostgreSQL: every replica and a restarted ``serve`` see the same
totals; the in-memory store: this process only). See ``docs/design/budgets.md``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from spanvisor.budgets.days import DayNames
from spanvisor.events import BudgetScope

# Costs are summed in nano-dollars: a level reached within that is reached.
EPSILON = 1e-9


@dataclass
class BudgetSettings:
    levels: tuple[float, ...] = (0.8, 1.0)
    # agent id -> dollars per task / per day; "*" applies to every agent
    task_usd: Mapping[str, float] = field(default_factory=dict)
    agent_day_usd: Mapping[str, float] = field(default_factory=dict)
    day_usd: float | None = None
    month_usd: float | None = None
    # The agents whose tasks are cancelled at their own budget when their root
    # says nothing (agent.budget.stop); "*": every agent. Empty: warn only.
    stop: frozenset[str] = frozenset()

    def for_agent(self, table: Mapping[str, float], agent: str) -> float | None:
        return table.get(agent, table.get("*"))

    def stops(self, agent: str) -> bool:
        return bool(self.stop) and ("*" in self.stop or agent in self.stop)


Crossing = tuple[BudgetScope, str, float, float, float]  # scope, subject, level, used, budget
# What one ledger key holds: scope, subject ("rivet:2026-11-22", "2026-11-22",
# "2026-11"), window (the day or month it counts in), agent ("" unless agent_day).
KeyMeta = tuple[BudgetScope, str, str, str]
MAX_KEYS = 4096


@dataclass(frozen=True, slots=True)
class KeyShare:
    """This process's part of one ledger key, as pushed to the state store."""

    scope: BudgetScope
    subject: str
    agent: str
    nanos: int
    said: tuple[float, ...]


class Ledger:
    """Spending by agent and day, by day and by month (in nano-dollars), and
    the budget levels already said for each.

    A key's total is this process's own spending plus what other owners
    (replicas, or this replica before a restart) put in the state store, as
    :class:`spanvisor.budgets.spend.SpendSync` last read it. A level is said
    when the total is at or past it and nobody has said it yet, so a total
    that rose through another replica's spending is said at the next call.
    Once :meth:`share` is called, a window's levels wait until its stored
    totals were read (:meth:`merge`), so a restarted process does not say
    again what was said before. Every method is O(1) on the tracker's path
    and does no I/O; the sync methods run on the same thread (the pipeline's
    loop). Bounded: old windows are forgotten past ``MAX_KEYS`` keys.
    """

    def __init__(self, settings: BudgetSettings) -> None:
        self.settings = settings
        self._own: dict[str, int] = {}
        self._others: dict[str, int] = {}
        self._said: dict[str, set[float]] = {}
        self._meta: dict[str, KeyMeta] = {}
        # key -> generation of its latest change not yet in the store
        self._changed: dict[str, int] = {}
        self._generation = 0
        self._gated = False
        # Windows whose stored totals were read (this owner's part restored),
        # and windows whose levels may be said (read, or given up waiting).
        self._read: set[str] = set()
        self._open: set[str] = set()
        self._latest_day = ""
        # Forget old windows past this many keys; doubled while today alone
        # is bigger, so a busy day does not rescan the keys on every call.
        self._limit = MAX_KEYS
        # Per call: the day's and month's names, and each agent's keys for a
        # day, made once (strftime and the f-strings were most of add()).
        self._day = DayNames()
        self._scopes: dict[tuple[str, str], tuple[tuple[BudgetScope, str, str, str, str], ...]] = {}
        # key -> (budget, the lowest total in dollars at which a level not said
        # yet is reached): below it a call can say nothing, and the levels are
        # not walked. Only ever too low (merge() may add levels said), never
        # too high, so a skipped check is one that would have said nothing.
        self._next: dict[str, tuple[float, float]] = {}
        self._levels: tuple[float, ...] = ()
        self._levels_of: tuple[float, ...] | None = None

    # -- the tracker's path --------------------------------------------------

    def add(self, agent: str, usd: float, end_ns: int) -> list[Crossing]:
        s = self.settings
        day, month = self._day.of(end_ns)
        # Whole nano-dollars, as the task's own cost: every order gives the same total.
        nanos = round(usd * 1e9)
        out: list[Crossing] = []
        scopes = self._scopes.get((agent, day))
        if scopes is None:
            if len(self._scopes) >= 1024:
                self._scopes.clear()
            scopes = self._scopes[(agent, day)] = (
                ("agent_day", f"{agent}:{day}", f"agent:{agent}:{day}", day, agent),
                ("day", day, f"day:{day}", day, ""),
                ("month", month, f"month:{month}", month, ""),
            )
        budgets = (s.for_agent(s.agent_day_usd, agent), s.day_usd, s.month_usd)
        own, meta, changed = self._own, self._meta, self._changed
        for (scope, subject, key, window, who), budget in zip(scopes, budgets, strict=True):
            total = own[key] = own.get(key, 0) + nanos
            if key not in meta:
                meta[key] = (scope, subject, window, who)
            self._generation += 1  # _touch(key), inline: three keys a call
            changed[key] = self._generation
            if budget and budget > 0 and (not self._gated or window in self._open):
                below = self._next.get(key)
                if below is not None and below[0] == budget and (total + self._others.get(key, 0)) / 1e9 < below[1]:
                    continue  # no level within reach: nothing to say
                out.extend(self._due(key, budget, self._sorted_levels()))
        self._latest_day = max(self._latest_day, day)
        if len(self._own) >= self._limit:
            self._forget_old()
            self._limit = max(MAX_KEYS, 2 * len(self._own))
        return out

    def _sorted_levels(self) -> tuple[float, ...]:
        levels = self.settings.levels
        if levels is not self._levels_of:
            self._levels, self._levels_of = tuple(sorted(levels)), levels
            self._next.clear()
        return self._levels

    def _touch(self, key: str) -> None:
        self._generation += 1
        self._changed[key] = self._generation

    def _due(self, key: str, budget: float, levels: tuple[float, ...]) -> list[Crossing]:
        scope, subject, _, _ = self._meta[key]
        used = (self._own.get(key, 0) + self._others.get(key, 0)) / 1e9
        said = self._said.get(key)
        if said is None:
            said = self._said[key] = set()
        out: list[Crossing] = []
        for level in levels:
            if used >= level * budget - EPSILON and level not in said:
                said.add(level)
                self._touch(key)
                out.append((scope, subject, level, used, budget))
        reach = [level * budget - EPSILON for level in levels if level not in said]
        self._next[key] = (budget, min(reach) if reach else math.inf)
        return out

    def _forget_old(self) -> None:
        today, month = self._latest_day, self._latest_day[:7]
        keep = {k for k, m in self._meta.items() if m[2] in (today, month)}
        for table in (self._own, self._others, self._said, self._meta, self._changed, self._next):
            for k in [k for k in table if k not in keep]:
                del table[k]
        self._read &= {today, month}
        self._open &= {today, month}

    # -- sharing through the state store (SpendSync, on the same thread) ------

    def share(self) -> None:
        """Decide a window's levels only once its stored totals were read."""
        self._gated = True

    @property
    def shared(self) -> bool:
        return self._gated

    def windows(self, now_ns: int) -> list[str]:
        """The windows to read or write now: the current day and month, those
        with changes not in the store yet, and those not read yet."""
        when = datetime.fromtimestamp(max(0, now_ns) / 1e9, UTC)
        out = {when.strftime("%Y-%m-%d"), when.strftime("%Y-%m")}
        out.update(self._meta[k][2] for k in self._changed)
        out.update(m[2] for m in self._meta.values() if m[2] not in self._read)
        return sorted(out)

    def was_read(self, window: str) -> bool:
        return window in self._read

    def read_windows(self) -> list[str]:
        return sorted(self._read)

    def open_window(self, window: str) -> None:
        """Say levels of ``window`` without its stored totals (the store is
        unreachable): better a repeat than a silence. Its stored part is
        still restored when the store answers."""
        self._open.add(window)

    def merge(self, window: str, stored: Mapping[str, Any] | None, me: str) -> None:
        """Take in what the store holds for ``window`` (see ``SpendSync`` for
        the format): other owners' spending and every level said. The first
        read also gives back ``me``'s own spending from before a restart."""
        first = window not in self._read
        keys = stored.get("keys") if stored else None
        for key, entry in (keys if isinstance(keys, dict) else {}).items():
            parsed = _parse_entry(entry, window)
            if parsed is None:
                continue  # another version's or a damaged entry: never fatal
            meta, by, said = parsed
            self._others[key] = sum(v for o, v in by.items() if o != me)
            if first and by.get(me):
                self._own[key] = self._own.get(key, 0) + by[me]
            self._meta.setdefault(key, meta)
            self._said.setdefault(key, set()).update(said)
        self._read.add(window)
        self._open.add(window)

    def unsent(self, window: str) -> tuple[dict[str, int], dict[str, KeyShare]]:
        """This owner's changed keys of ``window`` (key -> generation, for
        :meth:`sent`) and its part of every key of the window."""
        changed = {k: g for k, g in self._changed.items() if self._meta[k][2] == window}
        if not changed:
            return {}, {}
        shares = {
            k: KeyShare(m[0], m[1], m[3], self._own.get(k, 0), tuple(sorted(self._said.get(k, ()))))
            for k, m in self._meta.items()
            if m[2] == window
        }
        return changed, shares

    def sent(self, changed: Mapping[str, int]) -> None:
        """The store holds these keys as of these generations."""
        for key, generation in changed.items():
            if self._changed.get(key) == generation:
                del self._changed[key]

    # -- what the control API shows -------------------------------------------

    def entries(self, window: str) -> list[tuple[BudgetScope, str, str, float, tuple[float, ...]]]:
        """Scope, subject, agent, dollars used and levels said, per key of ``window``."""
        return [
            (
                m[0],
                m[1],
                m[3],
                (self._own.get(k, 0) + self._others.get(k, 0)) / 1e9,
                tuple(sorted(self._said.get(k, ()))),
            )
            for k, m in self._meta.items()
            if m[2] == window
        ]


def _parse_entry(entry: Any, window: str) -> tuple[KeyMeta, dict[str, int], set[float]] | None:
    """A stored key's meta, nano-dollars by owner and levels said; None when malformed."""
    if not isinstance(entry, dict):
        return None
    scope, subject, agent = entry.get("scope"), entry.get("subject"), entry.get("agent", "")
    by, said = entry.get("by", {}), entry.get("said", [])
    if scope not in ("agent_day", "day", "month") or not isinstance(subject, str) or not isinstance(agent, str):
        return None
    if not isinstance(by, dict) or not isinstance(said, list):
        return None
    nanos = {str(o): v for o, v in by.items() if isinstance(v, int) and not isinstance(v, bool) and v >= 0}
    levels = {float(x) for x in said if isinstance(x, int | float) and not isinstance(x, bool)}
    return (scope, subject, window, agent), nanos, levels


__all__ = ["EPSILON", "BudgetSettings", "Crossing", "KeyShare", "Ledger"]
