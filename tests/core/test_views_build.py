"""The tracker's fast builders make the very objects the dataclasses' own constructors make."""

from __future__ import annotations

import pickle

from spanvisor.events import Checkpoint, TaskView
from spanvisor.tracking.views import CHECKPOINT_FIELDS, build_checkpoint, build_view
from spanvisor.tracking.working import Working


def test_build_checkpoint_is_the_constructors_checkpoint() -> None:
    view = TaskView(task_id="t", trace_id="a" * 32, root_span_id="b" * 16, agent_id="rivet", seq=3)
    args = ("id", 5, view, ("note",), "model_call", ("tokens",), {"model": "m", "cost_usd": 0.5})
    built = build_checkpoint(*args)
    made = Checkpoint(**dict(zip(CHECKPOINT_FIELDS, args, strict=True)))  # type: ignore[arg-type]
    assert type(built) is Checkpoint
    assert built == made and repr(built) == repr(made)
    assert pickle.loads(pickle.dumps(built)) == made
    assert build_checkpoint("id", 5, view, (), "state", (), {}).attributes == {}


def test_build_view_is_the_constructors_view() -> None:
    view = TaskView(task_id="t", trace_id="a" * 32, root_span_id="b" * 16, agent_id="rivet", progress=0.5, seq=9)
    built = build_view(Working(view))
    assert type(built) is TaskView and built == view and repr(built) == repr(view) and hash(built) == hash(view)


def test_slot_builder_falls_back_and_builds_occupancies() -> None:
    from dataclasses import dataclass

    from spanvisor.tracking.occupancy import Occupancy, new_occupancy
    from spanvisor.tracking.views import slot_builder

    built = new_occupancy(10, 100, "m", 5, "s", 2)
    made = Occupancy(10, 100, "m", 5, "s", 2)
    assert type(built) is Occupancy and built == made and hash(built) == hash(made) and built.ratio == 0.1

    @dataclass
    class Plain:  # no slots: the constructor
        a: int
        b: int = 2

        def __post_init__(self) -> None:
            self.b += 1

    assert slot_builder(Plain)(1, 2).b == 3  # __post_init__ ran
    assert slot_builder(Plain) is Plain  # positional: its own constructor (a compiled class has no slots to set)

    @dataclass(kw_only=True)
    class Keywords:
        a: int
        b: int = 2

    assert slot_builder(Keywords)(1, 5) == Keywords(a=1, b=5)


def test_a_provisional_tasks_stand_in_is_replaces_view() -> None:
    """provisional.shown sets a just-built view's title and agent in place:
    the view ``dataclasses.replace`` would give, equal, hashed and
    pickled alike (issue 70: a replace per event of a provisional task)."""
    from dataclasses import replace

    from spanvisor.tracking.provisional import shown

    view = TaskView(task_id="t", trace_id="a" * 32, root_span_id="b" * 16, agent_id="rivet", agent_name="R", seq=9)
    for ended, named in ((None, True), (7, False)):
        w = Working(replace(view, ended_ns=ended))
        title = None if ended else "svc — running"
        made = replace(build_view(w), task_name=title, agent_id="svc", agent_name="svc" if named else None)
        built = shown(build_view(w), "svc", named)
        assert built == made and repr(built) == repr(made) and hash(built) == hash(made)
        assert pickle.loads(pickle.dumps(built)) == made
        assert w.agent_id == "rivet" and w.task_name is None  # the task's own state is not the stand-in
