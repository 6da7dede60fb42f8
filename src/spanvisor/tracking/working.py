"""A task's working fields: the values its next TaskView will show, one
attribute per ``TaskView`` field.

The tracker changes a few of these per event and builds the frozen view only
when an event needs one (:meth:`~.record.TaskRecord.view`). They were a dict
of 32 keyed by field name: at least 832 bytes of table (1.2 KB with the
dict's own header and spare room) in every open task, and a hash lookup per
read. As a slotted class they are 32 pointers (about 290 bytes), and where
mypyc compiles the tracker each read or write is a C field access.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from spanvisor.events import ApprovalRequest, Artifact, Decision, ResultField, Status, TaskView

# TaskView's fields, in its order (tests/core/test_working.py checks it).
WORKING_FIELDS: Final = (
    "task_id",
    "trace_id",
    "root_span_id",
    "agent_id",
    "agent_name",
    "run_id",
    "task_name",
    "repo",
    "branch",
    "pull_request",
    "status",
    "progress",
    "step",
    "steps",
    "message",
    "model",
    "context_tokens",
    "context_limit",
    "input_tokens",
    "output_tokens",
    "artifacts",
    "started_ns",
    "updated_ns",
    "ended_ns",
    "cost_usd",
    "unpriced_calls",
    "budget_usd",
    "budget_tokens",
    "stalled",
    "approvals",
    "decisions",
    "cancel_requested",
    "results",
    "seq",
    "provisional",
    "former_id",
)


class Working:
    """One task's working fields (see the module's docstring)."""

    __slots__ = WORKING_FIELDS

    task_id: str
    trace_id: str
    root_span_id: str
    agent_id: str
    agent_name: str | None
    run_id: str
    task_name: str | None
    repo: str | None
    branch: str | None
    pull_request: str | None
    status: Status
    progress: float | None
    step: str | None
    steps: tuple[str, ...]
    message: str | None
    model: str | None
    context_tokens: int | None
    context_limit: int | None
    input_tokens: int
    output_tokens: int
    artifacts: tuple[Artifact, ...]
    started_ns: int
    updated_ns: int
    ended_ns: int | None
    cost_usd: float
    unpriced_calls: int
    budget_usd: float | None
    budget_tokens: int | None
    stalled: bool
    approvals: tuple[ApprovalRequest, ...]
    decisions: tuple[Decision, ...]
    cancel_requested: bool
    results: tuple[ResultField, ...]
    seq: int
    provisional: bool
    former_id: str | None

    def __init__(self, view: TaskView) -> None:
        self.load(view)

    def load(self, view: TaskView) -> None:
        """Every field back to ``view``'s (a late span's correction starts from the finished view)."""
        self.task_id = view.task_id
        self.trace_id = view.trace_id
        self.root_span_id = view.root_span_id
        self.agent_id = view.agent_id
        self.agent_name = view.agent_name
        self.run_id = view.run_id
        self.task_name = view.task_name
        self.repo = view.repo
        self.branch = view.branch
        self.pull_request = view.pull_request
        self.status = view.status
        self.progress = view.progress
        self.step = view.step
        self.steps = view.steps
        self.message = view.message
        self.model = view.model
        self.context_tokens = view.context_tokens
        self.context_limit = view.context_limit
        self.input_tokens = view.input_tokens
        self.output_tokens = view.output_tokens
        self.artifacts = view.artifacts
        self.started_ns = view.started_ns
        self.updated_ns = view.updated_ns
        self.ended_ns = view.ended_ns
        self.cost_usd = view.cost_usd
        self.unpriced_calls = view.unpriced_calls
        self.budget_usd = view.budget_usd
        self.budget_tokens = view.budget_tokens
        self.stalled = view.stalled
        self.approvals = view.approvals
        self.decisions = view.decisions
        self.cancel_requested = view.cancel_requested
        self.results = view.results
        self.seq = view.seq
        self.provisional = view.provisional
        self.former_id = view.former_id

    def __getitem__(self, name: str) -> Any:
        """A field by name, for readers outside the tracker's hot path."""
        if name not in WORKING_FIELDS:
            raise KeyError(name)
        return getattr(self, name)

    def apply(self, changes: Mapping[str, Any]) -> None:
        """Set the fields ``changes`` names (TaskView field names only)."""
        for name, value in changes.items():
            setattr(self, name, value)  # a name that is no field has no slot: AttributeError

    def as_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in WORKING_FIELDS}


__all__ = ["WORKING_FIELDS", "Working"]
