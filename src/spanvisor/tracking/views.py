"""The two things every event of a task needs, made cheaply: its TaskView and
its event id.

Every event carries a new frozen :class:`~spanvisor.events.TaskView` and an
id ``stable_id(task_id, run_id, ...)``; under an all-agent load that is one or two of
each per span, and both were among the tracker's largest costs.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import fields, replace
from typing import Any, TypeVar

from spanvisor.events import Checkpoint, TaskView, run_id_of, stable_id
from spanvisor.tracking.working import Working

VIEW_FIELDS = tuple(f.name for f in fields(TaskView))


def _view_builder() -> Callable[[Working], TaskView]:
    """A TaskView from a task's working fields, twice as fast as its ``__init__``.

    The generated ``__init__`` of a frozen dataclass sets each of the ~30
    fields through ``object.__setattr__``; this sets the slots directly,
    unrolled, which is the same work minus a call per field. TaskView has no
    ``__post_init__`` and no defaults computed at init, so the object is the
    one ``__init__`` would make (equal, field by field); should that change,
    the plain constructor is used.
    """
    # getattr: mypyc refuses ``__slots__`` read through a class (tracking is compiled optionally).
    if hasattr(TaskView, "__post_init__") or set(getattr(TaskView, "__slots__", ())) != set(VIEW_FIELDS):
        return lambda w: TaskView(*[getattr(w, f) for f in VIEW_FIELDS])
    env: dict[str, Any] = {"new": object.__new__, "TaskView": TaskView}
    lines = ["def build(w):", "    v = new(TaskView)"]
    for i, name in enumerate(VIEW_FIELDS):
        env[f"set{i}"] = getattr(TaskView, name).__set__
        lines.append(f"    set{i}(v, w.{name})")
    lines.append("    return v")
    # Fixed source made from the dataclass's own field names, nothing else.
    exec("\n".join(lines), env)
    build: Callable[[Working], TaskView] = env["build"]
    return build


build_view = _view_builder()


def _identity_setter() -> Callable[[TaskView, str | None, str, str | None], TaskView]:
    """Set a just-built view's title and agent: what ``dataclasses.replace``
    would give, without building a second view (a provisional task shows a
    stand-in on every event, provisional.shown: a model call's view paid a
    replace, 8 % of serve's pipeline thread in issue 70's profile)."""
    if set(getattr(TaskView, "__slots__", ())) != set(VIEW_FIELDS):
        return lambda v, name, agent, agent_name: replace(v, task_name=name, agent_id=agent, agent_name=agent_name)
    set_name = getattr(TaskView, "task_name").__set__  # noqa: B009 (mypyc: no slots read through the class)
    set_agent = getattr(TaskView, "agent_id").__set__  # noqa: B009
    set_agent_name = getattr(TaskView, "agent_name").__set__  # noqa: B009

    def identity(v: TaskView, name: str | None, agent: str, agent_name: str | None) -> TaskView:
        set_name(v, name)
        set_agent(v, agent)
        set_agent_name(v, agent_name)
        return v

    return identity


# Only on a view no one else holds yet (build_view's, in the same expression).
set_identity = _identity_setter()


def new_view(**fields: Any) -> TaskView:
    """A task's first view, its ``run_id`` derived from its trace and root span ids."""
    return TaskView(**fields, run_id=run_id_of(fields["trace_id"], fields["root_span_id"]))


T = TypeVar("T")


def slot_builder(cls: type[T]) -> Callable[..., T]:
    """``cls(*args)`` for a slotted dataclass given every field in order, by
    setting its slots as :func:`build_view` does (0.7 µs, not 1.7, for a
    Checkpoint: most events of an agent's task). The plain constructor when
    ``cls`` has a ``__post_init__`` or a field that is not a slot."""
    every = fields(cls)  # type: ignore[arg-type]
    names = tuple(f.name for f in every)
    slots = [getattr(cls, name, None) for name in names]
    if hasattr(cls, "__post_init__") or not all(type(d).__name__ == "member_descriptor" for d in slots):
        if not any(f.kw_only for f in every):
            # Its own constructor, positionally: a class the compiled build
            # made native has no slot descriptors, and its constructor is the
            # fast one (a dict of keywords per call was 4 % of an agent's
            # pipeline thread with the compiled tracker: Occupancy).
            return cls
        return lambda *args: cls(**dict(zip(names, args, strict=True)))
    env: dict[str, Any] = {"new": object.__new__, "cls": cls}
    lines = [f"def build({', '.join(names)}):", "    c = new(cls)"]
    for i, (name, slot) in enumerate(zip(names, slots, strict=True)):
        env[f"set{i}"] = slot.__set__  # type: ignore[union-attr]
        lines.append(f"    set{i}(c, {name})")
    lines.append("    return c")
    exec("\n".join(lines), env)  # fixed source from the dataclass's own field names
    build: Callable[..., T] = env["build"]
    return build


CHECKPOINT_FIELDS = tuple(f.name for f in fields(Checkpoint))
# (event_id, time_ns, task, notes, source, changed, attributes) -> Checkpoint
build_checkpoint = slot_builder(Checkpoint)


class IdPrefix:
    """``stable_id(task_id, run_id, *parts)`` for one run of a task, its first
    parts encoded once.

    The run is part of every id: a task id reused by a new root (an
    orchestrator's retry under the same job id) is a new run whose
    TaskStarted, warnings and TaskFinished must not collide with the first
    run's in a sink keyed on the event id. The prefix is kept as bytes, and
    each id hashes it and the rest in one go: the same digest as
    ``stable_id``. (A blake2b state kept per task and copied per id was no
    faster, and held 448 bytes in every open task.)
    """

    __slots__ = ("_prefix", "_run_id", "_task_id")

    def __init__(self, task_id: str, run_id: str) -> None:
        self._task_id = task_id
        self._run_id = run_id
        self._prefix = id_prefix(task_id, run_id)

    def id(self, *parts: object) -> str:
        if not parts:
            return stable_id(self._task_id, self._run_id)
        return prefixed_id(self._prefix, parts)


def id_prefix(task_id: str, run_id: str) -> bytes:
    """The first parts of every id of one run of a task, encoded."""
    return f"{task_id}\x1f{run_id}\x1f".encode("utf-8", "surrogatepass")


def prefixed_id(prefix: bytes, parts: tuple[object, ...]) -> str:
    """``stable_id(task_id, run_id, *parts)`` (``parts`` not empty) from the run's :func:`id_prefix`."""
    raw = prefix + "\x1f".join([str(p) for p in parts]).encode("utf-8", "surrogatepass")
    return hashlib.blake2b(raw, digest_size=16).hexdigest()


__all__ = [
    "CHECKPOINT_FIELDS",
    "VIEW_FIELDS",
    "IdPrefix",
    "build_checkpoint",
    "build_view",
    "id_prefix",
    "new_view",
    "prefixed_id",
    "slot_builder",
]
