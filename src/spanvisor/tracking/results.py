"""A task's results: ``agent.result.<name>`` on its root (issue 15).

``agent.result.prs_opened = 3``, ``agent.result.arr_gain = 4820`` with
``agent.result.arr_gain.unit = "USD"``, ``agent.result.precision = 0.94``,
``agent.result.verdict = "flaky test"``, ``agent.result.merged = true``:
numbers, strings and booleans. They are read with the root's other
attributes (as the task opens, at each poll of an open root in-process, and
at the root's end), so every path ends on the same ``TaskView.results``.

Sanitised like every agent value: a name is at most :data:`MAX_NAME`
characters (control characters and NUL removed), a string value at most
:data:`MAX_TEXT`, a unit at most :data:`MAX_UNIT`; NaN and infinities, and
values of other types (arrays), are ignored with a note; at most
:data:`MAX_RESULTS` results, in the order of the root's attributes (the
order they were first set), a later value of the same name replacing the
earlier one in place. A result changes no status and
causes no event of its own: it shows in the task's next event's view, the
TaskFinished at the latest.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from spanvisor.events import ResultField
from spanvisor.spans import conventions as cv
from spanvisor.spans import sanitize as sz
from spanvisor.tracking.record import TaskRecord

MAX_RESULTS = 20
MAX_NAME = 64
MAX_TEXT = 200
MAX_UNIT = 32
_UNIT = cv.RESULT_UNIT_SUFFIX
_PREFIX = cv.RESULT_PREFIX
_CUT = len(_PREFIX)


def _name(raw: str, notes: list[str]) -> str | None:
    clean = "".join(ch for ch in raw if ch.isprintable()).strip()
    if clean != raw:
        sz.note(notes, _PREFIX + "*", "non-printable characters removed from a result's name")
    return sz.text(clean, _PREFIX + "*", notes, MAX_NAME)


def _value(v: Any, key: str, notes: list[str]) -> float | int | str | bool | None:
    if isinstance(v, bool):  # before int: compiled code narrowed to int would make True 1
        return v
    if isinstance(v, int):
        return v
    if isinstance(v, float):
        if math.isfinite(v):
            return v
        sz.note(notes, key, f"ignored {v}")
        return None
    if isinstance(v, str | bytes):
        return sz.text(v, key, notes, MAX_TEXT)
    sz.note(notes, key, f"ignored a {type(v).__name__}: a result is a number, a string or a boolean")
    return None


def read(attrs: Mapping[str, Any], current: tuple[ResultField, ...], notes: list[str]) -> tuple[ResultField, ...]:
    """The results ``attrs`` (a root's attributes, all of them) carries, in
    their order; ``current`` itself (the same object) when they are what it
    holds. A function of the attributes alone, so a root read live and read
    at its end agree (a result whose value became invalid is dropped)."""
    values: dict[str, float | int | str | bool] = {}
    units: dict[str, str | None] = {}
    seen = False
    for key, raw in attrs.items():
        if not key.startswith(_PREFIX):
            continue
        seen = True
        rest = key[_CUT:]
        if rest.endswith(_UNIT) and len(rest) > len(_UNIT):
            name = _name(rest[: -len(_UNIT)], notes)
            if name:
                units[name] = sz.text(raw, key, notes, MAX_UNIT) if isinstance(raw, str) else None
            continue
        name = _name(rest, notes)
        value = _value(raw, key, notes)
        if name and value is not None:
            if name not in values and len(values) >= MAX_RESULTS:
                sz.note(notes, key, f"more than {MAX_RESULTS} results; ignored")
                continue
            values[name] = value
    if not seen:
        # A copy of the root without its result keys (the in-process end of a
        # root whose other keys are only stamps): what was read stays.
        return current
    if not values:
        return current if not current else ()
    fresh = tuple(ResultField(name, value, units.get(name)) for name, value in values.items())
    # 1, 1.0 and True are equal in Python, not to a reader.
    same = len(fresh) == len(current) and all(
        a == b and type(a.value) is type(b.value) for a, b in zip(fresh, current, strict=True)
    )
    return current if same else fresh


def apply(state: TaskRecord, attrs: Mapping[str, Any] | None, notes: list[str]) -> None:
    """Read a root's results into a task's record."""
    if not attrs:
        return
    current = state.working.results
    fresh = read(attrs, current, notes)
    if fresh is not current:
        state.update(results=fresh)


__all__ = ["MAX_RESULTS", "apply", "read"]
