"""A task's handle: what ``with task(...) as t`` gives, and everything it
writes on the task's root (checkpoints, artifacts, status, results, context)
or asks of people (approvals, cancel). Pure OpenTelemetry API; the live
channel (:mod:`spanvisor.otel.live`) repeats the root's facts as log records
when the spans leave the process."""

from __future__ import annotations

import hashlib
import itertools
import logging
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from opentelemetry import trace
from opentelemetry.trace import Span
from opentelemetry.util.types import AttributeValue

from spanvisor.agent.attributes import as_attributes
from spanvisor.canonical import approval_digest, canonical_json, check_action, check_from
from spanvisor.control.feed import ApprovalDecision, CancelRequested, TaskFeed
from spanvisor.control.permits import permit
from spanvisor.control.runs import Permit
from spanvisor.events import ApprovalRequest, run_id_of
from spanvisor.spans import conventions as cv
from spanvisor.tracking.approvals import request_from

if TYPE_CHECKING:
    from spanvisor.budgets.board import BudgetState
    from spanvisor.otel.live import LiveChannel

log = logging.getLogger("spanvisor.agent")


class OverBudget(Exception):
    """The task used its budget (``t.raise_if_over_budget()``)."""

    def __init__(self, state: BudgetState) -> None:
        spent = f"${state.used_usd:.4f}" + (f" of ${state.budget_usd:.2f}" if state.budget_usd else "")
        tokens = f"{state.used_tokens:,} tokens" + (f" of {state.budget_tokens:,}" if state.budget_tokens else "")
        super().__init__(f"over budget: {spent}, {tokens}")
        self.state = state


