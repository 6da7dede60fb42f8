"""The parent that replicas agree on: a task's newest view, in the state store.

Each replica delivering a task's events holds its own view of the task
(:attr:`SlackTaskRecord.view`). When the task's spans are spread over
replicas those views differ: one may hold only some children, never the
root. What the parent shows is therefore decided by the shared state store,
key ``<namespace>.view / <task id>``::

    {"version", "final", "seq", "owner", "written", "view", "digest",
     "decisions": [...], "shown": {"digest", "status", "at", "by"}}

**Newer**, in this order (:func:`version_of`): a *final* view (TaskFinished,
or a later event of a finished task: a late span's correction) beats any
view that is not; then the higher ``seq``. ``seq`` counts the events one
replica's tracker emitted for the task, so of two replicas' views the one
that has absorbed more of the task wins; on a tie the stored one stays.
(A replica sees a task's root only when the root ends, and then its view is
final: "has seen the root" adds nothing to "final" here.) The low 16 bits
of the version count takeovers (below).

* A replica offers its view with ``put_if_newer``; when the store holds a
  newer one, its own is never rendered. It still posts its thread lines.
* The replica whose view is stored (the owner) edits the parent. An edit
  that is not a status change waits ``update_interval_s`` after the last
  edit by any replica (``shown.at``, wall clock, when another replica made
  it), so edits coalesce across replicas as they do within one.
* Right before the HTTP call the stored version is read again: an edit of a
  view that is no longer the newest is not sent. If the record moved on
  while the call was in flight, the edit is repeated from the stored view,
  so the last edit to land shows the newest view.
* If the owner leaves its view unshown for :data:`TAKEOVER_S` (it died),
  another replica shows it, from the stored view, and takes the record over.

**Decisions** that did not come in a view (a click on a finished task, or on
one another replica tracks: :meth:`SlackTaskRecord.note_decision`) are merged
into the record's ``decisions`` by the replica that noted them: the same
view at the next version (one more in the low bits, like a takeover), owned
by that replica, which then edits the parent at once. The parent shows the
view with those decisions applied (:attr:`Stored.shown_view`), the digest
covers both, and every later view stored carries the decisions on, so a
newer view never drops them. A view written from a read taken before the
merge, landing while the merger edits, is seen when the merger records the
edit as shown, and it merges again; only one landing after that record
(the two store calls of one update against a merge, an edit and its record)
could drop a decision from the parent.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from spanvisor.chat.claims import Claims
from spanvisor.chat.pacing import PERSON, ROUTINE, URGENT, Interrupt
from spanvisor.codec import CodecError, event_from_dict, event_to_dict
from spanvisor.control.log import decision_from_dict, decision_to_dict
from spanvisor.events import Checkpoint, Decision, TaskView, stable_id
from spanvisor.sink import Clock

from .blocks import Look, parent_payload
from .failures import Failures
from .record import SlackTaskRecord, merge_decisions, moved_to, with_decisions
from .transport import Transport

TAKEOVER_S = 30.0
# An edit that waited this long for its turn is rebuilt from a newer view.
STALE_S = 1.0
GEN_BITS = 16
SEQ_BITS = 40


def version_of(view: TaskView, final: bool) -> int:
    return ((int(final) << SEQ_BITS) | min(max(view.seq, 0), (1 << SEQ_BITS) - 1)) << GEN_BITS


def _encode(view: TaskView) -> dict[str, Any]:
    task: dict[str, Any] = event_to_dict(Checkpoint(event_id="", time_ns=0, task=view))["task"]
    return task


def _decode(raw: Any) -> TaskView | None:
    try:
        return event_from_dict({"kind": "Checkpoint", "event_id": "", "time_ns": 0, "task": raw}).task
    except (CodecError, TypeError, ValueError):
        return None


def _digest(view: TaskView, decisions: tuple[Decision, ...] = ()) -> str:
    digest = stable_id(*(sorted(_encode(view).items())))
    return stable_id(digest, *(d.intervention_id for d in decisions)) if decisions else digest


def _decisions(raw: Any) -> tuple[Decision, ...]:
    if not isinstance(raw, list):
        return ()
    found = (decision_from_dict(x) for x in raw if isinstance(x, Mapping))
    return merge_decisions([d for d in found if d is not None])


@dataclass(frozen=True, slots=True)
class Stored:
    version: int
    owner: str
    final: bool
    view: TaskView
    written: float
    shown: Mapping[str, Any]
    digest: str = ""  # of the view and the decisions; computed once
    # Decisions beyond the view's own, merged in by the replicas that noted them.
    decisions: tuple[Decision, ...] = ()

    def __post_init__(self) -> None:
        if not self.digest:
            object.__setattr__(self, "digest", _digest(self.view, self.decisions))

    @property
    def is_shown(self) -> bool:
        return self.shown.get("digest") == self.digest

    @property
    def shown_view(self) -> TaskView:
        """What the parent shows: the view with the merged decisions applied."""
        return with_decisions(self.view, self.decisions)

    def lacks(self, decisions: Iterable[Decision]) -> tuple[Decision, ...]:
        """Those of ``decisions`` this record does not hold yet."""
        have = {d.intervention_id for d in (*self.decisions, *self.view.decisions)}
        return tuple(d for d in decisions if d.intervention_id not in have)

    def dump(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "final": self.final,
            "seq": self.view.seq,
            "owner": self.owner,
            "written": self.written,
            "view": _encode(self.view),
            "digest": self.digest,
            "decisions": [decision_to_dict(d) for d in self.decisions],
            "shown": dict(self.shown),
        }

    @classmethod
    def load(cls, raw: Mapping[str, Any] | None) -> Stored | None:
        if raw is None or not isinstance(raw.get("version"), int):
            return None
        view = _decode(raw.get("view"))
        if view is None:
            return None
        shown = raw.get("shown")
        return cls(
            version=int(raw["version"]),
            owner=str(raw.get("owner", "")),
            final=bool(raw.get("final")),
            view=view,
            written=float(raw.get("written") or 0.0),
            shown=shown if isinstance(shown, Mapping) else {},
            decisions=_decisions(raw.get("decisions")),
        )


@dataclass
class SharedParent:
    claims: Claims
    transport: Transport
    failures: Failures
    look: Look
    clock: Clock
    namespace: str
    owner: str
    update_interval_s: float = 5.0
    flushing: Callable[[], bool] = lambda: False
    deadline: Callable[[], float | None] = lambda: None
    wall: Callable[[], float] = time.time
    # Told each view this replica put on the parent (the agent session follows it: .sessions).
    on_shown: Callable[[SlackTaskRecord, TaskView], None] | None = None

    @property
    def ns(self) -> str:
        return f"{self.namespace}.view"

    async def read(self, task_id: str) -> Stored | None:
        return Stored.load(await self.claims.get(self.ns, task_id))

    async def update(self, st: SlackTaskRecord, interrupt: Interrupt | None = None) -> bool:
        """One step towards the parent showing the newest view; False: wait.
        ``interrupt``: the edit's wait for Slack's budget may end early (a
        reply of the task is due first); it is done on a later step."""
        assert st.ref is not None
        handled = st.version
        mine = version_of(st.view, st.view_final)
        raw = await self.claims.get(self.ns, st.key)
        if (to := moved_to(raw)) is not None:
            # Its run was renamed (.rename): the view is kept under the new key, never over it.
            st.key = to
            return True
        rec = Stored.load(raw)
        if rec is None and st.borrowed and not st.view.seq:
            # A decision on a task whose view nobody stored, and ours is bare
            # (ids only): there is nothing to show it on. Its thread line goes on.
            st.sent_version, st.settled = handled, True
            return True
        if rec is None or (
            not st.borrowed
            and (mine > rec.version or (mine == rec.version and rec.owner == self.owner and rec.view != st.view))
        ):
            # Ours is the newest view anyone has stored: offer it, with the
            # decisions the record holds and those we noted.
            shown, kept = (rec.shown, rec.decisions) if rec is not None else ({}, ())
            decisions = merge_decisions(kept, st.noted.values())
            new = Stored(mine, self.owner, st.view_final, st.view, self.wall(), shown, decisions=decisions)
            if not (await self.claims.put_if_newer(self.ns, st.key, new.dump(), mine)).won:
                return True  # a newer one was stored meanwhile: look again
            rec = new
        elif missing := rec.lacks(st.noted.values()):
            # Decisions noted here, not in the record yet: merge them in, at
            # the next version, and edit the parent ourselves (now the owner).
            decisions = merge_decisions(rec.decisions, missing)
            if decisions != rec.decisions:
                merged = replace(
                    rec, version=rec.version + 1, owner=self.owner, written=self.wall(), decisions=decisions, digest=""
                )
                if not (await self.claims.put_if_newer(self.ns, st.key, merged.dump(), merged.version)).won:
                    return True  # the record moved on meanwhile: look again
                rec = merged
        if rec.is_shown and not st.repair:
            self._handled(st, handled, rec)
            return True
        if rec.owner != self.owner and not st.repair and self.wall() - rec.written < TAKEOVER_S:
            self._handled(st, handled, rec)  # its owner shows it
            return True
        wait = self._wait(st, rec)
        if wait > 0:
            # Not a status change, and the parent was edited moments ago.
            st.not_before = self.clock.now() + wait
            st.sent_status = st.view.status
            return False
        return await self._edit(st, rec, handled, interrupt)

    def _handled(self, st: SlackTaskRecord, handled: int, rec: Stored) -> None:
        st.sent_version, st.sent_status = handled, st.view.status
        st.settled = rec.final and rec.is_shown

    def _wait(self, st: SlackTaskRecord, rec: Stored) -> float:
        if st.sent_version < st.decided_version:
            return 0.0  # a person just clicked: they are looking at the message
        if st.repair or self.flushing() or rec.view.status != rec.shown.get("status"):
            return 0.0
        wait = st.last_update + self.update_interval_s - self.clock.now()
        at, by = rec.shown.get("at"), rec.shown.get("by")
        if by != self.owner and isinstance(at, int | float):
            wait = max(wait, at + self.update_interval_s - self.wall())
        return wait

    async def _edit(self, st: SlackTaskRecord, rec: Stored, handled: int, interrupt: Interrupt | None) -> bool:
        assert st.ref is not None
        channel, ts = st.ref
        asked = self.clock.now()

        async def still_newest() -> bool:
            if st.version != handled and self.clock.now() - asked >= STALE_S:
                # Our view moved on while the edit waited for Slack's budget:
                # the turn is given back, the new view stored, and the edit
                # (keeping its place) sends it: one call, not two.
                return False
            now = await self.read(st.key)
            return now is None or now.version <= rec.version

        # A question or a failure first, whatever else waits for the
        # workspace's edits: a person acts on these (issue 67).
        person = st.urgent and st.needs_person
        rank = PERSON if person else URGENT if st.urgent or rec.final or st.repair else ROUTINE
        if rank > PERSON and interrupt is not None:
            # An edit steps out (keeping its place) once the task's status
            # changes while it waits: it comes back at the head, at the rank
            # the change gives it (routine to urgent; urgent to a person's).
            outer, queued = interrupt, rank

            def due() -> float:
                better = st.urgent and (queued > URGENT or st.needs_person)
                return float("-inf") if better else outer.due()

            interrupt = Interrupt(outer.event, due)
        out = await self.transport.send(
            "chat.update",
            lambda: {
                "channel": channel,
                "ts": ts,
                **parent_payload(rec.shown_view, self.look, time.time_ns(), st.folded),
            },
            deadline=self.deadline,
            before_call=still_newest,
            rank=rank,
            key=f"{channel}/{ts}",
            interrupt=interrupt,
        )
        if out.claim_lost or out.deferred:
            # A newer view was stored while we waited: start over; or a reply goes first.
            return True
        if not out.ok:
            self.failures.failed(st, out)
            return True
        st.last_update = self.clock.now()
        st.repair = False
        if self.on_shown is not None:
            self.on_shown(st, rec.shown_view)
        await self.shown(st, rec)
        if not st.repair:
            self._handled(st, handled, replace(rec, shown=self._shown_value(rec)))
        return True

    def _shown_value(self, rec: Stored) -> dict[str, Any]:
        return {"digest": rec.digest, "status": rec.view.status, "at": self.wall(), "by": self.owner}

    async def shown(self, st: SlackTaskRecord, rec: Stored) -> None:
        """Record that the parent now shows ``rec``'s view. If the record moved
        on meanwhile, our edit may have landed after a newer one: repair."""
        version, owner = rec.version, rec.owner
        if owner != self.owner:
            version += 1  # a takeover: the record is ours from now on
        done = replace(rec, version=version, owner=self.owner, shown=self._shown_value(rec))
        put = await self.claims.put_if_newer(self.ns, st.key, done.dump(), version)
        if not put.won:
            newer = Stored.load(put.value)
            st.repair = newer is not None and newer.is_shown
            if newer is not None and newer.lacks(st.noted.values()):
                # A view written from a read before our merge: merge again.
                st.version += 1
                st.decided_version = st.version

    async def posted(self, st: SlackTaskRecord, view: TaskView, final: bool, decisions: tuple[Decision, ...]) -> None:
        """The parent was just posted showing ``view`` with ``decisions``: store it as shown."""
        version = version_of(view, final)
        rec = Stored(version, self.owner, final, view, self.wall(), {}, decisions=decisions)
        if self.on_shown is not None:
            self.on_shown(st, rec.shown_view)
        await self.shown(st, rec)
