"""The span conventions spanvisor reads: the single source of truth.

``docs/reference/conventions.md`` documents every key here (the context windows of
common models are in :mod:`spanvisor.spans.windows`). Keys are matched exactly,
never by prefix: OpenInference owns ``agent.name`` and upstream has an
``agent.threat.detection.*`` namespace, so ``agent.`` is not ours alone. The
one prefix read is ``agent.result.`` (a task's results, on its root only).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final, Literal, get_args

from spanvisor.events import Outcome, Status
from spanvisor.spans import current as now

# --- our keys ---------------------------------------------------------------
AGENT_ID: Final = "agent.id"
AGENT_NAME: Final = "agent.name"  # shared with OpenInference
TASK_ID: Final = "agent.task.id"
TASK_NAME: Final = "agent.task.name"
TASK_ROOT: Final = "agent.task.root_span_id"  # stamped by the processor
REPO: Final = "agent.repo"
# The git branch the task's work is on (display only: the agent can switch it). Read from the root and
# its live records, the last word winning: `spanvisor run` says it at the start and when it changes.
BRANCH: Final = "agent.branch"
# The pull (or merge) request the task's work is in, its web address (display only, like the branch).
# Read from the root and its live records, the last word winning: `spanvisor run` says it once the CLI
# made one (`gh pr create`'s answer in its output).
PULL_REQUEST: Final = "agent.pull_request"
STATUS: Final = "agent.status"
PROGRESS: Final = "agent.progress"
STEP: Final = "agent.step"
STEPS: Final = "agent.steps"
MESSAGE: Final = "agent.message"
CONTEXT_TOKENS: Final = "agent.context.tokens"
CONTEXT_LIMIT: Final = "agent.context.limit"
ARTIFACTS: Final = "agent.artifacts"
BUDGET_USD: Final = "agent.budget.usd"  # a task's budgets (on its root, which carries known keys: READ_KEYS only)
BUDGET_TOKENS: Final = "agent.budget.tokens"
BUDGET_STOP: Final = "agent.budget.stop"  # true: the task's own budget, once reached, cancels it
BUDGET_KEYS: Final = (BUDGET_USD, BUDGET_TOKENS, BUDGET_STOP)
EVENT_CHECKPOINT: Final = "agent.checkpoint"
EVENT_ARTIFACT: Final = "agent.artifact"
EVENT_EXCEPTION: Final = "exception"
# A question to a person, and the agent's note of the answer it read back (docs/reference/interventions.md). The
# request's digest covers the details, the action (canonical JSON of {"tool", "arguments"}) and the agent.
EVENT_APPROVAL_REQUEST: Final = "agent.approval.request"
EVENT_APPROVAL_DECISION: Final = "agent.approval.decision"
APPROVAL_ID: Final = "agent.approval.id"
APPROVAL_QUESTION: Final = "agent.approval.question"
APPROVAL_OPTIONS: Final = "agent.approval.options"
APPROVAL_TIMEOUT_S: Final = "agent.approval.timeout_s"
APPROVAL_DETAILS: Final = "agent.approval.details"
APPROVAL_ACTION: Final = "agent.approval.action"
APPROVAL_AGENT: Final = "agent.approval.agent_id"
APPROVAL_APPROVERS: Final = "agent.approval.approvers_required"
APPROVAL_REQUESTER: Final = "agent.approval.requester"
APPROVAL_PERMIT_KEY: Final = "agent.approval.permit_key_sha256"  # sha256 of the asker's secret: only it consumes
APPROVAL_FROM: Final = "agent.approval.approvers_from"  # whose approvals count: "group:sre", "alice"
# Whom an agent works for (task or resource attribute): the default requester.
OWNER: Final = "agent.owner"
# spanvisor run's word on its task (tracking/launcherend.py): the SHA-256 of the session's secret on the task's
# start record, and the secret itself on the root's end; a root end of such a task without it is only a claim.
SESSION_KEY: Final = "agent.session.key"
SESSION_PROOF: Final = "agent.session.proof"
# On the decision event: approve, reject or timed_out; and who decided.
APPROVAL_OUTCOME: Final = "agent.approval.outcome"
APPROVAL_DECIDED_BY: Final = "agent.approval.decided_by"
# The shipped gateway Collector's routing key (collector-config/gateway.yaml):
# the trace id as text on every span and record, so a task's spans and records
# reach one replica. Nobody's fact: the receiver reads it nowhere.
ROUTE: Final = "spanvisor.route"
# The live channel (spans/live.py): what an agent says of its open root as log records (by event.name).
LIVE_TASK_START: Final = "agent.task.start"
LIVE_TASK_UPDATE: Final = "agent.task.update"
LIVE_HEARTBEAT: Final = "agent.task.heartbeat"
# agent.result.<name> on the root: a result (number, string, boolean); ….unit: its unit.
RESULT_PREFIX: Final = "agent.result."
RESULT_UNIT_SUFFIX: Final = ".unit"
# Attributes of an agent.artifact event.
ARTIFACT_NAME: Final = "agent.artifact.name"
ARTIFACT_URI: Final = "agent.artifact.uri"
ARTIFACT_KIND: Final = "agent.artifact.kind"
# A task's work as a unified diff (spanvisor run's, of the session's working
# tree: tracking/diffs.py): the whole diff each time, the newest wins.
EVENT_DIFF: Final = "agent.diff"
DIFF_TEXT: Final = "agent.diff.text"
DIFF_FILES: Final = "agent.diff.files"  # files it covers, shown or not
DIFF_CLIPPED: Final = "agent.diff.clipped"  # true: files were left out to keep it within its bound

# The values of agent.status and of a finished task's outcome (defined by spanvisor.events).
STATUSES: Final[tuple[str, ...]] = get_args(Status)
OUTCOMES: Final[tuple[str, ...]] = get_args(Outcome)

# --- OTel GenAI ------------------------------------------------------------
GEN_AI_OPERATION: Final = "gen_ai.operation.name"
GEN_AI_AGENT_ID: Final = "gen_ai.agent.id"
GEN_AI_AGENT_NAME: Final = "gen_ai.agent.name"
GEN_AI_REQUEST_MODEL: Final = "gen_ai.request.model"
GEN_AI_RESPONSE_MODEL: Final = "gen_ai.response.model"
GEN_AI_PROVIDER: Final = "gen_ai.provider.name"
GEN_AI_SYSTEM: Final = "gen_ai.system"  # the pre-1.37 name of the provider
GEN_AI_INPUT: Final = "gen_ai.usage.input_tokens"
GEN_AI_OUTPUT: Final = "gen_ai.usage.output_tokens"
GEN_AI_PROMPT_OLD: Final = "gen_ai.usage.prompt_tokens"  # pre-1.28
GEN_AI_COMPLETION_OLD: Final = "gen_ai.usage.completion_tokens"  # pre-1.28
GEN_AI_CONVERSATION: Final = "gen_ai.conversation.id"
GEN_AI_CACHE_READ: Final = "gen_ai.usage.cache_read.input_tokens"
GEN_AI_CACHE_WRITE: Final = "gen_ai.usage.cache_creation.input_tokens"
# A cost an instrumentation already computed, in US dollars (preferred to ours).
GEN_AI_COST: Final = "gen_ai.usage.cost"
# Pydantic AI's price of the call (from genai-prices, with the provider it knows).
OPERATION_COST: Final = "operation.cost"
GEN_AI_TOOL_NAME: Final = "gen_ai.tool.name"
# create_agent only creates an agent (often remote): not a task, or every creation would open one.
GEN_AI_AGENT_OPS: Final = now.AGENT_OPS  # invoke_agent, invoke_workflow and the current names
GEN_AI_MODEL_OPS: Final = frozenset({"chat", "text_completion", "generate_content", "embeddings"})

# --- OpenInference ----------------------------------------------------------
OI_KIND: Final = "openinference.span.kind"
OI_PROMPT: Final = "llm.token_count.prompt"
OI_COMPLETION: Final = "llm.token_count.completion"
OI_TOTAL: Final = "llm.token_count.total"
OI_MODEL: Final = "llm.model_name"
OI_PROVIDER: Final = "llm.provider"
OI_SESSION: Final = "session.id"
OI_CACHE_READ: Final = "llm.token_count.prompt_details.cache_read"
OI_CACHE_WRITE: Final = "llm.token_count.prompt_details.cache_write"
OI_COST: Final = "llm.cost.total"
OI_TOOL_NAME: Final = "tool.name"
# LangChain's run metadata (JSON): a LangGraph graph run, the agent's run, is a
# CHAIN whose metadata names LangGraph and no node (its nodes' spans do).
OI_METADATA: Final = "metadata"

# --- OpenLLMetry / Traceloop -------------------------------------------------
TL_KIND: Final = "traceloop.span.kind"
TL_ENTITY: Final = "traceloop.entity.name"
TL_TOTAL_OLD: Final = "llm.usage.total_tokens"
TL_PROMPT_OLD: Final = "llm.usage.prompt_tokens"  # older OpenLLMetry versions
TL_COMPLETION_OLD: Final = "llm.usage.completion_tokens"
# Where OpenLLMetry's LangChain spans keep the model they call "unknown".
TL_LS_MODEL: Final = "traceloop.association.properties.ls_model_name"

SERVICE_NAME: Final = "service.name"

# Every key the tracker reads. A span with none of them (and no stamp) is skipped at once: most spans.
KNOWN_KEYS: Final = frozenset(
    {
        AGENT_ID,
        AGENT_NAME,
        TASK_ID,
        TASK_NAME,
        TASK_ROOT,
        REPO,
        BRANCH,
        PULL_REQUEST,
        STATUS,
        PROGRESS,
        STEP,
        STEPS,
        MESSAGE,
        CONTEXT_TOKENS,
        CONTEXT_LIMIT,
        ARTIFACTS,
        GEN_AI_OPERATION,
        GEN_AI_AGENT_ID,
        GEN_AI_AGENT_NAME,
        GEN_AI_REQUEST_MODEL,
        GEN_AI_RESPONSE_MODEL,
        GEN_AI_INPUT,
        GEN_AI_OUTPUT,
        GEN_AI_PROMPT_OLD,
        GEN_AI_COMPLETION_OLD,
        OI_KIND,
        OI_PROMPT,
        OI_COMPLETION,
        OI_TOTAL,
        OI_MODEL,
        TL_KIND,
        TL_ENTITY,
        TL_TOTAL_OLD,
        TL_PROMPT_OLD,
        TL_COMPLETION_OLD,
    }
)
KNOWN_EVENTS: Final = frozenset(
    {EVENT_CHECKPOINT, EVENT_ARTIFACT, EVENT_APPROVAL_REQUEST, EVENT_APPROVAL_DECISION, EVENT_DIFF}
)
# What spans say in events and agents may say as log records of the same name instead (spans/current.py).
LOG_EVENTS: Final = KNOWN_EVENTS | {EVENT_EXCEPTION}
# Every event.name a log record of the live channel may carry.
LIVE_EVENTS: Final = LOG_EVENTS | frozenset({LIVE_TASK_START, LIVE_TASK_UPDATE, LIVE_HEARTBEAT})
# The keys of a task's state (tracking/fields.py says which value wins).
STATE_KEYS: Final = (PROGRESS, STEP, STEPS, MESSAGE, STATUS, CONTEXT_LIMIT, CONTEXT_TOKENS)
# What the processor stamps on every span of a task (a span with only these needs no copy).
STAMP_KEYS: Final = frozenset({TASK_ROOT, TASK_ID, AGENT_ID, TASK_NAME})
CONTENT_KEYS: Final = KNOWN_KEYS - STAMP_KEYS

Role = Literal["task", "agent", "model", "other"]


def role(attrs: Mapping[str, Any]) -> Role:
    """What a span is, from its attributes alone: ``task`` (our task keys) or ``agent`` (an agent span
    of a standard convention), either a possible root; ``model`` (a counted model call); ``other``."""
    if TASK_NAME in attrs or TASK_ID in attrs:
        return "task"
    if is_agent_span(attrs):
        return "agent"
    if is_model_call(attrs):
        return "model"
    return "other"


def is_agent_span(attrs: Mapping[str, Any]) -> bool:
    """An agent span in one of the standard conventions (our stamps aside)."""
    kind = attrs.get(OI_KIND)
    return (
        attrs.get(GEN_AI_OPERATION) in GEN_AI_AGENT_OPS
        or kind == "AGENT"
        or now.is_internal_invocation(attrs)
        or attrs.get(TL_KIND) == "agent"
        or (kind == "CHAIN" and is_langgraph_run(attrs.get(OI_METADATA)))
    )


def is_langgraph_run(metadata: Any) -> bool:
    return (
        metadata.__class__ is str and '"ls_integration": "langgraph"' in metadata and '"langgraph_node"' not in metadata
    )


def is_model_call(attrs: Mapping[str, Any]) -> bool:
    """A model call whose token usage counts, whatever stamps it carries (an
    agent, chain or tool span's tokens are its calls' totals: smolagents)."""
    op = attrs.get(GEN_AI_OPERATION)
    kind = attrs.get(OI_KIND)
    if op in GEN_AI_MODEL_OPS or kind == "LLM":
        return True
    if op in NOT_MODEL_OPS or kind in OI_NOT_MODEL_KINDS or attrs.get(TL_KIND) in TL_NOT_MODEL_KINDS:
        return False
    return any(k in attrs for k in (GEN_AI_INPUT, GEN_AI_PROMPT_OLD, OI_PROMPT, TL_TOTAL_OLD, TL_PROMPT_OLD))


# Spans whose token counts, if any, are totals of the model calls beneath them.
NOT_MODEL_OPS: Final = GEN_AI_AGENT_OPS | {"create_agent", "execute_tool"}
OI_NOT_MODEL_KINDS: Final = frozenset({"AGENT", "CHAIN", "TOOL"})
TL_NOT_MODEL_KINDS: Final = frozenset({"agent", "workflow", "task", "tool"})


def is_tool_call(attrs: Mapping[str, Any]) -> bool:
    """A tool the agent ran: a step of its task (name, duration, error); an MCP ``tools/call`` too."""
    op, kind, tl = attrs.get(GEN_AI_OPERATION), attrs.get(OI_KIND), attrs.get(TL_KIND)
    return op == "execute_tool" or kind == "TOOL" or tl == "tool" or now.is_mcp_tool_call(attrs)


def tool_name(attrs: Mapping[str, Any], span_name: str) -> Any:
    named = first(attrs, GEN_AI_TOOL_NAME, OI_TOOL_NAME, TL_ENTITY)
    return named or (now.mcp_tool(span_name) if now.is_mcp_tool_call(attrs) else span_name)


# Model calls whose tokens count but that hold no conversation: their prompt is not the agent's
# context, so they never change its occupancy.
NO_CONVERSATION_OPS: Final = frozenset({"embeddings", "rerank", "retrieval"})
TL_REQUEST_TYPE: Final = "llm.request.type"  # OpenLLMetry: chat, completion, embedding, rerank

# Every key the tracker reads on a span that has a known key: a decoder that keeps only these loses nothing
# (a model call's conversation, provider, cache and cost keys; the budgets on a root; the current names of
# spans/current.py). KNOWN_KEYS alone decides whether a span matters (the Collector filter lists those).
READ_KEYS: Final = (
    KNOWN_KEYS
    | now.READ_KEYS
    | frozenset(
        {
            GEN_AI_CONVERSATION,
            TL_REQUEST_TYPE,
            GEN_AI_PROVIDER,
            GEN_AI_SYSTEM,
            OI_PROVIDER,
            GEN_AI_CACHE_READ,
            GEN_AI_CACHE_WRITE,
            OI_CACHE_READ,
            OI_CACHE_WRITE,
            GEN_AI_COST,
            OI_COST,
            OPERATION_COST,
            GEN_AI_TOOL_NAME,
            OI_TOOL_NAME,
            OI_METADATA,
            TL_LS_MODEL,
            # Which session opened an approval request, so only it may withdraw it
            # (tracking/openers.py): kept on every path, or the processor's spans
            # would claim no session where the exporter's claim one.
            OI_SESSION,
            *BUDGET_KEYS,
            # spanvisor run's word on its task (its start record's key, its end's proof): kept on every path,
            # or the receiver's decoder would drop it.
            SESSION_KEY,
            SESSION_PROOF,
        }
    )
)
# A span carrying one of these (or a result, ``agent.result.*``) is read whole on every path; one carrying
# only stamps keeps only its stamps (pipeline/sdkspans.py). Derived from READ_KEYS, so a key the tracker
# starts to read reaches it on every path (tests/core/test_every_key.py checks it reads nothing else).
FULL_READ_KEYS: Final = READ_KEYS - STAMP_KEYS
# What names a task and its agent and makes a span a task root: set when the root starts and true for
# the whole task. The processor keeps these as the root started, for a root whose limit drops them later.
IDENTITY_KEYS: Final = (
    TASK_NAME,
    TASK_ID,
    TASK_ROOT,
    AGENT_ID,
    AGENT_NAME,
    GEN_AI_AGENT_ID,
    GEN_AI_AGENT_NAME,
    GEN_AI_OPERATION,
    OI_KIND,
    TL_KIND,
    TL_ENTITY,
    REPO,
    *BUDGET_KEYS,
)
# Attributes of span events (checkpoints, artifacts, approvals, diffs), read from the
# event, never from a span's attributes: every path keeps a known event whole.
EVENT_KEYS: Final = frozenset(
    {
        ARTIFACT_NAME,
        ARTIFACT_URI,
        ARTIFACT_KIND,
        APPROVAL_ID,
        APPROVAL_QUESTION,
        APPROVAL_OPTIONS,
        APPROVAL_TIMEOUT_S,
        APPROVAL_DETAILS,
        APPROVAL_ACTION,
        APPROVAL_AGENT,
        APPROVAL_APPROVERS,
        APPROVAL_REQUESTER,
        APPROVAL_PERMIT_KEY,
        APPROVAL_FROM,
        APPROVAL_OUTCOME,
        APPROVAL_DECIDED_BY,
        DIFF_TEXT,
        DIFF_FILES,
        DIFF_CLIPPED,
    }
)


def holds_conversation(attrs: Mapping[str, Any]) -> bool:
    """A model call whose prompt is an agent's context (chat, completion), not
    an embeddings or rerank call."""
    if attrs.get(GEN_AI_OPERATION) in NO_CONVERSATION_OPS:
        return False
    return attrs.get(TL_REQUEST_TYPE) not in ("embedding", "embeddings", "rerank")


def provider(attrs: Mapping[str, Any]) -> Any:
    return first(attrs, GEN_AI_PROVIDER, GEN_AI_SYSTEM, OI_PROVIDER)


def cache_usage(attrs: Mapping[str, Any]) -> tuple[Any, Any]:
    """Raw (cache read, cache write) input tokens, part of the input tokens."""
    write = first(attrs, now.GEN_AI_CACHE_WRITE_NEW, GEN_AI_CACHE_WRITE, OI_CACHE_WRITE)
    return first(attrs, GEN_AI_CACHE_READ, OI_CACHE_READ), write


def reported_cost(attrs: Mapping[str, Any]) -> Any:
    return first(attrs, OI_COST, GEN_AI_COST, OPERATION_COST)


def is_root_candidate(attrs: Mapping[str, Any]) -> bool:
    return TASK_NAME in attrs or TASK_ID in attrs or is_agent_span(attrs)


def has_known_key(attrs: Mapping[str, Any]) -> bool:
    # Iterate the smaller side: most spans carry a handful of attributes.
    if len(attrs) < len(KNOWN_KEYS):
        return any(k in KNOWN_KEYS for k in attrs)
    return any(k in attrs for k in KNOWN_KEYS)


def first(attrs: Mapping[str, Any], *keys: str) -> Any:
    for k in keys:
        v = attrs.get(k)
        if v is not None and v != "":
            return v
    return None


def agent_name(attrs: Mapping[str, Any]) -> Any:
    named = first(attrs, AGENT_NAME, GEN_AI_AGENT_NAME, TL_ENTITY)  # else CrewAI's role, or a workflow's name
    if named is None:
        return first(attrs, now.OI_GRAPH_NODE) if attrs.get(OI_KIND) == "AGENT" else now.workflow_name(attrs)
    return named


def agent_id(attrs: Mapping[str, Any]) -> Any:
    """``agent.id``; else, only on a span naming no agent, ``gen_ai.agent.id`` (per object in Semantic Kernel)."""
    named = first(attrs, AGENT_NAME, GEN_AI_AGENT_NAME)
    return first(attrs, AGENT_ID) or (None if named else first(attrs, GEN_AI_AGENT_ID))


def task_name(attrs: Mapping[str, Any], span_name: str) -> Any:
    named = first(attrs, TASK_NAME)
    return named or ((now.workflow_name(attrs) or now.title(span_name)) if is_agent_span(attrs) else None)


def model_name(attrs: Mapping[str, Any]) -> Any:
    found = first(attrs, GEN_AI_RESPONSE_MODEL, GEN_AI_REQUEST_MODEL, OI_MODEL)
    return (first(attrs, TL_LS_MODEL) or found) if found == "unknown" else found


def usage(attrs: Mapping[str, Any]) -> tuple[Any, Any]:
    """Raw (input, output) token counts of a model call, in any convention.

    GenAI's input tokens already include cached ones. Values are unchecked:
    the caller sanitises them.
    """
    return (
        first(attrs, GEN_AI_INPUT, GEN_AI_PROMPT_OLD, OI_PROMPT, TL_PROMPT_OLD),
        first(attrs, GEN_AI_OUTPUT, GEN_AI_COMPLETION_OLD, OI_COMPLETION, TL_COMPLETION_OLD),
    )
