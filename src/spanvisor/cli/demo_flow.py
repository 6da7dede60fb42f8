"""The demo's timing and its life around the agents: how long it takes,
how to ask for ``--linger``, its startup check, its delivery wait, and
SIGTERM (the sinks shut down, the embedded PostgreSQL stopped with them,
within :data:`STOP_S`)."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

from spanvisor.cli.pasteable import command_name
from spanvisor.pipeline.pipeline import Pipeline

# The demo's pace: its ``seconds`` are this many ticks; rivet, the longest,
# works RIVET_TICKS of them and waits for its approval on top.
PACE_STEPS, RIVET_TICKS = 14, 12


def expected_s(seconds: float, approval_wait_s: float) -> float:
    """About how long the agents run when nobody answers rivet's approval."""
    return seconds * RIVET_TICKS / PACE_STEPS + approval_wait_s


def linger_hint(via_serve: bool) -> str:
    """How to ask for --linger, the way this demo was started: under
    ``make demo`` (make exports MAKELEVEL) it is the Makefile's DEMO_ARGS."""
    if os.environ.get("MAKELEVEL"):
        return f"`make demo{'-serve' if via_serve else ''} DEMO_ARGS='--linger 60'`"
    return f"`{command_name()} demo{' --via-serve' if via_serve else ''} --linger 60`"


# How long the demo waits for its sinks to start (a first embedded PostgreSQL
# runs initdb) before it checks that the durable ones can write.
STARTUP_WAIT_S = 60.0


def durable_sinks_unable_to_write(pipeline: Pipeline) -> list[str]:
    """The demo's startup check: why a durable sink cannot write now, if one cannot.

    The audit trail's database without ``SPANVISOR_DATABASE_URL`` and without
    the ``[embedded]`` extra (or a server that is down) would otherwise hold
    the events in its outbox until the flush deadline, about a minute, before
    the demo fails; the sink's own reason names the install command.
    """
    pipeline.wait_ready(STARTUP_WAIT_S)
    problems = []
    for sink in pipeline.sinks:
        health = getattr(sink, "health", None)
        if getattr(sink, "durable", False) and health is not None:
            ok, why = health()
            if not ok:
                problems.append(f"{getattr(sink, 'name', '?')}: {why}")
    return problems


# How long the demo waits for its sinks once the agents are done, and how
# often it says what it waits for. Slack at its real limit (about a post a
# second per channel) takes a while for three tasks' threads; a wait that
# says so is better than failing.
DELIVER_S = 120.0
DELIVER_SAY_S = 5.0


def deliver(pipeline: Any, limit_s: float = DELIVER_S, every_s: float = DELIVER_SAY_S) -> bool:
    """Flush the sinks, with a progress line every ``every_s`` while they deliver."""
    start = time.monotonic()
    while True:
        if pipeline.force_flush(every_s):
            return True
        waited = time.monotonic() - start
        if waited >= limit_s:
            return False
        busy = [str(getattr(s, "name", "?")) for s in pipeline.sinks if (getattr(s, "pending", lambda: 0)() or 0) > 0]
        what = ", ".join(busy) if busy else "the sinks"
        print(f"   … still delivering to {what} ({waited:.0f}s; Slack takes about one post a second)", flush=True)


# How long a demo asked to stop (SIGTERM) takes to shut its sinks down: the
# embedded PostgreSQL's fast stop is a few seconds of it.
STOP_S = 15.0


class DemoStopped(BaseException):
    """SIGTERM reached the demo: it stops where it is (like Ctrl-C, not an error)."""


@contextmanager
def stopped_by_sigterm() -> Iterator[None]:
    """While inside, SIGTERM raises :class:`DemoStopped` in the main thread
    (the default would end the process at once, the embedded PostgreSQL
    left running). Only the main thread can take signals; elsewhere (a test
    calling ``run_demo``) nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame: FrameType | None) -> None:
        raise DemoStopped

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def stop_now(pipeline: Pipeline, serving: list[Any]) -> int:
    """The demo was asked to stop: its control API and sinks shut down
    within :data:`STOP_S` (the PostgreSQL sink stops the embedded server it
    started); 143, as a process ended by SIGTERM."""
    print("\nspanvisor demo: stopping (SIGTERM): shutting the sinks down", flush=True)
    for server in serving:
        try:
            server.stop()
        except Exception as exc:  # the sinks still shut down
            print(f"spanvisor demo: the control API did not stop cleanly: {exc}", flush=True)
    pipeline.shutdown(STOP_S)
    return 128 + signal.SIGTERM


__all__ = [
    "DELIVER_S",
    "PACE_STEPS",
    "STOP_S",
    "DemoStopped",
    "deliver",
    "durable_sinks_unable_to_write",
    "expected_s",
    "linger_hint",
    "stop_now",
    "stopped_by_sigterm",
]
