"""Context-window occupancy of a task: per conversation, and its warnings.

A task may hold several model conversations at once: the main agent's, a
sub-agent's, a planner's. Occupancy is a property of one conversation (the
latest call's prompt plus its output), so the tracker keeps one figure per
conversation and reports the fullest active one. A small side call (a
sub-agent's chat, a summariser) then never makes the main conversation look
empty, and embeddings or reranking calls never count at all.

The rule, documented in ``docs/conventions.md#context-occupancy``:

* a **conversation** is the model calls that share ``gen_ai.conversation.id``
  or, without it, the same parent span (the agent or sub-agent span that made
  the calls);
* within a conversation the call that **ended last** gives the occupancy, so
  the result does not depend on the order calls arrive in;
* a conversation is **active** while its last call ended less than
  ``ACTIVE_S`` before the task's latest call; the reported occupancy is the
  active conversation with the highest ratio to its window (or the most
  tokens when no window is known).

Warnings fire once per crossing of a level and re-arm only after the
reported ratio falls ``HYSTERESIS`` below it (e.g. after compaction), so an
occupancy wobbling around 70 % does not warn on every call.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

ACTIVE_S = 600.0
MAX_CONVERSATIONS = 32
HYSTERESIS = 0.10


@dataclass(frozen=True, slots=True)
class Occupancy:
    tokens: int
    limit: int | None
    model: str | None
    end_ns: int

    @property
    def ratio(self) -> float | None:
        return self.tokens / self.limit if self.limit else None


@dataclass
class Conversations:
    """The latest call of each conversation of one task (bounded)."""

    latest: dict[str, Occupancy] = field(default_factory=dict)
    last_end_ns: int = -1

    def record(self, key: str, occ: Occupancy) -> bool:
        """Record a call; False when an already-known later call of the same
        conversation keeps the occupancy (a call that arrived out of order)."""
        self.last_end_ns = max(self.last_end_ns, occ.end_ns)
        known = self.latest.get(key)
        if known is not None and known.end_ns > occ.end_ns:
            return False
        self.latest[key] = occ
        if len(self.latest) > MAX_CONVERSATIONS:
            oldest = min(self.latest, key=lambda k: self.latest[k].end_ns)
            del self.latest[oldest]
        return True

    def fullest(self) -> Occupancy | None:
        """The fullest conversation still active, or None before any call."""
        horizon = self.last_end_ns - int(ACTIVE_S * 1e9)
        best: Occupancy | None = None
        best_key: tuple[float, int, int] = (-1.0, -1, -1)
        for occ in self.latest.values():
            if occ.end_ns < horizon:
                continue
            ratio = occ.ratio
            k = (ratio if ratio is not None else -1.0, occ.tokens, occ.end_ns)
            if best is None or k > best_key:
                best, best_key = occ, k
        return best


@dataclass
class LevelGate:
    """Which warning levels may fire: once per crossing, re-armed below the
    level minus the hysteresis."""

    levels: Sequence[float]
    fired: dict[float, bool] = field(default_factory=dict)
    crossings: dict[float, int] = field(default_factory=dict)

    def crossed(self, ratio: float) -> list[tuple[float, int]]:
        """The levels this ratio crosses now, each with its crossing number."""
        out: list[tuple[float, int]] = []
        for level in self.levels:
            if ratio >= level and not self.fired.get(level):
                self.fired[level] = True
                n = self.crossings[level] = self.crossings.get(level, 0) + 1
                out.append((level, n))
            elif self.fired.get(level) and ratio < level - HYSTERESIS:
                self.fired[level] = False
        return out


__all__ = ["ACTIVE_S", "HYSTERESIS", "Conversations", "LevelGate", "Occupancy"]
