"""Open roots as the live channel tells them (:mod:`spanvisor.spans.live`).

For each task the live channel speaks of, a :class:`LiveRoot` holds what its
records said of the open root: its start time and name, the attributes set
so far (the start's, then each update's) and the events at the latest
instant. Each record becomes a *snapshot of the open root*, which
``TaskState.absorb`` reads exactly as it reads a poll of the live root
in-process: the same events-seen set (an event is known by time, name and
rank at that time), the same attribute rules. So when the root's span ends
and is read whole, nothing the channel already said is said again: a
checkpoint carried both by a record and by the root's span event is one
fact, with one event id.

Records about a task that is not open here yet (logs ahead of traces, a
checkpoint before its start record) wait in :class:`LiveRoots` (bounded by
tasks, records and age; what goes is counted) until the task opens.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from spanvisor.spans import conventions as cv
from spanvisor.spans.data import SpanData, SpanEventData
from spanvisor.spans.live import RECORD_ID, LiveFact

Key = tuple[str, str]  # (trace id, root span id)

MAX_WAITING_TASKS = 10_000
MAX_WAITING_FACTS = 64
WAITING_TTL_S = 600.0

# Keys of a record that say where it belongs, not what the root says.
_ROUTING = frozenset({cv.TASK_ROOT, "event.name", RECORD_ID})
# Record ids remembered per open root (the newest; older resends are rare):
# a sender's agent.record.id, else what an event record says (_said).
MAX_RECORD_IDS = 1024


def _said(fact: LiveFact) -> int | str:
    """The identity of an event record its sender did not name: what it says
    (its event, time and attributes). A plain sender's record sent again (a
    Collector's load balancer resends a whole batch while a replica is down)
    is then read once. Two records saying the same at the same nanosecond are
    one on the live channel; the root's end still carries both. A 64-bit
    hash (about 1 µs; two different records of one task colliding among its
    1,024 kept ids: about 1 in 10**13), or a digest when a value is a list."""
    try:
        return hash((fact.name, fact.time_ns, frozenset(fact.attributes.items())))
    except TypeError:
        said = repr(sorted(fact.attributes.items())).encode()
        digest = hashlib.blake2b(b"%s\0%d\0%s" % (fact.name.encode(), fact.time_ns, said), digest_size=16)
        return "~" + digest.hexdigest()


def root_attributes(fact: LiveFact) -> dict[str, Any]:
    """What a start or update record says the root's attributes are."""
    return {k: v for k, v in fact.attributes.items() if k not in _ROUTING}


def opener(fact: LiveFact) -> SpanData:
    """The root as it starts, from its start record."""
    a = root_attributes(fact)
    name = a.get(cv.TASK_NAME)
    return SpanData(
        fact.trace_id,
        fact.root_span_id,
        None,
        name if isinstance(name, str) else "",
        fact.time_ns,
        None,
        a,
        resource=fact.resource,
    )


