"""Events to JSON-safe dicts and back, losslessly.

The outboxes store events as JSON, ``--json`` outputs print them and the
receiver may take them over the wire, so one codec serves all three. The
dict is plain JSON (str keys; str, int, float, bool, None, list, dict
values) and ``event_from_dict(event_to_dict(e)) == e`` for every event.
Decoding checks types and raises :class:`CodecError` naming the field, since
the input may come from disk written by another version or from a client.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

from spanvisor.events import (
    ApprovalRequest,
    Artifact,
    ArtifactAdded,
    BudgetWarning,
    Checkpoint,
    ContextForecast,
    ContextWarning,
    Decision,
    DiffUpdated,
    Event,
    HumanIntervention,
    LogLine,
    ResultField,
    TaskCorrected,
    TaskFinished,
    TaskResumed,
    TaskStalled,
    TaskStarted,
    TaskView,
)

# Bumped when the dict shape changes incompatibly; decoders reject the unknown.
CODEC_VERSION = 1

EVENT_TYPES: dict[str, type[Any]] = {
    cls.__name__: cls
    for cls in (
        TaskStarted,
        Checkpoint,
        ContextWarning,
        ContextForecast,
        BudgetWarning,
        TaskStalled,
        TaskResumed,
        ArtifactAdded,
        DiffUpdated,
        TaskFinished,
        TaskCorrected,
        HumanIntervention,
    )
}


class CodecError(ValueError):
    pass


def artifact_to_dict(a: Artifact) -> dict[str, Any]:
    return {"name": a.name, "uri": a.uri, "kind": a.kind}


def plain_value(value: Any) -> Any:
    """A value object (or a tuple of them) as JSON-safe dicts and lists."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain_value(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, tuple | list):
        return [plain_value(x) for x in value]
    return value


def _view_to_dict(v: TaskView) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in dataclasses.fields(v):
        value = getattr(v, f.name)
        if f.name in ("provisional", "former_id"):
            if value:  # only when set: every other view's JSON stays as it was
                out[f.name] = value
            continue
        if f.name == "artifacts":
            value = [artifact_to_dict(a) for a in value]
        elif f.name == "steps":
            value = list(value)
        elif f.name in _VIEW_ITEMS:
            value = plain_value(value)
        out[f.name] = value
    return out


def event_to_dict(event: Event) -> dict[str, Any]:
    """A JSON-safe dict; ``kind`` names the event class."""
    out: dict[str, Any] = {"v": CODEC_VERSION, "kind": type(event).__name__}
    for f in dataclasses.fields(event):
        value = getattr(event, f.name)
        if f.name == "task":
            value = _view_to_dict(value)
        elif f.name == "artifact":
            value = artifact_to_dict(value)
        elif f.name == "added_artifacts":
            value = [artifact_to_dict(a) for a in value]
        elif f.name in ("decision", "log_tail", "request"):
            value = plain_value(value)
        elif f.name in ("notes", "changed", "outliers"):
            value = list(value)
        elif f.name == "attributes":
            value = dict(value)
        elif f.name == "facts":  # TaskCorrected: the events a late span would have caused
            value = [event_to_dict(x) for x in value]
        out[f.name] = value
    return out


# --- decoding ----------------------------------------------------------------


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_num(x: Any) -> bool:
    return (isinstance(x, int | float)) and not isinstance(x, bool)


