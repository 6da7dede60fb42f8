"""The launcher's gate threads (``spanvisor/launcher/gate_threads.py``): no
call waits for another's, no thread is started per call once workers wait,
and every backstop fires at its time unless its call stood it down, a slow
one never holding back another's. Waits are for events, bounded."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from spanvisor.launcher.gate_threads import Backstops, Workers

WAIT_S = 10.0


def test_no_job_waits_for_another_and_waiting_workers_take_the_next_ones() -> None:
    workers = Workers("test-workers")
    release = threading.Event()
    running = threading.Semaphore(0)

    def held() -> None:
        running.release()
        release.wait(WAIT_S)

    for _ in range(5):  # five calls waiting for a person at once
        workers.run(held)
    for _ in range(5):
        assert running.acquire(timeout=WAIT_S), "a job waited for another"
    assert workers.started == 5
    release.set()
    done = threading.Semaphore(0)
    deadline = time.monotonic() + WAIT_S
    while workers.waiting < 5 and time.monotonic() < deadline:  # the five back to waiting
        time.sleep(0.01)
    for _ in range(20):
        workers.run(done.release)
        assert done.acquire(timeout=WAIT_S)
    assert workers.started == 5, "a thread was started for a call while workers waited"


def test_a_job_that_fails_leaves_its_worker_working() -> None:
    workers = Workers("test-failing")
    done = threading.Event()

    def boom() -> None:
        raise RuntimeError("a call that failed")

    workers.run(boom)
    workers.run(done.set)
    assert done.wait(WAIT_S)


def test_an_idle_worker_ends_and_a_later_job_still_runs() -> None:
    workers = Workers("test-idle", idle_s=0.05)
    first, second = threading.Event(), threading.Event()
    workers.run(first.set)
    assert first.wait(WAIT_S)

    def alive() -> bool:
        return any(t.name == "test-idle" for t in threading.enumerate())

    deadline = time.monotonic() + WAIT_S
    while alive() and time.monotonic() < deadline:  # it ended
        time.sleep(0.01)
    assert not alive()
    workers.run(second.set)
    assert second.wait(WAIT_S)
    assert workers.started == 2


def test_backstops_fire_at_their_time_and_one_stood_down_never_fires() -> None:
    stops = Backstops()
    fired: dict[str, float] = {}
    both = threading.Semaphore(0)
    now = time.monotonic()

    def fire(name: str, due: float) -> Callable[[], None]:
        def at() -> None:
            fired[name] = time.monotonic() - due
            both.release()

        return at

    cancel_b = stops.at(now + 1.0, fire("b", now + 1.0))
    cancel_b()  # a call answered well before its backstop
    stops.at(now + 1.5, fire("c", now + 1.5))
    stops.at(now + 0.5, fire("a", now + 0.5))  # due before what the thread waits for
    assert both.acquire(timeout=WAIT_S) and both.acquire(timeout=WAIT_S)
    assert sorted(fired) == ["a", "c"]  # c came after b's time: b was stood down, not late
    assert all(late >= 0 for late in fired.values()), fired  # none before its time


def test_a_backstop_slow_to_answer_holds_back_no_other() -> None:
    stops = Backstops()
    stuck, other = threading.Event(), threading.Event()
    now = time.monotonic()
    stops.at(now, lambda: stuck.wait(WAIT_S))  # a block whose answer hangs
    stops.at(now + 0.05, other.set)
    assert other.wait(WAIT_S / 2), "one backstop held back another"
    stuck.set()
