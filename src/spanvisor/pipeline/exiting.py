"""Interpreter exit: what the SDK still holds reaches the pipeline, then it stops.

An agent that exits (or crashes) leaves spans in its BatchSpanProcessor and
log records in its BatchLogRecordProcessor (the exporter path's, and a
failed task's last log lines). The SDK's own shutdown runs from ``atexit``,
when a sink can no longer use a thread (SQLite, DNS, the loop's executor),
so the pipeline registers :func:`at_exit` with ``threading``'s exit hooks,
which run before ``atexit`` and before ``concurrent.futures`` refuses new
work (last-registered first: the helpers' live channel, registered later,
drains into the pipeline before this runs).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from typing import Any

log = logging.getLogger("spanvisor.pipeline")

# An agent that exits waits at most this long for its sinks.
EXIT_FLUSH_S = 5.0
# Pipelines whose exit is under way: the providers' flush that moves spans
# into them must not also wait on their sinks (their shutdown, next, does;
# one wait, not two, within EXIT_FLUSH_S).
_exiting: set[int] = set()


def exit_under_way(pipeline: Any) -> bool:
    return id(pipeline) in _exiting


def register(hook: Callable[[], None]) -> None:
    try:
        threading._register_atexit(hook)  # type: ignore[attr-defined]
    except Exception:
        log.debug("interpreter exit already under way; no exit flush")


def at_exit(pipeline: Any) -> None:
    """Flush the global providers into ``pipeline``, then shut it down, within
    the exit deadline; the SDK's atexit shutdown, later, finds it closed."""
    if pipeline.closed:
        return
    try:
        from opentelemetry import trace
        from opentelemetry._logs import get_logger_provider

        deadline = min(EXIT_FLUSH_S, float(pipeline.config.get("shutdown_timeout_s", EXIT_FLUSH_S)))
        _exiting.add(id(pipeline))
        for provider in (trace.get_tracer_provider(), get_logger_provider()):
            flush = getattr(provider, "force_flush", None)
            if flush is not None:
                flush(int(deadline * 1000))
        pipeline.shutdown(deadline)
    except Exception:
        log.exception("shutdown at interpreter exit failed")
    finally:
        _exiting.discard(id(pipeline))


__all__ = ["EXIT_FLUSH_S", "at_exit", "exit_under_way", "register"]


# How long the loop's last tasks get to end once it has stopped.
SETTLE_S = 0.5


def settle(loop: asyncio.AbstractEventLoop, timeout_s: float = SETTLE_S) -> None:
    """Cancel what still runs on the stopped ``loop`` and let it end, as
    ``asyncio.run`` does: a shutdown cut short (its time ran out on a loaded
    machine) would otherwise leave its task pending when the loop closes,
    and Python prints "Task was destroyed but it is pending" and the
    cancelled gather's traceback to the agent's stderr."""
    tasks = [t for t in asyncio.all_tasks(loop) if not t.done()]
    if not tasks:
        return
    for t in tasks:
        t.cancel()
    try:
        loop.run_until_complete(asyncio.wait(tasks, timeout=timeout_s))
    except Exception as exc:  # the loop is going away either way
        log.debug("settling the pipeline loop: %r", exc)
    for t in tasks:
        if t.done() and not t.cancelled():
            t.exception()  # retrieved: an ending task's error is not printed as "never retrieved"
