"""Decisions and permits a second through the control log, on one state
store: the workload ``bench_decisions.py --cas`` runs against two revisions,
interleaved (run by itself it measures the spanvisor on ``PYTHONPATH``).

    PYTHONPATH=src:plugins .venv/bin/python benchmarks/_cas_rate.py --store local

``--runs`` runs of ``--requests`` open requests each; every request is
approved by its own coroutine, ``--concurrency`` at a time (so the
decisions of one run contend for its record, as people deciding one run's
requests do), then each approval is permitted the same way. Prints one line:
``cas <store>: decisions/s N (applied A of T, recorded R)  permits/s M
(permitted P of T)``. Before the compare-and-set was strict, coroutines of
one process could both "win" one version: decisions answered applied were
lost from the record (R < A), and permits then found nothing approved.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


async def _store(kind: str, tmp: Path, url: str | None) -> Any:
    # Imported here: the interleaving parent must not import either side.
    if kind == "memory":
        from spanvisor.statestores.memory import InMemoryStateStore

        return InMemoryStateStore()
    if kind == "local":
        from spanvisor.statestores.local import LocalStateStore

        store = LocalStateStore(tmp / "state.db")
        await store.start()
        return store
    from spanvisor.config import Config
    from spanvisor_postgres.settings import SETTINGS
    from spanvisor_postgres.statestore import PostgresStateStore

    config = Config.load(env={}, extra=SETTINGS).with_values(data_dir=str(tmp), database_url=url)
    return await PostgresStateStore.open(config)


async def measure(kind: str, n_runs: int, requests: int, concurrency: int, url: str | None) -> str:
    from spanvisor.canonical import approval_digest
    from spanvisor.control import runs
    from spanvisor.control.log import ControlLog
    from spanvisor.events import ApprovalRequest, Decision, TaskView

    with tempfile.TemporaryDirectory() as tmp:
        store = await _store(kind, Path(tmp), url)
        try:
            log = ControlLog(store, owner="bench")
            work: list[tuple[str, str, str]] = []
            stamp = time.time_ns()
            for r in range(n_runs):
                task, run = f"bench-{stamp}-{r}", f"{r:012x}"
                view = TaskView(task, "0" * 32, "0" * 16, "bench", run_id=run, started_ns=stamp)
                asks = []
                for q in range(requests):
                    aid = f"a{q}"
                    digest = approval_digest(
                        agent="", task=task, run=run, approval_id=aid, question="Go?", options=("approve", "reject")
                    )
                    asks.append(ApprovalRequest(aid, "Go?", requested_ns=stamp, digest=digest))
                    work.append((task, run, aid))
                await log.open_run(view, tuple(asks))
            gate = asyncio.Semaphore(concurrency)

            async def decide(task: str, run: str, aid: str) -> bool:
                async with gate:
                    d = Decision(f"{task}-{aid}", task, "approve", "bench", time.time_ns(), approval_id=aid, run_id=run)
                    return (await log.apply(d, time.time_ns())).outcome == "applied"

            async def permit(task: str, run: str, aid: str) -> bool:
                async with gate:
                    return (await log.permit(task, run, aid, None, time.time_ns(), "bench")).permitted

            t0 = time.perf_counter()
            applied = sum(await asyncio.gather(*(decide(*w) for w in work)))
            t1 = time.perf_counter()
            permitted = sum(await asyncio.gather(*(permit(*w) for w in work)))
            t2 = time.perf_counter()
            recorded = 0
            for task, run in {(w[0], w[1]) for w in work}:
                recorded += len(runs.decisions_of(await log.record(task, run)))
        finally:
            await store.close()
    n = len(work)
    return (
        f"cas {kind}: decisions/s {n / (t1 - t0):.0f} (applied {applied} of {n}, recorded {recorded})  "
        f"permits/s {n / (t2 - t1):.0f} (permitted {permitted} of {n})"
    )


_LINE = re.compile(r"decisions/s (\d+) \(applied (\d+) of (\d+), recorded (\d+)\)\s+permits/s (\d+) \(permitted (\d+)")


def interleaved(before: str, rounds: int, url: str | None) -> None:
    """This workload against revision ``before`` and the working tree, the
    order alternating each round; medians and after/before ratios."""
    from interleave import _git, checkout

    sha, tree = checkout(before)
    dirty = " + changes" if _git("status", "--porcelain", "--untracked-files=no") else ""
    sides = [(f"before {sha}", tree), (f"after {_git('rev-parse', '--short=12', 'HEAD')}{dirty}", ROOT)]
    stores = ["memory", "local", *(["postgres"] if url else [])]
    got: dict[tuple[str, str], list[tuple[int, ...]]] = {}
    print(f"# cas: {rounds} rounds, load at start {os.getloadavg()[0]:.2f}", flush=True)
    for r in range(rounds):
        for label, where in sides if r % 2 == 0 else sides[::-1]:
            env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(where / "src"), str(where / "plugins")])}
            for store in stores:
                argv = [
                    sys.executable,
                    str(Path(__file__)),
                    "--store",
                    store,
                    *(["--database-url", url] if url else []),
                ]
                out = subprocess.run(argv, env=env, capture_output=True, text=True, check=False).stdout
                m = _LINE.search(out)
                print(f"round {r + 1}, {label}: {out.strip() or '(no output)'}", flush=True)
                if m:
                    got.setdefault((label, store), []).append(tuple(int(x) for x in m.groups()))
    print(f"\n{'store':8s} {'side':32s} {'decisions/s':>12s} {'permits/s':>10s}  recorded  permitted")
    for store in stores:
        medians = []
        for label, _ in sides:
            rows = got.get((label, store), [])
            dec = statistics.median(x[0] for x in rows) if rows else 0.0
            per = statistics.median(x[4] for x in rows) if rows else 0.0
            medians.append((dec, per))
            kept = f"{min((x[3] for x in rows), default=0)}/{rows[0][2] if rows else 0}"
            used = f"{min((x[5] for x in rows), default=0)}/{rows[0][2] if rows else 0}"
            print(f"{store:8s} {label:32s} {dec:12.0f} {per:10.0f}  {kept:>8s}  {used:>9s}")
        (bd, bp), (ad, ap) = medians
        if bd and bp:
            print(f"{store:8s} {'after / before':32s} {ad / bd:12.2f} {ap / bp:10.2f}")
    print(f"# load at the end {os.getloadavg()[0]:.2f}", flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--store", choices=("memory", "local", "postgres"), default="memory")
    ap.add_argument("--database-url", help="a migrated PostgreSQL (for --store postgres)")
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--requests", type=int, default=40)
    ap.add_argument("--concurrency", type=int, default=20)
    ns = ap.parse_args()
    print(asyncio.run(measure(ns.store, ns.runs, ns.requests, ns.concurrency, ns.database_url)), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
