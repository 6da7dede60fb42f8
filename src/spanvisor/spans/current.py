"""Names the conventions moved to, read side by side with the old ones, and
the readings of frameworks whose spans follow no agent convention.

:mod:`spanvisor.spans.conventions` stays the one place every key is listed
(it imports these); this module holds what is new. Nothing here imports
back.

**OTel GenAI, current names.**

* ``gen_ai.usage.cache_write.input_tokens`` (was ``cache_creation``): both
  are read, the new one first.
* ``handle_conversation_turn``: an agent handling one turn of a
  conversation, an agent operation like ``invoke_agent`` (a task root).
* ``gen_ai.invocation.internal``: an in-process invocation of an agent or
  workflow, where ``invoke_agent``/``invoke_workflow`` spans of kind
  INTERNAL were; read as an agent operation whether it comes as the
  operation's name or as an attribute of an agent span.
* ``gen_ai.main_agent``: true on the agent span of the run's main agent:
  that span names the task, over any sub-agent (:mod:`.tracking.identity`).
* ``gen_ai.workflow.name`` on an ``invoke_workflow`` span naming no agent:
  the span's agent and title (:func:`workflow_name`), so Google ADK's root
  ``invoke_workflow triage`` is the agent ``triage``'s task titled ``triage``
  from its start, not a wrapper a sub-agent could name.
* ``error.type`` on a failed span: its error's type where it records no
  exception event (:mod:`.tracking.outcome`).
* ``user.id`` on an agent span: not read yet (whom a task works for is
  ``agent.owner``, read by the agent helpers).
* A2A: ``a2a.task.state`` on a task's root is the task's state (an explicit
  ``agent.status`` wins); on another span it is the remote agent's, not
  this task's. ``a2a.task.id`` is not the task's id (one A2A task may span
  several runs).
* MCP: a span whose ``mcp.method.name`` is ``tools/call`` (named
  ``{mcp.method.name} {target}``) is a tool step, its tool
  ``gen_ai.tool.name`` or else the span name's target.
* Span events become log events: the facts spanvisor reads from span events
  (checkpoints, artifacts, approvals, exceptions) are accepted as log
  records of the same name on every path (the live channel,
  :data:`LOG_EVENTS`). ``gen_ai.client.inference.operation.details`` holds
  messages, which spanvisor does not read.

**Frameworks with no agent span** (OpenInference):

* A run whose every span is a CHAIN (LlamaIndex's agent workflows): a CHAIN
  span with no parent whose subtree holds a model call (an LLM span) and no
  agent span is the task root (:func:`is_chain_run`; decided at its end, on
  every path, by the tracker's buffer).
* Titles are never method names: a root named ``X.run``, ``X.kickoff``,
  ``X._execute_core`` (a ``Class.method`` or ``role.task.method`` path the
  instrumentation made) is titled without the method (:func:`title`).
* CrewAI's agent spans (AGENT, ``{role}.{task}._execute_core``) name their
  agent in ``graph.node.id`` (the agent's role): read as the agent's name
  when the span names none other.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

# --- OTel GenAI: current names ---------------------------------------------
GEN_AI_CACHE_WRITE_NEW: Final = "gen_ai.usage.cache_write.input_tokens"
OP_CONVERSATION_TURN: Final = "handle_conversation_turn"
INVOCATION_INTERNAL: Final = "gen_ai.invocation.internal"
GEN_AI_MAIN_AGENT: Final = "gen_ai.main_agent"
USER_ID: Final = "user.id"
A2A_TASK_ID: Final = "a2a.task.id"
A2A_TASK_STATE: Final = "a2a.task.state"
MCP_METHOD: Final = "mcp.method.name"
MCP_TOOL_CALL: Final = "tools/call"
# conventions.STATUS (that module imports this one).
_STATUS: Final = "agent.status"
# invoke_workflow's name (Google ADK's root names its root agent only there).
GEN_AI_WORKFLOW_NAME: Final = "gen_ai.workflow.name"
# OTel's class of the error a failed operation ended with ("_OTHER": unknown).
ERROR_TYPE: Final = "error.type"
# OpenInference's graph node: CrewAI writes the agent's role there.
OI_GRAPH_NODE: Final = "graph.node.id"

# Operations that invoke an agent: each may be a task root.
AGENT_OPS: Final = frozenset(
    {"invoke_agent", "invoke_workflow", OP_CONVERSATION_TURN, INVOCATION_INTERNAL, "invocation.internal"}
)

# a2a.task.state (A2A v1 wire names, and the short names older SDKs use) as a task's status.
_A2A_STATUS: Final = {
    "submitted": "starting",
    "working": "working",
    "input_required": "waiting",
    "input-required": "waiting",
    "auth_required": "blocked",
    "auth-required": "blocked",
    "completed": "complete",
    "failed": "error",
    "rejected": "error",
    "canceled": "cancelled",
    "cancelled": "cancelled",
}

# Span-name suffixes an instrumentation makes of a method: never a title.
_METHODS: Final = frozenset(
    {"run", "arun", "kickoff", "kickoff_async", "_execute_core", "execute", "invoke", "ainvoke", "call", "acall"}
)

# Every key this module adds to what the tracker reads on a span with a known key.
READ_KEYS: Final = frozenset(
    {
        GEN_AI_CACHE_WRITE_NEW,
        GEN_AI_WORKFLOW_NAME,
        ERROR_TYPE,
        INVOCATION_INTERNAL,
        GEN_AI_MAIN_AGENT,
        A2A_TASK_STATE,
        MCP_METHOD,
        OI_GRAPH_NODE,
    }
)


def a2a_status(attrs: Mapping[str, Any]) -> str | None:
    """The task status ``a2a.task.state`` says, or None (absent, unknown)."""
    raw = attrs.get(A2A_TASK_STATE)
    if not isinstance(raw, str):
        return None
    v = raw.strip().lower()
    if v.startswith("task_state_"):
        v = v[len("task_state_") :]
    return _A2A_STATUS.get(v)


def with_a2a_status(attrs: Mapping[str, Any]) -> Mapping[str, Any]:
    """A root's attributes with its ``a2a.task.state`` as its ``agent.status``
    when it states none (``attrs`` itself otherwise)."""
    if not attrs or A2A_TASK_STATE not in attrs or _STATUS in attrs:
        return attrs
    status = a2a_status(attrs)
    return attrs if status is None else {**attrs, _STATUS: status}


def is_mcp_tool_call(attrs: Mapping[str, Any]) -> bool:
    return attrs.get(MCP_METHOD) == MCP_TOOL_CALL


def mcp_tool(span_name: str) -> str:
    """The target of a span named ``{mcp.method.name} {target}``."""
    _, _, target = span_name.partition(" ")
    return target or span_name


def is_internal_invocation(attrs: Mapping[str, Any]) -> bool:
    """``gen_ai.invocation.internal`` set true on a span."""
    return attrs.get(INVOCATION_INTERNAL) is True


def is_main_agent(attrs: Mapping[str, Any]) -> bool:
    return attrs.get(GEN_AI_MAIN_AGENT) is True


def is_chain_run(attrs: Mapping[str, Any], parent_id: str | None) -> bool:
    """A CHAIN span with no parent: a framework's top-level run when its
    subtree holds a model call and no agent span (the tracker's buffer
    says; see the module's docstring)."""
    return parent_id is None and attrs.get("openinference.span.kind") == "CHAIN"


def workflow_name(attrs: Mapping[str, Any]) -> Any:
    """An ``invoke_workflow`` span's ``gen_ai.workflow.name``: the agent and the title of a workflow whose
    span names no agent (Google ADK's root), never a wrapper's."""
    return attrs.get(GEN_AI_WORKFLOW_NAME) if attrs.get("gen_ai.operation.name") == "invoke_workflow" else None


def title(span_name: str) -> str:
    """A root's span name as a title: a method path (``FunctionAgent.run``,
    ``triage.diagnose._execute_core``, ``Crew_1.kickoff``) without its method."""
    head, dot, method = span_name.rpartition(".")
    if dot and head and method in _METHODS and " " not in span_name:
        return head
    return span_name


__all__ = [
    "A2A_TASK_ID",
    "A2A_TASK_STATE",
    "AGENT_OPS",
    "ERROR_TYPE",
    "GEN_AI_CACHE_WRITE_NEW",
    "GEN_AI_MAIN_AGENT",
    "GEN_AI_WORKFLOW_NAME",
    "INVOCATION_INTERNAL",
    "MCP_METHOD",
    "OI_GRAPH_NODE",
    "OP_CONVERSATION_TURN",
    "READ_KEYS",
    "USER_ID",
    "a2a_status",
    "is_chain_run",
    "is_internal_invocation",
    "is_main_agent",
    "is_mcp_tool_call",
    "mcp_tool",
    "title",
    "with_a2a_status",
    "workflow_name",
]
