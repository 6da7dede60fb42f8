"""What an agent's process holds for the garbage collector after many tasks.

Run: ``.venv/bin/python benchmarks/bench_agent_heap.py`` (about a minute on
2 cores). Options: ``--tasks N`` (default 5000), ``--every N`` (a reading
every N tasks, default 1000), ``--only`` (configuration keys, default
``b,s``).

``bench_agent_thread.py`` times the collections of 800 tasks; an agent
service runs for days. What a process keeps after its tasks end (a record
of each run, finished tasks for late spans, ended roots) stays in the heap,
and every full collection, which runs on whichever thread allocates (the
agent's, most often), walks all of it. Here each configuration runs
``bench_agent_thread.py``'s agent task (an ``invoke_agent`` root and 50
``chat`` children) ``--tasks`` times in a process of its own, waiting for
its background work every 200 tasks (the pipeline keeps up, as with a real
agent that waits on its model), and every ``--every`` tasks, with the
background work done and the heap collected once, reports: the objects the
collector tracks, the references a full collection follows (the sum of
``gc.get_referents`` over them), the CPU of a full collection on this
thread (the best of three in a row) and the resident memory.

Configurations: (b) BatchSpanProcessor + OTLP/HTTP to a local endpoint,
(s) ``SpanvisorSpanProcessor()`` at its defaults, as in
``bench_agent_thread.py``. The figures are one process's; on a shared
machine a collection's CPU moves by ±20 % from one reading to the next,
the counts do not.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_agent_thread import LABELS, WARM, _imports, build, run_task
from bench_processor import start_endpoint

SETTLE_EVERY = 200


def _reading(tasks: int) -> dict[str, float]:
    gc.collect()
    objects = gc.get_objects()
    referents = sum(len(gc.get_referents(o)) for o in objects)
    count = len(objects)
    del objects
    best = float("inf")
    for _ in range(3):
        t0 = time.thread_time_ns()
        gc.collect()
        best = min(best, (time.thread_time_ns() - t0) / 1e6)
    with open("/proc/self/statm") as f:
        rss = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    return {"tasks": tasks, "objects": count, "referents": referents, "full_ms": best, "rss_mb": rss}


def child(key: str, port: int, tasks: int, every: int) -> None:
    proto = os.fdopen(os.dup(1), "w", buffering=1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)  # the console sink's cards go nowhere
    _imports()
    tracer, between, settle = build(key, port)
    for i in range(WARM):
        run_task(tracer, i)
        between()
    settle()
    proto.write(json.dumps(_reading(0)) + "\n")
    for i in range(1, tasks + 1):
        run_task(tracer, i)
        between()
        if i % SETTLE_EVERY == 0 or i % every == 0:
            settle()
        if i % every == 0:
            proto.write(json.dumps(_reading(i)) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tasks", type=int, default=5000)
    ap.add_argument("--every", type=int, default=1000)
    ap.add_argument("--only", default="b,s", help="comma-separated configuration keys: b, s")
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        child(a.child[0], int(a.child[1]), a.tasks, a.every)
        return
    keys = [k for k in a.only.split(",") if k in ("b", "s")]
    endpoint, port = start_endpoint()
    print(
        f"spanvisor bench_agent_heap: python {platform.python_version()}, {os.cpu_count()} CPUs, "
        f"{a.tasks} tasks of 51 spans, load {os.getloadavg()[0]:.2f}"
    )
    try:
        for key in keys:  # one at a time: each process's collections on a quieter machine
            print(f"\n{LABELS[key]}")
            print(f"{'tasks':>7} {'objects':>9} {'referents':>10} {'full collection':>16} {'RSS':>8}")
            cmd = [
                sys.executable, __file__, "--child", key, str(port),
                "--tasks", str(a.tasks), "--every", str(a.every),
            ]  # fmt: skip
            with subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True) as proc:
                assert proc.stdout is not None
                for line in proc.stdout:
                    r = json.loads(line)
                    print(
                        f"{r['tasks']:>7,} {r['objects']:>9,} {r['referents']:>10,} "
                        f"{r['full_ms']:>13.1f} ms {r['rss_mb']:>5.0f} MB",
                        flush=True,
                    )
            if proc.returncode:
                raise SystemExit(f"{LABELS[key]}: its process failed ({proc.returncode})")
    finally:
        endpoint.kill()
    print(f"\nload {os.getloadavg()[0]:.2f} at the end")


if __name__ == "__main__":
    main()
