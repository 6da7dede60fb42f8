"""Domain events: what the tracker makes of spans, and all a sink ever sees.

Every event is frozen and carries a :class:`TaskView`, the whole state of its
task as of that event, so a sink can render or upsert from any single event
without remembering earlier ones (a restarted sink or another replica has no
memory). ``event_id`` is derived from the spans that caused the event, never
from a clock or a counter, so replaying the same spans yields the same ids and
sinks stay idempotent by keying on it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, TypeAlias, get_args

from spanvisor.ids import question_digest, run_id_of, stable_id

Status = Literal[
    "starting",
    "working",
    "waiting",
    "blocked",
    "awaiting_approval",
    "context_warning",
    "error",
    "complete",
    "cancelled",
    "lost",
    "evicted",
]
# lost: no sign of life for SPANVISOR_LOST_AFTER (its agent died), so spanvisor finished it; evicted:
# dropped for capacity (SPANVISOR_MAX_OPEN_TASKS), its agent may still be working.
Outcome = Literal["complete", "error", "cancelled", "lost", "evicted"]
# The statuses a task ends in: every sink's one test for "finished".
TERMINAL: frozenset[str] = frozenset(get_args(Outcome))
WarningLevel = Literal["warning", "critical"]
# What a budget covers: this task, its agent today, everything today or this month.
BudgetScope = Literal["task", "agent_day", "day", "month"]
BudgetUnit = Literal["usd", "tokens"]
# What a person can do to a task (docs/reference/interventions.md).
Action = Literal["approve", "reject", "cancel", "retry", "acknowledge"]
# applied: recorded and in force; denied: refused (not an approver, decided already …), audited only.
InterventionOutcome = Literal["applied", "denied"]


@dataclass(frozen=True, slots=True)
class Artifact:
    name: str
    uri: str | None = None
    kind: str | None = None


@dataclass(frozen=True, slots=True)
class ApprovalRequest:
    """An open question to a person (span event ``agent.approval.request``)."""

    approval_id: str
    question: str
    options: tuple[str, ...] = ("approve", "reject")
    timeout_s: float | None = None
    requested_ns: int = 0
    # canonical.approval_digest of all a person is shown (older records: question_digest). The agent
    # the request names, more text, and the action it asks to run (canonical JSON of {"tool", "arguments"}).
    digest: str = ""
    agent: str = ""
    details: str | None = None
    action: str | None = None
    # Distinct verified people who must approve, who asked (never one of them), the SHA-256 of the
    # asker's secret (only it consumes the approval), and whose approvals count ("group:sre", "alice";
    # empty: anyone's): none is in the digest (the server may raise the first and set the last).
    approvers: int = 1
    requester: str | None = None
    permit_key: str | None = None
    approvers_from: tuple[str, ...] = ()
    # The central policy's version the request was judged under ("acme@7c1e9a2b40d3"), the rule that set what
    # it needs (a central rule, or "request" / the hook's local rule when it asked more), and, when a central
    # rule denies it, why (no one may approve it then). None is in the digest.
    policy_version: str | None = None
    required_by: str | None = None
    policy_denied: str | None = None


@dataclass(frozen=True, slots=True)
class Decision:
    """One person's action on a task: the record that the control log keeps,
    agents read back and every sink shows. ``intervention_id`` is stable for
    one click (derived from the Slack payload or the caller's request), so a
    replayed or twice-delivered click is recorded once."""

    intervention_id: str
    task_id: str
    action: Action
    actor_id: str
    time_ns: int
    approval_id: str | None = None
    actor_name: str | None = None
    comment: str | None = None
    source: str = "api"  # where it came from: "slack", "cli", "api"
    # The run it applies to (run_id_of the task's root); "" until resolved:
    # the pipeline names the latest run of the task id before recording.
    run_id: str = ""
    # The digest of the question the decider was shown (approve and reject);
    # None: the caller showed none, and the open request's is taken.
    digest: str | None = None
    verified: bool = False  # who decided was proven (Slack's signed user, their own token), not claimed
    # The person it is proven to be (their token, their provider's token, a Slack user the deciders file
    # names): one person whatever the channel. An approve with edited arguments: the action approved
    # instead (canonical JSON, same tool). A decision a standing grant made names the grant.
    person: str | None = None
    edited: str | None = None
    grant_id: str | None = None
    # The groups proven for the decider, how they were proven (token, oidc, slack), and an approve that
    # broke glass: decided alone by a member of SPANVISOR_BREAK_GLASS_GROUP, its reason the comment.
    groups: tuple[str, ...] = ()
    proof: str | None = None
    break_glass: bool = False


@dataclass(frozen=True, slots=True)
class ResultField:
    """A result the task reports (``agent.result.<name>`` on its root)."""

    name: str
    value: float | int | str | bool
    unit: str | None = None


@dataclass(frozen=True, slots=True)
class LogLine:
    """One of a task's last log records (OpenTelemetry logs), already redacted."""

    time_ns: int
    level: str
    message: str
    logger: str | None = None


@dataclass(frozen=True, slots=True)
class TaskView:
    """A task's state as of one event."""

    task_id: str
    trace_id: str
    root_span_id: str
    agent_id: str
    agent_name: str | None = None
    run_id: str = ""  # run_id_of(trace_id, root_span_id): a reused task id is a new run (ids, decisions)
    task_name: str | None = None
    repo: str | None = None
    branch: str | None = None  # the git branch its work is on, as the root last said (agent.branch)
    pull_request: str | None = None  # its pull request's web address, as the root last said (agent.pull_request)
    status: Status = "starting"
    progress: float | None = None
    step: str | None = None
    steps: tuple[str, ...] = ()
    message: str | None = None
    model: str | None = None
    context_tokens: int | None = None
    context_limit: int | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    artifacts: tuple[Artifact, ...] = ()
    started_ns: int = 0
    updated_ns: int = 0
    ended_ns: int | None = None
    # Estimated cost of the priced model calls in US dollars (genai-prices or the
    # instrumentation's figure); calls without a known price: unpriced_calls.
    cost_usd: float = 0.0
    unpriced_calls: int = 0
    budget_usd: float | None = None  # the task's budget (agent.budget.* on the root, else its agent's)
    budget_tokens: int | None = None
    stalled: bool = False  # no span activity for the agent's stall time (TaskStalled) until TaskResumed
    approvals: tuple[ApprovalRequest, ...] = ()  # not yet decided: while any is open, awaiting_approval
    # The task's few recent decisions, oldest first ("Approved by @alice · 12:03").
    decisions: tuple[Decision, ...] = ()
    cancel_requested: bool = False  # someone asked the task to stop; the agent decides when
    results: tuple[ResultField, ...] = ()  # agent.result.<name> on the root, in the order first seen
    # +1 per event of the task leaving the tracker; sinks keep the highest (no ties, no skew).
    seq: int = 0
    # Opened before its root arrived: title and agent a stand-in until it does (conventions.md).
    provisional: bool = False
    # The id this run was shown under before its root named its own (agent.task.id): a provisional
    # task's derived "<trace>-<span>" id. Set on every view from the rename on; a sink moves what it
    # keeps under (former_id, run_id) to (task_id, run_id). None: the task was never known by another id.
    former_id: str | None = None

    @property
    def context_ratio(self) -> float | None:
        if self.context_tokens is None or not self.context_limit:
            return None
        return self.context_tokens / self.context_limit

    @property
    def step_index(self) -> int | None:
        if self.step is None or self.step not in self.steps:
            return None
        return self.steps.index(self.step)


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskEvent:
    event_id: str
    time_ns: int
    task: TaskView
    # Why input was clamped or truncated on the way in, e.g.
    # "agent.progress: 140 clamped to 100". Empty for clean input.
    notes: tuple[str, ...] = ()

    @property
    def task_id(self) -> str:
        return self.task.task_id

    @property
    def kind(self) -> str:
        return type(self).__name__


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskStarted(TaskEvent):
    pass


CheckpointSource = Literal["event", "state", "model_call", "tool_call", "span"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Checkpoint(TaskEvent):
    """The task moved: an ``agent.checkpoint`` event, a change of progress,
    step, message or status, a model call that changed token usage, or a
    tool call that ended (``attributes``: ``tool``, ``duration_s``, ``error``)."""

    source: CheckpointSource = "event"
    # Fields that changed with this checkpoint, e.g. ("progress", "step").
    changed: tuple[str, ...] = ()
    # Extra attributes of the checkpoint event (sanitised, JSON-safe).
    attributes: dict[str, object] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class ContextWarning(TaskEvent):
    level: WarningLevel
    threshold: float
    ratio: float
    tokens: int
    limit: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ContextForecast(TaskEvent):
    """At the rate of its recent calls, the task's fullest conversation will
    pass ``threshold`` in about ``calls`` more calls (``eta_s`` seconds): said
    once, before the crossing."""

    threshold: float
    ratio: float
    tokens: int
    limit: int
    calls: int
    eta_s: float | None


@dataclass(frozen=True, slots=True, kw_only=True)
class BudgetWarning(TaskEvent):
    """Spending passed ``level`` (e.g. 0.8, 1.0) of a ``budget``: once per
    crossing per scope (and per day or month for those scopes)."""

    scope: BudgetScope
    unit: BudgetUnit
    level: float
    used: float
    budget: float
    # "agent:day" for scope agent_day ("rivet:2026-11-22"), the day or the
    # month for those scopes ("2026-11-22", "2026-11"), empty for a task.
    subject: str = ""
    # The task's own budget reached with stopping asked for: the task is cancelled (docs/design/budgets.md).
    stops: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskStalled(TaskEvent):
    """A running task showed no span activity for ``idle_s`` seconds."""

    idle_s: float


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskResumed(TaskEvent):
    """A stalled task shows activity again, after ``idle_s`` seconds."""

    idle_s: float


@dataclass(frozen=True, slots=True, kw_only=True)
class ArtifactAdded(TaskEvent):
    artifact: Artifact


@dataclass(frozen=True, slots=True, kw_only=True)
class DiffUpdated(TaskEvent):
    """The task's work as a unified diff, whole (the newest replaces the
    last): secrets redacted, clipped at a file's end to its bound."""

    diff: str
    files: int  # files the diff covers, shown or not
    clipped: bool  # some files were left out (the bound)
    digest: str  # sha256 of ``diff``: the same diff said twice is one


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskFinished(TaskEvent):
    outcome: Outcome
    duration_s: float
    error_type: str | None = None
    error_message: str | None = None
    stacktrace: str | None = None
    # How the task stands against its agent's recent ones, e.g. "3.4x this
    # agent's usual cost" (budgets/outliers.py); empty when usual.
    outliers: tuple[str, ...] = ()
    # The task's last log records (OpenTelemetry logs with its trace id), oldest
    # first, bounded: the story of a failure.
    log_tail: tuple[LogLine, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskCorrected(TaskEvent):
    """A span of a finished task arrived: the late-span rule (docs/reference/conventions.md).
    ``task`` is the finished view, totals corrected; ``added_*`` say what the span
    added. One that ended before its root and arrived after it (``arrived_late``)
    brings ``facts``: the events it would have caused, each with its own id, time
    and view. Only TaskCorrected follows TaskFinished; its id derives from the span."""

    span_id: str
    added_input_tokens: int = 0
    added_output_tokens: int = 0
    added_cost_usd: float = 0.0
    added_unpriced_calls: int = 0
    added_artifacts: tuple[Artifact, ...] = ()
    arrived_late: bool = False
    facts: tuple[TaskEvent, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class HumanIntervention(TaskEvent):
    """A person acted on the task, or tried to and was refused (``outcome="denied"``,
    with the ``reason``). ``event_id`` is the decision's intervention id. ``task`` is
    the view after the decision where this process tracks the task; else (finished
    and forgotten, another replica's) only ids, ``known`` False: sinks leave it alone."""

    decision: Decision
    outcome: InterventionOutcome = "applied"
    reason: str | None = None
    known: bool = True
    # The request it answers (approve, reject) as the decider saw it; else None.
    request: ApprovalRequest | None = None
    # Why it was refused (outcome "denied"), as a code: spanvisor.control.runs.RefusalCode.
    code: str | None = None
    # An approve of a request several people must approve: "1 of 2"; 0: one decides.
    votes: int = 0
    votes_needed: int = 0


Event: TypeAlias = (
    TaskStarted
    | Checkpoint
    | ContextWarning
    | ContextForecast
    | BudgetWarning
    | TaskStalled
    | TaskResumed
    | ArtifactAdded
    | DiffUpdated
    | TaskFinished
    | TaskCorrected
    | HumanIntervention
)

__all__ = [
    "Action",
    "ApprovalRequest",
    "Artifact",
    "ArtifactAdded",
    "BudgetScope",
    "BudgetUnit",
    "BudgetWarning",
    "Checkpoint",
    "CheckpointSource",
    "ContextForecast",
    "ContextWarning",
    "Decision",
    "DiffUpdated",
    "Event",
    "HumanIntervention",
    "InterventionOutcome",
    "LogLine",
    "Outcome",
    "ResultField",
    "Status",
    "TaskCorrected",
    "TaskEvent",
    "TaskFinished",
    "TaskResumed",
    "TaskStalled",
    "TaskStarted",
    "TaskView",
    "WarningLevel",
    "question_digest",
    "run_id_of",
    "stable_id",
]
