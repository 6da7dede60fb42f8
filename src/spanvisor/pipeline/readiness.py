"""Whether a pipeline's sinks are ready: ``/readyz`` and ``Pipeline.ready``."""

from __future__ import annotations

from collections.abc import Sequence

from spanvisor.pipeline.sinkworker import SinkWorker


def readiness(workers: Sequence[SinkWorker], started: bool) -> tuple[bool, str]:
    """Whether every sink started and every durable sink can write now, with
    the reason (a failed sink's at once). Any thread; no I/O."""
    failed = [w.name for w in workers if w.start_error]
    if failed:
        return False, "sinks failed to start: " + ", ".join(failed)
    if not started:
        return False, "sinks starting"
    for w in workers:
        if w.durable:
            ok, why = w.health()
            if not ok:
                return False, f"{w.name}: {why}"
    return True, "ok"
