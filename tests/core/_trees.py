"""Hand-built span trees for the pure TaskTracker tests, and the two ways to feed them.

A :class:`SpanSpec` is one span's whole life: the attributes it starts with,
the attributes set later (with their times), its span events and its end.
From it the drivers build the :class:`SpanData` each path sees:

* :func:`feed_start_order` plays the trees as the in-process processor does:
  ``span_started`` when a span starts (with the processor's stamps),
  ``poll`` of the open roots in between, ``span_ended`` when it ends;
* :func:`feed_end_order` plays them as the exporter and the receiver do:
  ``span_ended`` only, every task root after all its descendants, in
  shuffled batches, with or without the processor's stamps.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from spanvisor.events import Event, TaskStarted
from spanvisor.otel.processor import stamp_for
from spanvisor.spans import conventions as cv
from spanvisor.spans.data import SpanData, SpanEventData
from spanvisor.tracking.tracker import TaskTracker


class FakeClock:
    """An injectable monotonic clock: time moves only when a test says so."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class SpanSpec:
    trace_id: str
    span_id: str
    parent_id: str | None
    name: str
    start_ns: int
    end_ns: int
    start_attrs: dict[str, Any] = field(default_factory=dict)
    # (time_ns, attributes) set on the open span after it started.
    updates: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    events: list[SpanEventData] = field(default_factory=list)
    error: bool = False
    status_message: str | None = None
    parent_remote: bool = False
    resource: dict[str, Any] = field(default_factory=dict)
    # The processor's stamp, once computed (see stamp_trees).
    stamp: dict[str, str] = field(default_factory=dict)
    # How far the clock of this span's service is off the true time: its
    # times (start, end, updates, events) read true time plus this. The
    # drivers play spans in true time, so a span on a clock behind ends
    # later than its end time says (clock skew between services).
    clock_ns: int = 0

    def true(self, t: int) -> int:
        """When a time this span reports happened, in true time."""
        return t - self.clock_ns

    def attrs_at(self, t: int, stamped: bool) -> dict[str, Any]:
        out = dict(self.start_attrs)
        if stamped:
            for k, v in self.stamp.items():
                out.setdefault(k, v)
        for when, attrs in self.updates:
            if when <= t:
                out.update(attrs)
        return out

    def data(self, t: int | None, stamped: bool) -> SpanData:
        """The span as seen at time ``t`` (``None``: at its end)."""
        ended = t is None or t >= self.end_ns
        at = self.end_ns if ended else t
        assert at is not None
        return SpanData(
            trace_id=self.trace_id,
            span_id=self.span_id,
            parent_id=self.parent_id,
            name=self.name,
            start_ns=self.start_ns,
            end_ns=self.end_ns if ended else None,
            attributes=self.attrs_at(at, stamped),
            events=tuple(e for e in self.events if e.time_ns <= at),
            error=self.error if ended else False,
            status_message=self.status_message if ended else None,
            parent_remote=self.parent_remote,
            resource=self.resource,
        )


def stamp_trees(specs: Sequence[SpanSpec]) -> None:
    """Compute the stamps the processor would set, in start order
    (with the processor's own ``stamp_for``)."""
    by_id = {s.span_id: s for s in specs}
    for s in sorted(specs, key=lambda s: (s.true(s.start_ns), s.span_id)):  # as the processor sees them start
        parent = by_id.get(s.parent_id) if s.parent_id else None
        if parent is not None and parent.stamp:
            s.stamp = dict(parent.stamp)
        elif cv.is_root_candidate(s.start_attrs):
            s.stamp = stamp_for(s.trace_id, s.span_id, s.start_attrs)


