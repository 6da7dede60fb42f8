"""Values as OpenTelemetry attributes: what a task's helpers write on its
spans (plain values as they are, sequences as lists of strings, anything
else as its text; ``None`` left out)."""

from __future__ import annotations

from typing import Any

from opentelemetry.util.types import AttributeValue

_PLAIN = frozenset({str, bool, int, float})


def as_attributes(**values: Any) -> dict[str, AttributeValue]:
    out: dict[str, AttributeValue] = {}
    for key, value in values.items():
        if value is None:
            continue
        # Exact types first: a checkpoint's few plain values are the usual
        # case, on the agent's thread (isinstance against unions is slower).
        if type(value) in _PLAIN:
            out[key] = value
        elif isinstance(value, list | tuple):
            out[key] = [str(x) for x in value]
        elif isinstance(value, str | bool | int | float):
            out[key] = value
        else:
            out[key] = str(value)
    return out


__all__ = ["as_attributes"]
