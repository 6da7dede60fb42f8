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

import logging
import threading
from collections.abc import Callable
from typing import Any

log = logging.getLogger("spanvisor.pipeline")

# An agent that exits waits at most this long per flush for its sinks.
EXIT_FLUSH_S = 5.0


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
        for provider in (trace.get_tracer_provider(), get_logger_provider()):
            flush = getattr(provider, "force_flush", None)
            if flush is not None:
                flush(int(deadline * 1000))
        pipeline.shutdown(deadline)
    except Exception:
        log.exception("shutdown at interpreter exit failed")


__all__ = ["EXIT_FLUSH_S", "at_exit", "register"]