def _opt(check: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda x: x is None or check(x)


def _is_str(x: Any) -> bool:
    return isinstance(x, str)


def _str_list(x: Any) -> bool:
    return isinstance(x, list) and all(isinstance(s, str) for s in x)


_VIEW_CHECKS: dict[str, Callable[[Any], bool]] = {
    "task_id": _is_str,
    "trace_id": _is_str,
    "root_span_id": _is_str,
    "agent_id": _is_str,
    "agent_name": _opt(_is_str),
    "run_id": _is_str,
    "task_name": _opt(_is_str),
    "repo": _opt(_is_str),
    "branch": _opt(_is_str),
    "pull_request": _opt(_is_str),
    "status": _is_str,
    "progress": _opt(_is_num),
    "step": _opt(_is_str),
    "steps": _str_list,
    "message": _opt(_is_str),
    "model": _opt(_is_str),
    "context_tokens": _opt(_is_int),
    "context_limit": _opt(_is_int),
    "input_tokens": _is_int,
    "output_tokens": _is_int,
    "artifacts": lambda x: isinstance(x, list),
    "started_ns": _is_int,
    "updated_ns": _is_int,
    "ended_ns": _opt(_is_int),
    "seq": _is_int,
    "cost_usd": _is_num,
    "unpriced_calls": _is_int,
    "budget_usd": _opt(_is_num),
    "budget_tokens": _opt(_is_int),
    "stalled": lambda x: isinstance(x, bool),
    "cancel_requested": lambda x: isinstance(x, bool),
    "provisional": lambda x: isinstance(x, bool),
    "former_id": _opt(_is_str),
}

_EVENT_CHECKS: dict[str, Callable[[Any], bool]] = {
    "event_id": _is_str,
    "time_ns": _is_int,
    "notes": _str_list,
    # Checkpoint
    "source": _is_str,
    "changed": _str_list,
    "attributes": lambda x: isinstance(x, dict),
    # ContextWarning (level is a name), BudgetWarning (a ratio): checked per kind below
    "level": lambda x: isinstance(x, str) or _is_num(x),
    "threshold": _is_num,
    "ratio": _is_num,
    "tokens": _is_int,
    "limit": _is_int,
    # ContextForecast
    "calls": _is_int,
    "eta_s": _opt(_is_num),
    # BudgetWarning
    "scope": _is_str,
    "unit": _is_str,
    "used": _is_num,
    "budget": _is_num,
    "subject": _is_str,
    "stops": lambda x: isinstance(x, bool),
    # TaskStalled, TaskResumed
    "idle_s": _is_num,
    # DiffUpdated
    "diff": _is_str,
    "files": _is_int,
    "clipped": lambda x: isinstance(x, bool),
    "digest": _is_str,
    # TaskFinished
    "outcome": _is_str,
    "duration_s": _is_num,
    "error_type": _opt(_is_str),
    "error_message": _opt(_is_str),
    "stacktrace": _opt(_is_str),
    "outliers": _str_list,
    # TaskCorrected
    "span_id": _is_str,
    "added_input_tokens": _is_int,
    "added_output_tokens": _is_int,
    "added_cost_usd": _is_num,
    "added_unpriced_calls": _is_int,
    "added_artifacts": lambda x: isinstance(x, list),
    "arrived_late": lambda x: isinstance(x, bool),
    "facts": lambda x: isinstance(x, list),
    # HumanIntervention
    "reason": _opt(_is_str),
    "known": lambda x: isinstance(x, bool),
    "code": _opt(_is_str),
    "votes": _is_int,
    "votes_needed": _is_int,
}


def _fields(
    cls: type[Any],
    d: Mapping[str, Any],
    checks: Mapping[str, Callable[[Any], bool]],
    where: str,
    skip: tuple[str, ...] = (),
) -> dict[str, Any]:
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        if f.name not in d:
            no_default = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
            if no_default:
                raise CodecError(f"{where}.{f.name} is missing")
            continue
        value = d[f.name]
        check = checks.get(f.name)
        if check is not None and not check(value):
            raise CodecError(f"{where}.{f.name} has the wrong type: {type(value).__name__}")
        kwargs[f.name] = value
    return kwargs


def _artifact_from(x: Any, where: str) -> Artifact:
    if not isinstance(x, Mapping):
        raise CodecError(f"{where} must be an object")
    checks = {"name": _is_str, "uri": _opt(_is_str), "kind": _opt(_is_str)}
    return Artifact(**_fields(Artifact, x, checks, where))


def _is_scalar(x: Any) -> bool:
    return isinstance(x, str | bool) or _is_num(x)


_ITEM_CHECKS: dict[type[Any], dict[str, Callable[[Any], bool]]] = {
    ApprovalRequest: {
        "approval_id": _is_str,
        "question": _is_str,
        "options": _str_list,
        "timeout_s": _opt(_is_num),
        "requested_ns": _is_int,
        "digest": _is_str,
        "agent": _is_str,
        "details": _opt(_is_str),
        "action": _opt(_is_str),
        "approvers": _is_int,
        "requester": _opt(_is_str),
        "permit_key": _opt(_is_str),
        "approvers_from": _str_list,
        "policy_version": _opt(_is_str),
        "required_by": _opt(_is_str),
        "policy_denied": _opt(_is_str),
    },
    Decision: {
        "intervention_id": _is_str,
        "task_id": _is_str,
        "action": _is_str,
        "actor_id": _is_str,
        "time_ns": _is_int,
        "approval_id": _opt(_is_str),
        "actor_name": _opt(_is_str),
        "comment": _opt(_is_str),
        "source": _is_str,
        "run_id": _is_str,
        "digest": _opt(_is_str),
        "verified": lambda x: isinstance(x, bool),
        "person": _opt(_is_str),
        "edited": _opt(_is_str),
        "grant_id": _opt(_is_str),
        "groups": _str_list,
        "proof": _opt(_is_str),
        "break_glass": lambda x: isinstance(x, bool),
    },
    ResultField: {"name": _is_str, "value": _is_scalar, "unit": _opt(_is_str)},
    LogLine: {"time_ns": _is_int, "level": _is_str, "message": _is_str, "logger": _opt(_is_str)},
}
# TaskView fields that hold a tuple of value objects, and their class.
_VIEW_ITEMS: dict[str, type[Any]] = {"approvals": ApprovalRequest, "decisions": Decision, "results": ResultField}


def _item_from(cls: type[Any], x: Any, where: str) -> Any:
    if not isinstance(x, Mapping):
        raise CodecError(f"{where} must be an object")
    kwargs = _fields(cls, x, _ITEM_CHECKS[cls], where)
    for name in ("options", "approvers_from", "groups"):
        if name in kwargs:
            kwargs[name] = tuple(kwargs[name])
    return cls(**kwargs)


def _items_from(cls: type[Any], x: Any, where: str) -> tuple[Any, ...]:
    if not isinstance(x, list):
        raise CodecError(f"{where} must be a list")
    return tuple(_item_from(cls, item, f"{where}[{i}]") for i, item in enumerate(x))


def _view_from(x: Any) -> TaskView:
    if not isinstance(x, Mapping):
        raise CodecError("task must be an object")
    kwargs = _fields(TaskView, x, _VIEW_CHECKS, "task")
    if "steps" in kwargs:
        kwargs["steps"] = tuple(kwargs["steps"])
    if "artifacts" in kwargs:
        kwargs["artifacts"] = tuple(
            _artifact_from(a, f"task.artifacts[{i}]") for i, a in enumerate(kwargs["artifacts"])
        )
    for name, cls in _VIEW_ITEMS.items():
        if name in kwargs:
            kwargs[name] = _items_from(cls, kwargs[name], f"task.{name}")
    return TaskView(**kwargs)


# What a late span's facts can be: the events a span causes before its task's end.
_FACT_KINDS = frozenset({"Checkpoint", "ContextWarning", "ContextForecast", "BudgetWarning", "ArtifactAdded"})


def _fact_from(x: Any, where: str) -> Event:
    if not isinstance(x, Mapping) or x.get("kind") not in _FACT_KINDS:
        raise CodecError(f"{where} must be one of {', '.join(sorted(_FACT_KINDS))}")
    try:
        return event_from_dict(x)
    except CodecError as exc:
        raise CodecError(f"{where}: {exc}") from None


def event_from_dict(d: Mapping[str, Any]) -> Event:
    """The event ``event_to_dict`` made; :class:`CodecError` on bad input."""
    if not isinstance(d, Mapping):
        raise CodecError("an event must be a JSON object")
    version = d.get("v", CODEC_VERSION)
    if version != CODEC_VERSION:
        raise CodecError(f"unsupported event codec version {version!r} (this build reads {CODEC_VERSION})")
    kind = d.get("kind")
    cls = EVENT_TYPES.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise CodecError(f"unknown event kind {kind!r}; known: {', '.join(EVENT_TYPES)}")
    kwargs = _fields(cls, d, _EVENT_CHECKS, str(kind), skip=("task", "artifact", "decision", "log_tail", "request"))
    kwargs["task"] = _view_from(d.get("task"))
    if cls is HumanIntervention:
        kwargs["decision"] = _item_from(Decision, d.get("decision"), "decision")
        if d.get("request") is not None:
            kwargs["request"] = _item_from(ApprovalRequest, d["request"], "request")
    if cls is TaskFinished and "log_tail" in d:
        kwargs["log_tail"] = _items_from(LogLine, d["log_tail"], "log_tail")
    if cls is ArtifactAdded:
        kwargs["artifact"] = _artifact_from(d.get("artifact"), "artifact")
    if "added_artifacts" in kwargs:
        added = kwargs["added_artifacts"]
        kwargs["added_artifacts"] = tuple(_artifact_from(a, f"added_artifacts[{i}]") for i, a in enumerate(added))
    for name in ("notes", "changed", "outliers"):
        if name in kwargs:
            kwargs[name] = tuple(kwargs[name])
    if "attributes" in kwargs:
        kwargs["attributes"] = dict(kwargs["attributes"])
    if "facts" in kwargs:
        kwargs["facts"] = tuple(_fact_from(x, f"facts[{i}]") for i, x in enumerate(kwargs["facts"]))
    event: Event = cls(**kwargs)
    return event


__all__ = [
    "CODEC_VERSION",
    "EVENT_TYPES",
    "CodecError",
    "artifact_to_dict",
    "event_from_dict",
    "event_to_dict",
    "plain_value",
]
