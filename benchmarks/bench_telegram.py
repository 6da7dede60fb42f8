"""The Telegram sink with 100 tasks at once, at Telegram's real limits.

Run: ``.venv/bin/python benchmarks/bench_telegram.py`` (about a minute;
loopback only). ``--speed N`` runs the shared clock N times faster than
real time (default 100: the sink's pacing and the fake's limits both keep
Telegram's per-minute numbers in that clock's time, the HTTP calls are
real).

One group (20 messages and edits a minute, one a second in the chat, 30 a
second in all, as the fake enforces them). 100 tasks start together; each
says 25 %, 50 %, 75 % and 100 % ten seconds apart, then finishes. Thirty
seconds in, one task asks a person for approval. Reported, in the clock's
seconds: how long the question took to show (the sink sends it ahead of
every waiting progress call), how long until every task's message and
story were out, the calls made against what one message per event would
have needed, and the calls Telegram refused (429), which must be 0.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]

from tests.fakes.telegram_api import FakeTelegram  # noqa: E402
from tests.taskscript import ScaledClock, TaskScript  # noqa: E402
from tests.telegram.telegram_support import GROUP, telegram_env  # noqa: E402

from spanvisor.events import ApprovalRequest, Event  # noqa: E402

TASKS = 100
QUESTION = "Deploy build 4711 to prod?"


async def main(speed: float) -> None:
    clock = ScaledClock(speed)
    fake = FakeTelegram(now=clock.now)
    await fake.start()
    try:
        async with telegram_env(fake=fake, clock=clock, flush_s=3600) as env:
            tasks = [TaskScript.new(f"b{i}", f"agent-{i % 7}", task_name=f"Task {i}") for i in range(TASKS)]
            events: int = 0

            async def send(*batch: Event) -> None:
                nonlocal events
                events += len(batch)
                await env.send(*batch)

            async def at(t: float) -> None:
                await clock.sleep(max(0.0, t - clock.now()))

            start = clock.now()
            await send(*(t.started() for t in tasks))
            asked_at = shown_at = None
            for step, progress in enumerate((25.0, 50.0, 75.0, 100.0), 1):
                await at(start + 10 * step)
                await send(*(t.checkpoint(progress=progress) for t in tasks))
                if step == 3:
                    req = ApprovalRequest("a1", QUESTION, requested_ns=tasks[0].view.updated_ns)
                    await send(tasks[0].checkpoint(status="awaiting_approval", approvals=(req,)))
                    asked_at = clock.now()
            await at(start + 50)
            await send(*(t.finished("complete") for t in tasks))
            ended_at = clock.now()
            while shown_at is None:
                hit = [c for c in fake.calls if c.status == 200 and QUESTION in str(c.args.get("text"))]
                if hit:
                    shown_at = hit[0].at
                    break
                await asyncio.sleep(0.01)
            assert await env.sink.force_flush(3600)
            done_at = clock.now()
            refused = sum(1 for c in fake.calls if c.status == 429)
            ok = sum(1 for c in fake.calls if c.status == 200)
            print(f"tasks {TASKS}, events {events}, clock x{speed:g}")
            print(f"question shown after       {shown_at - asked_at:8.1f} s (asked 30 s in)")
            print(f"all out after the last end {done_at - ended_at:8.1f} s")
            print(f"calls made                 {ok:8d} (one message per event: {events})")
            print(f"refused (429)              {refused:8d}")
            print(
                f"messages                   {len([m for m in fake.chats[GROUP].messages.values() if 'reply_to_message' not in m]):8d}"
            )
    finally:
        await fake.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--speed", type=float, default=100.0)
    asyncio.run(main(parser.parse_args().speed))
