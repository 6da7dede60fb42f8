"""The Teams sink with 100 tasks at once in one channel, at Teams' real limits.

Run: ``.venv/bin/python benchmarks/bench_teams.py`` (about 25 s; loopback
only). ``--speed N`` runs the shared clock N times faster than real time
(default 10: the sink's pacing and the fake's limits both keep Teams'
numbers in that clock's time, the HTTP calls are real), ``--tasks N``.

One channel, the local fake Bot Connector enforcing Teams' limits unscaled
(per bot per thread 7 calls in 1 s, 8 in 2 s, 60 in 30 s, 1,800 in an hour;
a new thread counts on its channel; 50 a second for the app). The sink
paces each thread, and the channel's thread creation, at nine tenths of 30
a minute (the hour's 1,800). 100 tasks start together, each in a thread of
its own; each says 25 %, 50 %, 75 % and 100 % ten seconds apart, then
finishes. The first task is chatty besides: a new step every tenth of a
second for 30 s, more than its thread's 30 calls a minute can carry even
ten lines a reply, so its lines queue. Thirty seconds in, two tasks ask a
person for approval: the chatty one (its thread is there, its own lines
wait) and the last one (its thread not yet made: most of the channel's
thread creations wait ahead of it). Reported, in the clock's seconds: how
long each question took to show on its task's card (the PERSON rank: it
goes ahead of the waiting calls), how long until every thread was made and
every story out, calls made against events, the most calls any thread took
(and the channel's creations) in 1, 2, 30 and 60 s, and the calls Teams
refused (429), which must be 0. At ``--speed`` much above 10 a loopback
call's few real milliseconds become a sizeable part of a clock second and
the questions' figures grow with it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]

from tests.fakes.teams_api import APP_PER_SECOND, Call, FakeTeams  # noqa: E402
from tests.taskscript import ScaledClock, TaskScript  # noqa: E402
from tests.teams.teams_support import CHANNEL, shown, teams_env  # noqa: E402

from spanvisor.chat.record import FOLD_MAX  # noqa: E402
from spanvisor.events import ApprovalRequest, Event  # noqa: E402
from spanvisor_teams.limits import MARGIN  # noqa: E402

QUESTIONS = ("Deploy build 4711 to prod?", "Drop the staging database?")
STEPS_PER_S = 10.0  # the chatty task's new steps a second, for its first 30 s
ASK_AT = 30.0


def _on_card(call: Call, question: str) -> bool:
    """A call that showed ``question`` on a task's card (made or updated it)."""
    if not 200 <= call.status < 300 or call.method not in ("POST", "PUT"):
        return False
    activity = call.body.get("activity") if call.path == "/v3/conversations" else call.body
    return question in json.dumps(activity)


def _busiest(times: list[float], window: float = 60.0) -> int:
    """The most calls in any ``window`` seconds."""
    best, first = 0, 0
    for i, t in enumerate(times):
        while times[first] <= t - window:
            first += 1
        best = max(best, i - first + 1)
    return best


