"""A run renamed by its root: what the Slack sink kept under its former key moves.

A task shown before its root arrived has a derived id D; when the root names
its own id X, every later view carries ``task_id`` X and ``former_id`` D, the
run unchanged (issue 66). The task keeps its ONE
parent message and its thread: what the state store holds under ``D/run``
is kept under ``X/run`` from then on, and the message is edited in place to
show X.

The move is one worker step (:meth:`Renames.move`), taken before any other
step of a record whose view has a ``former_id`` and was not moved yet. It is
read from the store alone, never from memory of earlier events, so a
restarted process or a replica that first meets the task as X moves the
same parent, and doing it twice changes nothing:

* ``<ns>.parent``: X's claim is settled with D's ``(channel, ts)``; D's
  value keeps them and gains ``moved_to`` (X's key): a record made later
  under D (a person's click on a button made while the task showed as D,
  a replica that never saw the root) adopts the same message and follows
  to X. With no message under D, D is settled with only ``moved_to``, so
  nothing is ever posted under it; X posts as any task does.
* ``<ns>.view``: D's shared view is copied to X (a newer view replaces it
  there as usual, carrying its decisions) and D's is replaced by a marker
  newer than any view (:data:`MOVED_VERSION`), so an older view under D
  never shows over X's; a record reading it follows to X (.shared).
* thread lines and alerts stay claimed under D: a line is looked for under
  the former id too before it is posted under X (.thread).
* the board row under D goes when X's comes (.board).
* the agent session's record (by message) names X.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .record import SlackTaskRecord, former_key, moved_to, parent_key
from .sessions import NAMESPACE as SESSIONS
from .sessions import session_key

if TYPE_CHECKING:
    from spanvisor.chat.claims import Claims
    from spanvisor.sink import Clock

    from .board import Boards
    from .recovery import ParentFinder

# Above every view's version (shared.version_of: at most 2**57): a marker
# stored at it is never replaced by a view.
MOVED_VERSION = 1 << 62
# How long to wait for a parent another holder is posting under the former key.
IN_FLIGHT_WAIT_S = 1.0
# The former parent cannot be told yet: look again after a wait.
WAIT: Mapping[str, Any] = {"wait": True}


@dataclass
class Renames:
    claims: Claims
    finder: ParentFinder
    boards: Boards
    clock: Clock
    namespace: str
    sessions: bool = False

    def _ns(self, what: str) -> str:
        return f"{self.namespace}.{what}"

    async def move(self, st: SlackTaskRecord) -> bool:
        """One step of moving ``st``'s state from its former key to its own; True: a step was taken."""
        old, new = former_key(st.view), parent_key(st.view)
        assert old is not None
        ref = await self._former_parent(st, old, new)
        if ref is WAIT:
            return True  # looked again after a wait
        parent = self._ns("parent")
        if ref is not None:
            claim = await self.claims.claim(parent, new)
            if claim.value is None and not claim.won:
                await self.clock.sleep(IN_FLIGHT_WAIT_S)  # another replica is moving it right now
                return True
            if claim.value is None:
                await self.claims.settle(parent, new, ref)
            await self._move_view(old, new)
            if moved_to(await self.claims.get(parent, old)) != new:
                await self.claims.put(parent, old, {**ref, "moved_to": new})
            if self.sessions and st.ref is not None:
                # A stop press on the session finds the task by its new id (the old one works too).
                rec = {"task_id": st.view.task_id, "run_id": st.view.run_id, "version": 2}
                await self.claims.put_if_newer(SESSIONS, session_key(*st.ref), rec, 2)
        st.key, st.moved = new, True
        self.boards.note(st)
        return True

    async def _former_parent(self, st: SlackTaskRecord, old: str, new: str) -> Mapping[str, Any] | None:
        """The parent under the former key (``channel`` and ``ts``, the ts None
        when a post there ended ambiguously), None when there is none, or
        :data:`WAIT` when that cannot be told yet (it is being posted)."""
        parent = self._ns("parent")
        if st.ref is not None and st.key == old:
            # Posted or adopted under the former key by this very record.
            return {"channel": st.ref[0], "ts": st.ref[1]}
        claim = await self.claims.claim(parent, old)
        if claim.value is not None:
            if claim.value.get("channel") is None:
                return None  # settled by an earlier move with no parent under it
            return {"channel": claim.value["channel"], "ts": claim.value.get("ts")}
        if not claim.won:
            await self.clock.sleep(IN_FLIGHT_WAIT_S)
            return WAIT
        # Ours now, and nothing settled: an earlier holder may have posted
        # without storing it (killed in between): looked for before saying none.
        said = await self.claims.get(self._ns("posting"), old)
        if said is not None:
            raw = said.get("since")
            since = float(raw) if isinstance(raw, int | float) and raw > 0 else 0.0
            search = await self.finder.find(old, str(said.get("channel") or st.channel), since)
            if search.unsure:
                await self.claims.release(parent, old)
                await self.clock.sleep(IN_FLIGHT_WAIT_S)
                return WAIT
            if search.channel_id is not None and search.ts is not None:
                ref = {"channel": search.channel_id, "ts": search.ts}
                await self.claims.settle(parent, old, ref)
                return ref
        # Never posted under the former key: nothing ever will be (it points at the new one).
        await self.claims.settle(parent, old, {"channel": None, "ts": None, "moved_to": new})
        return None

    async def _move_view(self, old: str, new: str) -> None:
        ns = self._ns("view")
        raw = await self.claims.get(ns, old)
        if raw is not None and moved_to(raw) is None and isinstance(raw.get("version"), int):
            await self.claims.put_if_newer(ns, new, raw, int(raw["version"]))
        if moved_to(raw) != new:
            await self.claims.put_if_newer(ns, old, {"version": MOVED_VERSION, "moved_to": new}, MOVED_VERSION)


__all__ = ["MOVED_VERSION", "Renames"]
