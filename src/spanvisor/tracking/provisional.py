"""Provisional tasks: a task shown from the spans of a trace whose root has
not arrived (the end-order paths: the exporter and ``spanvisor serve``).

OTLP carries a span once it ends, and a task's root ends last; its model
and tool calls arrive while it runs. When the spans held for a trace with
no task yet *look like an agent run* (a model call and one of the signals of
:class:`ProvisionalRule`, the setting ``SPANVISOR_PROVISIONAL``), the tracker opens the task they will make,
before its root: its view says ``provisional`` and its title is a stand-in
(``"<agent> — running"``) until the root names it. Until the rule holds
nothing is shown anywhere (a web request with one model call never becomes
a task: no sink can take back what it was shown), and such a trace that
makes no task is counted as held back.

**Which span it is opened under** (:func:`guess`): the spans held are
grouped by where they hang: the topmost agent span held above them, else
the span above their topmost held ancestor, which has not ended yet. The
largest group holding a model call is the task's (a tie waits for more
spans). That span is the
root when the model and tool calls hang right under the agent span (the
GenAI conventions' ``invoke_agent`` over ``chat`` and ``execute_tool``), or
once a framework's first step span has ended, and then the task's id,
run and every event id are those the root would give them.

**Members** (:mod:`.tracebuffer`): what of the trace joins the task is
marked in the trace's buffer; a span whose parent is marked joins at once,
with what of its subtree waited. The mark moves up only through plain
spans (a plain span with a parent is never a root), never past an agent
span: its hold decides it, as for any candidate.

**The root** is decided as without a provisional task (the hold, the
ancestry); the subtree that holds a marked span finishes the task, its root
read as the root (name, agent, outcome). A trace whose top span ends with no
agent span above the task finishes it with that span as its root, titled by
its name (:func:`top_as_root`). An inner span the task was opened under that
turns out not to be the root (it ends, and the root is above it) is not
re-keyed: the task keeps the id it was shown under, so it is never shown
twice; its name, agent, outcome and totals are the root's.

Decided at the end of each delivered batch (``TaskTracker.settle``), so a
journal replay decides alike.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from spanvisor.events import TaskView
from spanvisor.spans import conventions as cv
from spanvisor.spans import current as now
from spanvisor.spans.data import SpanData
from spanvisor.tracking.recent import RecentKeys, pair_key
from spanvisor.tracking.tracebuffer import TraceBuffer
from spanvisor.tracking.views import set_identity

Key = tuple[str, str]  # (trace id, root span id)

# Traces that had a task, remembered so their late spans open nothing.
MAX_TRACES = 20_000
# Trace tops that ended, remembered so work that outlives them opens nothing.
MAX_TOPS = 50_000

SIGNALS = ("agent", "tool", "calls")
DEFAULT = "agent,tool,calls=2"


@dataclass(frozen=True, slots=True)
class ProvisionalRule:
    """When a trace's spans look like an agent run: a model call, and an
    agent span (or a span naming an agent), a tool call, or ``calls`` model
    calls. ``enabled`` False: never (a task shows when its root arrives)."""

    agent: bool = True
    tool: bool = True
    calls: int = 2  # 0: model calls alone never do
    enabled: bool = True

    @classmethod
    def parse(cls, text: str | list[str] | tuple[str, ...]) -> ProvisionalRule:
        """``off``, or signals separated by commas: ``agent``, ``tool``,
        ``calls=N`` (``calls`` alone is ``calls=1``)."""
        items = [t.strip().lower() for t in (text.split(",") if isinstance(text, str) else text) if t.strip()]
        if items in ([], ["off"], ["false"], ["none"]):
            return cls(False, False, 0, enabled=False)
        agent = tool = False
        calls = 0
        for item in items:
            name, _, value = item.partition("=")
            if name == "agent" and not value:
                agent = True
            elif name == "tool" and not value:
                tool = True
            elif name == "calls" and (not value or (value.isdigit() and int(value) > 0)):
                calls = int(value or 1)
            else:
                raise ValueError(f"{item!r}: expected off, or agent, tool, calls=N separated by commas")
        return cls(agent, tool, calls)

    def holds(self, buf: TraceBuffer) -> bool:
        """Whether ``buf``'s spans look like an agent run: always a model
        call, and one of the rule's signals."""
        if not self.enabled or buf.calls == 0:
            return False
        return (
            (self.agent and buf.agents > 0)
            or (self.tool and buf.tools > 0)
            or (self.calls > 0 and buf.calls >= self.calls)
        )


