"""Where one bench_e2e run's CPU goes: serve's threads, PostgreSQL, this client.

Read from /proc (Linux), so a figure says whether ``serve`` is bound by one
thread (the pipeline's, near 1.0), by the GIL (its threads summing near 1.0)
or by the machine (everything summing near the core count)."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")


def _cpu(stat_path: str) -> float:
    with open(stat_path) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def _threads(pid: int) -> dict[int, float]:
    out: dict[int, float] = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            out[int(tid)] = _cpu(f"/proc/{pid}/task/{tid}/stat")
        except OSError:  # a thread that ended between the listing and the read
            continue
    return out


def _postgres(postmaster: int) -> dict[int, float]:
    """The bench's own server: its postmaster and the processes it forked
    (backends, writers), not another session's servers on the machine."""
    out: dict[int, float] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            if int(entry) == postmaster or ppid == postmaster:
                out[int(entry)] = _cpu(f"/proc/{entry}/stat")
        except (OSError, ValueError):
            continue
    return out


def postmaster_of(pgdata: Path) -> int:
    """The postmaster's pid from its data directory's ``postmaster.pid``."""
    return int(pgdata.joinpath("postmaster.pid").read_text().split()[0])


@dataclass(frozen=True)
class Snapshot:
    at: float
    serve: dict[int, dict[int, float]]
    postgres: dict[int, float]
    client: float


def snapshot(serve_pids: list[int], postmaster: int) -> Snapshot:
    return Snapshot(
        at=time.monotonic(),
        serve={pid: _threads(pid) for pid in serve_pids},
        postgres=_postgres(postmaster),
        client=_cpu(f"/proc/{os.getpid()}/stat"),
    )


def cores(before: Snapshot, after: Snapshot) -> dict[str, float]:
    """Cores used between two snapshots: every serve together, the busiest
    thread of each serve (its pipeline under load) summed, PostgreSQL, the client."""
    dt = after.at - before.at
    serve = busiest = 0.0
    for pid, threads in after.serve.items():
        was = before.serve.get(pid, {})
        used = [cpu - was.get(tid, 0.0) for tid, cpu in threads.items()]
        serve += sum(used)
        busiest += max(used, default=0.0)
    pg = sum(cpu - before.postgres.get(pid, 0.0) for pid, cpu in after.postgres.items())
    return {
        "serve": serve / dt,
        "busiest": busiest / dt,
        "postgres": pg / dt,
        "client": (after.client - before.client) / dt,
    }