class TaskHandle:
    """What ``with task(...) as t`` gives: the task's root span, and shortcuts."""

    def __init__(self, span: Span, tracer: trace.Tracer | None = None) -> None:
        self.span = span
        self._tracer = tracer or trace.get_tracer("spanvisor.agent")
        self._approval_numbers = itertools.count(1)
        # approval id -> the request as asked (what its digest covers).
        self._asked: dict[str, ApprovalRequest] = {}
        # Each request's permit secret: only this process consumes its approvals.
        self._keys: dict[str, str] = {}
        self._feed: TaskFeed | None = None
        self._task_id: str | None = None
        # Where the root's facts are said while it is open (None: nowhere).
        self._live: LiveChannel | None = None

    def _say(self, name: str, attrs: Mapping[str, Any], time_ns: int | None = None) -> None:
        if self._live is not None:
            try:
                self._live.say(self.span, name, attrs, time_ns or time.time_ns())
            except Exception:  # telemetry must never break the agent
                log.exception("could not say %s on the live channel", name)

    def _set(self, key: str, value: AttributeValue) -> None:
        self.span.set_attribute(key, value)
        self._say(cv.LIVE_TASK_UPDATE, {key: value})

    def checkpoint(
        self,
        message: str | None = None,
        *,
        progress: float | None = None,
        step: str | None = None,
        status: str | None = None,
        **attrs: Any,
    ) -> None:
        """Add an ``agent.checkpoint`` event to the task's root span."""
        values = as_attributes(
            **{cv.MESSAGE: message, cv.PROGRESS: progress, cv.STEP: step, cv.STATUS: status}, **attrs
        )
        t = time.time_ns()  # the event and its live record are one fact: one time
        self.span.add_event(cv.EVENT_CHECKPOINT, values, timestamp=t)
        self._say(cv.EVENT_CHECKPOINT, values, t)

    def artifact(self, name: str, *, uri: str | None = None, kind: str | None = None) -> None:
        values = as_attributes(**{cv.ARTIFACT_NAME: name, cv.ARTIFACT_URI: uri, cv.ARTIFACT_KIND: kind})
        t = time.time_ns()
        self.span.add_event(cv.EVENT_ARTIFACT, values, timestamp=t)
        self._say(cv.EVENT_ARTIFACT, values, t)

    def set_status(self, status: str) -> None:
        self._set(cv.STATUS, status)

    def result(self, name: str, value: float | int | str | bool, unit: str | None = None) -> None:
        """A result of the task (``agent.result.<name>``, unit in ``….unit``): in its summary."""
        self._set(cv.RESULT_PREFIX + name, value)
        if unit:
            self._set(f"{cv.RESULT_PREFIX}{name}{cv.RESULT_UNIT_SUFFIX}", unit)

    @property
    def budget(self) -> BudgetState | None:
        """What this task has used of its budgets (``used_usd``/``budget_usd``,
        ``used_tokens``/``budget_tokens``, ``over``), as spanvisor's in-process
        pipeline last counted it, else as the control API reports it
        (``SPANVISOR_CONTROL_URL``); None without a budget or either. Costs are estimates."""
        from spanvisor.budgets.board import BudgetState, lookup
        from spanvisor.control.budgetread import remote_budget

        ctx = self.span.get_span_context()
        state = lookup(format(ctx.trace_id, "032x"), format(ctx.span_id, "016x"))
        if state is None and (b := remote_budget(self.task_id)) is not None:
            state = BudgetState(b["cost_usd"], b["budget_usd"], b["tokens"], b["budget_tokens"], b["unpriced_calls"])
        return state

    def raise_if_over_budget(self) -> None:
        """Raise :class:`OverBudget` when the task is at or past a budget."""
        state = self.budget
        if state is not None and state.over:
            raise OverBudget(state)

    def set_context(self, tokens: int, limit: int | None = None) -> None:
        """Report context-window occupancy yourself (when no model span does)."""
        self._set(cv.CONTEXT_TOKENS, tokens)
        if limit is not None:
            self._set(cv.CONTEXT_LIMIT, limit)

    # -- the way back: approvals and cancel (docs/reference/interventions.md) -------------

    @property
    def task_id(self) -> str:
        """The task's id as spanvisor knows it: ``agent.task.id`` on the root
        (sanitised as the tracker reads it), else ``<trace id>-<root span id>``."""
        if self._task_id is None:
            from spanvisor.spans import sanitize as sz
            from spanvisor.tracking.tasktable import default_task_id

            ctx = self.span.get_span_context()
            raw = (getattr(self.span, "attributes", None) or {}).get(cv.TASK_ID)
            named = sz.name(raw, cv.TASK_ID, []) if raw is not None else None
            self._task_id = named or default_task_id(format(ctx.trace_id, "032x"), format(ctx.span_id, "016x"))
        return self._task_id

    def _decisions(self) -> TaskFeed:
        if self._feed is None:
            c = self.span.get_span_context()  # this run's decisions, never an earlier run's:
            self._feed = TaskFeed(self.task_id, run_id=run_id_of(f"{c.trace_id:032x}", f"{c.span_id:016x}"))
        return self._feed

    def _stamp(self) -> dict[str, AttributeValue]:
        """What the processor stamps on a span of this task: its root, id and agent."""
        ctx = self.span.get_span_context()
        stamp: dict[str, AttributeValue] = {cv.TASK_ROOT: format(ctx.span_id, "016x"), cv.TASK_ID: self.task_id}
        agent = (getattr(self.span, "attributes", None) or {}).get(cv.AGENT_ID)
        if isinstance(agent, str):
            stamp[cv.AGENT_ID] = agent
        return stamp

    def _note(self, event: str, attrs: dict[str, AttributeValue]) -> None:
        """``event`` on a short child span of the root that ends at once, so
        every path (processor, exporter, receiver) sees it now, not only when
        the root ends. Stamped like the processor stamps, so a receiver can
        place it in its task before the root arrives."""
        try:
            stamp = self._stamp()
            child = self._tracer.start_span(event, context=trace.set_span_in_context(self.span), attributes=stamp)
            child.add_event(event, attrs)
            child.end()
        except Exception:  # telemetry must never break the agent
            log.exception("could not emit %s", event)

    def _ask(
        self,
        question: str,
        approval_id: str | None,
        options: Sequence[str],
        timeout: float,
        details: str | None = None,
        action: Mapping[str, Any] | None = None,
        approvers: int = 1,
        requester: str | None = None,
        approvers_from: Sequence[str] | None = None,
    ) -> str:
        aid = approval_id or f"a{next(self._approval_numbers)}"
        secret = self._keys.setdefault(aid, secrets.token_hex(16))
        values: dict[str, Any] = {
            cv.APPROVAL_PERMIT_KEY: hashlib.sha256(secret.encode()).hexdigest(),
            cv.APPROVAL_ID: aid,
            cv.APPROVAL_QUESTION: question,
            cv.APPROVAL_OPTIONS: list(options),
            cv.APPROVAL_TIMEOUT_S: float(timeout),
            cv.APPROVAL_DETAILS: details,
            cv.APPROVAL_ACTION: canonical_json(check_action(action)) if action is not None else None,
            cv.APPROVAL_APPROVERS: approvers if approvers != 1 else None,
            cv.APPROVAL_REQUESTER: requester or self._owner(),
            cv.APPROVAL_FROM: list(check_from(list(approvers_from))) if approvers_from else None,
        }
        agent = (getattr(self.span, "attributes", None) or {}).get(cv.AGENT_ID)
        if isinstance(agent, str):
            values[cv.APPROVAL_AGENT] = agent
        attrs = as_attributes(**values)
        # What the receiving end will make of it, digest and all: the same code.
        c = self.span.get_span_context()
        req = request_from(attrs, 0, [], self.task_id, run_id_of(f"{c.trace_id:032x}", f"{c.span_id:016x}"))
        if req is not None:
            self._asked[aid] = req
        self._note(cv.EVENT_APPROVAL_REQUEST, attrs)
        return aid

    def _owner(self) -> str | None:
        """``agent.owner`` on the task's root, else on the tracer provider's
        resource: the person this agent works for."""
        raw = (getattr(self.span, "attributes", None) or {}).get(cv.OWNER)
        if raw is None:
            resource = getattr(trace.get_tracer_provider(), "resource", None)
            raw = getattr(resource, "attributes", {}).get(cv.OWNER)
        return raw if isinstance(raw, str) and raw else None

    def _expect(self, aid: str) -> Callable[[Mapping[str, Any] | None], str | None]:
        req = self._asked[aid]
        c = self.span.get_span_context()
        run = run_id_of(f"{c.trace_id:032x}", f"{c.span_id:016x}")

        def digest(action: Mapping[str, Any] | None) -> str | None:
            try:
                checked = check_action(action) if action is not None else None
            except ValueError:
                return None
            return approval_digest(
                agent=req.agent,
                task=self.task_id,
                run=run,
                approval_id=aid,
                question=req.question,
                options=req.options,
                details=req.details,
                action=checked,
            )

        return digest

    def _answered(self, aid: str, found: Any) -> ApprovalDecision:
        if found is None:
            result = ApprovalDecision.timed_out(aid)
        elif found.action == "cancel":
            result = ApprovalDecision.cancelled(aid, found)
        elif aid in self._asked:
            feed = self._decisions()

            def consume(action: Mapping[str, Any] | None) -> Permit:
                return permit(
                    feed.source(), self.task_id, aid, action, found.run_id or feed.run_id, self._keys.get(aid)
                )

            req = self._asked[aid]
            result = ApprovalDecision.of(found, expect=self._expect(aid), asked_digest=req.digest, consume=consume)
        else:
            result = ApprovalDecision.of(found)
        self._note(
            cv.EVENT_APPROVAL_DECISION,
            as_attributes(
                **{cv.APPROVAL_ID: aid, cv.APPROVAL_OUTCOME: result.outcome, cv.APPROVAL_DECIDED_BY: result.by}
            ),
        )
        return result

    def request_approval(
        self,
        question: str,
        *,
        approval_id: str | None = None,
        options: Sequence[str] = ("approve", "reject"),
        timeout: float = 900.0,
        details: str | None = None,
        action: Mapping[str, Any] | None = None,
        approvers: int = 1,
        requester: str | None = None,
        approvers_from: Sequence[str] | None = None,
    ) -> ApprovalDecision:
        """Ask a person and wait for the answer (at most ``timeout`` seconds).

        Emits ``agent.approval.request`` (the task shows awaiting_approval),
        waits for a decision on it from this process's pipeline or from the
        control API at ``SPANVISOR_CONTROL_URL``, then emits
        ``agent.approval.decision`` with the outcome. ``approval_id``
        defaults to ``a1``, ``a2``, ... in the order this handle asks (the
        same in a rerun of the task, which then reads the earlier answers).
        ``details`` is more text for the person; ``action`` is what the
        agent will run if approved, ``{"tool": name, "arguments": {...}}``
        (JSON): both are shown and bound into the request's digest. Check
        the action against the decision right before running it:
        ``decision.permits(decision.action_to_run(action))`` is true once,
        for exactly the action approved (an approver may have edited its
        arguments). ``approvers``: how many distinct, verified people must
        approve; ``requester``: who asked (the person this agent works
        for), who may not approve it (default: ``agent.owner`` on the task
        or its resource); ``approvers_from``: whose approvals count
        (``["group:sre", "alice"]``; default anyone's).
        Returns ``cancelled`` at once when someone asks the task to stop
        (before or while it waits), ``timed_out`` at once when nothing can
        answer, or when the action is not valid JSON of that shape (logged).
        Never raises.
        """
        try:
            aid = self._ask(
                question, approval_id, options, timeout, details, action, approvers, requester, approvers_from
            )
        except ValueError as exc:
            log.error("approval not asked: %s", exc)
            return ApprovalDecision.timed_out(approval_id or "")
        try:
            found = self._decisions().wait_approval(aid, timeout)
        except Exception:
            log.exception("waiting for approval %s failed", aid)
            found = None
        return self._answered(aid, found)

    async def request_approval_async(
        self,
        question: str,
        *,
        approval_id: str | None = None,
        options: Sequence[str] = ("approve", "reject"),
        timeout: float = 900.0,  # noqa: ASYNC109 - the same signature as request_approval
        details: str | None = None,
        action: Mapping[str, Any] | None = None,
        approvers: int = 1,
        requester: str | None = None,
        approvers_from: Sequence[str] | None = None,
    ) -> ApprovalDecision:
        """:meth:`request_approval` for async agents: the waiting happens in
        short polls on a worker thread, so the event loop stays free and
        cancelling the coroutine stops it. ``decision.permits(action)``
        makes one blocking call: run it in a thread from a busy loop."""
        try:
            aid = self._ask(
                question, approval_id, options, timeout, details, action, approvers, requester, approvers_from
            )
        except ValueError as exc:
            log.error("approval not asked: %s", exc)
            return ApprovalDecision.timed_out(approval_id or "")
        try:
            found = await self._decisions().wait_approval_async(aid, timeout)
        except Exception:
            log.exception("waiting for approval %s failed", aid)
            found = None
        return self._answered(aid, found)

    @property
    def cancel_requested(self) -> bool:
        """Has someone asked this task to stop? Cheap: the first read starts
        a watcher thread that long-polls for it; later reads only look."""
        try:
            return self._decisions().cancel is not None
        except Exception:
            return False

    def raise_if_cancelled(self) -> None:
        """Raise :class:`CancelRequested` when someone asked the task to stop."""
        if self.cancel_requested:
            raise CancelRequested(self._decisions().cancel)

    def on_cancel(self, callback: Callable[[], object]) -> None:
        """Call ``callback()`` once, on a daemon thread, when someone asks the
        task to stop. Its exceptions are logged, never raised into the agent."""
        try:
            self._decisions().on_cancel(callback)
        except Exception:
            log.exception("could not watch task %s for a cancel", self.task_id)

    @property
    def _cancel_read(self) -> bool:
        """A cancel this handle has read (waiting, watching): no I/O."""
        return self._feed is not None and self._feed.cancel_read is not None

    def _close(self) -> None:
        if self._feed is not None:
            self._feed.close()
        if self._live is not None:
            try:
                self._live.closed(self.span)
            except Exception:
                log.exception("could not flush the live channel")


__all__ = ["ApprovalDecision", "CancelRequested", "OverBudget", "TaskHandle", "as_attributes"]
