"""Slack calls per task, and latency from a checkpoint to the Slack call.

Run: ``.venv/bin/python benchmarks/bench_slack.py`` (about 35 s; loopback only).

1. Calls per task: one task of 60 s at 1, 10 and 100 checkpoints/s (progress
   0 -> 100 %, then complete), against the fake Slack Web API, default
   settings. Time is a *compressed clock*: the sink's clock is advanced by
   hand (60 simulated seconds take about a second), the HTTP calls are real.
   A naive poster sends one message per checkpoint plus one for the end.
2. Latency, in *real time* at default intervals, not rate-limited: three
   tasks, one channel each (routing rules), started 2 s apart, each 10 s at 10 checkpoints/s,
   with a status change and milestones. For every event that Slack must show
   at once (task start, status change, milestone, context warning, finish)
   we measure export -> the fake server receiving the call that carries it;
   for plain checkpoints, export -> the first parent edit that shows them
   (bounded by the 5 s coalescing interval by design).
3. Parent latency under a backlog: one channel at Slack's one post per
   second scaled 20x (the fake and the sink's pacing both), 100 finished
   tasks with 4 thread replies each queued, then 20 new tasks start: export
   of each new ``TaskStarted`` -> the fake receiving its parent, against
   how long the old replies take to drain (parents go first, see
   ``spanvisor_slack/turns.py``). ``--backlog`` runs this part alone.
4. A tool-heavy task at Slack's real limit (the fake at one post per second
   per channel, bursts of 4; the sink's default pacing, real time): 500
   tool calls over 10 s with a milestone at every 25 %. Posts and edits for
   the task, each milestone's export -> its post (the thread's lag), and
   the last call's export -> the work log's edit that counts all 500.
   ``--tools`` runs this part alone.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "slack")]

from slack_support import slack_env, until  # noqa: E402
from tests.fakes.slack_api import FakeSlack  # noqa: E402
from tests.taskscript import ManualClock, TaskScript  # noqa: E402

from spanvisor.events import Checkpoint  # noqa: E402

CHAT = ("chat.postMessage", "chat.update")
DEBUG = "-v" in sys.argv


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(p / 100 * (len(xs) - 1)))] if xs else float("nan")


async def calls_per_task(rate: int, seconds: int = 60) -> int:
    clock = ManualClock()
    async with slack_env(clock=clock, channel_rate=1000.0) as env:  # the fake runs in real time
        task = TaskScript.new(f"rate-{rate}", task_name="bench")
        await env.send(task.started())
        n = rate * seconds
        step = 0.1
        per_step = max(1, int(rate * step))
        for i in range(n):
            await env.send(task.checkpoint(progress=100 * (i + 1) / n, message=f"call {i}"))
            if i % per_step == per_step - 1:
                clock.advance(per_step / rate)
                await asyncio.sleep(0.001)
        await env.send(task.finished("complete"))
        for _ in range(2000):
            if not env.sink.pending():
                break
            clock.advance(0.5)
            await asyncio.sleep(0.003)
        return sum(len(env.fake.calls_to(m)) for m in CHAT)


async def latency(shared: bool) -> tuple[list[float], list[float], int]:
    fake = FakeSlack()
    await fake.start()
    urgent: list[tuple[str, str, float]] = []  # (task, marker in the call, export time)
    plain: list[tuple[str, int, float]] = []
    try:
        # One channel per agent: a shared channel at ~1 post/s is the rate limit itself.
        routes = "" if shared else ",".join(f"agent:a{k}=#lat-{k}" for k in range(3))
        async with slack_env(fake=fake, flush_s=15, slack_routes=routes) as env:

            async def agent(k: int) -> None:
                await asyncio.sleep(2 * k)
                task = TaskScript.new(f"lat-{k}", agent=f"a{k}", task_name=f"latency {k}")
                await env.send(task.started())
                urgent.append((task.view.task_id, "", time.monotonic()))  # the parent post
                for i in range(100):
                    status = "waiting" if 40 <= i < 45 else "working"
                    before = task.view.status
                    ev = task.checkpoint(status=status, progress=float(i + 1), message=f"m{k}-{i:03d}")
                    await env.send(ev)
                    now = time.monotonic()
                    plain.append((task.view.task_id, i, now))
                    if status != before:
                        urgent.append((task.view.task_id, f"· {status}", now))
                    if (i + 1) in (25, 50, 75, 100):
                        urgent.append((task.view.task_id, f"{i + 1}% reached", now))
                    await asyncio.sleep(0.1)
                await env.send(task.finished("complete"))
                urgent.append((task.view.task_id, "Complete in", time.monotonic()))

            await asyncio.gather(*(agent(k) for k in range(3)))
            await env.sink.force_flush(15)
        calls = [c for c in fake.calls if c.method in CHAT and c.response.get("ok")]
        if DEBUG:
            t0 = fake.calls[0].at
            for c in fake.calls:
                print(
                    f"{c.at - t0:7.3f} {c.method} {c.status} {c.args.get('thread_ts') or c.args.get('ts')} {str(c.args.get('text'))[:40]}"
                )
        parents = {p.metadata["event_payload"]["task_id"]: p.channel + p.ts for p in fake.parents() if p.metadata}

        def task_of(c: object) -> str | None:
            args = c.args  # type: ignore[attr-defined]
            key = args["channel"] + str(args.get("thread_ts") or args.get("ts") or "")
            if "ts" not in args and "thread_ts" not in args:
                return args.get("metadata", {}).get("event_payload", {}).get("task_id")
            return next((t for t, k in parents.items() if k == key), None)

        by_task = [(task_of(c), str(c.args), c.at) for c in calls]
        lat_urgent = []
        for task_id, marker, at in urgent:
            hit = next((t_at for t, body, t_at in by_task if t == task_id and t_at >= at and marker in body), None)
            if hit is not None:
                lat_urgent.append(hit - at)
                if DEBUG:
                    print(task_id, marker, round(hit - at, 3))
            elif DEBUG:
                print(task_id, marker, "missing")
        lat_plain = []
        for task_id, i, at in plain:
            hit = next((t_at for t, body, t_at in by_task if t == task_id and t_at >= at and _shows(body, i)), None)
            if hit is not None:
                lat_plain.append(hit - at)
        return lat_urgent, lat_plain, len(urgent)
    finally:
        await fake.stop()


async def backlog(old: int = 100, new: int = 20, rate: float = 20.0) -> tuple[list[float], float]:
    """(each new parent's latency, seconds the old replies took to drain), in real seconds."""
    async with slack_env(
        channel_rate=rate, slack_channel_interval_s=1 / rate, slack_reply_interval_s=0.0, flush_s=120
    ) as env:
        fake = env.fake
        olds = [TaskScript.new(f"old-{i}", task_name=f"Old {i}") for i in range(old)]
        for t in olds:
            await env.send(t.started())
        for t in olds:
            await env.send(
                *(t.checkpoint(progress=p, message=f"at {p}") for p in (30.0, 60.0, 90.0)), t.finished("complete")
            )
        await until(lambda: len(fake.parents()) >= old, 120, "the old parents")
        t0 = time.monotonic()
        sent: dict[str, float] = {}
        for i in range(new):
            task = TaskScript.new(f"new-{i}", task_name=f"New {i}")
            await env.send(task.started())
            sent[task.view.task_id] = time.monotonic()
        await env.sink.force_flush(120)
        posted = {
            str(c.args["metadata"]["event_payload"]["task_id"]): c.at
            for c in fake.calls_to("chat.postMessage", ok=True)
            if not c.args.get("thread_ts") and isinstance(c.args.get("metadata"), dict)
        }
        lat = [posted[tid] - at for tid, at in sent.items() if tid in posted]
        replies = [c.at for c in fake.calls_to("chat.postMessage", ok=True) if c.args.get("thread_ts")]
        return lat, max(replies) - t0 if replies else 0.0


async def tool_heavy(calls: int = 500, seconds: float = 10.0) -> dict[str, float]:
    async with slack_env(flush_s=120) as env:  # the fake's default: 1 post/s per channel, bursts of 4
        task = TaskScript.new("tools-500", "gauge", task_name="Tool-heavy")
        await env.send(task.started())
        sent: dict[str, float] = {}
        last_call = 0.0
        for i in range(calls):
            eid, t = task._next()
            attrs = {"tool": f"read_shard_{i % 3}", "duration_s": 0.002}
            await env.send(Checkpoint(event_id=eid, time_ns=t, task=task.view, source="tool_call", attributes=attrs))
            last_call = time.monotonic()
            if (i + 1) % (calls // 4) == 0:
                pct_done = 100 * (i + 1) / calls
                await env.send(task.checkpoint(progress=pct_done, message=f"{i + 1} calls"))
                sent[f"{pct_done:.0f}% reached"] = time.monotonic()
            await asyncio.sleep(seconds / calls)
        await env.send(task.finished("complete"))
        await env.sink.force_flush(120)
        posts = env.fake.calls_to("chat.postMessage", ok=True)
        edits = env.fake.calls_to("chat.update", ok=True)
        lags = [
            next(c.at for c in posts if what in str(c.args.get("text"))) - at
            for what, at in sent.items()
            if any(what in str(c.args.get("text")) for c in posts)
        ]
        shown = [c.at for c in edits if f"{calls} tool calls" in str(c.args.get("text"))]
        return {
            "posts": len(posts),
            "edits": len(edits),
            "milestones": len(lags),
            "lag_max": max(lags) if lags else float("nan"),
            "log_lag": (min(shown) - last_call) if shown else float("nan"),
        }


async def print_tool_heavy() -> None:
    r = await tool_heavy()
    print("\na task with 500 tool calls over 10 s and 4 milestones, one channel at Slack's 1 post/s (real time)")
    print(
        f"  posts {r['posts']:.0f} (parent, work log, milestones, summary), edits {r['edits']:.0f}; "
        f"milestones posted {r['milestones']:.0f}/4, export -> post max {r['lag_max']:.2f}s; "
        f"last call -> the log showing all 500: {r['log_lag']:.2f}s"
    )
    print("  (a reply per 10 merged calls, the rule before work logs, is 50 posts: 50 s of this channel's posts)")


def _shows(body: str, i: int) -> bool:
    """The parent shows checkpoint i or a later one of the same task."""
    at = body.find("Last action*\\n")
    if at < 0:
        return False
    try:
        shown = int(body[at + 14 :].split("-", 1)[1][:3])
    except (IndexError, ValueError):
        return False
    return shown >= i


async def main() -> None:
    if "--backlog" in sys.argv:
        await print_backlog()
        return
    if "--tools" in sys.argv:
        await print_tool_heavy()
        return
    print("Slack calls per task (60 s task, compressed clock, default settings)")
    print(f"{'checkpoints/s':>14} {'naive':>8} {'spanvisor':>10}")
    for rate in (1, 10, 100) if not DEBUG else ():
        ours = await calls_per_task(rate)
        print(f"{rate:>14} {rate * 60 + 1:>8} {ours:>10}")
    for shared in (False, True):
        t0 = time.monotonic()
        urgent, plain, expected = await latency(shared)
        where = "all three in one channel (~1 post/s: the channel limit binds)" if shared else "one channel per task"
        print(f"\nlatency, real time, default intervals, {where} ({time.monotonic() - t0:.0f} s run)")
        print(
            f"  start/status/milestone/finish -> Slack call: n={len(urgent)}/{expected} "
            f"p50={statistics.median(urgent):.3f}s p95={pct(urgent, 95):.3f}s max={max(urgent):.3f}s"
        )
        print(
            f"  plain checkpoint -> visible in the parent:  n={len(plain)} "
            f"p50={statistics.median(plain):.3f}s p95={pct(plain, 95):.3f}s (5 s coalescing by design)"
        )
    await print_backlog()
    await print_tool_heavy()


async def print_backlog() -> None:
    lat, drain = await backlog()
    print("\nnew parents behind 400 queued replies of 100 finished tasks, one channel at 20 posts/s")
    print(
        f"  TaskStarted -> parent posted: n={len(lat)} p50={statistics.median(lat):.3f}s max={max(lat):.3f}s "
        f"(the old replies took {drain:.1f} s to drain)"
    )


if __name__ == "__main__":
    asyncio.run(main())
