"""An agent's configuration: never the reason the agent stops.

In an agent's process (the span processor, the exporter, zero-code) a bad
``SPANVISOR_*`` value is one line naming the variable, the value and what it
accepts, and spanvisor runs without the part it concerns:

* a sink's setting: that sink is left out (as a misspelt sink name is);
* a setting only ``spanvisor serve`` reads: ignored;
* a core setting that tunes one part (``SPANVISOR_CONTEXT_THRESHOLDS``, a
  log tail, a queue size: :data:`spanvisor.config.DEFAULT_STANDS_IN`): its
  default is used;
* any other (the core's, budgets, the control API), or a configuration that
  cannot be read at all: spanvisor is off in this process
  (:class:`OffPipeline`); the agent and the provider's other processors and
  exporters run as before.

``spanvisor serve`` and the CLI stay strict: they refuse to start, in one line.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from spanvisor.config import DEFAULT_STANDS_IN, Config, ConfigError, shown_default
from spanvisor.pipeline.assemble import sink_problems
from spanvisor.pipeline.inbox import Inbox
from spanvisor.pipeline.pipeline import Pipeline
from spanvisor.sink import Sink
from spanvisor.stats import PipelineStats

log = logging.getLogger("spanvisor")

# Parts whose settings an agent's process never reads.
NOT_IN_AGENTS = frozenset({"receiver"})
OFF = "spanvisor is off in this process; the agent runs on (`spanvisor check` lists every problem)"


def blocking_problems(config: Config) -> list[str]:
    """The refused values no part can run without: spanvisor is off."""
    return [
        why
        for name, why in config.invalid.items()
        if not config.owners.get(name, "").startswith("sink:")
        and config.owners.get(name) not in NOT_IN_AGENTS
        and name not in DEFAULT_STANDS_IN
    ]


def agent_pipeline(path: str, sinks: Sequence[Sink] | None, config: Config | None) -> Pipeline:
    """The pipeline of an agent's processor or exporter, or an
    :class:`OffPipeline` when spanvisor cannot run; never raises."""
    try:
        if config is None:
            config = Config.load(lenient=True)
        for name, why in config.invalid.items():
            if config.owners.get(name) in NOT_IN_AGENTS:
                log.warning("configuration error: %s; ignored (only `spanvisor serve` reads it)", why)
            elif name in DEFAULT_STANDS_IN:
                shown = next((shown_default(s) for s in config.settings if s.name == name), "")
                log.error("configuration error: %s; the default (%s) is used in this process", why, shown)
        problems = blocking_problems(config)
        if not problems:
            if sinks is not None:
                sinks = [s for s in sinks if not _left_out(config, str(getattr(s, "name", "")))]
            return Pipeline(config, sinks, path=path)
    except Exception as exc:  # an unreadable file, a part that cannot start: the agent runs on
        problems = [_one_line(exc)]
    for problem in problems:
        log.error("configuration error: %s; %s", problem, OFF)
    return OffPipeline(config, path, problems)


def _left_out(config: Config, sink: str) -> bool:
    problems = sink_problems(config, sink)
    for problem in problems:
        log.error("configuration error: %s; the agent runs on without the %s sink", problem, sink)
    return bool(problems)


def _one_line(exc: Exception) -> str:
    text = str(exc).strip().replace("\n", " ") or type(exc).__name__
    return text if isinstance(exc, ConfigError) else f"{type(exc).__name__}: {text}"


class OffPipeline(Pipeline):
    """A pipeline that takes nothing: its inbox is closed (every span handed
    over is counted as dropped), no thread, no sinks, no control API. What a
    processor or exporter holds when spanvisor is off in its process."""

    def __init__(self, config: Config | None, path: str, problems: Sequence[str]) -> None:
        # Not the parent's: nothing of a running pipeline is built.
        self.config = config if config is not None else Config({}, (), {})
        self.path = path
        self.problems = tuple(problems)
        self.stats = PipelineStats()
        self.shared: dict[str, Any] = {}
        self.sinks: list[Sink] = []
        self._inbox = Inbox(1, self.stats)
        self._inbox.closed = True
        self._closed = True
        self._thread = None
        self._loop = None
        self._workers = []

    def start(self) -> Pipeline:
        return self

    def submit_logs(self, records: Sequence[Any]) -> bool:
        return False

    def submit_live(self, facts: Sequence[Any]) -> bool:
        return False

    def accepting(self, n: int = 1) -> bool:
        return False

    def room_in(self, n: int = 1) -> float | None:
        return None

    def ready(self) -> tuple[bool, str]:
        return False, "spanvisor is off: " + "; ".join(self.problems)

    def force_flush(self, timeout_s: float = 30.0) -> bool:
        return True

    def shutdown(self, timeout_s: float = 30.0) -> None:
        return None


__all__ = ["OFF", "OffPipeline", "agent_pipeline", "blocking_problems"]
