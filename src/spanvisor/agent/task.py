"""Opening a task: the ``task`` context manager (sync and async), the
``agent_task`` decorator, and the innermost open task of the current context
(``current_task``, module-level ``checkpoint``)."""

from __future__ import annotations

import contextvars
import functools
import hashlib
import inspect
import logging
import secrets
import time
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any, ParamSpec, TypeVar

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Status, StatusCode

from spanvisor.agent.attributes import as_attributes
from spanvisor.agent.handle import TaskHandle
from spanvisor.spans import conventions as cv

log = logging.getLogger("spanvisor.agent")

_current: contextvars.ContextVar[TaskHandle | None] = contextvars.ContextVar("spanvisor_task", default=None)
# Said once per process: a list, so the flag is set without `global`.
_warned_no_provider: list[bool] = []
NO_PROVIDER = (
    "spanvisor: task %r is not recorded: no OpenTelemetry SDK TracerProvider is set, so its spans go nowhere. "
    "Call opentelemetry.trace.set_tracer_provider(provider) with the provider that has SpanvisorSpanProcessor, "
    "or run the agent under opentelemetry-instrument (README: Use it from an agent)."
)


def _warn_if_no_provider(name: str, span: trace.Span) -> None:
    """Say once that the helpers found no SDK provider: a task would otherwise
    be dropped without a word (a span a sampler dropped is not this)."""
    if _warned_no_provider or span.is_recording():
        return
    if isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider | trace.NoOpTracerProvider):
        _warned_no_provider.append(True)
        log.warning(NO_PROVIDER, name)


P = ParamSpec("P")
R = TypeVar("R")


def _start_span(handle: TaskHandle, name: str, start_ns: int, key: Any) -> None:
    """The task's start on a stamped child span that ends at once: the span
    exporter carries it ahead of the task's work, so a receiver knows the
    task's id before a model call (the live start record travels through the
    log exporter and may come after them)."""
    try:
        ctx, stamp = trace.set_span_in_context(handle.span), {**handle._stamp(), cv.TASK_NAME: name}
        if isinstance(key, str) and key:
            stamp[cv.SESSION_KEY] = key
        handle._tracer.start_span(cv.LIVE_TASK_START, ctx, attributes=stamp, start_time=start_ns).end(start_ns)
    except Exception:  # telemetry must never break the agent
        log.exception("could not emit the start of task %s", name)


class task:
    """A task root span, as a sync or async context manager.

    An exception marks the task as failed (cancelled for CancelledError,
    KeyboardInterrupt and CancelRequested) and propagates unchanged. A task
    that read a cancel request (``request_approval`` returned ``cancelled``,
    ``cancel_requested`` was true) ends cancelled, never complete.
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
        self._own_tracer = tracer is None
        self._name = name
        self._attributes = as_attributes(
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
        self._proof: str | None = None  # the task's end proves it is this process's (__enter__)
        self._var_token: contextvars.Token[TaskHandle | None] | None = None
        self.handle: TaskHandle | None = None

    def __enter__(self) -> TaskHandle:
        span = self._tracer.start_span(f"agent.task {self._name}", attributes=self._attributes)
        if self._own_tracer:
            _warn_if_no_provider(self._name, span)
        self._token = otel_context.attach(trace.set_span_in_context(span))
        self.handle = TaskHandle(span, self._tracer)
        self._var_token = _current.set(self.handle)
        try:
            from spanvisor.otel.live import channel

            live = channel(self._tracer)
            if live is not None:
                self.handle._live = live
                start_ns = getattr(span, "start_time", None) or time.time_ns()
                opening = self._attributes
                if not live.direct:
                    # To a receiver every agent holds the token of: the task
                    # ends by this process's word only (the root's end carries
                    # the secret whose SHA-256 its start names), so another
                    # sender cannot end it to dodge a cancel
                    # (tracking/launcherend.py, as spanvisor run's tasks).
                    self._proof = secrets.token_hex(32)
                    key = hashlib.sha256(self._proof.encode()).hexdigest()
                    opening = {**self._attributes, cv.SESSION_KEY: key}
                live.opened(span, opening, start_ns)
                if live.spans_leave:  # its start record may come after its spans: a stamped span says it first
                    _start_span(self.handle, self._name, start_ns, opening.get(cv.SESSION_KEY))
        except Exception:  # telemetry must never break the agent
            log.exception("no live channel for task %s", self._name)
        return self.handle

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self.handle is not None
        span = self.handle.span
        if exc is not None:
            span.record_exception(exc)
            if isinstance(exc, KeyboardInterrupt) or type(exc).__name__ in ("CancelledError", "CancelRequested"):
                span.set_attribute(cv.STATUS, "cancelled")
            span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
        elif self.handle._cancel_read:
            # Asked to stop, and it read so (an approval wait it ended, a
            # watcher): a cancelled task never ends "complete".
            span.set_attribute(cv.STATUS, "cancelled")
        if self._proof is not None:
            span.set_attribute(cv.SESSION_PROOF, self._proof)
        span.end()
        self.handle._close()
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


__all__ = ["agent_task", "checkpoint", "current_task", "task"]
