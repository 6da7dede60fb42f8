"""bench_memory.py --trace: loaded by the ``serve`` it starts (PYTHONPATH),
never by spanvisor itself.

With ``MEMTRACE_DIR`` set, tracemalloc runs from the start
(``MEMTRACE_FRAMES`` frames a traceback) and on SIGUSR1 the process writes a
snapshot (``snapN.pickle``) and a line ``rss traced trimmed`` (``snapN.txt``):
its RSS, the traced Python heap, and its RSS after glibc's ``malloc_trim(0)``
when ``MEMTRACE_TRIM`` is set (what the allocator kept of freed memory).
Compare two snapshots with ``tracemalloc.Snapshot.compare_to``.

With ``MEMTRACE_LAYOUT`` set instead, nothing is traced and SIGUSR1 writes
where RSS lies (``layoutN.txt``): pymalloc's arenas and the bytes of their
live blocks (``sys._debugmallocstats``), glibc malloc's heap in use and
free (``mallinfo2``: every object above 512 bytes, and C libraries'
allocations: protobuf, gRPC, SQLite), its mmapped chunks, and file-backed
against anonymous pages (``/proc/self/smaps_rollup``).
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


_LAYOUT = os.environ.get("MEMTRACE_LAYOUT")

if _LAYOUT:
    import ctypes
    import gc
    import itertools
    import re
    import signal
    import sys
    import tempfile

    _m = itertools.count()

    class _MallInfo2(ctypes.Structure):
        _fields_ = [
            (name, ctypes.c_size_t)
            for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks")
        ] + [("keepcost", ctypes.c_size_t)]

    def _pymalloc() -> dict[str, int]:
        """sys._debugmallocstats' totals (it writes to the C stderr)."""
        with tempfile.TemporaryFile("w+") as tmp:
            saved = os.dup(2)
            try:
                os.dup2(tmp.fileno(), 2)
                sys._debugmallocstats()
            finally:
                os.dup2(saved, 2)
                os.close(saved)
            tmp.seek(0)
            text = tmp.read()
        num = lambda pat: int(re.search(pat, text).group(1).replace(",", ""))  # noqa: E731
        return {
            "arenas": num(r"arenas \* \d+ bytes/arena\s+=\s+([\d,]+)"),
            "live": num(r"# bytes in allocated blocks\s+=\s+([\d,]+)"),
        }

    def _rollup() -> dict[str, int]:
        out = {}
        with open("/proc/self/smaps_rollup") as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 2 and parts[0].endswith(":") and parts[1].isdigit():
                    out[parts[0][:-1]] = int(parts[1]) * 1024
        return out

    def _layout(*_: object) -> None:
        gc.collect()
        i = next(_m)
        libc = ctypes.CDLL("libc.so.6")
        libc.mallinfo2.restype = _MallInfo2
        mi = libc.mallinfo2()
        py, roll = _pymalloc(), _rollup()
        libc.malloc_trim(0)
        trimmed = _rollup()["Rss"]
        mb = lambda n: f"{n / 2**20:.1f}"  # noqa: E731
        fields = {
            "rss": mb(roll["Rss"]),
            "anon": mb(roll["Anonymous"]),
            "file": mb(roll["Rss"] - roll["Anonymous"]),
            "pymalloc_arenas": mb(py["arenas"]),
            "pymalloc_live": mb(py["live"]),
            "malloc_heap": mb(mi.arena),
            "malloc_used": mb(mi.uordblks),
            "malloc_free": mb(mi.fordblks),
            "malloc_mmapped": mb(mi.hblkhd),
            "rss_after_trim": mb(trimmed),
            "threads": str(len(os.listdir("/proc/self/task"))),
        }
        with open(f"{_LAYOUT}/layout{i}.tmp", "w") as f:
            f.write(" ".join(f"{k}={v}" for k, v in fields.items()) + "\n")
        os.rename(f"{_LAYOUT}/layout{i}.tmp", f"{_LAYOUT}/layout{i}.txt")

    signal.signal(signal.SIGUSR1, _layout)
