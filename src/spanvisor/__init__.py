"""spanvisor: supervise AI agents from the OpenTelemetry spans they already emit.

Everything here is imported lazily: ``import spanvisor`` stays cheap for the
gate (``spanvisor hook`` answers a coding agent's every tool call, and the
events alone take about 30 ms to import) and for code that needs one part.
"""

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from spanvisor.events import (
        Artifact,
        ArtifactAdded,
        Checkpoint,
        ContextWarning,
        DiffUpdated,
        Event,
        TaskEvent,
        TaskFinished,
        TaskStarted,
        TaskView,
    )
    from spanvisor.otel.exporter import SpanvisorSpanExporter
    from spanvisor.otel.processor import SpanvisorSpanProcessor

__version__ = "0.1.0"

_LAZY = {
    "Artifact": "spanvisor.events",
    "ArtifactAdded": "spanvisor.events",
    "DiffUpdated": "spanvisor.events",
    "Checkpoint": "spanvisor.events",
    "ContextWarning": "spanvisor.events",
    "Event": "spanvisor.events",
    "TaskEvent": "spanvisor.events",
    "TaskFinished": "spanvisor.events",
    "TaskStarted": "spanvisor.events",
    "TaskView": "spanvisor.events",
    "SpanvisorSpanExporter": "spanvisor.otel.exporter",
    "SpanvisorSpanProcessor": "spanvisor.otel.processor",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'spanvisor' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


__all__ = [
    "Artifact",
    "ArtifactAdded",
    "Checkpoint",
    "ContextWarning",
    "DiffUpdated",
    "Event",
    "SpanvisorSpanExporter",
    "SpanvisorSpanProcessor",
    "TaskEvent",
    "TaskFinished",
    "TaskStarted",
    "TaskView",
    "__version__",
]