def guess(buf: TraceBuffer) -> str | None:
    """The span a trace's provisional task is opened under (see the module),
    or None: no group holds a model call, or two groups tie."""
    group_of: dict[str, str] = {}
    size: dict[str, int] = {}
    work: dict[str, int] = {}
    for sid, p in buf.spans.items():
        g = _group(buf, sid, group_of)
        size[g] = size.get(g, 0) + 1
        d = p.data
        if d is not None and cv.is_model_call(d.attributes):
            work[g] = work.get(g, 0) + 1
    ranked = sorted((size[g], g) for g in work)
    if not ranked or (len(ranked) > 1 and ranked[-1][0] == ranked[-2][0]):
        return None
    return ranked[-1][1]


def named(buf: TraceBuffer) -> str | None:
    """A held span of the trace that names its task's id (``agent.task.id``
    is a task root's): the topmost such, or None. The task is shown under
    it, with that id, whatever the spans that arrived say of where they hang."""
    found: list[str] = [
        sid for sid, p in buf.spans.items() if p.data is not None and p.candidate and cv.TASK_ID in p.data.attributes
    ]
    for sid in found:
        node, hops, top = buf.spans[sid], 0, True
        while node.parent_id is not None and not node.parent_remote and hops < 10_000:
            up = buf.spans.get(node.parent_id)
            if up is None:
                break
            if node.parent_id in found:
                top = False
                break
            node, hops = up, hops + 1
        if top:
            return sid
    return None


def _group(buf: TraceBuffer, sid: str, known: dict[str, str]) -> str:
    """Where ``sid`` hangs: the topmost held agent span above it (itself
    included), else the span above its topmost held ancestor (or that
    ancestor, when it is a trace's top span that has arrived)."""
    path: list[str] = []
    top_candidate: str | None = None
    cur = sid
    found: str | None = None
    for _ in range(10_000):  # a cycle in malformed input ends the walk
        if cur in known:
            found = known[cur]
            break
        node = buf.spans[cur]
        path.append(cur)
        if node.candidate:
            top_candidate = cur
        parent = node.parent_id
        if parent is None or node.parent_remote:
            found = cur
            break
        if parent not in buf.spans:
            found = parent
            break
        cur = parent
    if found is None:
        found = cur
    if top_candidate is not None and (found not in buf.spans or not buf.spans[found].candidate):
        # A cached group above it may be a missing span: the agent span below wins.
        found = top_candidate
    for p in path:
        known[p] = found
    return found


def mark_below(buf: TraceBuffer, sid: str, key: Key, held: bool = False) -> list[SpanData]:
    """The buffered descendants of ``sid`` in ``buf`` join provisional task ``key``:
    their data (arrival order) for it to read, their entries kept as
    links marked with it. An agent span held for its ancestry joins too
    when ``held`` (``sid`` is inside the task: the agent span is nested);
    else it stays held, and so does what is below it: its hold decides
    it. When ``sid`` is held itself (the root arrived), those that
    arrived after it stay: its decision reads them as late, as it would
    have."""
    out: list[SpanData] = []
    order = list(buf.spans)
    cut = order.index(sid) if sid in buf.held else -1
    at = {s: i for i, s in enumerate(order)} if cut >= 0 else {}
    for below in buf.below(sid):
        if cut >= 0 and at[below] > cut:
            continue
        p = buf.spans[below]
        if held:
            buf.held.pop(below, None)
        elif _under_held(buf, below, sid):
            continue
        if p.task is None:
            p.task = key
            if p.data is not None:
                out.append(p.data)
                p.data = None
    return out


def _under_held(buf: TraceBuffer, sid: str, top: str) -> bool:
    """Whether ``sid`` or an ancestor of it below ``top`` is held."""
    hops = 0
    while sid != top and hops < 10_000:
        if sid in buf.held:
            return True
        node = buf.spans.get(sid)
        if node is None or node.parent_id is None:
            return False
        sid = node.parent_id
        hops += 1
    return False


def top_arrived(buf: TraceBuffer) -> bool:
    """Whether a trace's top span (no parent, or a remote one) is held: its
    run is over (a span that ends later is late work)."""
    return any(
        (p.parent_id is None or p.parent_remote) and not p.placeholder and not p.candidate for p in buf.spans.values()
    )


def shown(view: TaskView, agent: str, named: bool) -> TaskView:
    """What a provisional task shows while its root is unseen: ``agent``, as
    the spans of its own work name it (``named``), else the service's, and
    the title ``"<agent> — running"`` (none once it ended without its root).
    What its spans lent meanwhile stays in its state: the root decides it.
    ``view`` is changed in place: one :func:`.views.build_view` just made."""
    title = None if view.ended_ns is not None else f"{agent} — running"
    return set_identity(view, title, agent, agent if named else None)


def top_as_root(span: SpanData) -> SpanData:
    """A trace's top span that ends a provisional task with no agent span above
    it: its root, titled by its name (as a framework's run, :func:`chain_run`)."""
    if cv.TASK_NAME in span.attributes:
        return span
    return replace(span, attributes={**span.attributes, cv.TASK_NAME: now.title(span.name) or span.name or "task"})