def feed_start_order(
    tracker: TaskTracker,
    specs: Sequence[SpanSpec],
    poll_times: Iterable[int] = (),
    duplicate: Callable[[SpanSpec], bool] = lambda s: False,
    lag: int = 0,
) -> list[Event]:
    """Play the spans through ``span_started``/``poll``/``span_ended`` in time order.

    Only spans the processor would watch (a task member) reach the tracker in
    the real pipeline, but the tracker must cope with any: every span is fed.
    ``duplicate(spec)``: feed that span's end twice (a resent span).
    ``lag``: the pipeline reads a live root this long after the moment being
    played (its pump runs later than the span ended), so the snapshot may hold
    checkpoints the agent added since.
    """
    clock = [0]
    # A live root is read as of now on its own clock.
    tracker.snapshot = lambda live: live.data(clock[0] + live.clock_ns + lag, stamped=True)
    timeline: list[tuple[int, int, int, Any]] = []
    for i, s in enumerate(specs):
        timeline.append((s.true(s.start_ns), 0, i, ("start", s)))
        # Deeper spans end first when ends coincide.
        timeline.append((s.true(s.end_ns), 2, -s.true(s.start_ns), ("end", s)))
    for p in poll_times:
        timeline.append((p, 1, 0, ("poll", None)))
    timeline.sort(key=lambda x: (x[0], x[1], x[2]))
    out: list[Event] = []
    for t, _, _, (kind, s) in timeline:
        clock[0] = t
        if kind == "start":
            out += tracker.span_started(s.data(s.start_ns, stamped=True), live=s)
        elif kind == "poll":
            out += tracker.poll(now_ns=t)
        else:
            out += tracker.span_ended(s.data(None, stamped=True))
            if duplicate(s):
                out += tracker.span_ended(s.data(None, stamped=True))
    return out


def end_order(specs: Sequence[SpanSpec], rng: random.Random) -> list[SpanSpec]:
    """A random order in which every span comes after all its descendants."""
    children: dict[str | None, list[SpanSpec]] = {}
    for s in specs:
        children.setdefault(s.parent_id, []).append(s)
    ids = {s.span_id for s in specs}
    remaining = {s.span_id: len(children.get(s.span_id, [])) for s in specs}
    by_id = {s.span_id: s for s in specs}
    ready = [s for s in specs if remaining[s.span_id] == 0]
    out: list[SpanSpec] = []
    while ready:
        s = ready.pop(rng.randrange(len(ready)))
        out.append(s)
        if s.parent_id in ids:
            remaining[s.parent_id] -= 1  # type: ignore[index]
            if remaining[s.parent_id] == 0:  # type: ignore[index]
                ready.append(by_id[s.parent_id])  # type: ignore[index]
    assert len(out) == len(specs)
    return out


def ended_order(specs: Sequence[SpanSpec]) -> list[SpanSpec]:
    """The order the spans end in, in true time, as one exporter sends them
    (deeper spans first when ends coincide)."""
    return sorted(specs, key=lambda s: (s.true(s.end_ns), -s.true(s.start_ns), s.span_id))


def feed_end_order(
    tracker: TaskTracker,
    specs: Sequence[SpanSpec],
    rng: random.Random | None,
    stamped: bool,
    clock: FakeClock | None = None,
    batch: int = 7,
    settle: bool = False,
) -> list[Event]:
    """Play the spans through ``span_ended`` only, in batches, then expire
    held roots. ``rng``: a random order in which every span comes after its
    descendants; None: the order they ended in (:func:`ended_order`).
    ``settle``: each batch is a delivered one (``TaskTracker.settle``, as the
    pipeline calls it): a trace that looks like an agent run shows its task
    before its root arrives."""
    order = end_order(specs, rng) if rng is not None else ended_order(specs)
    out: list[Event] = []
    for i in range(0, len(order), batch):
        for s in order[i : i + batch]:
            out += tracker.span_ended(s.data(None, stamped=stamped))
        if settle:
            out += tracker.settle()
        out += tracker.expire()
    if clock is not None:
        clock.advance(10_000)
        out += tracker.expire()
    return out


def by_task(events: Iterable[Event]) -> dict[str, list[Event]]:
    """Events per run of a task (``<task id>/<run id>``): a task id reused by
    another root is another run, with its own story. A run its root renamed
    (``former_id``) is one story, under the id it was shown under first."""
    out: dict[str, list[Event]] = {}
    for e in events:
        run = e.task.run_id
        first = e.task.former_id or e.task_id
        out.setdefault(f"{first}/{run}" if run else first, []).append(e)
    return out


def started_ids(events: Iterable[Event]) -> list[str]:
    return [e.task_id for e in events if isinstance(e, TaskStarted)]


def event(name: str, t: int, attrs: Mapping[str, Any] | None = None) -> SpanEventData:
    return SpanEventData(name, t, dict(attrs or {}))
