"""What the processor and the exporter share: owning a pipeline.

Both are built the same way (explicit sinks, a config, a pipeline, or none
of these: the process-wide default) and flush and shut down the same way,
within deadlines and without raising into the agent.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Any

from spanvisor.config import Config
from spanvisor.otel.controlport import serve_control, stop_control
from spanvisor.pipeline.agentconfig import OffPipeline, agent_pipeline
from spanvisor.pipeline.exiting import EXIT_FLUSH_S, exit_under_way
from spanvisor.pipeline.pipeline import Pipeline
from spanvisor.sink import Sink
from spanvisor.stats import PipelineStats

log = logging.getLogger("spanvisor")
_lock = threading.Lock()
_default: Pipeline | None = None


def default_pipeline(path: str) -> Pipeline:
    """The process-wide pipeline built from config, created on first use: the
    processor and the exporter built without arguments share it, so running
    both never doubles an agent's events. Never raises: with a configuration
    spanvisor cannot run on, an :class:`OffPipeline` (said once)."""
    global _default  # noqa: PLW0603 - one pipeline per process, by design
    with _lock:
        if isinstance(_default, OffPipeline):
            return _default  # said once; the environment it was read from is the same
        if _default is not None and _default.closed:
            # Shut down (a provider's shutdown, a test's teardown): a processor
            # or exporter made now would drop every span into its closed
            # inbox. It gets a new one, which the next owners share.
            log.info("spanvisor: the default pipeline was shut down; starting a new one")
            _default = None
        if _default is None:
            from spanvisor.logs import configure_logging

            configure_logging()
            _default = agent_pipeline(path, None, None).start()
        return _default


def ignore(*_: Any, **__: Any) -> None:
    """A hook of a processor when spanvisor is off in its process."""


class PipelineOwner:
    def __init__(
        self,
        path: str,
        sinks: Sequence[Sink] | None = None,
        config: Config | None = None,
        pipeline: Pipeline | None = None,
    ) -> None:
        if pipeline is None and sinks is None and config is None:
            pipeline = default_pipeline(path)
        elif pipeline is not None and pipeline.closed:
            # Attaching would drop every span without a word.
            raise ValueError(f"spanvisor {path}: the pipeline given has been shut down; pass a new one")
        # A bad SPANVISOR_* value never raises into the agent (nor into the
        # SDK's configurator, which would leave the provider without its
        # other processors): see spanvisor.pipeline.agentconfig.
        self.pipeline = pipeline or agent_pipeline(path, sinks, config)
        self.pipeline.start()
        if not self.off:
            # SPANVISOR_CONTROL_LISTEN: people answer this agent from a terminal.
            serve_control(self.pipeline)

    @property
    def off(self) -> bool:
        """spanvisor cannot run with this process's configuration (said once): nothing is handed over."""
        return isinstance(self.pipeline, OffPipeline)

    @property
    def stats(self) -> PipelineStats:
        return self.pipeline.stats

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        if exit_under_way(self.pipeline):
            # The exit hook's flush of the providers, which hands spans over:
            # the pipeline's shutdown, right after, waits for the sinks once.
            return True
        try:
            return self.pipeline.force_flush(timeout_millis / 1000)
        except Exception:
            return False

    def shutdown(self) -> None:
        try:
            # The agent is exiting: a stalled sink may delay that a little, never long.
            self.pipeline.shutdown(min(EXIT_FLUSH_S, float(self.pipeline.config.get("shutdown_timeout_s", 20.0))))
        except Exception:
            log.exception("spanvisor %s shutdown failed", self.pipeline.path)
        stop_control(self.pipeline)