@dataclass(slots=True)
class LiveRoot:
    name: str
    start_ns: int
    attributes: dict[str, Any]
    resource: Mapping[str, Any]
    # The events of the latest instant, in the order said: the rank of an
    # event among those with its time and name is part of its identity.
    instant: list[SpanEventData] = field(default_factory=list)
    instant_ns: int = -1
    # Ids of the records read (RECORD_ID): a resent record adds nothing.
    record_ids: dict[str | int, None] = field(default_factory=dict)

    def read(self, trace_id: str, root_id: str, fact: LiveFact) -> SpanData:
        """The open root as of ``fact``: the attributes said so far and the
        event ``fact`` carries (with the others of its instant)."""
        events: tuple[SpanEventData, ...] = ()
        if self._resent(fact):
            return SpanData(
                trace_id, root_id, None, self.name, self.start_ns, None, self.attributes, (), resource=self.resource
            )
        if fact.name in cv.KNOWN_EVENTS:
            if fact.time_ns != self.instant_ns:
                self.instant = []
                self.instant_ns = fact.time_ns
            self.instant.append(SpanEventData(fact.name, fact.time_ns, root_attributes(fact)))
            events = tuple(self.instant)
        elif fact.name in (cv.LIVE_TASK_START, cv.LIVE_TASK_UPDATE):
            self.attributes.update(root_attributes(fact))
        return SpanData(
            trace_id, root_id, None, self.name, self.start_ns, None, self.attributes, events, resource=self.resource
        )

    def _resent(self, fact: LiveFact) -> bool:
        rid: str | int | None = fact.attributes.get(RECORD_ID)
        if not isinstance(rid, str) or not rid:
            if fact.name not in cv.KNOWN_EVENTS:  # a start, update or heartbeat said again changes nothing
                return False
            rid = _said(fact)
        if rid in self.record_ids:
            return True
        self.record_ids[rid] = None
        if len(self.record_ids) > MAX_RECORD_IDS:
            del self.record_ids[next(iter(self.record_ids))]
        return False


@dataclass(slots=True)
class _Waiting:
    since: float
    facts: list[LiveFact]


class LiveRoots:
    """Each live task's :class:`LiveRoot`, and records waiting for their task."""

    def __init__(self) -> None:
        self._roots: dict[Key, LiveRoot] = {}
        self._waiting: OrderedDict[Key, _Waiting] = OrderedDict()
        self._traces: dict[str, int] = {}  # trace id -> its tasks with records waiting
        self.dropped = 0  # records that waited in vain (counted by the tracker)

    def waits_in(self, trace_id: str) -> bool:
        """Whether records of a task of ``trace_id`` wait for it: the live
        channel speaks for that trace (no provisional task is guessed)."""
        return trace_id in self._traces

    def _gone(self, key: Key) -> None:
        n = self._traces.get(key[0], 0) - 1
        if n > 0:
            self._traces[key[0]] = n
        else:
            self._traces.pop(key[0], None)

    def __contains__(self, key: object) -> bool:
        return key in self._roots

    def root(self, key: Key, name: str, start_ns: int, resource: Mapping[str, Any]) -> LiveRoot:
        lr = self._roots.get(key)
        if lr is None:
            lr = self._roots[key] = LiveRoot(name, start_ns, {}, resource)
        return lr

    def forget(self, key: Key) -> None:
        self._roots.pop(key, None)
        if self._waiting.pop(key, None) is not None:
            self._gone(key)

    def wait(self, key: Key, fact: LiveFact, now: float) -> None:
        w = self._waiting.get(key)
        if w is None:
            w = self._waiting[key] = _Waiting(now, [])
            self._traces[key[0]] = self._traces.get(key[0], 0) + 1
            while len(self._waiting) > MAX_WAITING_TASKS:
                old, gone = self._waiting.popitem(last=False)
                self._gone(old)
                self.dropped += len(gone.facts)
        if len(w.facts) >= MAX_WAITING_FACTS:
            w.facts.pop(0)
            self.dropped += 1
        w.facts.append(fact)

    def start_of(self, key: Key) -> LiveFact | None:
        """The start record waiting for ``key``'s task (refused at capacity), if any."""
        w = self._waiting.get(key)
        return None if w is None else next((f for f in w.facts if f.name == cv.LIVE_TASK_START), None)

    def take(self, key: Key) -> list[LiveFact]:
        """The records that waited for ``key``'s task, oldest first."""
        w = self._waiting.pop(key, None)
        if w is None:
            return []
        self._gone(key)
        return w.facts

    def expire(self, now: float) -> None:
        while self._waiting:
            key, w = next(iter(self._waiting.items()))
            if now - w.since <= WAITING_TTL_S:
                return
            del self._waiting[key]
            self._gone(key)
            self.dropped += len(w.facts)


__all__ = ["LiveRoot", "LiveRoots", "opener", "root_attributes"]
