"""Replicas that agree: Slack calls per task and time to the final state under
routing by trace id, spraying, and a ring change.

    .venv/bin/python benchmarks/bench_replicas.py [--tasks 60] [--quick]     # about 90 s

Starts its own embedded PostgreSQL (fsync on) in a temporary directory, and
per scenario fresh ``spanvisor serve`` replicas (sinks postgres, slack and
prometheus; state store postgres) with a fresh local fake Slack.

Each task is a stamped ``invoke_agent`` root and 10 children (5 model calls,
5 steps with an ``agent.checkpoint`` event) with a plain span under each
(the SDK's real spans, OTLP-encoded); one or two children of every task are
sent *after* its root (async tools that outlive it). Tasks are interleaved
and sent in batches of 1-3 spans, one HTTP request each, waiting for each
answer, as a Collector's exporter does:

* **routed**: three replicas, a batch goes to ``trace id % 3``;
* **sprayed**: three replicas, a batch goes to a random one;
* **ring change**: two replicas routed by ``trace id % 2``; halfway through a
  third replica is added and the rest goes by ``trace id % 3``, so the
  remaining spans of most open tasks land on a replica that has not seen
  their start.

The fake Slack is strict and compressed in time like the tests' settings
(posts 10 ms apart per channel, edits coalesced over 200 ms instead of 5 s,
replies 10 ms): ``chat.update`` is limited to Slack's Tier 3 (50 a minute)
compressed the same 25x, 1,250 a minute with a burst of 20, so 429s show
where edits pile up. Reported per scenario: Slack ``chat.*`` calls per task
and the 429s among them; time from the HTTP 200 of the batch carrying a
task's root to the first Slack call that shows the task's final state
(p50/p95); parents ending final; checkpoint and model-call rows against
those expected; tasks still open on any replica after the hold time (2 s).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import re
import shutil
import statistics
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "receiver")]

from agent_traces import agent_task, make_provider, request_for  # type: ignore[import-not-found]  # noqa: E402
from serve_proc import FakeSlackThread, ServeProcess, post, slack_env, wait_until  # type: ignore[import-not-found]  # noqa: E402

from spanvisor_postgres.embedded import EmbeddedPostgres  # noqa: E402

STEPS = 5
HOLD = "2s"
FINAL = ("complete", "error", "cancelled")


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(p / 100 * (len(xs) - 1)))] if xs else float("nan")


def db(url: str, sql: str, *args: Any) -> list[Any]:
    import asyncpg

    async def q() -> list[Any]:
        conn = await asyncpg.connect(url)
        try:
            return list(await conn.fetch(sql, *args))
        finally:
            await conn.close()

    return asyncio.run(q())


def tasks_spans(prefix: str, n: int, seed: int) -> list[list[Any]]:
    tp, cap = make_provider()
    tracer = tp.get_tracer("agent")
    rng = random.Random(seed)
    for i in range(n):
        agent_task(tracer, f"{prefix}{i}", rng, checkpoints=STEPS, plain_per_step=1)
    tp.shutdown()
    by_trace: dict[int, list[Any]] = {}
    for s in cap.spans:
        by_trace.setdefault(s.context.trace_id, []).append(s)
    out = []
    for spans in by_trace.values():
        root, rest = spans[-1], spans[:-1]
        stamped = [s for s in rest if (s.attributes or {}).get("agent.task.root_span_id")]
        late = rng.sample(stamped, rng.randint(1, 2))
        out.append([s for s in rest if s not in late] + [root] + late)
    return out


def batches(tasks: list[list[Any]], rng: random.Random) -> list[list[Any]]:
    queues = [list(t) for t in tasks]
    out: list[list[Any]] = []
    while queues:
        q = rng.choice(queues)
        k = rng.randint(1, 3)
        out.append(q[:k])
        del q[:k]
        queues = [q for q in queues if q]
    return out


def metric(proc: ServeProcess, name: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{proc.admin}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    return sum(float(m.group(1)) for m in re.finditer(rf"^{name}(?:\{{[^}}]*\}})? ([0-9.e+-]+)$", text, re.M))


def replica(base: Path, name: str, db_url: str, slack: FakeSlackThread) -> ServeProcess:
    env = slack_env(
        base / name,
        slack.base_url,
        SPANVISOR_DATABASE_URL=db_url,
        SPANVISOR_SINKS="postgres,slack,prometheus",
        SPANVISOR_STATE_STORE="postgres",
        SPANVISOR_ROOT_HOLD=HOLD,
        SPANVISOR_SHUTDOWN_TIMEOUT="10s",
        # The fake's edit limit above, not Slack's tier the sink paces at by default.
        SPANVISOR_SLACK_RATE_LIMITS="chat.update=1250/16,chat.delete=1250/16",
    )
    return ServeProcess(base / name, env)


def shown_final(args: dict[str, Any]) -> bool:
    head = str(args.get("text") or "").split(" — ", 1)[0]
    return head.rsplit(" · ", 1)[-1] in FINAL


def scenario(
    base: Path, db_url: str, name: str, n: int, seed: int, pick: Callable[[list[Any], int], int], grow_at: float | None
) -> dict[str, float]:
    slack = FakeSlackThread(method_limits={"chat.update": (1250.0, 20), "chat.delete": (1250.0, 20)})
    prefix = f"{name[:2].upper()}{seed}-"
    replicas = [replica(base, f"{name}-{i}", db_url, slack) for i in range(2 if grow_at is not None else 3)]
    root_sent: dict[str, float] = {}
    rng = random.Random(seed)
    try:
        work = batches(tasks_spans(prefix, n, seed), rng)
        t0 = time.monotonic()
        for k, batch in enumerate(work):
            if grow_at is not None and k == int(len(work) * grow_at):
                replicas.append(replica(base, f"{name}-{len(replicas)}", db_url, slack))
            target = replicas[pick(batch, len(replicas))]
            body = request_for(batch).SerializeToString()
            while not post(target.url, body):
                time.sleep(0.05)
            for s in batch:
                if s.parent is None:
                    root_sent[str((s.attributes or {}).get("agent.task.id"))] = time.monotonic()
        sent_s = time.monotonic() - t0
        tasks = sorted(root_sent)

        def parents() -> dict[str, Any]:
            out: dict[str, Any] = {}
            for m in slack.parents():
                task = ((m.metadata or {}).get("event_payload") or {}).get("task_id")
                out[str(task)] = m
            return out

        def all_final() -> bool:
            p = parents()
            return all(t in p and shown_final({"text": p[t].text}) for t in tasks)

        wait_until(all_final, 120, f"{name}: every parent final", every=0.2)
        want = {(t, s): STEPS for t in tasks for s in ("event", "model_call")}

        def rows() -> dict[tuple[str, str], int]:
            found = db(
                db_url,
                "SELECT task_id, source, count(*) AS n FROM agent_checkpoints WHERE task_id = ANY($1)"
                " AND source IN ('event', 'model_call') GROUP BY task_id, source",
                tasks,
            )
            return {(r["task_id"], r["source"]): r["n"] for r in found}

        try:
            wait_until(lambda: rows() == want, 30, f"{name}: every row", every=0.5)
        except AssertionError:
            pass
        got_rows = sum(min(v, want.get(k, 0)) for k, v in rows().items())
        try:
            wait_until(lambda: all(metric(r, "spanvisor_open_tasks") == 0 for r in replicas), 20, "no open task")
        except AssertionError:
            pass
        open_left = sum(metric(r, "spanvisor_open_tasks") for r in replicas)
        late_dropped = sum(metric(r, 'spanvisor_dropped_total\\{[^}]*reason="late_span"') for r in replicas)
        final_parents = sum(1 for t, m in parents().items() if t in root_sent and shown_final({"text": m.text}))

        def calls() -> tuple[int, int, dict[str, float]]:
            ts_task: dict[str, str] = {}
            first_final: dict[str, float] = {}
            chat = too_many = 0
            for c in slack.fake.calls:
                if not c.method.startswith("chat."):
                    continue
                chat += 1
                too_many += c.status == 429
                a = c.args
                meta = ((a.get("metadata") or {}).get("event_payload") or {}).get("task_id")
                if meta and c.response.get("ts"):
                    ts_task[str(c.response["ts"])] = str(meta)
                task = meta or (ts_task.get(str(a.get("ts"))) if c.method == "chat.update" else None)
                if task and c.response.get("ok") and not a.get("thread_ts") and shown_final(a):
                    first_final.setdefault(str(task), c.at)
            return chat, too_many, first_final

        chat, too_many, first_final = slack.on_loop(calls)
        to_final = [first_final[t] - root_sent[t] for t in tasks if t in first_final]
        return {
            "calls": chat / len(tasks),
            "429": too_many,
            "p50": pct(to_final, 50),
            "p95": pct(to_final, 95),
            "final": final_parents,
            "tasks": len(tasks),
            "rows": got_rows,
            "rows_want": sum(want.values()),
            "open": open_left,
            "late_dropped": late_dropped,
            "sent_s": sent_s,
        }
    finally:
        for r in replicas:
            r.stop()
        slack.close()


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tasks", type=int, default=60)
    ap.add_argument("--quick", action="store_true", help="10 tasks: a smoke run")
    a = ap.parse_args(argv)
    n = 10 if a.quick else a.tasks
    print(f"Python {platform.python_version()}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f} at start")
    base = Path(tempfile.mkdtemp(prefix="spanvisor-bench-replicas-"))
    pg = EmbeddedPostgres(base / "postgres")
    results: list[tuple[str, dict[str, float]]] = []
    try:
        print("starting the embedded PostgreSQL (fsync on) …", flush=True)
        url = pg.acquire()
        runs: list[tuple[str, Callable[[list[Any], int], int], float | None]] = [
            ("routed", lambda b, k: b[0].context.trace_id % k, None),
            ("sprayed", lambda b, k: random.randrange(k), None),
            ("ring change", lambda b, k: b[0].context.trace_id % k, 0.5),
        ]
        for i, (name, pick, grow) in enumerate(runs):
            print(f"  {name}: {n} tasks …", flush=True)
            r = scenario(base, url, name.replace(" ", "-"), n, 100 + i, pick, grow)
            results.append((name, r))
            print(f"    sent in {r['sent_s']:.1f} s; {r['calls']:.1f} Slack calls per task", flush=True)
    finally:
        pg.release()
        shutil.rmtree(base, ignore_errors=True)
    routed = results[0][1]["calls"]
    print()
    print(
        "| routing | Slack calls per task (429s) | x routed | root sent → final shown, p50 / p95 |"
        " parents final | checkpoint + model-call rows | open after hold | late spans dropped |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name, r in results:
        print(
            f"| {name} | {r['calls']:.1f} ({r['429']:.0f}) | {r['calls'] / routed:.2f} |"
            f" {r['p50'] * 1000:.0f} / {r['p95'] * 1000:.0f} ms | {r['final']:.0f} / {r['tasks']:.0f} |"
            f" {r['rows']:.0f} / {r['rows_want']:.0f} | {r['open']:.0f} | {r['late_dropped']:.0f} |"
        )
    print(f"\nmean calls per task over scenarios: {statistics.mean(r['calls'] for _, r in results):.1f}")


if __name__ == "__main__":
    main()
