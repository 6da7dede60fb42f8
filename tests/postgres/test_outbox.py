"""The durable outbox: order, bound, durability across a process kill."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from spanvisor.pipeline.outbox import Outbox, OutboxFull
from spanvisor.stats import PipelineStats


def test_append_peek_ack_in_order(tmp_path: Path) -> None:
    async def main() -> None:
        stats = PipelineStats()
        box = await Outbox.open(tmp_path, "x", max_items=100, stats=stats)
        await box.append([{"n": i, "s": "\ud800\x00é"} for i in range(10)])
        assert box.size == 10
        assert stats.value("outbox_events", sink="x") == 10
        first = await box.peek(4)
        assert [item["n"] for _, item in first] == [0, 1, 2, 3]
        assert first[0][1]["s"] == "\ud800\x00é"  # stored losslessly
        assert await box.ack(first[-1][0]) == 4
        rest = await box.peek(100)
        assert [item["n"] for _, item in rest] == list(range(4, 10))
        await box.append([{"n": 10}])
        assert [item["n"] for _, item in await box.peek(100)][-1] == 10
        await box.close()

    asyncio.run(main())


def test_bound_is_all_or_nothing(tmp_path: Path) -> None:
    async def main() -> None:
        box = await Outbox.open(tmp_path, "x", max_items=5)
        await box.append([{"n": i} for i in range(4)])
        with pytest.raises(OutboxFull, match="at most 5"):
            await box.append([{"n": 4}, {"n": 5}])
        assert box.size == 4
        await box.append([{"n": 4}])
        assert box.size == 5
        await box.close()

    asyncio.run(main())


def test_survives_sigkill_and_reopens_in_order(tmp_path: Path) -> None:
    # A writer appends, prints "ok" once append returned, and is SIGKILLed:
    # everything acknowledged as appended must be there on the next open.
    script = textwrap.dedent(f"""
        import asyncio, sys, time
        from spanvisor.pipeline.outbox import Outbox
        async def main():
            box = await Outbox.open({str(tmp_path)!r}, "crash", max_items=10_000)
            for batch in range(5):
                await box.append([{{"batch": batch, "n": i}} for i in range(100)])
            print("ok", flush=True)
            time.sleep(60)
        asyncio.run(main())
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ok"
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()

    async def reopen() -> None:
        box = await Outbox.open(tmp_path, "crash", max_items=10_000)
        assert box.size == 500
        items = [item for _, item in await box.peek(1000)]
        assert [(i["batch"], i["n"]) for i in items] == [(b, n) for b in range(5) for n in range(100)]
        await box.close()

    asyncio.run(reopen())
