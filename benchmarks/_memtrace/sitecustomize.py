"""bench_memory.py --trace: loaded by the ``serve`` it starts (PYTHONPATH),
never by spanvisor itself.

With ``MEMTRACE_DIR`` set, tracemalloc runs from the start
(``MEMTRACE_FRAMES`` frames a traceback) and on SIGUSR1 the process writes a
snapshot (``snapN.pickle``) and a line ``rss traced trimmed`` (``snapN.txt``):
its RSS, the traced Python heap, and its RSS after glibc's ``malloc_trim(0)``
when ``MEMTRACE_TRIM`` is set (what the allocator kept of freed memory).
Compare two snapshots with ``tracemalloc.Snapshot.compare_to``.
"""

from __future__ import annotations

import os

_DIR = os.environ.get("MEMTRACE_DIR")

if _DIR:
    import ctypes
    import gc
    import itertools
    import signal
    import tracemalloc

    _n = itertools.count()

    def _rss_mb() -> float:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        return 0.0

    def _snapshot(*_: object) -> None:
        gc.collect()
        i = next(_n)
        tracemalloc.take_snapshot().dump(f"{_DIR}/snap{i}.pickle")
        rss, traced = _rss_mb(), tracemalloc.get_traced_memory()[0] / 2**20
        trimmed = rss
        if os.environ.get("MEMTRACE_TRIM"):
            ctypes.CDLL("libc.so.6").malloc_trim(0)
            trimmed = _rss_mb()
        with open(f"{_DIR}/snap{i}.tmp", "w") as f:
            f.write(f"{rss:.1f} {traced:.1f} {trimmed:.1f}\n")
        os.rename(f"{_DIR}/snap{i}.tmp", f"{_DIR}/snap{i}.txt")

    signal.signal(signal.SIGUSR1, _snapshot)
    tracemalloc.start(int(os.environ.get("MEMTRACE_FRAMES", "1")))
