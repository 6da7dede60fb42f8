"""Whether a pipeline's sinks are ready: ``/readyz`` and ``Pipeline.ready``.

The reason names what the user configured: a sink that was added for them
(``serve``'s event stream on the admin port: ``implicit``) is named by what
it does (its ``role``), after the configured sinks' own reasons, which
usually say the same cause first (a database that cannot be reached)."""

from __future__ import annotations

from collections.abc import Sequence

from spanvisor.pipeline.sinkworker import SinkWorker


def implicit(worker: SinkWorker) -> bool:
    """A sink the user did not name, added for them (``serve_sinks``, the demo)."""
    return bool(getattr(worker.sink, "implicit", False))


def readiness(workers: Sequence[SinkWorker], started: bool) -> tuple[bool, str]:
    """Whether every sink started and every durable sink can write now, with
    the reason (a failed sink's at once). Any thread; no I/O."""
    failed = [w.name for w in workers if w.start_error and not implicit(w)]
    if failed:
        return False, "sinks failed to start: " + ", ".join(failed)
    if not started:
        return False, "sinks starting"
    for w in workers:
        if w.durable and not implicit(w):
            ok, why = w.health()
            if not ok:
                return False, f"{w.name}: {why}"
    for w in workers:
        if w.start_error:
            return False, f"{getattr(w.sink, 'role', None) or w.name} cannot start: {w.start_error}"
    return True, "ok"
