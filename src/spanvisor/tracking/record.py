"""One task's state as data: the record every concern of a task reads and
changes.

A :class:`TaskRecord` holds the task's working fields (a
:class:`~.working.Working`, one attribute per ``TaskView`` field), what its concerns remember between spans (events and state already
said, errors, budget levels said, approvals closed, stall count), and three
operations every concern needs: :meth:`~TaskRecord.update` a field,
:meth:`~TaskRecord.next_time` for the next event (time order, ``seq``), and
:meth:`~TaskRecord.event_id`. It imports no concern: the concerns
(:mod:`.calls`, :mod:`.taskbudget`, :mod:`.approvals`, :mod:`.stalls`,
:mod:`.statefacts`, :mod:`.artifacts`, :mod:`.results`) each take a record
and return the events they cause, and :class:`~.taskstate.TaskState` routes
a span to them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from spanvisor.events import TaskView, stable_id
from spanvisor.tracking.fields import TaskFields
from spanvisor.tracking.identity import TaskIdentity
from spanvisor.tracking.launcherend import LauncherEnd
from spanvisor.tracking.outcome import ErrorInfo
from spanvisor.tracking.provisional import shown
from spanvisor.tracking.settings import TrackerSettings
from spanvisor.tracking.taskcontext import TaskContext
from spanvisor.tracking.views import build_view, id_prefix, prefixed_id
from spanvisor.tracking.working import Working

# One empty frozenset for every task: ``frozenset()`` makes a new one per
# call (216 bytes), and most tasks never fill these.
_NONE_SAID: frozenset[tuple[str, float]] = frozenset()
_NONE_CLOSED: frozenset[str] = frozenset()


class TaskRecord:
    """One task's state (slotted: one per open and recently finished task)."""

    __slots__ = (
        "_id_prefix",
        "_w",
        "approval_openers",
        "approvals_closed",
        "budget_from_root",
        "budget_published",
        "budget_said",
        "budget_stop",
        "context",
        "cost_nano",
        "diff_digest",
        "errors",
        "events_seen",
        "fields",
        "finished",
        "identity",
        "last_ns",
        "launcher",
        "root_at",
        "settings",
        "stalls",
        "state_seen",
    )

    def __init__(
        self,
        initial: TaskView,
        settings: TrackerSettings,
        identity: TaskIdentity | None = None,
        last_ns: int = 0,
    ) -> None:
        self.settings = settings
        self.identity = identity if identity is not None else TaskIdentity(agent_is_fallback=False)
        # span id -> the (time, name, n-th) of its span events already read;
        # None until a span with events is read (an empty dict is 64 bytes
        # in every open task).
        self.events_seen: dict[str, set[tuple[int, str, int]]] | None = None
        self.state_seen: dict[str, int] = {}  # state checkpoint key -> how often said
        # None until a span reports an error (most tasks never see one).
        self.errors: ErrorInfo | None = None
        self.finished = False
        self.last_ns = last_ns
        # A provisional task's: the span its members hang from (its root, as
        # far as its spans tell); None: its root span.
        self.root_at: str | None = None
        self.cost_nano = 0  # the task's cost in nano-dollars (exact sums; cost_usd shows it)
        self.diff_digest: str | None = None  # the last diff's (tracking.diffs): said again, no event
        # (unit, level) of the task budget warned of: a shared empty frozenset
        # until the first warning (an empty set is 216 bytes in every task).
        self.budget_said = _NONE_SAID
        self.budget_from_root = False
        self.budget_stop: bool | None = None  # the root's agent.budget.stop; None: the agent's default
        self.budget_published = False  # an entry of .budgets is this task's to remove
        self.stalls = 0  # how often the task stalled (numbers its stall events)
        # Approvals decided or timed out: never reopened (a shared empty default).
        self.approvals_closed = _NONE_CLOSED
        # Approval id -> the identity the span that opened it claimed (tracking.openers);
        # None until a request opens.
        self.approval_openers: dict[str, str] | None = None
        # A task spanvisor run started: only its word ends it (tracking.launcherend); None for others.
        self.launcher: LauncherEnd | None = None
        # The working fields; the frozen TaskView that events carry is built
        # when an event needs one (dataclasses.replace per change was the
        # tracker's largest cost), and not kept: nearly every event changes a
        # field first, and a kept view was about 290 bytes in every open task.
        self._w = Working(initial)
        # The run's id prefix, encoded at the first event id (bare bytes: an
        # IdPrefix object was 56 bytes more in every open task).
        self._id_prefix: bytes | None = None
        self.context = TaskContext(settings)
        self.fields = TaskFields(self.context, settings.thresholds)

    def __repr__(self) -> str:
        w = self._w
        return f"{type(self).__name__}(task_id={w.task_id!r}, run_id={w.run_id!r}, seq={w.seq})"

    @property
    def working(self) -> Working:
        """The task's current fields."""
        return self._w

    @property
    def view(self) -> TaskView:
        """The task's state as a new frozen view (every event carries its own).
        A provisional task's shows a stand-in for what only its root can say
        (:func:`.provisional.shown`)."""
        w = self._w
        if not w.provisional:
            return build_view(w)
        who = self.identity
        return shown(build_view(w), who.shown or w.agent_id, who.named)

    def event_id(self, *parts: object) -> str:
        """``stable_id(task_id, run_id, *parts)``, the prefix encoded once per task."""
        w = self._w
        if not parts:
            return stable_id(w.task_id, w.run_id)
        prefix = self._id_prefix
        if prefix is None:
            prefix = self._id_prefix = id_prefix(w.task_id, w.run_id)
        return prefixed_id(prefix, parts)

    def rename(self, task_id: str) -> None:
        """The task's root named its id (``task_id``): its events carry it from
        now on, and its views the id it was shown under as ``former_id``."""
        w = self._w
        w.former_id, w.task_id = w.task_id, task_id
        self._id_prefix = None

    def error_info(self) -> ErrorInfo:
        """The task's errors, made when the first one is reported."""
        if self.errors is None:
            self.errors = ErrorInfo()
        return self.errors

    def update(self, **changes: Any) -> None:
        self._w.apply(changes)

    def apply(self, changes: Mapping[str, Any]) -> None:
        """:meth:`update` with a dict already made (no keyword repacking)."""
        self._w.apply(changes)

    def restore(self, view: TaskView) -> None:
        """Every working field back to ``view``'s."""
        self._w.load(view)

    def leave_room(self, events: int, stalls: int) -> None:
        """Skip ``events`` numbers of ``seq`` and ``stalls`` stall numbers: a
        task rebuilt from its records after a restart may have had that many
        events no record holds (stalls, resumes, lost: the clock's), and its
        next event must still be newer than any of them in every sink, its
        next stall not take an earlier one's id."""
        self._w.seq += max(0, events)
        self.stalls += max(0, stalls)

    def next_time(self, t: int) -> int:
        """The time of the next event, never before the previous one; ``seq`` grows."""
        t = max(t, self.last_ns)
        self.last_ns = t
        w = self._w
        w.seq += 1
        w.updated_ns = max(w.updated_ns, t)
        return t


__all__ = ["TaskRecord"]
