"""``serve``'s own settings of Python's garbage collector.

``serve`` is a process of its own, so it sets the collector for its load,
as a server does (in an agent's process spanvisor never touches it: the
collector is the agent's).

* **The young generation's threshold is raised** (``SPANVISOR_GC_YOUNG``,
  50,000 against Python's 700, 2,000 from 3.13). Nearly everything the pipeline makes for a
  span (its decoded form, events, rows) is freed by its reference count
  within a pump; at 700 a young collection ran every few hundred spans and
  walked the objects still in flight, promoting them, so the middle and
  full collections came often too: at full load about 9 % of ``serve``'s
  CPU, a full collection (35 ms) about every second. At 50,000 it is about
  1 %, and the resident memory the same within 2 MB
  (``benchmarks/bench_memory.py``).
* **Once ``serve`` is ready, what it holds then is frozen** (``gc.freeze``):
  modules, the price table and the tracker rebuilt from the journal are
  never walked by a full collection again. The price of it: what of them
  later becomes garbage inside a reference cycle is never freed, at most
  what ``serve`` held at ready (tens of MB).

Neither changes what is freed or when a reference count frees it; objects
in reference cycles are still collected, later.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import Callable
from typing import Any

from spanvisor.config import Setting, p_int

log = logging.getLogger("spanvisor.serve")

DEFAULT_YOUNG = 50_000


def p_young(v: Any) -> int:
    """A count of at least 100, or ``off`` (0: Python's collector as it is)."""
    if v is None or str(v).strip().lower() in ("off", "python", "default"):
        return 0
    n = p_int(v)
    if 0 < n < 100:
        raise ValueError(v)
    return n


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "gc_young",
        "SPANVISOR_GC_YOUNG",
        p_young,
        DEFAULT_YOUNG,
        "serve's young-generation threshold for Python's garbage collector (Python's own is 700, 2,000 from 3.13); "
        "off keeps Python's collector exactly as it is (no freeze at ready either).",
        "a count of at least 100, or off",
    ),
)


def tune(config: Any) -> bool:
    """The young threshold, at start (True when ``serve`` sets the collector)."""
    young = int(config["gc_young"])
    if not young:
        return False
    _, middle, old = gc.get_threshold()
    gc.set_threshold(young, middle, old)
    return True


def freeze() -> None:
    """Once ready: what the process holds now is never walked again by a
    collection (its garbage collected first, so only live objects stay)."""
    gc.collect()
    gc.freeze()
    log.debug(
        "garbage collector: young threshold %d, %d objects frozen at ready",
        gc.get_threshold()[0],
        gc.get_freeze_count(),
    )


async def freeze_at_ready(wait_ready: Callable[[float], bool], poll_s: float = 0.25) -> None:
    """:func:`freeze` once ``wait_ready`` says the pipeline is ready (asked
    without waiting, so a stop never waits on this)."""
    # The flag is a threading.Event the pipeline's thread sets: polled, so
    # no executor thread is left blocked on it when serve stops first.
    while not wait_ready(0):  # noqa: ASYNC110
        await asyncio.sleep(poll_s)
    freeze()


__all__ = ["DEFAULT_YOUNG", "SETTINGS", "freeze", "freeze_at_ready", "p_young", "tune"]
