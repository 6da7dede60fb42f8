"""CPU of a server's whole process tree, read from /proc (Linux).

A server is measured with every process it runs: MLflow's uvicorn workers
are children of ``mlflow server``; spanvisor's store, the embedded
PostgreSQL, is a tree of its own (the postmaster and its backends), and
counts as spanvisor's, as Phoenix's SQLite writes count as Phoenix's (they
run in its process). Children that ended meanwhile count through their
parent's ``cutime``/``cstime`` once reaped.
"""

from __future__ import annotations

import os

TICK = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> tuple[int, float]:
    """(parent pid, CPU seconds of the process and its reaped children)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[1]), sum(int(x) for x in fields[11:15]) / TICK


def tree_cpu(roots: list[int]) -> dict[int, float]:
    """CPU seconds of every process under ``roots`` (the roots included), by pid."""
    parents: dict[int, int] = {}
    cpu: dict[int, float] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            parents[int(entry)], cpu[int(entry)] = _stat(int(entry))
        except (OSError, ValueError, IndexError):  # ended between the listing and the read
            continue
    children: dict[int, list[int]] = {}
    for pid, ppid in parents.items():
        children.setdefault(ppid, []).append(pid)
    out: dict[int, float] = {}
    todo = [r for r in roots if r in cpu]
    while todo:
        pid = todo.pop()
        if pid in out:
            continue
        out[pid] = cpu[pid]
        todo.extend(children.get(pid, []))
    return out


def used(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU seconds the tree spent between two readings (a process that
    started in between counts whole; one that ended and was reaped counts
    in its parent's children's time)."""
    return sum(cpu - before.get(pid, 0.0) for pid, cpu in after.items())
