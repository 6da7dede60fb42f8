"""An example third-party sink: appends each event as one JSON line to a file.

It shows the whole plugin contract: a ``BaseSink`` subclass with a ``name``,
its own ``settings`` (picked up by ``Config.load()`` and ``spanvisor check``),
``enabled`` for ``SPANVISOR_SINKS=auto``, and an ``export`` that never raises
and never blocks the pipeline's event loop (file I/O goes to a thread).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from typing import Any, ClassVar

from spanvisor.config import Config, Setting, p_opt_str
from spanvisor.events import Event
from spanvisor.sink import BaseSink, SinkResult


class ExampleSink(BaseSink):
    name = "example"
    settings: ClassVar[Sequence[Setting]] = (
        Setting(
            "example_out",
            "SPANVISOR_EXAMPLE_OUT",
            p_opt_str,
            None,
            "File the example sink appends its events to, one JSON object a line.",
            "a file path",
        ),
    )

    @classmethod
    def enabled(cls, config: Config) -> bool:
        return config.get("example_out") is not None

    async def export(self, events: Sequence[Event]) -> SinkResult:
        path = self.ctx.config.get("example_out") if self.ctx is not None else None
        lines = [json.dumps(_line(e)) for e in events]
        try:
            if path:
                await asyncio.to_thread(_append, path, lines)
            else:
                print("\n".join(f"example-sink {line}" for line in lines), flush=True)
        except OSError:
            return SinkResult.RETRY
        return SinkResult.SUCCESS


def _line(e: Event) -> dict[str, Any]:
    return {
        "kind": e.kind,
        "event_id": e.event_id,
        "task_id": e.task_id,
        "task_name": e.task.task_name,
        "agent_id": e.task.agent_id,
        "status": e.task.status,
        "progress": e.task.progress,
    }


def _append(path: str, lines: list[str]) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write("".join(line + "\n" for line in lines))
