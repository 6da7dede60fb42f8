"""What the processor and the exporter share: owning a pipeline.

Both are built the same way (explicit sinks, a config, a pipeline, or none
of these: the process-wide default) and flush and shut down the same way,
within deadlines and without raising into the agent.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from spanvisor.config import Config
from spanvisor.pipeline.pipeline import EXIT_FLUSH_S, Pipeline
from spanvisor.sink import Sink
from spanvisor.stats import PipelineStats

log = logging.getLogger("spanvisor")


class PipelineOwner:
    def __init__(
        self,
        path: str,
        sinks: Sequence[Sink] | None = None,
        config: Config | None = None,
        pipeline: Pipeline | None = None,
    ) -> None:
        if pipeline is None and sinks is None and config is None:
            from spanvisor.otel.autoconfig import default_pipeline

            pipeline = default_pipeline(path)
        self.pipeline = pipeline or Pipeline(config, sinks, path=path)
        self.pipeline.start()

    @property
    def stats(self) -> PipelineStats:
        return self.pipeline.stats

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
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