def chain_run(span: SpanData, buf: TraceBuffer | None) -> SpanData | None:
    """A span with no parent that ends as no task root: when it is a
    framework's top-level run (an OpenInference CHAIN whose buffered subtree
    holds a model call and no agent span: LlamaIndex's agent workflows), the
    span as a task root, titled by its name without the method
    (:mod:`spanvisor.spans.current`); else None. Decided at its end, on every
    path (in process too, its trace goes over in end order)."""
    if buf is None or not now.is_chain_run(span.attributes, span.parent_id) or cv.TASK_NAME in span.attributes:
        return None
    model = False
    for p in buf.spans.values():
        if p.candidate:
            return None  # an agent span below is the task (CrewAI's), not this run
        if not model and p.data is not None and cv.is_model_call(p.data.attributes):
            model = True
    if not model:
        return None
    return replace(span, attributes={**span.attributes, cv.TASK_NAME: now.title(span.name)})


class ProvisionalTasks:
    """Which traces have a provisional task open, which had a task (they get
    none), and which changed since the last decision."""

    def __init__(self, rule: ProvisionalRule) -> None:
        self.rule = rule
        self.by_trace: dict[str, Key] = {}  # open, root not read yet
        self.keys: dict[Key, None] = {}
        self._had: OrderedDict[str, None] = OrderedDict()
        self.dirty: dict[str, None] = {}
        # Top spans (no parent, or a remote one) that ended: a trace's spans
        # that outlive its top have no open root to show a task under.
        self._tops = RecentKeys(MAX_TOPS)
        # Stamps of traces with no task yet, from spans that opened none:
        # (root span id, stamps, resource, start).
        self._stamps: OrderedDict[str, tuple[str, dict[str, Any], Mapping[str, Any], int]] = OrderedDict()
        # The agent spans each open task took as members (an agent span held
        # below where it hangs): roots the processor may show as tasks of
        # their own, whose live records must not open one once this task ended.
        self._agents: dict[Key, list[str]] = {}

    def stamped(
        self, trace_id: str, root_id: str, stamps: dict[str, Any], resource: Mapping[str, Any], start_ns: int
    ) -> None:
        """A stamped span of ``trace_id`` that opened nothing named its task:
        kept (the first, bounded) so the trace opens that task, not a guess."""
        if self.rule.enabled and trace_id not in self._stamps and trace_id not in self._had:
            self._stamps[trace_id] = (root_id, stamps, resource, start_ns)
            if len(self._stamps) > MAX_TRACES:
                self._stamps.popitem(last=False)

    def stamp_of(self, trace_id: str) -> tuple[str, dict[str, Any], Mapping[str, Any], int] | None:
        return self._stamps.get(trace_id)

    def top_ended(self, trace_id: str, span_id: str) -> None:
        if self.rule.enabled:
            self._tops.remember(pair_key(trace_id, span_id))

    def ended_top(self, trace_id: str, span_id: str) -> bool:
        return pair_key(trace_id, span_id) in self._tops

    def had_task(self, trace_id: str) -> None:
        """A task of ``trace_id`` opened (any way): it gets no provisional one."""
        had = self._had
        if trace_id in had:
            had.move_to_end(trace_id)
            return
        had[trace_id] = None
        self._stamps.pop(trace_id, None)
        if len(had) > MAX_TRACES:
            had.popitem(last=False)

    def may_open(self, trace_id: str) -> bool:
        return trace_id not in self._had and trace_id not in self.by_trace

    def touched(self, trace_id: str) -> None:
        """Spans of ``trace_id`` were held: decide it at the next settle."""
        if self.rule.enabled and trace_id not in self._had:
            dirty = self.dirty
            dirty[trace_id] = None
            if len(dirty) > MAX_TRACES:  # a tracker nobody settles (tests): forget the oldest
                del dirty[next(iter(dirty))]

    def opened(self, key: Key) -> None:
        self.by_trace[key[0]] = key
        self.keys[key] = None
        self.had_task(key[0])

    def took_agent(self, key: Key, span_id: str) -> None:
        """Open task ``key`` read agent span ``span_id`` as a member."""
        if key in self.keys:
            self._agents.setdefault(key, []).append(span_id)

    def closed(self, key: Key) -> list[str]:
        """Task ``key`` is no longer open: the agent spans it took as members."""
        self.keys.pop(key, None)
        if self.by_trace.get(key[0]) == key:
            del self.by_trace[key[0]]
        return self._agents.pop(key, [])


__all__ = [
    "DEFAULT",
    "ProvisionalRule",
    "ProvisionalTasks",
    "chain_run",
    "guess",
    "mark_below",
    "named",
    "shown",
    "top_arrived",
    "top_as_root",
]
