"""A task event's public body as bytes, built cheaply: ``encode(body(event))``.

The stream sink encodes every event the tracker emits, whether or not a
client is connected (the ring replays to clients that come later), so this
is on serve's busy path. The generic :func:`spanvisor.stream.body.body`
goes through the codec, which builds the whole view as a dict only for the
body to drop it, and formats three datetimes per event. Here the envelope,
the task and the kind's fields are encoded as three pieces of the same
compact JSON and joined, which gives the same bytes because compact JSON of
an object is its members joined by commas. The envelope's strings and
ints skip the encoder's per-call set-up, the view is encoded only as
task_json shows it, and a task's start time is formatted once (rfc3339's
cache): every event of the task carries it.

Interventions, and any kind whose fields could clash with the envelope's,
take the generic path. A property test holds the two paths byte-identical.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from json.encoder import encode_basestring_ascii
from typing import Any

from spanvisor.codec import EVENT_TYPES, artifact_to_dict, plain_value
from spanvisor.events import Event, HumanIntervention
from spanvisor.stream.body import _COMMON, SCHEMA_VERSION, _snake, body, encode, rfc3339, task_json

# The same settings as body.encode: compact, ASCII-only, str() for the odd value.
_ENCODER = json.JSONEncoder(separators=(",", ":"), default=str)
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
    return lambda x: x


def _kind_fields(cls: type[Any]) -> tuple[str, tuple[tuple[str, Callable[[Any], Any]], ...]] | None:
    """(the type's prefix, its own fields with their conversion), or None
    for a type the fast path leaves to body()."""
    if cls is HumanIntervention:
        return None
    names = [f.name for f in dataclasses.fields(cls) if f.name not in _COMMON]
    if set(names) & set(_ENVELOPE):  # would replace an envelope key in place
        return None
    return f'{{"type":"spanvisor.{_snake(cls.__name__)}","v":{SCHEMA_VERSION},"event_id":', tuple(
        (n, _as_codec(n)) for n in names
    )


_KINDS: dict[type[Any], tuple[str, tuple[tuple[str, Callable[[Any], Any]], ...]] | None] = {
    cls: _kind_fields(cls) for cls in EVENT_TYPES.values()
}


def _text(x: Any) -> str:
    """One JSON value; str and int (nearly all) without the encoder's set-up."""
    if type(x) is str:
        return encode_basestring_ascii(x)
    if type(x) is int:
        return int.__repr__(x)
    return _ENCODER.encode(x)


def encoded(event: Event) -> bytes:
    """``encode(body(event))``, byte for byte."""
    spec = _KINDS.get(type(event))
    if spec is None:
        return encode(body(event))
    prefix, fields = spec
    v = event.task
    enc = _ENCODER.encode
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
        enc(list(event.notes)) if event.notes else "[]",
        ',"task":',
        enc(task_json(v)),
    ]
    if fields:
        rest = enc({name: conv(getattr(event, name)) for name, conv in fields})
        parts.append(",")
        parts.append(rest[1:])
    else:
        parts.append("}")
    return "".join(parts).encode("ascii")


__all__ = ["encoded"]
