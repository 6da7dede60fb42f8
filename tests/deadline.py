"""pytest plugin: a per-test deadline, so a hang fails in minutes, not at CI's limit.

pytest-timeout is not among the allowed dependencies; this is its "signal"
method, small. Each test (setup, call and teardown together) gets
``DEFAULT_DEADLINE_S`` seconds, or what ``@pytest.mark.timeout_s(N)`` says.
When the time is up, a SIGALRM in the main thread dumps the stacks of all
threads (faulthandler) into the failure report and fails the test by
raising :class:`DeadlineExceeded`: a BaseException, so no ``except
Exception`` in the code under test swallows it, and not pytest's own
``Failed``, which Hypothesis takes for a failing example: it would go on
shrinking and replaying a test already past its time. If the test is stuck where a signal cannot reach it
(inside C code that never returns to the interpreter), faulthandler's own
watchdog thread dumps the stacks again to the real stderr ``GRACE_S`` later
and ends the process: the run still stops, with the reason on screen. A few
seconds before that, the processes the test started (servers, agents) are
killed: an orphan left running would hold a core, or a port, for the rest of
the run and fail the tests after it.

The timer is cancelled after each test's teardown. Off the main thread (a
runner that runs tests in threads) or without SIGALRM (Windows) it does
nothing. Loaded from ``tests/conftest.py``; ``python -m pytest -p
tests.deadline`` loads it alone.
"""

from __future__ import annotations

import faulthandler
import os
import signal
import tempfile
import threading
from collections.abc import Generator
from pathlib import Path
from types import FrameType
from typing import Any

import pytest

DEFAULT_DEADLINE_S = 300.0
# After the SIGALRM failure: how long the test may take to unwind before
# faulthandler ends the process (TEST_DEADLINE_GRACE_S: the harness's own test).
GRACE_S = float(os.environ.get("TEST_DEADLINE_GRACE_S", "60"))
# The share of that after which the process's descendants are killed.
KILL_AT = 0.9
MARKER = "timeout_s"


class DeadlineExceeded(BaseException):
    """A test ran past its deadline (its message carries every thread's stack)."""


class _Deadline:
    """The one armed deadline (tests run one at a time in a process)."""

    def __init__(self) -> None:
        self.nodeid = ""
        self.limit_s = 0.0
        self.armed = False
        self.in_phase = False
        self.fired = False
        self.previous: Any = None
        # A duplicate of the terminal's stderr, taken while pytest's capture
        # is suspended: the backstop's dump must not go into a capture file
        # that nobody reads once the process is gone.
        self.real_stderr: int | None = None
        # Set when the test ends in time after all: the reaper must not kill.
        self.unwound = threading.Event()


_state = _Deadline()


def deadline_for(item: pytest.Item) -> float:
    marker = item.get_closest_marker(MARKER)
    if marker is None:
        return DEFAULT_DEADLINE_S
    if len(marker.args) != 1 or marker.kwargs:
        raise pytest.UsageError(f"{item.nodeid}: use @pytest.mark.{MARKER}(seconds)")
    seconds = float(marker.args[0])
    if not seconds > 0:
        raise pytest.UsageError(f"{item.nodeid}: {MARKER} must be positive, got {marker.args[0]!r}")
    return seconds


def can_arm() -> bool:
    """SIGALRM exists and we are on the main thread (the only one signals reach)."""
    return hasattr(signal, "SIGALRM") and threading.current_thread() is threading.main_thread()


def arm(nodeid: str, limit_s: float) -> bool:
    """Start the deadline; False (and nothing changed) where it cannot work."""
    if not can_arm():
        return False
    _state.nodeid, _state.limit_s, _state.fired = nodeid, limit_s, False
    _state.previous = signal.signal(signal.SIGALRM, _expired)
    signal.setitimer(signal.ITIMER_REAL, limit_s)
    _state.armed = True
    return True


def disarm() -> None:
    if not _state.armed or not can_arm():
        return
    signal.setitimer(signal.ITIMER_REAL, 0)
    signal.signal(signal.SIGALRM, _state.previous if _state.previous is not None else signal.SIG_DFL)
    if _state.fired:
        faulthandler.cancel_dump_traceback_later()
        _state.unwound.set()
    _state.armed = _state.fired = False


def descendants(pid: int) -> list[int]:
    """The processes below ``pid`` (children first), read from /proc; none
    where there is no /proc."""
    parents: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:  # gone meanwhile
            continue
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses
        fields = text[text.rfind(")") + 2 :].split()
        if len(fields) > 1 and fields[1].isdigit():
            parents.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found: list[int] = []
    todo = [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def reap_later(nodeid: str, unwound: threading.Event) -> None:
    """Kill what the hung test started, before the backstop ends this
    process, unless the test unwinds first."""
    if unwound.wait(GRACE_S * KILL_AT):
        return
    killed = []
    for child in descendants(os.getpid()):
        try:
            os.kill(child, signal.SIGKILL)
            killed.append(str(child))
        except OSError:
            continue
    if killed and _state.real_stderr is not None:
        os.write(_state.real_stderr, f"+++ {nodeid}: killed its processes {', '.join(killed)}\n".encode())


def _stacks() -> str:
    with tempfile.TemporaryFile() as f:  # faulthandler writes to a file descriptor only
        faulthandler.dump_traceback(f, all_threads=True)
        f.seek(0)
        return f.read().decode("utf-8", "replace")


def _expired(signum: int, frame: FrameType | None) -> None:
    if not _state.in_phase:
        # Between setup, call and teardown pytest is writing reports: raising
        # there would break pytest itself. Fail in the next phase instead.
        signal.setitimer(signal.ITIMER_REAL, 0.5)
        return
    _state.fired = True
    stacks = _stacks()
    if _state.real_stderr is not None:
        os.write(_state.real_stderr, f"\n+++ {_state.nodeid}: deadline of {_state.limit_s:g} s passed\n".encode())
        faulthandler.dump_traceback_later(GRACE_S, exit=True, file=_state.real_stderr)
        _state.unwound = threading.Event()
        reaper = threading.Thread(
            target=reap_later, args=(_state.nodeid, _state.unwound), name="deadline-reaper", daemon=True
        )
        reaper.start()
    raise DeadlineExceeded(
        f"Timeout: {_state.nodeid} ran longer than its deadline of {_state.limit_s:g} s "
        f"(@pytest.mark.{MARKER}(N) sets another).\nStacks of all threads, most recent call first:\n{stacks}"
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{MARKER}(seconds): this test's deadline (default {DEFAULT_DEADLINE_S:g} s); "
        "past it the test fails with every thread's stack",
    )
    if _state.real_stderr is None:
        try:
            # pytest suspends its global capture after loading the initial
            # conftests, so fd 2 is the terminal's (or CI log's) here.
            _state.real_stderr = os.dup(2)
        except OSError:
            _state.real_stderr = None


def pytest_unconfigure(config: pytest.Config) -> None:
    if _state.real_stderr is not None:
        os.close(_state.real_stderr)
        _state.real_stderr = None


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> Generator[None, None, None]:
    arm(item.nodeid, deadline_for(item))
    _state.in_phase = True
    try:
        return (yield)
    finally:
        _state.in_phase = False


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    _state.in_phase = True
    try:
        return (yield)
    finally:
        _state.in_phase = False


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> Generator[None, None, None]:
    _state.in_phase = True
    try:
        return (yield)
    finally:
        _state.in_phase = False
        disarm()
