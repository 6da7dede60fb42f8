# mypy: disable-error-code="no-untyped-call"
"""A busy channel stays readable: per-call lines fold into one board (issue 67).

Slack takes about one post a second per channel. When many tasks share a
channel (everyone sends their agents to ``#agents`` first), their thread
replies queue behind each other and the channel falls a minute behind. So
each channel's load is watched, and past a bound the channel *folds*:

* **What folds.** A task's per-call lines (tool calls, step changes) and
  its other progress lines (milestones, artifacts, context forecasts) are
  not posted as thread replies: each is claimed and settled like a reply
  (so no replica or restart posts it later), counted on the task's own
  parent message (``🗒️ 37 tool calls, 2 step changes shown here …``, with
  the newest), and the task's row on the channel's board shows its last
  one. Everything still reaches every other sink: folding is the Slack
  sink's display only; the audit trail (PostgreSQL) gets every event.
* **What never folds, and goes first.** Approval requests, reminders,
  decisions, errors and final summaries stay thread replies, ahead of any
  progress reply in the channel's queue (:mod:`.turns`); a task's parent
  is posted ahead of other parents once its task waits for a person or
  failed; a parent edit that becomes a status change steps ahead of
  routine edits (:mod:`.shared`).
* **The board.** One message per channel listing its tasks: those waiting
  for a person (with the question), those that failed, those working (with
  their last step) and those finished lately, each linked to its own
  message. Edited in place (``chat.update``, at the head of the method's
  queue, :data:`~.pacing.BOARD`, with one call of Slack's edit budget kept
  for boards so that a due board never waits for it to refill behind the
  parents' edits): within :data:`URGENT_GAP_S` of a task appearing, coming
  to wait for a person or failing, within :data:`ROUTINE_GAP_S` of any
  other change (an end, working again, a last step); both times the number
  of boards with changes, as several busy channels share Slack's edit
  budget.

**The bound** (``SPANVISOR_SLACK_BOARD_BACKLOG``, posts): a channel folds
when more posts wait for it than the bound (at one a second: the channel is
that many seconds behind). It unfolds once what it would post stays at or
below half the bound for :func:`window` seconds (the posts waiting, plus
one for each task that folded a line within the window); each task still
running then gets one reply of what was folded (a work log: counts and the
newest lines) and its later calls go to its thread again. Its board stays
and is kept current, as every board posted in the channel is from then on.

**One board, across restarts and replicas.** The board's message is claimed
in the state store (``<namespace>.board`` / the channel as routed) before it
is posted and its ``(channel, ts)`` stored after, like a parent (a
replica that finds it claimed adopts it, a restarted process edits the one
it finds; after an ambiguous post the channel's history is searched for its
metadata before anything is posted again). Its rows are shared too
(``<namespace>.boardrows`` / the channel, versioned with ``put_if_newer``):
each replica merges the rows of the tasks it tracks (a row's newest view
wins, by the same version as the shared parent view, :mod:`.shared`), so
every replica's edit shows every replica's tasks.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from spanvisor.chat.claims import Claims
from spanvisor.chat.pacing import BOARD
from spanvisor.sink import Clock
from spanvisor.statestores.api import StoreUnavailable
from spanvisor.stats import PipelineStats

from .blocks import Look
from .board_rows import Row, board_payload, row_of
from .record import SlackTaskRecord, former_key
from .recovery import ParentFinder
from .transport import Transport
from .turns import FIRST

log = logging.getLogger("spanvisor.slack")

BOARD_TYPE = "spanvisor_board"  # the board's message metadata event_type
# Least time between two edits of a board: after a task came to wait for a
# person or failed; after other changes (a start, an end, a last step). Each
# is multiplied by the number of boards with changes.
URGENT_GAP_S = 1.5
ROUTINE_GAP_S = 5.0
# A finished task stays on the board this long (wall clock); a task nobody
# said anything of for QUIET_ROW_S leaves it (its replica went away).
FINISHED_KEEP_S = 900.0
QUIET_ROW_S = 1800.0
MIN_WINDOW_S = 5.0


def window(backlog: int, interval_s: float) -> float:
    """How long a folded channel must stay calm before it unfolds: the time
    it takes Slack to post ``backlog`` messages to it, at least 5 s."""
    return max(MIN_WINDOW_S, backlog * interval_s)


@dataclass
class ChannelBoard:
    """One channel's load, its board's message and the rows this process knows."""

    channel: str  # as routed: a name or an ID
    records: dict[str, SlackTaskRecord] = field(default_factory=dict)
    rows: dict[str, Row] = field(default_factory=dict)  # this process's rows, by parent key
    folded: bool = False
    calm_since: float | None = None
    recent: dict[str, float] = field(default_factory=dict)  # parent key -> when it last folded a line
    waiting: int = 0  # posts waiting when last looked
    ever_folded: bool = False
    gen: int = 0  # changes noted
    urgent_gen: int = -1  # the last change that is urgent
    shown_gen: int = -1  # the changes the board's last edit (or post) included
    ref: tuple[str, str] | None = None
    state: str = "unknown"  # unknown (not looked up) / none / live / off
    last_edit: float = float("-inf")
    digest: str = ""  # what its last edit here showed
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    worker: asyncio.Task[None] | None = None

    @property
    def dirty(self) -> bool:
        return self.gen > self.shown_gen

    @property
    def urgent(self) -> bool:
        return self.urgent_gen > self.shown_gen


@dataclass
class Boards:
    """The boards of the channels this sink posts to, and whether each is folded."""

    transport: Transport
    claims: Claims
    stats: PipelineStats
    look: Look
    clock: Clock
    namespace: str
    backlog: int = 10
    deadline: Callable[[], float | None] = lambda: None
    flushing: Callable[[], bool] = lambda: False
    finder: ParentFinder | None = None
    wall: Callable[[], float] = time.time
    _boards: dict[str, ChannelBoard] = field(default_factory=dict)
    _team_url: str | None = None
    _team_asked: float = float("-inf")

    @property
    def on(self) -> bool:
        return self.backlog > 0

    def _ns(self, what: str) -> str:
        return f"{self.namespace}.{what}"

    def board(self, channel: str) -> ChannelBoard:
        b = self._boards.get(channel)
        if b is None:
            b = self._boards[channel] = ChannelBoard(channel)
        return b

    def folded_channels(self) -> int:
        return sum(1 for b in self._boards.values() if b.folded)

    # --- what the sink and the workers tell it (no awaits) ---------------

    def note(self, st: SlackTaskRecord) -> None:
        """The task's record changed: its row is looked at again on the next
        pass (within :data:`ROUTINE_GAP_S`); a task new here, or that comes
        to wait for a person or fails, makes the board due within
        :data:`URGENT_GAP_S`."""
        if not self.on or st.channel is None or st.borrowed or not st.offered:
            return
        b = self.board(st.channel)
        if (old := former_key(st.view)) is not None and old != st.key:
            # Renamed by its root (.rename): its row goes on under the new key, once.
            b.records.pop(old, None)
            b.rows.pop(old, None)
            b.recent.pop(old, None)
        b.records[st.key] = st
        b.gen += 1
        before = b.rows.get(st.key)
        v = st.shown_view
        question = v.approvals[0].question if v.approvals else ""
        asks = question and (before is None or before.question != question)
        if before is None or asks or (v.status in ("awaiting_approval", "error") and before.status != v.status):
            b.urgent_gen = b.gen  # a new task, a question, a failure: on the board within URGENT_GAP_S
        self._start(b)
        b.wake.set()

    def fold(self, st: SlackTaskRecord) -> None:
        """``st`` folded a line: its channel would have posted it."""
        if st.channel is not None:
            self.board(st.channel).recent[st.key] = self.clock.now()

    def folded(self, channel: str) -> bool:
        """Whether ``channel``'s per-call lines fold now (see the module doc)."""
        if not self.on:
            return False
        b = self.board(channel)
        now = self.clock.now()
        b.waiting = waiting = self.transport.turns.waiting(channel)
        if not b.folded:
            if waiting > self.backlog:
                b.folded, b.calm_since = True, None
                self.stats.inc("slack_board_folds_total")
                if not b.ever_folded:
                    b.ever_folded = True
                    log.warning(
                        "Slack channel %s is busy (%d posts waiting): tool calls and steps fold into each "
                        "task's message and one board in the channel until it catches up "
                        "(SPANVISOR_SLACK_BOARD_BACKLOG; a route per agent or repo spreads the load)",
                        channel,
                        waiting,
                    )
                b.gen += 1
                b.urgent_gen = b.gen
                self._start(b)
                b.wake.set()
            return b.folded
        span = window(self.backlog, self.transport.channel_interval_s)
        for key in [k for k, at in b.recent.items() if now - at > span]:
            del b.recent[key]
        if waiting + len(b.recent) > self.backlog // 2:
            b.calm_since = None
        elif b.calm_since is None:
            b.calm_since = now
        elif now - b.calm_since >= span:
            b.folded, b.calm_since = False, None
            log.info("Slack channel %s caught up: tool calls and steps go to the threads again", channel)
            b.gen += 1
            b.wake.set()
            for st in b.records.values():
                st.wake.set()  # each running task says what folded, in a reply
        return b.folded

    def pending(self) -> int:
        """Boards with changes not shown yet (a flush waits for them)."""
        return sum(1 for b in self._boards.values() if b.state == "live" and b.dirty and b.records)

    def wake_all(self) -> None:
        for b in self._boards.values():
            b.wake.set()

    async def close(self) -> None:
        workers = [b.worker for b in self._boards.values() if b.worker is not None]
        for w in workers:
            w.cancel()
        await asyncio.gather(*workers, return_exceptions=True)

    # --- the board's worker ----------------------------------------------

    def _start(self, b: ChannelBoard) -> None:
        if b.worker is None and b.state != "off":
            b.worker = asyncio.get_running_loop().create_task(self._run(b), name=f"slack-board:{b.channel[:20]}")

    async def _run(self, b: ChannelBoard) -> None:
        try:
            if b.state == "unknown":
                found = await self.claims.get(self._ns("board"), b.channel)
                if found is not None:
                    self._adopt(b, found)
                else:
                    b.state = "none"
            while b.state != "off":
                if b.folded:
                    self.folded(b.channel)  # a folded channel is looked at again, to unfold once calm
                if b.state == "none":
                    if b.folded:
                        await self._post(b)
                    else:
                        await self._wait(b, float("inf"))
                    continue
                due = self._due(b)
                if b.dirty and b.records and due <= self.clock.now():
                    await self._edit(b)
                    continue
                due = due if b.dirty and b.records else float("inf")
                if b.folded:
                    due = min(due, self.clock.now() + 1.0)
                await self._wait(b, due)
        except asyncio.CancelledError:
            raise
        except StoreUnavailable:
            log.warning("the board of Slack channel %s stops: the state store was away past the deadline", b.channel)
            b.state = "off"
        except Exception:  # a bug here must not kill the sink
            log.exception("the board of Slack channel %s failed; it is no longer edited", b.channel)
            b.state = "off"
        finally:
            b.worker = None

    def _due(self, b: ChannelBoard) -> float:
        if self.flushing():
            return float("-inf")
        busy = max(1, sum(1 for x in self._boards.values() if x.state == "live" and x.dirty))
        gap = (URGENT_GAP_S if b.urgent else ROUTINE_GAP_S) * busy
        return b.last_edit + gap

    async def _wait(self, b: ChannelBoard, due: float) -> None:
        now = self.clock.now()
        if due <= now:
            return
        b.wake.clear()
        waiter = asyncio.ensure_future(b.wake.wait())
        sleeper = asyncio.ensure_future(self.clock.sleep(due - now)) if due != float("inf") else None
        try:
            await asyncio.wait({f for f in (waiter, sleeper) if f}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
            if sleeper:
                sleeper.cancel()

    def _adopt(self, b: ChannelBoard, value: Mapping[str, Any]) -> None:
        if value.get("ts") and value.get("channel"):
            b.ref = (str(value["channel"]), str(value["ts"]))
            self._live(b)
        else:  # an earlier post ended ambiguously and was not found: never a second board
            b.state = "off"

    async def _rows(self, b: ChannelBoard) -> list[Row]:
        """This process's rows merged into the channel's shared ones; the
        merge stored when it changes them (newest view of each task wins)."""
        wall = self.wall()
        for key, st in list(b.records.items()):
            b.rows[key] = row_of(st, b.rows.get(key), wall)
            if b.rows[key].final and (st.worker is None or st.worker.done()):
                del b.records[key]  # its row is shown as it ended; nothing more comes here
        for key in [k for k, r in b.rows.items() if wall - r.changed > (FINISHED_KEEP_S if r.final else QUIET_ROW_S)]:
            del b.rows[key]
            b.records.pop(key, None)
        ns = self._ns("boardrows")
        merged: dict[str, Row] = dict(b.rows)
        # Rows of renamed runs under their former keys (another replica's, or an
        # earlier process's): the run's row is its new key's (.rename).
        gone = {old for st in b.records.values() if (old := former_key(st.view)) is not None and old != st.key}
        for _ in range(3):
            raw = await self.claims.get(ns, b.channel)
            version = int(raw.get("version") or 0) if raw is not None else 0
            stored = raw.get("rows") if raw is not None else None
            merged = {}
            if isinstance(stored, Mapping):
                for key, value in stored.items():
                    r = Row.load(value)
                    keep = r is not None and wall - r.changed <= (FINISHED_KEEP_S if r.final else QUIET_ROW_S)
                    if r is not None and keep and str(key) not in gone:
                        merged[str(key)] = r
            changed = len(merged) != (len(stored) if isinstance(stored, Mapping) else 0)
            for key, r in b.rows.items():
                if r.newer_than(merged.get(key)) and not r.same(merged.get(key)):
                    merged[key], changed = r, True
            if not changed:
                break
            value = {"version": version + 1, "rows": {k: r.dump() for k, r in merged.items()}}
            if (await self.claims.put_if_newer(ns, b.channel, value, version + 1)).won:
                break
        return list(merged.values())

    async def _team(self) -> str | None:
        """The workspace's URL (``auth.test``, once), to link each row to its task's message."""
        if self._team_url is None and self.clock.now() - self._team_asked > 600.0:
            self._team_asked = self.clock.now()
            out = await self.transport.send("auth.test", lambda: {}, deadline=self.deadline)
            url = (out.data or {}).get("url") if out.ok else None
            if isinstance(url, str) and url.startswith("https://") and "|" not in url and ">" not in url:
                self._team_url = url if url.endswith("/") else url + "/"
        return self._team_url

    async def _payload(self, b: ChannelBoard) -> tuple[dict[str, Any], str, int]:
        gen = b.gen
        rows = await self._rows(b)
        payload, digest = board_payload(rows, self.look, folded=b.folded, team_url=await self._team())
        return payload, digest, gen

    async def _post(self, b: ChannelBoard) -> None:
        """Post the channel's board: claimed first, so it is posted once."""
        ns = self._ns("board")
        claim = await self.claims.claim(ns, b.channel)
        if claim.value is not None:
            self._adopt(b, claim.value)
            return
        if not claim.won:  # another replica is posting it right now
            await self.clock.sleep(1.0)
            return
        channel = self.transport.channels.known(b.channel) or b.channel
        payload, digest, gen = await self._payload(b)
        started = time.time()
        metadata = {"event_type": BOARD_TYPE, "event_payload": {"board": b.channel}}

        def build() -> Mapping[str, Any]:
            return {"channel": channel, **payload, "unfurl_links": False, "unfurl_media": False, "metadata": metadata}

        async with self.claims.lease(ns, [b.channel]) as lease:
            out = await self.transport.send(
                "chat.postMessage", build, deadline=self.deadline, before_call=lease.confirm, rank=FIRST
            )
            if out.claim_lost:
                return
            if out.ok and out.data:
                ref = (str(out.data["channel"]), str(out.data["ts"]))
                if not await self.claims.settle(ns, b.channel, {"channel": ref[0], "ts": ref[1]}):
                    # Our lease lapsed and another replica posted one: theirs stays.
                    await self._delete(ref)
                    stored = await self.claims.get(ns, b.channel)
                    if stored is not None:
                        self._adopt(b, stored)
                    return
                b.ref = ref
                self._live(b)
                self._shown(b, gen, digest)
                self.stats.inc("slack_boards_total", outcome="posted")
                return
            if out.decision is not None and out.decision.kind == "ambiguous" and self.finder is not None:
                found = await self.finder.find(b.channel, channel, started, event_type=BOARD_TYPE)
                final = {"channel": found.channel_id or channel, "ts": found.ts}
                await self.claims.settle(ns, b.channel, final)
                self._adopt(b, final)
                if b.state == "off":
                    log.warning(
                        "the board of Slack channel %s may have been posted and was not found: %s", channel, found.why
                    )
                return
        await self.claims.release(ns, b.channel)
        error = out.failure.error if out.failure else "unknown"
        if out.decision is not None and out.decision.kind in ("retry", "rate_limited"):
            return  # the shutdown deadline: nothing more is posted
        self.stats.drop(
            f"slack_board_{error}", sink="slack", detail=f"posting a channel's board: Slack answered {error}"
        )
        b.state = "off"

    async def _edit(self, b: ChannelBoard) -> None:
        assert b.ref is not None
        channel, ts = b.ref
        payload, digest, gen = await self._payload(b)
        if digest == b.digest:
            self._shown(b, gen, digest)  # nothing new to show
            return
        out = await self.transport.send(
            "chat.update",
            lambda: {"channel": channel, "ts": ts, **payload},
            deadline=self.deadline,
            rank=BOARD,
            key=f"{channel}/{ts}",
        )
        b.last_edit = self.clock.now()
        if out.ok:
            self._shown(b, gen, digest)
            return
        error = out.failure.error if out.failure else "unknown"
        if out.decision is not None and out.decision.kind in ("retry", "ambiguous", "rate_limited"):
            return  # edited again on the next pass (or the shutdown deadline passed)
        # Deleted, archived, not allowed: this board stops; the tasks' own messages go on.
        self.stats.drop(
            f"slack_board_{error}", sink="slack", detail=f"editing a channel's board: Slack answered {error}"
        )
        log.warning("the board of Slack channel %s is no longer edited: Slack answered %s", channel, error)
        b.state = "off"

    def _live(self, b: ChannelBoard) -> None:
        """A board to keep current: one call of Slack's edit budget is kept for
        boards from now on, so a board that is due never waits behind a queue
        of parents' edits for the budget to refill."""
        b.state = "live"
        self.transport.pacer.reserve("chat.update", 1)

    def _shown(self, b: ChannelBoard, gen: int, digest: str) -> None:
        b.shown_gen, b.digest, b.last_edit = max(b.shown_gen, gen), digest, self.clock.now()

    async def _delete(self, ref: tuple[str, str]) -> None:
        out = await self.transport.send(
            "chat.delete", lambda: {"channel": ref[0], "ts": ref[1]}, deadline=self.deadline
        )
        self.stats.inc("slack_duplicates_total", kind="board", deleted="true" if out.ok else "false")


__all__ = [
    "BOARD_TYPE",
    "ROUTINE_GAP_S",
    "URGENT_GAP_S",
    "Boards",
    "ChannelBoard",
    "Row",
    "board_payload",
    "row_of",
    "window",
]
