"""Context-window occupancy of a task: per conversation, and its warnings.

A task may hold several model conversations at once: the main agent's, a
sub-agent's, a planner's. Occupancy is a property of one conversation (the
latest call's prompt plus its output), so the tracker keeps one figure per
conversation and reports the fullest active one. A small side call (a
sub-agent's chat, a summariser) then never makes the main conversation look
empty, and embeddings or reranking calls never count at all.

The rule, documented in ``docs/reference/conventions.md#context-window-usage``:

* a **conversation** is the model calls that share ``gen_ai.conversation.id``
  or, without it, the same parent span (the agent or sub-agent span that made
  the calls);
* within a conversation the call that **started last** gives the occupancy
  (ties: the one that ended last, then the span id), so the result does not
  depend on the order calls arrive in, nor on the order parallel calls end
  in: a long streaming call that started before a shorter one and ends after
  it carries the older, smaller prompt, and would otherwise make the figure
  fall and rise again, re-arming a warning within one rise;
* a conversation is **active** while its last call ended less than
  ``ACTIVE_S`` before the task's latest call; the reported occupancy is the
  active conversation with the highest ratio to its window (or the most
  tokens when no window is known).

Warnings fire once per crossing of a level and re-arm only after the
reported ratio falls ``HYSTERESIS`` below it (e.g. after compaction), so an
occupancy wobbling around 70 % does not warn on every call.

A **forecast** warns before a crossing: from the last calls of the fullest
conversation (at least ``MIN_CALLS``), when every step rose, the median step
says how many more calls reach the next level; within ``FORECAST_CALLS``
calls it is said once (re-armed with the level). Flat, falling or noisy
series, and a single jump, forecast nothing.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from spanvisor.tracking.views import slot_builder

ACTIVE_S = 600.0
MAX_CONVERSATIONS = 32
HYSTERESIS = 0.10
HISTORY = 5
MIN_CALLS = 3
FORECAST_CALLS = 3


@dataclass(frozen=True, slots=True)
class Occupancy:
    tokens: int
    limit: int | None
    model: str | None
    end_ns: int
    span_id: str = ""  # breaks ties of calls that ended at the same time, the same way on every path
    # When the call started: the call that started last is a conversation's latest.
    start_ns: int = 0

    @property
    def order(self) -> tuple[int, int, str]:
        """Which call of a conversation is its latest: the greatest."""
        return (self.start_ns, self.end_ns, self.span_id)

    @property
    def ratio(self) -> float | None:
        return self.tokens / self.limit if self.limit else None


# Occupancy(tokens, limit, model, end_ns, span_id, start_ns), one a model call, built fast.
new_occupancy = slot_builder(Occupancy)


class Conversation:
    """One conversation's key, its latest call and its last HISTORY calls,
    (start, tokens) in start order: one object a conversation, not an entry
    in each of two dicts (a one-entry dict is 184 bytes in every open task)."""

    __slots__ = ("key", "latest", "points")

    def __init__(self, key: str, latest: Occupancy | None) -> None:
        self.key = key
        self.latest = latest
        self.points: list[tuple[int, int]] = []


@dataclass(slots=True)  # one in every task: no __dict__
class Conversations:
    """The latest call of each conversation of one task (bounded)."""

    # The task's first conversation while it is its only one (most tasks
    # hold one, and a one-entry dict is 184 bytes in every open task); every
    # conversation by key from the second on, in the order they came.
    only: Conversation | None = None
    by_key: dict[str, Conversation] | None = None
    last_end_ns: int = -1
    # fullest() as of the last record (it is asked twice per call); None: stale.
    # (The conversation, not a (key, call) tuple: 56 bytes less a task.)
    _fullest: Conversation | None = field(default=None, repr=False)
    _fullest_known: bool = field(default=False, repr=False)

    def record(self, key: str, occ: Occupancy) -> bool:
        """Record a call; False when an already-known later call of the same
        conversation keeps the occupancy (a call that arrived out of order)."""
        self._fullest_known = False
        self.last_end_ns = max(self.last_end_ns, occ.end_ns)
        conv = self._get(key)
        if conv is None:
            conv = self._add(key)
        points = conv.points
        points.append((occ.start_ns, occ.tokens))
        if len(points) > 1 and points[-2] > points[-1]:
            points.sort()  # only a call that arrived out of order needs it
        if len(points) > HISTORY:
            del points[:-HISTORY]
        known = conv.latest
        if known is not None and known.order > occ.order:
            return False
        conv.latest = occ
        by_key = self.by_key
        if by_key is not None and len(by_key) > MAX_CONVERSATIONS:
            oldest = min(by_key, key=lambda k: _end_of(by_key[k]))
            del by_key[oldest]
        return True

    def _get(self, key: str) -> Conversation | None:
        only = self.only
        if only is not None:
            return only if only.key == key else None
        by_key = self.by_key
        return None if by_key is None else by_key.get(key)

    def _add(self, key: str) -> Conversation:
        conv = Conversation(key, None)
        only = self.only
        if only is not None:  # the second conversation: both by key from now on
            self.by_key = {only.key: only, key: conv}
            self.only = None
        elif self.by_key is None:
            self.only = conv
        else:
            self.by_key[key] = conv
        return conv

    def all(self) -> list[Conversation]:
        """Every conversation, in the order they came."""
        if self.only is not None:
            return [self.only]
        return [] if self.by_key is None else list(self.by_key.values())

    def points(self, key: str) -> list[tuple[int, int]]:
        """The conversation's last HISTORY calls, (start, tokens), in start order."""
        conv = self._get(key)
        return [] if conv is None else conv.points

    def fullest(self) -> tuple[str, Occupancy] | None:
        """The fullest conversation still active, or None before any call."""
        if not self._fullest_known:
            self._fullest, self._fullest_known = self._find_fullest(), True
        conv = self._fullest
        if conv is None or conv.latest is None:
            return None
        return conv.key, conv.latest

    def _find_fullest(self) -> Conversation | None:
        horizon = self.last_end_ns - int(ACTIVE_S * 1e9)
        best: Conversation | None = None
        best_rank: tuple[float, int, int, str, str] = (-1.0, -1, -1, "", "")
        for conv in self.all():
            occ = conv.latest
            if occ is None or occ.end_ns < horizon:
                continue
            ratio = occ.ratio
            # Ties go to the later call, then by ids: never by arrival order.
            rank = (ratio if ratio is not None else -1.0, occ.tokens, occ.end_ns, occ.span_id, conv.key)
            if best is None or rank > best_rank:
                best, best_rank = conv, rank
        return best

    def calls_to(self, key: str, tokens: int) -> tuple[int, float | None] | None:
        """(calls, seconds) until the conversation reaches ``tokens`` at its
        recent rate, or None when its trend says nothing (see the module doc)."""
        points = self.points(key)
        if len(points) < MIN_CALLS:
            return None
        steps = sorted([b[1] - a[1] for a, b in itertools.pairwise(points)])
        if steps[0] < 0:
            return None  # noisy or falling
        # statistics.median, without its generality (a few ints here)
        mid = len(steps) // 2
        per_call = steps[mid] if len(steps) % 2 else (steps[mid - 1] + steps[mid]) / 2
        left = tokens - points[-1][1]
        if per_call <= 0 or left <= 0:
            return None
        calls = math.ceil(left / per_call)
        gap_ns = (points[-1][0] - points[0][0]) / (len(points) - 1)
        return calls, (calls * gap_ns / 1e9 if gap_ns > 0 else None)


