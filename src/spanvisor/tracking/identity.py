"""Who a task is: its agent, name and repo, read from any span of the task.

The root has the last word. Until its value is known, another span of the
task (a sub-agent carrying its own ``agent.task.name``, a stamped child that
arrived first) may lend one; among those, the span that **started first**
wins, so every arrival order names the task the same way.

A root that is an agent span naming no agent (the OpenAI Agents SDK's
"Agent workflow", Google ADK's ``invoke_workflow``) is a *wrapper*: its span
name only fills a gap, and the first nested agent span names the task with
its own span name.

Whether the root is a wrapper is decided again when better facts come
(:meth:`TaskIdentity.decide`): at the root's end, from its final attributes,
on every path. A task opened from a stamped descendant whose stamp names no
agent has not seen its root yet: it is read as a wrapper *provisionally*
(nested agent spans name it and their outcome is kept) until the root says
what it is. A changed title or agent is a new fact at the time the span that
says so is read: the events before it keep the values of their time.

The run's main agent (``gen_ai.main_agent``) names the task over any other
span but the root. A span other than the root lends the agent's name only
when it names the task's agent (a sub-agent's name is its own). The agent's identity, in order: the span's ``agent.id``; else its name
(``agent.name``, ``gen_ai.agent.name``, OpenLLMetry's entity name); only a
span that names no agent lends its ``gen_ai.agent.id`` (frameworks make that
one per object: Semantic Kernel's uuid); else the resource's
``service.name`` (:func:`spanvisor.spans.conventions.agent_id`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from spanvisor.spans import conventions as cv
from spanvisor.spans import current as now
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
    # Opened from a descendant whose stamp names no agent: ``wrapper`` is a
    # guess until the root's end decides it.
    provisional: bool = False
    # The title came from a nested agent's span name, as a wrapper's does.
    wrapper_named: bool = False
    # While a wrapper: the explicit agent.task.name another span lent that
    # started first, with its rank (what names the task should the root turn
    # out no wrapper).
    explicit: tuple[Rank, str] | None = None
    # A provisional task (tracking/provisional.py), while its root is unseen:
    # the agent it shows, the service's until a span of the task's own work
    # (not a nested agent span: that names a sub-agent) names one (named).
    shown: str | None = None
    named: bool = False

    def unknown_root(self, stamps: Any) -> None:
        """The task opened from a stamped descendant, its root unseen: a stamp
        naming no agent says the root named none as it started, so it may be
        a wrapper (decided at the root's end: :meth:`decide`)."""
        if cv.AGENT_ID not in stamps:
            self.wrapper = self.provisional = True

    def decide(self, root: Any) -> dict[str, Any]:
        """The root's end: whether it is a wrapper, from its final attributes
        (an agent span naming no agent and no task name). A root that turns
        out no wrapper takes back the title a nested agent's span name gave
        under the wrapper rule (the change it returns): the root names the
        task, as in every order that saw the root first."""
        was = self.wrapper
        named = cv.agent_id(root) is not None or cv.agent_name(root) is not None
        self.wrapper = not named and cv.TASK_NAME not in root and cv.is_agent_span(root)
        self.provisional = False
        if not was or self.wrapper or not self.wrapper_named:
            return {}
        self.wrapper_named = False
        kept = self.explicit
        if kept is None:
            if self.lent is not None:
                self.lent.pop("task_name", None)
            return {"task_name": None}
        self._lend("task_name", kept[0])
        return {"task_name": kept[1]}

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
        # The span of the run's main agent (gen_ai.main_agent) outranks every
        # other span but the root: a sub-agent never names the task over it.
        rank = ROOT if is_root else ((-1, span.span_id) if now.is_main_agent(a) else (span.start_ns, span.span_id))
        changes: dict[str, Any] = {}
        gap_agent = False  # the agent id came from service.name or nothing: a gap

        def known_value(name: str) -> Any:
            return None if gap_agent and name == "agent_id" else current[name]

        def offer(name: str, value: Any, weak: bool = False) -> bool:
            if value is None:
                return False
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
            return wins

        agent = sz.name(cv.agent_id(a), cv.AGENT_ID, notes) or sz.name(cv.agent_name(a), "agent.name", notes)
        if self.shown is not None and not self.named and not cv.is_agent_span(a):
            # The first span of the task's own work to name its agent (by an
            # agent key: OpenLLMetry's entity name names any step).
            own = sz.name(cv.first(a, cv.AGENT_ID, cv.GEN_AI_AGENT_NAME, cv.AGENT_NAME), cv.AGENT_ID, notes)
            if own is not None:
                self.shown, self.named = own, True
        if agent is not None and (is_root or self.agent_is_fallback or self.lends("agent_id")):
            gap_agent = self.agent_is_fallback
            offer("agent_id", agent)
            if self.lends("agent_id"):
                self.agent_is_fallback = False
        if cv.REPO in a:
            offer("repo", sz.text(a.get(cv.REPO), cv.REPO, notes, 256))
        if is_root and cv.BRANCH in a:  # the root's alone, its latest word (it may switch)
            offer("branch", sz.name(a.get(cv.BRANCH), cv.BRANCH, notes))
        if is_root and cv.PULL_REQUEST in a:  # the same: its latest word
            offer("pull_request", sz.text(a.get(cv.PULL_REQUEST), cv.PULL_REQUEST, notes, sz.MAX_URL))
        # The root's name may be its span name (an invoke_agent span); another
        # span only lends its explicit agent.task.name.
        raw_name = cv.task_name(a, span.name) if is_root else a.get(cv.TASK_NAME)
        by_wrapper_rule = raw_name is None and self.wrapper and cv.is_agent_span(a)
        if by_wrapper_rule:
            raw_name = now.title(span.name)
        if raw_name is not None:
            weak = self.wrapper and is_root and cv.TASK_NAME not in a
            value = sz.text(raw_name, cv.TASK_NAME, notes, 500)
            if offer("task_name", value, weak):
                self.wrapper_named = by_wrapper_rule
            lends = self.wrapper and not is_root and not by_wrapper_rule
            if lends and value is not None and (self.explicit is None or rank < self.explicit[0]):
                self.explicit = (rank, value)
        n = sz.name(cv.agent_name(a), "agent.name", notes)
        # A nested agent span names another agent than the task's (a sub-agent;
        # its stamp says the task's agent.id, not its own), unless the task's
        # agent came from the span names: then it names the task's agent.
        sub_agent = not is_root and not gap_agent and cv.is_agent_span(a)
        if n is not None and not (sub_agent and n != changes.get("agent_id", current.agent_id)):
            offer("agent_name", n)
        return changes

    def lends(self, name: str) -> bool:
        """Whether a span lent ``name``'s value."""
        return self.lent is not None and name in self.lent

    def _lend(self, name: str, rank: Rank) -> None:
        if self.lent is None:
            self.lent = {}
        self.lent[name] = rank


# Keys other than the agent id a span other than the root may lend a value from.
_LENDS_MORE = frozenset(
    {cv.AGENT_NAME, cv.GEN_AI_AGENT_NAME, cv.TL_ENTITY, now.GEN_AI_WORKFLOW_NAME, cv.REPO, cv.TASK_NAME}
)


__all__ = ["ROOT", "TaskIdentity"]