async def main(speed: float, count: int) -> None:
    clock = ScaledClock(speed)
    fake = FakeTeams(now=clock.now)  # scale 1: Teams' own limits
    await fake.start()
    try:
        async with teams_env(fake=fake, clock=clock, flush_s=3600) as env:
            tasks = [TaskScript.new(f"b{i}", f"agent-{i % 7}", task_name=f"Task {i}") for i in range(count)]
            chatty, last = tasks[0], tasks[-1]
            events = 0

            async def send(*batch: Event) -> None:
                nonlocal events
                events += len(batch)
                await env.send(*batch)

            async def at(t: float) -> None:
                await clock.sleep(max(0.0, t - clock.now()))

            async def chatter() -> None:
                for n in range(int(ASK_AT * STEPS_PER_S)):
                    await at(start + n / STEPS_PER_S)
                    await send(chatty.checkpoint(step=f"step {n}"))

            start = clock.now()
            await send(*(t.started() for t in tasks))
            chat = asyncio.create_task(chatter())
            asked_at = 0.0
            for step, progress in enumerate((25.0, 50.0, 75.0, 100.0), 1):
                await at(start + 10 * step)
                await send(*(t.checkpoint(progress=progress) for t in tasks))
                if step == 3:
                    await chat
                    asked_at = clock.now()
                    for task, question in zip((chatty, last), QUESTIONS, strict=True):
                        req = ApprovalRequest("a1", question, requested_ns=task.view.updated_ns)
                        await send(task.checkpoint(status="awaiting_approval", approvals=(req,)))
            await at(start + 50)
            await send(*(t.finished("complete") for t in tasks))
            ended_at = clock.now()
            assert await env.sink.force_flush(600), "not out in 10 minutes of real time"
            done_at = clock.now()

            calls = list(fake.calls)
            ok = [c for c in calls if 200 <= c.status < 300]
            creates = sorted(c.at for c in ok if c.path == "/v3/conversations")
            by_thread: dict[str, list[float]] = {}  # replies and updates by thread (the path's conversation)
            for c in ok:
                if c.path != "/v3/conversations":
                    by_thread.setdefault(c.path.split("/")[3], []).append(c.at)
            # The chatty task's step lines out before the question was asked; the rest waited.
            said = [c for c in ok if c.at <= asked_at and c.method == "POST" and c.path != "/v3/conversations"]
            steps = int(ASK_AT * STEPS_PER_S)
            waiting = steps - sum(shown(c.body).split("\n").count("➡️ Step") for c in said)
            shown_at = [min(c.at for c in ok if _on_card(c, q)) for q in QUESTIONS]
            to_make = count - sum(1 for t in creates if t <= asked_at)
            # Without ranks each would wait its turn: a turn every 60/27 s.
            turn = 60.0 / (30.0 * MARGIN)
            roots = env.roots()
            finals = sum(1 for r in roots if shown(r).startswith("✅"))
            ended = sum(1 for r in roots if shown(fake.thread(CHANNEL, r["id"])[-1]).startswith("✅ Complete"))

            def peaks(times: list[list[float]]) -> str:
                return ", ".join(f"{max(_busiest(t, w) for t in times)} in {w:g} s" for w in (1, 2, 30, 60))

            replies = sum(1 for c in ok if c.method == "POST") - len(creates)
            print(f"Python {platform.python_version()}, {os.cpu_count()} CPUs; clock x{speed:g}, real HTTP on loopback")
            print(f"tasks {count}, events {events} (the chatty task's {steps} steps among them)")
            print(
                f"question on the chatty task's card {shown_at[0] - asked_at:7.1f} s after it was asked, "
                f"{waiting} of its step lines waiting (in turn: ~{math.ceil(waiting / FOLD_MAX) * turn:.0f} s)"
            )
            print(
                f"question on the last task's card   {shown_at[1] - asked_at:7.1f} s after it was asked, "
                f"{to_make - 1} threads to make ahead of it (in turn: ~{(to_make - 1) * turn:.0f} s)"
            )
            print(f"every thread made after the start  {creates[-1] - start:7.1f} s")
            print(f"all out after the last end         {done_at - ended_at:7.1f} s")
            print(f"calls made                         {len(ok):7d} (one message per event: {events})")
            print(
                f"  threads made {len(creates)}, replies {replies}, card updates {sum(1 for c in ok if c.method == 'PUT')}"
            )
            print(f"most calls in a thread             {peaks(list(by_thread.values()))}")
            print(f"most threads made in the channel   {peaks([creates])}")
            print("  (Teams: 7 in 1 s, 8 in 2 s, 60 in 30 s, 1,800 in an hour: 30 a minute; the sink paces 27)")
            refused = [c for c in calls if c.status == 429]
            # Which limit refused: the app's 50 a second (all threads), else the call's thread.
            app_wide = sum(1 for r in refused if sum(1 for c in ok if r.at - 1 < c.at <= r.at) >= APP_PER_SECOND)
            print(f"refused (429)                      {len(refused):7d} (the app's 50 a second: {app_wide})")
            print(
                f"other errors                       {sum(1 for c in calls if c.status >= 300 and c.status != 429):7d}"
            )
            print(f"cards final {finals} of {count}, stories ended {ended} of {count}")
    finally:
        await fake.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--speed", type=float, default=10.0)
    parser.add_argument("--tasks", type=int, default=100)
    args = parser.parse_args()
    asyncio.run(main(args.speed, args.tasks))