def _end_of(conv: Conversation) -> int:
    return -1 if conv.latest is None else conv.latest.end_ns


@dataclass(slots=True)  # one in every task: no __dict__
class LevelGate:
    """Which warning levels may fire: once per crossing, re-armed below the
    level minus the hysteresis."""

    levels: Sequence[float]
    # Whether each level is fired, and how often it was crossed: None until
    # the first crossing (most tasks never cross one; an empty dict is 64
    # bytes in every open task).
    fired: dict[float, bool] | None = None
    crossings: dict[float, int] | None = None

    # Levels a forecast was said for since they last re-armed: a shared empty
    # frozenset until the first (most tasks never get one; an empty set is
    # 216 bytes in every task).
    forecast: frozenset[float] = frozenset()

    def crossed(self, ratio: float) -> list[tuple[float, int]]:
        """The levels this ratio crosses now, each with its crossing number."""
        out: list[tuple[float, int]] = []
        fired = self.fired
        for level in self.levels:
            if ratio >= level and not (fired is not None and fired.get(level)):
                if fired is None:
                    fired = self.fired = {}
                fired[level] = True
                crossings = self.crossings
                if crossings is None:
                    crossings = self.crossings = {}
                n = crossings[level] = crossings.get(level, 0) + 1
                out.append((level, n))
            elif fired is not None and fired.get(level) and ratio < level - HYSTERESIS:
                fired[level] = False
                if level in self.forecast:
                    self.forecast -= {level}
        return out

    def next_level(self, ratio: float) -> float | None:
        """The lowest level above ``ratio`` still to be forecast, if any."""
        for level in self.levels:
            if ratio < level and not (self.fired and self.fired.get(level)) and level not in self.forecast:
                return level
        return None


__all__ = [
    "ACTIVE_S",
    "FORECAST_CALLS",
    "HYSTERESIS",
    "MIN_CALLS",
    "Conversation",
    "Conversations",
    "LevelGate",
    "Occupancy",
]
