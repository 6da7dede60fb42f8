"""SpanvisorSpanProcessor: the in-process path, on the agent's TracerProvider.

``on_start`` and ``on_end`` are O(1): a dict lookup, one
``set_attributes`` call, and a deque append. They never wait on I/O and never
raise into the agent; everything else happens on the pipeline's thread.

On start, the processor stamps every span of a task with ``agent.task.id``,
``agent.task.root_span_id`` and (when known) ``agent.id``, so spans exported
elsewhere, through a Collector to ``spanvisor serve``, can still be grouped
into their task. ``SPANVISOR_STAMP_SPANS=false`` turns stamping off.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor

from spanvisor import conventions as cv
from spanvisor import sanitize as sz
from spanvisor.attach import PipelineOwner
from spanvisor.config import Config
from spanvisor.pipeline import Pipeline
from spanvisor.sink import Sink
from spanvisor.tracker import default_task_id

log = logging.getLogger("spanvisor.processor")

MAX_OPEN_SPANS = 1_000_000
_STAMP_KEYS = frozenset({cv.TASK_ROOT, cv.TASK_ID, cv.AGENT_ID, cv.TASK_NAME})


@dataclass(frozen=True, slots=True)
class _Stamp:
    attrs: dict[str, str]


def stamp_for(trace_hex: str, root_hex: str, attrs: Any) -> dict[str, str]:
    """The stamp written on every span of the task whose root is described."""
    task_id = sz.name(attrs.get(cv.TASK_ID), cv.TASK_ID, []) or default_task_id(trace_hex, root_hex)
    stamp = {cv.TASK_ROOT: root_hex, cv.TASK_ID: task_id}
    # Sanitised exactly as the tracker reads it, so both ends agree on the id.
    agent_id = sz.name(cv.agent_id(attrs), cv.AGENT_ID, []) or sz.name(cv.agent_name(attrs), cv.AGENT_NAME, [])
    if agent_id is not None:
        stamp[cv.AGENT_ID] = agent_id
    # The task name stays on the root: each stamp key costs every span of
    # the task a validated attribute write on the agent's thread.
    return stamp


def _stamp_for_root(span: Span, attrs: Any) -> _Stamp:
    ctx = span.get_span_context()
    return _Stamp(stamp_for(format(ctx.trace_id, "032x"), format(ctx.span_id, "016x"), attrs))


class SpanvisorSpanProcessor(PipelineOwner, SpanProcessor):
    """Add to a TracerProvider: ``provider.add_span_processor(SpanvisorSpanProcessor())``.

    ``sinks``: sink instances; without them, sinks are built from config.
    """

    def __init__(
        self,
        sinks: Sequence[Sink] | None = None,
        *,
        config: Config | None = None,
        pipeline: Pipeline | None = None,
    ) -> None:
        PipelineOwner.__init__(self, "processor", sinks, config, pipeline)
        self._open: dict[int, _Stamp] = {}
        # Stamps serve spans exported elsewhere (a Collector to `spanvisor
        # serve`); an agent whose spans go nowhere else can turn them off.
        self._stamp = bool(self.pipeline.config.get("stamp_spans", True))
        self._errors = 0

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        try:
            parent = span.parent
            stamp = self._open.get(parent.span_id) if parent is not None else None
            if stamp is None:
                attrs = span.attributes
                if not attrs or not cv.is_root_candidate(attrs):
                    return
                stamp = _stamp_for_root(span, attrs)
            if len(self._open) >= MAX_OPEN_SPANS:
                # Spans that never end would otherwise grow this map forever.
                self.pipeline.stats.inbox_drop()
                return
            if self._stamp:
                self._write_stamp(span, stamp)
            self._open[span.get_span_context().span_id] = stamp
            self.pipeline.submit_start(span)
        except Exception:  # never into the agent
            self._errors += 1

    @staticmethod
    def _write_stamp(span: Span, stamp: _Stamp) -> None:
        current = span.attributes
        # One pass over the span's few keys and one locked write: a
        # ``key in attributes`` miss costs an exception inside the SDK.
        present = [k for k in current if k in _STAMP_KEYS] if current else ()
        span.set_attributes({k: v for k, v in stamp.attrs.items() if k not in present} if present else stamp.attrs)

    def on_end(self, span: ReadableSpan) -> None:
        try:
            ctx = span.get_span_context()
            if ctx is not None and self._open.pop(ctx.span_id, None) is not None:
                self.pipeline.submit_end(span)
        except Exception:
            self._errors += 1
