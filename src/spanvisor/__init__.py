"""spanvisor: supervise AI agents from the OpenTelemetry spans they already emit."""

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

__version__ = "0.1.0"

__all__ = [
    "Artifact",
    "ArtifactAdded",
    "Checkpoint",
    "ContextWarning",
    "Event",
    "TaskEvent",
    "TaskFinished",
    "TaskStarted",
    "TaskView",
    "__version__",
]
