"""How a task ends: its outcome, and which error is reported.

The root's own error wins: its exception event, else its status message. A
child's error (often handled: "retry 1 of 3") is the reported cause only when
the root failed without saying why. Where a span records no exception event
its type may still be in the OTel ``error.type`` attribute (the Microsoft
Agent Framework writes only that unless told to record sensitive data): it
types that span's error (``_OTHER``, the convention's "unknown", is not a type).

A root that names no agent (the OpenAI Agents SDK's "Agent workflow") is a
wrapper: the named agent spans inside it run the task, and the last of them
to end says how it went. Its failure fails the task even when the wrapper
ends OK.

A root that never ends (smolagents raises out of a failing run without
ending its AGENT span) is ended by the framework's own error spans: a failed
*step* directly under the root (a span that is neither a model call nor a
tool call: smolagents' ``Step n`` CHAIN) is kept (:attr:`ErrorInfo.step`),
and once the task goes quiet for its agent's stall time (the root hold if
longer, or if stall detection is off) the tracker finishes it as failed
(``tracking/tasktable.py``), saying so in a note.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from spanvisor.events import Outcome
from spanvisor.redaction import redact
from spanvisor.spans import current as now
from spanvisor.spans import sanitize as sz
from spanvisor.spans.data import SpanData

_CANCEL_TYPES = frozenset(
    {
        "CancelledError",
        "asyncio.CancelledError",
        "asyncio.exceptions.CancelledError",
        "KeyboardInterrupt",
        "GeneratorExit",
        "concurrent.futures._base.CancelledError",
    }
)

Error = tuple[str | None, str | None, str | None]  # type, message, stack trace
NO_ERROR: Error = (None, None, None)


@dataclass(slots=True)
class ErrorInfo:
    """The earliest error each kind of span reported (bounded: two tuples).

    Earliest by time, then span id, so every arrival order reports the same
    one: the first failure is the cause, later ones are its consequences.
    Every task holds one, open or just finished: slotted, 64 bytes, not
    160 with a ``__dict__``."""

    root: Error = NO_ERROR
    child: Error = NO_ERROR
    _root_at: tuple[int, str] | None = None
    _child_at: tuple[int, str] | None = None
    # (end, span id, failed) of the nested agent span that ended last.
    _last_agent: tuple[int, str, bool] | None = None
    # (end, span id, span name) of the earliest failed step directly under the root.
    step: tuple[int, str, str] | None = None

    def exception_event(self, attrs: Mapping[str, Any], is_root: bool, at: tuple[int, str], notes: list[str]) -> None:
        known = self._root_at if is_root else self._child_at
        if known is not None and known <= at:
            return
        # Shown to people (Slack, the console, the audit): masked like every such text.
        err = (
            sz.name(attrs.get("exception.type"), "exception.type", notes),
            _masked(sz.text(attrs.get("exception.message"), "exception.message", notes)),
            _masked(sz.text(attrs.get("exception.stacktrace"), "exception.stacktrace", notes, 8000)),
        )
        if is_root:
            self.root, self._root_at = err, at
        else:
            self.child, self._child_at = err, at

    def span_failed(self, span: SpanData, notes: list[str]) -> None:
        """A failed child names its status message and ``error.type``, as of its end."""
        at = (span.end_ns or 0, span.span_id)
        if self._child_at is None or at < self._child_at:
            msg = _masked(sz.text(span.status_message or None, "status.message", notes))
            self.child, self._child_at = (error_type(span, notes), msg, None), at

    def step_failed(self, span: SpanData) -> None:
        """A failed step directly under the root (not a model or tool call):
        what ends a task whose root never does."""
        at = (span.end_ns or 0, span.span_id, span.name)
        if self.step is None or at[:2] < self.step[:2]:
            self.step = at

    def agent_ended(self, span: SpanData, notes: list[str]) -> None:
        """A nested agent span naming its agent ended: the latest one decides a
        wrapper's outcome."""
        last = (span.end_ns or 0, span.span_id, span.error)
        if self._last_agent is None or last[:2] > self._last_agent[:2]:
            self._last_agent = last

    @property
    def last_agent_failed(self) -> bool:
        return self._last_agent is not None and self._last_agent[2]

    def reported(self, root: SpanData, notes: list[str]) -> Error:
        if self.root != NO_ERROR:
            return self.root
        # OTLP has no null string: an empty status message says nothing.
        msg = _masked(sz.text(root.status_message or None, "status.message", notes))
        typed = error_type(root, notes)
        if msg is not None:
            return (typed, msg, None)
        if self.child != NO_ERROR:
            return self.child if self.child[0] is not None or typed is None else (typed, *self.child[1:])
        return (typed, None, None)


def _masked(text: str | None) -> str | None:
    return redact(text) if text is not None else None


def error_type(span: SpanData, notes: list[str]) -> str | None:
    """The span's ``error.type`` attribute, when it names a type."""
    raw = span.attributes.get(now.ERROR_TYPE) if span.attributes else None
    return None if raw is None or raw == "_OTHER" else sz.name(raw, now.ERROR_TYPE, notes)


def outcome_of(explicit_status: str | None, root: SpanData, errors: ErrorInfo, wrapper: bool = False) -> Outcome:
    # The span's ERROR status beats an agent's "complete": a crash after
    # the agent declared victory is still a crash. "cancelled" wins both.
    if explicit_status == "cancelled" or (root.error and errors.root[0] in _CANCEL_TYPES):
        return "cancelled"
    if root.error or explicit_status == "error":
        return "error"
    if wrapper and explicit_status is None and errors.last_agent_failed:
        return "error"
    return "complete"


__all__ = ["NO_ERROR", "Error", "ErrorInfo", "outcome_of"]
