"""spanvisor: supervise AI agents from the OpenTelemetry spans they already emit.

``SpanvisorSpanProcessor`` and ``SpanvisorSpanExporter`` are imported lazily
so that ``import spanvisor`` stays cheap for code that only needs the events.
"""

from typing import TYPE_CHECKING, Any

from spanvisor.events import (
    Artifact,
    ArtifactAdded,
    Checkpoint,
    ContextWarning,
    Event,
    TaskEvent,
    TaskFinished,
    TaskStarted,
    TaskView,
)

if TYPE_CHECKING:
    from spanvisor.otel.exporter import SpanvisorSpanExporter
    from spanvisor.otel.processor import SpanvisorSpanProcessor

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name == "SpanvisorSpanProcessor":
        from spanvisor.otel.processor import SpanvisorSpanProcessor

        return SpanvisorSpanProcessor
    if name == "SpanvisorSpanExporter":
        from spanvisor.otel.exporter import SpanvisorSpanExporter

        return SpanvisorSpanExporter
    raise AttributeError(name)


__all__ = [
    "Artifact",
    "ArtifactAdded",
    "Checkpoint",
    "ContextWarning",
    "Event",
    "SpanvisorSpanExporter",
    "SpanvisorSpanProcessor",
    "TaskEvent",
    "TaskFinished",
    "TaskStarted",
    "TaskView",
    "__version__",
]
