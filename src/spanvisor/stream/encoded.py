"""A task event's public body as bytes, built cheaply: ``encode(body(event))``.

While the stream is read (a client connected, or one of any replica within
the retention: :mod:`spanvisor.stream.feed`) the stream sink encodes every
event the tracker emits, so this is on serve's busy path. The generic :func:`spanvisor.stream.body.body`
goes through the codec, which builds the whole view as a dict only for the
body to drop it, and formats three datetimes per event. Here the envelope,
the task and the kind's fields are encoded as three pieces of the same
compact JSON and joined, which gives the same bytes because compact JSON of
an object is its members joined by commas. The envelope's strings and
ints skip the encoder's per-call set-up, the view is encoded only as
task_json shows it, and a task's start time is formatted once (rfc3339's
cache): every event of the task carries it.

The task is written field by field (:func:`task_text`, the same members
in the same order as :func:`spanvisor.stream.body.task_json`): the usual
value (a str, an int, a finite float, None) is one C call, anything else
goes through the C encoder with the same options. That is about half the
cost of building the dict and encoding it (2.9 against 6.1 µs a view),
and one C encoder built once (``c_make_encoder``) spares the set-up that
``JSONEncoder.encode`` repeats on every call.

Interventions, and any kind whose fields could clash with the envelope's,
take the generic path, and so does a value the C encoder cannot walk (one
that refers to itself raises there as it did). A property test holds the
two paths byte-identical.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable
from json.encoder import c_make_encoder, encode_basestring_ascii  # type: ignore[attr-defined]
from typing import Any

from spanvisor.codec import EVENT_TYPES, artifact_to_dict, plain_value
from spanvisor.events import DiffUpdated, Event, HumanIntervention, TaskView
from spanvisor.stream.body import _COMMON, SCHEMA_VERSION, _clip, _snake, body, encode, rfc3339

# The same settings as body.encode: compact, ASCII-only, str() for the odd value.
_ENCODER = json.JSONEncoder(separators=(",", ":"), default=str)
# The C encoder JSONEncoder.encode builds for those settings on every call,
# built once; without circular-reference markers (a value that refers to
# itself raises RecursionError here, and the generic path then raises as before).
_C = (
    None
    if c_make_encoder is None
    else c_make_encoder(None, str, encode_basestring_ascii, None, ":", ",", False, False, True)
)
_isfinite = math.isfinite
# The empty tuple (one object in CPython): an empty list member written at
# once; anything else, even a wrong type, goes the generic way (and fails as it would).
_NO: tuple[()] = ()
# The envelope's keys as body() writes them, before "task".
_ENVELOPE = ("type", "v", "event_id", "task_id", "run_id", "seq", "time", "notes", "task")


def _as_codec(name: str) -> Callable[[Any], Any]:
    """The codec's conversion of a kind's field (codec.event_to_dict)."""
    if name == "artifact":
        return artifact_to_dict
    if name == "added_artifacts":
        return lambda xs: [artifact_to_dict(a) for a in xs]
    if name in ("decision", "log_tail", "request"):
        return plain_value
    if name in ("notes", "changed", "outliers"):
        return list
    if name == "attributes":
        return dict
    return _same


def _same(x: Any) -> Any:
    return x


def _kind_fields(cls: type[Any]) -> tuple[str, tuple[tuple[str, str, Callable[[Any], Any]], ...]] | None:
    """(the type's prefix, its own fields with their member's key and their
    conversion), or None for a type the fast path leaves to body()."""
    if cls is HumanIntervention or cls is DiffUpdated:
        return None  # body()'s own shape
    names = [f.name for f in dataclasses.fields(cls) if f.name not in _COMMON]
    if set(names) & set(_ENVELOPE):  # would replace an envelope key in place
        return None
    return f'{{"type":"spanvisor.{_snake(cls.__name__)}","v":{SCHEMA_VERSION},"event_id":', tuple(
        (n, f",{encode_basestring_ascii(n)}:", _as_codec(n)) for n in names
    )


_KINDS: dict[type[Any], tuple[str, tuple[tuple[str, str, Callable[[Any], Any]], ...]] | None] = {
    cls: _kind_fields(cls) for cls in EVENT_TYPES.values()
}


def _json(x: Any) -> str:
    """Any JSON value, as ``_ENCODER.encode`` writes it."""
    if _C is None:
        return _ENCODER.encode(x)
    return "".join(_C(x, 0))


def _text(x: Any) -> str:
    """One JSON value; the usual ones (str, None, int, finite float) with one C call."""
    t = type(x)
    if t is str:
        return encode_basestring_ascii(x)
    if x is None:
        return "null"
    if t is int:
        return int.__repr__(x)
    if t is float and _isfinite(x):
        return float.__repr__(x)
    return _json(x)


def _bool(x: Any) -> str:
    return "true" if x is True else "false" if x is False else _text(x)


def task_text(v: TaskView) -> str:
    """``_ENCODER.encode(task_json(v))``, member by member."""
    approvals, results, artifacts, steps = v.approvals, v.results, v.artifacts, v.steps
    return "".join(
        (
            '{"agent_id":',
            _text(v.agent_id),
            ',"agent_name":',
            _text(v.agent_name),
            ',"task_name":',
            _text(v.task_name),
            ',"repo":',
            _text(v.repo),
            ',"branch":',
            _text(v.branch),
            ',"pull_request":',
            _text(v.pull_request),
            ',"status":',
            _text(v.status),
            ',"trace_id":',
            _text(v.trace_id or None),
            ',"root_span_id":',
            _text(v.root_span_id or None),
            ',"progress":',
            _text(v.progress),
            ',"step":',
            _text(v.step),
            ',"steps":',
            "[]" if steps is _NO else _json(list(steps)),
            ',"message":',
            _text(v.message),
            ',"model":',
            _text(v.model),
            ',"input_tokens":',
            _text(v.input_tokens),
            ',"output_tokens":',
            _text(v.output_tokens),
            ',"cost_usd":',
            _text(v.cost_usd),
            ',"unpriced_calls":',
            _text(v.unpriced_calls),
            ',"context_tokens":',
            _text(v.context_tokens),
            ',"context_limit":',
            _text(v.context_limit),
            ',"budget_usd":',
            _text(v.budget_usd),
            ',"budget_tokens":',
            _text(v.budget_tokens),
            ',"stalled":',
            _bool(v.stalled),
            ',"cancel_requested":',
            _bool(v.cancel_requested),
            ',"provisional":',
            _bool(v.provisional),
            ',"former_id":',
            _text(v.former_id),
            ',"approvals":',
            _json(
                [
                    {
                        "approval_id": r.approval_id,
                        "question": _clip(r.question),
                        "options": list(r.options),
                        "digest": r.digest,
                    }
                    for r in approvals
                ]
            )
            if approvals is not _NO
            else "[]",
            ',"results":',
            _json([{"name": r.name, "value": r.value, "unit": r.unit} for r in results])
            if results is not _NO
            else "[]",
            ',"artifacts":',
            _json([{"name": a.name, "uri": a.uri, "kind": a.kind} for a in artifacts])
            if artifacts is not _NO
            else "[]",
            ',"started":',
            encode_basestring_ascii(rfc3339(v.started_ns)) if v.started_ns else "null",
            ',"ended":',
            encode_basestring_ascii(rfc3339(v.ended_ns)) if v.ended_ns else "null",
            "}",
        )
    )


def encoded(event: Event) -> bytes:
    """``encode(body(event))``, byte for byte."""
    spec = _KINDS.get(type(event))
    if spec is None:
        return encode(body(event))
    try:
        return _fast(event, spec)
    except RecursionError:  # a value that refers to itself, or nests too deep
        return encode(body(event))


def _fast(event: Event, spec: tuple[str, tuple[tuple[str, str, Callable[[Any], Any]], ...]]) -> bytes:
    prefix, fields = spec
    v = event.task
    notes = event.notes
    parts = [
        prefix,
        _text(event.event_id),
        ',"task_id":',
        _text(v.task_id),
        ',"run_id":',
        _text(v.run_id or None),
        ',"seq":',
        _text(v.seq),
        ',"time":',
        _text(rfc3339(event.time_ns)),
        ',"notes":',
        "[]" if notes is _NO else _json(list(notes)),
        ',"task":',
        task_text(v),
    ]
    for name, key, conv in fields:
        parts.append(key)
        value = getattr(event, name)
        parts.append(_text(value if conv is _same else conv(value)))
    parts.append("}")
    return "".join(parts).encode("ascii")


__all__ = ["encoded", "task_text"]
