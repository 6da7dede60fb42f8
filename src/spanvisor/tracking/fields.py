"""Which value a task's state fields show: timed facts win by time, the root's
attributes are defaults.

A checkpoint event, or a state attribute on a span other than the root (read
at that span's end), is a *timed fact*: for each field the fact with the
latest time wins, whatever order facts arrive in. The root's own attributes
carry no time: they fill only fields no timed fact has set. See
``docs/reference/conventions.md#time-order-and-which-value-wins``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from spanvisor.events import Status
from spanvisor.redaction import redact
from spanvisor.spans import conventions as cv
from spanvisor.spans import sanitize as sz
from spanvisor.tracking.taskcontext import TaskContext
from spanvisor.tracking.working import Working

# (time, span id, n-th): orders timed facts; the span id and position break
# ties the same way on every path.
FactTime = tuple[int, str, int]

STATE_KEYS = cv.STATE_KEYS
_STATE_KEYSET = frozenset(STATE_KEYS)


def _same(a: Any, b: Any) -> bool:
    # By type too: False == 0 in Python, yet one is junk and the other a value.
    return type(a) is type(b) and a == b


_NOTHING: dict[str, Any] = {}  # never written: what a span not remembered carried

_RUNNING = (None, "starting", "working", "waiting", "context_warning", "awaiting_approval")


class TaskFields:
    __slots__ = ("attrs_seen", "context", "explicit_status", "fact_time", "thresholds")

    def __init__(self, context: TaskContext, thresholds: Sequence[float]) -> None:
        self.context = context
        self.thresholds = thresholds
        self.explicit_status: Status | None = None
        # field -> the time of the timed fact that set it
        self.fact_time: dict[str, FactTime] = {}
        # span id -> its state attributes as last read (only spans that carry
        # any); None while none is remembered: an emptied dict keeps its grown
        # table (184 bytes) in every task whose spans carried state.
        self.attrs_seen: dict[str, dict[str, Any]] | None = None

    def attr_changes(self, span_id: str, a: Any) -> dict[str, Any]:
        """The state attributes of this span that changed since it was last read.

        Comparing with the span's own earlier values, not the task's view,
        keeps a stale attribute from undoing a later checkpoint event.
        """
        current = {k: a[k] for k in STATE_KEYS if k in a} if a else {}
        before = self._pop(span_id) or {}
        if current:  # remembered only for spans that carry state: memory per task stays small
            if self.attrs_seen is None:
                self.attrs_seen = {}
            self.attrs_seen[span_id] = current
        return {k: v for k, v in current.items() if k not in before or not _same(before[k], v)}

    def carries_none(self, span_id: str, a: Any) -> bool:
        """No state attribute on this span, now or when it was last read:
        :meth:`attr_changes` would find nothing."""
        return (not a or _STATE_KEYSET.isdisjoint(a)) and (self.attrs_seen is None or span_id not in self.attrs_seen)

    def forget(self, span_id: str) -> None:
        self._pop(span_id)

    def seen(self, span_id: str) -> Mapping[str, Any]:
        """The span's state attributes as last read (empty: none)."""
        return self.attrs_seen.get(span_id, _NOTHING) if self.attrs_seen is not None else _NOTHING

    def _pop(self, span_id: str) -> dict[str, Any] | None:
        seen = self.attrs_seen
        if seen is None:
            return None
        out = seen.pop(span_id, None)
        if not seen:
            self.attrs_seen = None
        return out

    def _wins(self, name: str, timed: FactTime | None) -> bool:
        """May this source set ``name``? Defaults only where no timed fact has;
        a timed fact where no later one has."""
        known = self.fact_time.get(name)
        if timed is None:
            return known is None
        if known is not None and known > timed:
            return False
        self.fact_time[name] = timed
        return True

    def changes(
        self, w: Working, src: Any, notes: list[str], timed: FactTime | None, plain_message: bool
    ) -> dict[str, Any]:
        """The view fields ``src`` changes (progress, step, steps, message,
        context; an explicit status is recorded, the status itself is derived by
        :meth:`status_after`). ``timed``: the fact's time, None for the root's
        defaults. ``plain_message``: a checkpoint event may say ``message`` for short.
        """
        changes: dict[str, Any] = {}
        if cv.PROGRESS in src:
            p = sz.progress(src[cv.PROGRESS], notes)
            if p is not None and self._wins("progress", timed) and p != w.progress:
                changes["progress"] = p
        if cv.STEP in src:
            s = sz.name(src[cv.STEP], cv.STEP, notes)
            s = redact(s) if s is not None else None  # shown to people: the one set of rules
            if s is not None and self._wins("step", timed) and s != w.step:
                changes["step"] = s
        if cv.STEPS in src:
            steps = tuple(redact(x) for x in sz.string_list(src[cv.STEPS], cv.STEPS, notes))
            if steps and self._wins("steps", timed) and steps != w.steps:
                changes["steps"] = steps
        msg_key = cv.MESSAGE if cv.MESSAGE in src else ("message" if plain_message and "message" in src else None)
        if msg_key is not None:
            m = sz.text(src[msg_key], cv.MESSAGE, notes)
            m = redact(m) if m is not None else None
            if m is not None and self._wins("message", timed) and m != w.message:
                changes["message"] = m
        if cv.STATUS in src:
            raw = sz.name(src[cv.STATUS], cv.STATUS, notes)
            st = raw.strip().lower() if raw else None
            if st in cv.STATUSES:
                if self._wins("status", timed):
                    self.explicit_status = st  # type: ignore[assignment]
            elif st is not None:
                sz.note(notes, cv.STATUS, f"unknown status {st[:40]!r} ignored")
        if cv.CONTEXT_LIMIT in src:
            lim = sz.tokens(src[cv.CONTEXT_LIMIT], cv.CONTEXT_LIMIT, notes)
            if lim and self._wins("context_limit", timed):
                self.context.explicit_limit = lim
                if lim != w.context_limit:
                    changes["context_limit"] = lim
        if cv.CONTEXT_TOKENS in src:
            t = sz.tokens(src[cv.CONTEXT_TOKENS], cv.CONTEXT_TOKENS, notes)
            if t is not None and self._wins("context_tokens", timed):
                # The agent reports occupancy itself: it wins over model calls
                # from then on, whatever order the spans arrive in.
                self.context.explicit_tokens = True
                if t != w.context_tokens:
                    changes["context_tokens"] = t
        return changes

    def status_after(self, w: Working, changes: Mapping[str, Any]) -> Status:
        """The derived status once ``changes`` apply: explicit wins, then the window."""
        explicit = self.explicit_status
        # An open approval request outranks a plain running status, never an
        # outcome or a block the agent declared.
        if changes.get("approvals", w.approvals) and explicit in _RUNNING:
            return "awaiting_approval"
        # A declared "working" (an agent back from a wait) says no more than
        # no status would: the context window's warning still shows.
        if explicit is not None and explicit != "working":
            return explicit
        tokens = changes.get("context_tokens", w.context_tokens)
        limit = changes.get("context_limit", w.context_limit)
        if tokens is not None and limit and self.thresholds and tokens / limit >= self.thresholds[0]:
            return "context_warning"
        return "working"


__all__ = ["STATE_KEYS", "FactTime", "TaskFields"]
