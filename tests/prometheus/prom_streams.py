"""Hand-built event streams for the metrics sink's tests, the synthetic scrape
target and the benchmark. Built from the domain dataclasses directly, the way
the tracker would emit them (same ids for the same inputs)."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Coroutine
from typing import Any, TypeVar

from prometheus_client import CollectorRegistry

from spanvisor.config import Config
from spanvisor.events import (
    Checkpoint,
    ContextWarning,
    Event,
    Outcome,
    TaskFinished,
    TaskStarted,
    TaskView,
    stable_id,
)
from spanvisor.sink import SinkContext, SinkResult
from spanvisor.statestores.memory import InMemoryStateStore
from spanvisor.stats import PipelineStats
from spanvisor_prometheus import PrometheusSink
from spanvisor_prometheus.settings import SETTINGS

T = TypeVar("T")
S = 1_000_000_000


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def make_ctx(**overrides: Any) -> SinkContext:
    # Only our settings: other plugins' import state must not affect these tests.
    config = Config.load(env={}, extra=SETTINGS).with_values(**overrides)
    return SinkContext(config=config, state_store=InMemoryStateStore(), stats=PipelineStats())


def view(agent: str, n: int, t0_ns: int, repo: str | None = "acme/app", **kw: Any) -> TaskView:
    trace = stable_id("trace", agent, n)
    return TaskView(
        task_id=f"{trace}:{n:016x}",
        trace_id=trace,
        root_span_id=f"{n:016x}",
        agent_id=agent,
        task_name=f"task {n}",
        repo=repo,
        status="working",
        started_ns=t0_ns,
        updated_ns=t0_ns,
        **kw,
    )


def lifecycle(
    agent: str,
    n: int,
    t0_ns: int,
    *,
    checkpoints: int = 3,
    outcome: Outcome | None = "complete",
    duration_s: float = 42.0,
    context_limit: int = 100_000,
    peak_ratio: float = 0.5,
    tokens_per_step: tuple[int, int] = (1000, 100),
    repo: str | None = "acme/app",
    model: str | None = None,
    agent_checkpoints: bool = False,
) -> list[Event]:
    """One task: start, ``checkpoints`` steps, then a finish with ``outcome``
    (None leaves the task open). Each step is a model call (a
    ``Checkpoint(source="model_call")`` of ``model``) rising to ``peak_ratio``
    of the window, with warnings when crossing 0.7 / 0.85; with
    ``agent_checkpoints`` the agent also reports the step as a checkpoint event."""
    v = view(agent, n, t0_ns, repo=repo, context_limit=context_limit, model=model)
    ev: list[Event] = [TaskStarted(event_id=stable_id(v.task_id, "start"), time_ns=t0_ns, task=v)]
    step_ns = int(duration_s * S / (checkpoints + 1))
    armed = {"warning": True, "critical": True}
    for i in range(1, checkpoints + 1):
        ratio = peak_ratio * i / checkpoints
        t = t0_ns + i * step_ns
        v = dataclasses.replace(
            v,
            progress=100.0 * i / (checkpoints + 1),
            context_tokens=int(ratio * context_limit),
            input_tokens=tokens_per_step[0] * i,
            output_tokens=tokens_per_step[1] * i,
            updated_ns=t,
        )
        ev.append(
            Checkpoint(
                event_id=stable_id(v.task_id, "cp", i), time_ns=t, task=v, source="model_call", changed=("tokens",)
            )
        )
        if agent_checkpoints:
            ev.append(
                Checkpoint(
                    event_id=stable_id(v.task_id, "step", i), time_ns=t, task=v, source="event", changed=("progress",)
                )
            )
        for level, threshold in (("warning", 0.70), ("critical", 0.85)):
            if ratio >= threshold and armed[level]:
                armed[level] = False
                ev.append(
                    ContextWarning(
                        event_id=stable_id(v.task_id, "warn", level, i),
                        time_ns=t,
                        task=v,
                        level=level,
                        threshold=threshold,
                        ratio=ratio,  # type: ignore[arg-type]
                        tokens=int(ratio * context_limit),
                        limit=context_limit,
                    )
                )
    if outcome is not None:
        t = t0_ns + int(duration_s * S)
        v = dataclasses.replace(v, status=outcome, ended_ns=t, updated_ns=t)
        ev.append(
            TaskFinished(
                event_id=stable_id(v.task_id, "end"),
                time_ns=t,
                task=v,
                outcome=outcome,
                duration_s=duration_s,
                error_type="RuntimeError" if outcome == "error" else None,
                error_message="boom" if outcome == "error" else None,
            )
        )
    return ev


def started_sink(**overrides: Any) -> tuple[PrometheusSink, CollectorRegistry]:
    """A PrometheusSink started on a fresh registry of its own."""
    registry = CollectorRegistry()
    sink = PrometheusSink(registry=registry)
    run(sink.start(make_ctx(**overrides)))
    return sink, registry


def feed(sink: PrometheusSink, events: list[Event]) -> None:
    assert run(sink.export(events)) is SinkResult.SUCCESS


def val(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)
