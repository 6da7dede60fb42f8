"""Who a task is: its agent, name and repo, read from any span of the task.

The root has the last word. Until its value is known, another span of the
task (a sub-agent carrying its own ``agent.task.name``, a stamped child that
arrived first) may lend one; among those, the span that **started first**
wins, so every arrival order names the task the same way.

A root that is an agent span naming no agent (the OpenAI Agents SDK's
"Agent workflow") is a *wrapper*: its span name only fills a gap, and the
first nested agent span names the task with its own span name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from spanvisor.spans import conventions as cv
from spanvisor.spans import sanitize as sz
from spanvisor.spans.data import SpanData
from spanvisor.tracking.working import Working

Rank = tuple[int, str]  # (start time, span id) of the span a value came from
ROOT: Rank = (-1, "")  # the root's own values outrank every other span's


@dataclass(slots=True)  # one in every task: no __dict__
class TaskIdentity:
    # The agent id came from service.name or nothing: any span may name it.
    agent_is_fallback: bool
    # field -> the rank of the span that lent it; None until one does (an
    # empty dict is 64 bytes in every open task).
    lent: dict[str, Rank] | None = None
    wrapper: bool = False

    def read(self, current: Working, span: SpanData, notes: list[str], is_root: bool) -> dict[str, Any]:
        """The identity fields this span sets, given the task's ``current`` values."""
        a = span.attributes
        if not a:
            return {}
        if not is_root:
            if not (
                self.agent_is_fallback
                or current.repo is None
                or current.task_name is None
                or current.agent_name is None
                or self.lent
            ):
                return {}  # the usual span: nothing to learn about the task's identity
            if _LENDS_MORE.isdisjoint(a):
                # At most the agent id (a stamped child): nothing else to read.
                if cv.AGENT_ID not in a and cv.GEN_AI_AGENT_ID not in a:
                    return {}
                v = cv.agent_id(a)
                if v.__class__ is str and v == current.agent_id and not self.agent_is_fallback:
                    # The task's agent again. ``v`` equals a value sanitising
                    # gave, so it is clean and says nothing; only a span that
                    # started before the one that lent it takes its place.
                    lent = self.lent
                    known = lent.get("agent_id") if lent else None
                    if known is not None and known != ROOT and (span.start_ns, span.span_id) < known:
                        self._lend("agent_id", (span.start_ns, span.span_id))
                    return {}
        rank = ROOT if is_root else (span.start_ns, span.span_id)
        changes: dict[str, Any] = {}
        gap_agent = False  # the agent id came from service.name or nothing: a gap

        def known_value(name: str) -> Any:
            return None if gap_agent and name == "agent_id" else current[name]

        def offer(name: str, value: Any, weak: bool = False) -> None:
            if value is None:
                return
            known = self.lent.get(name) if self.lent else None
            if weak:
                wins = known_value(name) is None
            elif is_root:
                wins = True
            elif known_value(name) is None or (self.wrapper and name == "task_name" and not self.lends(name)):
                wins = True  # a gap (a wrapper's own span name is one): any span may fill it
            else:
                # Set by a span other than the root: the one that started first wins.
                wins = known is not None and known != ROOT and rank < known
            if wins:
                self._lend(name, rank)
                if value != known_value(name):
                    changes[name] = value

        agent = sz.name(cv.agent_id(a), cv.AGENT_ID, notes) or sz.name(cv.agent_name(a), "agent.name", notes)
        if agent is not None and (is_root or self.agent_is_fallback or self.lends("agent_id")):
            gap_agent = self.agent_is_fallback
            offer("agent_id", agent)
            if self.lends("agent_id"):
                self.agent_is_fallback = False
        if cv.REPO in a:
            offer("repo", sz.text(a.get(cv.REPO), cv.REPO, notes, 256))
        # The root's name may be its span name (an invoke_agent span); another
        # span only lends its explicit agent.task.name.
        raw_name = cv.task_name(a, span.name) if is_root else a.get(cv.TASK_NAME)
        if raw_name is None and self.wrapper and cv.is_agent_span(a):
            raw_name = span.name
        if raw_name is not None:
            weak = self.wrapper and is_root and cv.TASK_NAME not in a
            offer("task_name", sz.text(raw_name, cv.TASK_NAME, notes, 500), weak)
        n = cv.agent_name(a)
        if n is not None:
            offer("agent_name", sz.name(n, "agent.name", notes))
        return changes

    def lends(self, name: str) -> bool:
        """Whether a span lent ``name``'s value."""
        return self.lent is not None and name in self.lent

    def _lend(self, name: str, rank: Rank) -> None:
        if self.lent is None:
            self.lent = {}
        self.lent[name] = rank


# Keys other than the agent id a span other than the root may lend a value from.
_LENDS_MORE = frozenset({cv.AGENT_NAME, cv.GEN_AI_AGENT_NAME, cv.TL_ENTITY, cv.REPO, cv.TASK_NAME})


__all__ = ["ROOT", "TaskIdentity"]
