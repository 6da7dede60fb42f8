"""Optional helpers for agent authors, in pure OpenTelemetry API.

They only write spans, attributes and events: nothing here knows about
Slack, databases or spanvisor's pipeline, and they work with any SDK setup::

    with task("Diagnose F47", agent_id="rivet") as t:
        t.checkpoint("Routed to siemens SME", progress=30)
        t.artifact("report.md", uri="s3://bucket/report.md")

``checkpoint()`` at module level finds the innermost open ``task`` through a
context variable, so deep helper code can report progress without passing
the handle around.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Span, Status, StatusCode
from opentelemetry.util.types import AttributeValue

from spanvisor.spans import conventions as cv

if TYPE_CHECKING:
    from spanvisor.tracking.budgets import BudgetState

_current: contextvars.ContextVar[TaskHandle | None] = contextvars.ContextVar("spanvisor_task", default=None)
P = ParamSpec("P")
R = TypeVar("R")


def _attrs(**values: Any) -> dict[str, AttributeValue]:
    out: dict[str, AttributeValue] = {}
    for key, value in values.items():
        if value is None:
            continue
        if isinstance(value, list | tuple):
            out[key] = [str(x) for x in value]
        elif isinstance(value, str | bool | int | float):
            out[key] = value
        else:
            out[key] = str(value)
    return out


class OverBudget(Exception):
    """The task used its budget (``t.raise_if_over_budget()``)."""

    def __init__(self, state: BudgetState) -> None:
        spent = f"${state.used_usd:.4f}" + (f" of ${state.budget_usd:.2f}" if state.budget_usd else "")
        tokens = f"{state.used_tokens:,} tokens" + (f" of {state.budget_tokens:,}" if state.budget_tokens else "")
        super().__init__(f"over budget: {spent}, {tokens}")
        self.state = state


class TaskHandle:
    """What ``with task(...) as t`` gives: the task's root span, and shortcuts."""

    def __init__(self, span: Span) -> None:
        self.span = span

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
        self.span.add_event(
            cv.EVENT_CHECKPOINT,
            _attrs(
                **{
                    cv.MESSAGE: message,
                    cv.PROGRESS: progress,
                    cv.STEP: step,
                    cv.STATUS: status,
                },
                **attrs,
            ),
        )

    def artifact(self, name: str, *, uri: str | None = None, kind: str | None = None) -> None:
        self.span.add_event(
            cv.EVENT_ARTIFACT, _attrs(**{cv.ARTIFACT_NAME: name, cv.ARTIFACT_URI: uri, cv.ARTIFACT_KIND: kind})
        )

    def set_status(self, status: str) -> None:
        self.span.set_attribute(cv.STATUS, status)

    @property
    def budget(self) -> BudgetState | None:
        """What this task has used of its budgets (``used_usd``/``budget_usd``,
        ``used_tokens``/``budget_tokens``, ``over``), as spanvisor's in-process
        pipeline last counted it; None when the task has no budget or no
        spanvisor processor runs in this process. Costs are estimates."""
        from spanvisor.tracking.budgets import lookup

        ctx = self.span.get_span_context()
        return lookup(format(ctx.trace_id, "032x"), format(ctx.span_id, "016x"))

    def raise_if_over_budget(self) -> None:
        """Raise :class:`OverBudget` when the task is at or past a budget."""
        state = self.budget
        if state is not None and state.over:
            raise OverBudget(state)

    def set_context(self, tokens: int, limit: int | None = None) -> None:
        """Report context-window occupancy yourself (when no model span does)."""
        self.span.set_attribute(cv.CONTEXT_TOKENS, tokens)
        if limit is not None:
            self.span.set_attribute(cv.CONTEXT_LIMIT, limit)


class task:
    """A task root span, as a sync or async context manager.

    An exception marks the task as failed (cancelled for CancelledError and
    KeyboardInterrupt) and propagates unchanged.
    """

    def __init__(
        self,
        name: str,
        *,
        agent_id: str | None = None,
        agent_name: str | None = None,
        task_id: str | None = None,
        repo: str | None = None,
        steps: Sequence[str] | None = None,
        tracer: trace.Tracer | None = None,
        **attributes: Any,
    ) -> None:
        self._tracer = tracer or trace.get_tracer("spanvisor.agent")
        self._name = name
        self._attributes = _attrs(
            **{
                cv.TASK_NAME: name,
                cv.AGENT_ID: agent_id,
                cv.AGENT_NAME: agent_name,
                cv.TASK_ID: task_id,
                cv.REPO: repo,
                cv.STEPS: list(steps) if steps else None,
            },
            **attributes,
        )
        self._token: object | None = None
        self._var_token: contextvars.Token[TaskHandle | None] | None = None
        self.handle: TaskHandle | None = None

    def __enter__(self) -> TaskHandle:
        span = self._tracer.start_span(f"agent.task {self._name}", attributes=self._attributes)
        self._token = otel_context.attach(trace.set_span_in_context(span))
        self.handle = TaskHandle(span)
        self._var_token = _current.set(self.handle)
        return self.handle

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self.handle is not None
        span = self.handle.span
        if exc is not None:
            span.record_exception(exc)
            if isinstance(exc, KeyboardInterrupt) or type(exc).__name__ == "CancelledError":
                span.set_attribute(cv.STATUS, "cancelled")
            span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
        span.end()
        if self._var_token is not None:
            _current.reset(self._var_token)
        if self._token is not None:
            otel_context.detach(self._token)  # type: ignore[arg-type]

    async def __aenter__(self) -> TaskHandle:
        return self.__enter__()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.__exit__(exc_type, exc, tb)


def current_task() -> TaskHandle | None:
    return _current.get()


def checkpoint(message: str | None = None, *, progress: float | None = None, **attrs: Any) -> None:
    """Report progress on the innermost open task (or the current span)."""
    handle = _current.get()
    if handle is None:
        handle = TaskHandle(trace.get_current_span())
    handle.checkpoint(message, progress=progress, **attrs)


def agent_task(name: str | None = None, **task_kwargs: Any) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Decorator: run the function as a task (sync or async)."""

    def wrap(fn: Callable[P, R]) -> Callable[P, R]:
        label = name or fn.__name__
        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def run_async(*args: P.args, **kwargs: P.kwargs) -> Any:
                async with task(label, **task_kwargs):
                    return await fn(*args, **kwargs)

            return run_async  # type: ignore[return-value]

        @functools.wraps(fn)
        def run(*args: P.args, **kwargs: P.kwargs) -> R:
            with task(label, **task_kwargs):
                return fn(*args, **kwargs)

        return run

    return wrap
