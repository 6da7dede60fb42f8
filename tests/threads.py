"""pytest plugin: a thread a test starts ends with the test.

A thread left running draws from the process's global ``random`` whenever it
starts a span (the SDK's id generator), retries an export (the OTLP
exporters' jitter) or masks a websocket frame, and so it does in whatever
test runs next: under a Hypothesis test, that is a
``HypothesisDeprecationWarning`` that comes and goes with the timing. So
every thread is given an owner when it first shows up:

* started while a fixture was set up: that fixture's scope (the test for a
  function-scoped one, the module for a module- or class-scoped one; a
  session-scoped fixture's threads may live for the session);
* otherwise: the test during whose setup, call or teardown it appeared.

After a test's teardown, the threads it owns must be gone, and after the last
test of a module, the module's. A thread still running is given ``GRACE_S``
to end (one told to stop may need a moment), then the teardown fails with
its name, where it was started and its stack.

Exempt: threads that run no code of their own until given work and draw
nothing: an executor's idle worker (asyncio's default executor keeps them
until the executor is collected), the launcher's gate's workers and
backstop thread, and grpc.aio's process-wide poller. Loaded
from ``tests/conftest.py``; ``python -m pytest -p tests.threads`` loads it
alone.
"""

from __future__ import annotations

import sys
import threading
import time
import traceback
import weakref
from collections.abc import Generator
from dataclasses import dataclass

import pytest

# How long a test's threads may take to end after its teardown.
GRACE_S = 5.0
# Threads that run library code only and never draw from ``random`` while
# they idle: (module, qualified name) of their target.
EXEMPT_TARGETS = {
    ("concurrent.futures.thread", "_worker"),
    ("grpc._cython.cygrpc", "PollerCompletionQueue._poll_wrapper"),
    # the deadline's own, alive from a test's timeout until it unwinds
    ("tests.deadline", "reap_later"),
    # the launcher's gate's (spanvisor/launcher/gate_threads.py): long-lived
    # by design, idle on a condition, a worker as an executor's (daemons, so
    # a call still waiting for a person never holds the launcher's exit)
    ("spanvisor.launcher.gate_threads", "Workers._work"),
    ("spanvisor.launcher.gate_threads", "Backstops._run"),
}


@dataclass(frozen=True)
class Owner:
    scope: str  # "session", "module" or "function"
    nodeid: str  # the test, or the module, that must end it
    how: str  # where it was seen first, for the report


_owners: weakref.WeakKeyDictionary[threading.Thread, Owner] = weakref.WeakKeyDictionary()


def _target(t: threading.Thread) -> tuple[str, str]:
    fn = getattr(t, "_target", None)
    if fn is None:
        return type(t).__module__, type(t).__qualname__ + ".run"
    return getattr(fn, "__module__", None) or "?", getattr(fn, "__qualname__", None) or repr(fn)


def exempt(t: threading.Thread) -> bool:
    # A native thread seen from Python cannot be joined (nor ended from here).
    dummy = isinstance(t, threading._DummyThread)
    return t is threading.main_thread() or dummy or _target(t) in EXEMPT_TARGETS


def _claim(owner: Owner) -> None:
    """Give every thread without an owner this one."""
    for t in threading.enumerate():
        if t not in _owners:
            _owners[t] = owner


def _module_of(node: pytest.Item | pytest.Collector | None) -> str:
    while node is not None and not isinstance(node, pytest.Module):
        node = node.parent
    return node.nodeid if node is not None else ""


def pytest_sessionstart(session: pytest.Session) -> None:
    _claim(Owner("session", "", "before the session"))


def pytest_collection_finish(session: pytest.Session) -> None:
    _claim(Owner("session", "", "the collection"))


@pytest.hookimpl(wrapper=True)
def pytest_fixture_setup(
    fixturedef: pytest.FixtureDef[object], request: pytest.FixtureRequest
) -> Generator[None, None, None]:
    try:
        return (yield)
    finally:
        scope = fixturedef.scope
        node = request.node
        if scope in ("session", "package"):
            _claim(Owner("session", "", f"fixture {fixturedef.argname}"))
        elif scope in ("module", "class"):
            _claim(Owner("module", _module_of(node), f"{scope}-scoped fixture {fixturedef.argname}"))
        else:
            _claim(Owner("function", node.nodeid, f"fixture {fixturedef.argname}"))


def _left(scope: str, nodeid: str) -> list[threading.Thread]:
    return [
        t
        for t in threading.enumerate()
        if (o := _owners.get(t)) is not None and o.scope == scope and o.nodeid == nodeid and not exempt(t)
    ]


def _wait_gone(threads: list[threading.Thread], grace_s: float) -> list[threading.Thread]:
    deadline = time.monotonic() + grace_s
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    return [t for t in threads if t.is_alive()]


def describe(t: threading.Thread) -> str:
    o = _owners.get(t)
    module, name = _target(t)
    frame = sys._current_frames().get(t.ident or -1)
    stack = "".join(traceback.format_stack(frame, limit=8)) if frame is not None else "  (no stack)\n"
    where = f"started in {o.how} of {o.nodeid}" if o is not None else "of unknown origin"
    return f"thread {t.name!r} (target {module}.{name}, daemon={t.daemon}), {where}:\n{stack}"


def leftovers(item: pytest.Item, nextitem: pytest.Item | None, grace_s: float = GRACE_S) -> list[threading.Thread]:
    """The threads ``item`` (and, at its module's end, the module) left running."""
    left = _left("function", item.nodeid)
    module = _module_of(item)
    if nextitem is None or _module_of(nextitem) != module:
        left += _left("module", module)
    return _wait_gone(left, grace_s)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Generator[None, None, None]:
    try:
        return (yield)
    finally:
        _claim(Owner("function", item.nodeid, "the setup"))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    try:
        return (yield)
    finally:
        _claim(Owner("function", item.nodeid, "the test"))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> Generator[None, None, None]:
    result = yield
    _claim(Owner("function", item.nodeid, "the teardown"))
    left = leftovers(item, nextitem)
    if left:
        pytest.fail(
            f"{len(left)} thread(s) outlived their test by {GRACE_S:g} s; end them where they are made "
            "(close the provider, exporter, processor, client; join the thread):\n\n"
            + "\n".join(describe(t) for t in left),
            pytrace=False,
        )
    return result
