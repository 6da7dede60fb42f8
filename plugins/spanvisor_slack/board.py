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
  queue, :data:`~.pacing.BOARD`): within :data:`URGENT_GAP_S` of a task
  coming to wait for a person, failing or ending, every
  :data:`ROUTINE_GAP_S` for other changes (both times the number of
  boards with changes: several busy channels share Slack's edit budget).

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
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from slack_sdk.models.blocks import Block, ContextBlock, HeaderBlock, MarkdownTextObject, PlainTextObject, SectionBlock

from spanvisor.display.task import STATUS_STYLE
from spanvisor.events import TERMINAL, stable_id
from spanvisor.sink import Clock
from spanvisor.statestores.api import StoreUnavailable
from spanvisor.stats import PipelineStats

from . import text as t
from .blocks import Look, problems
from .channels import is_channel_id
from .claims import Claims
from .pacing import BOARD
from .record import SlackTaskRecord
from .recovery import ParentFinder
from .shared import version_of
from .transport import Transport
from .turns import FIRST

log = logging.getLogger("spanvisor.slack")

BOARD_TYPE = "spanvisor_board"  # the board's message metadata event_type
# Least time between two edits of a board: after a task came to wait for a
# person, failed or ended; after other changes (a last step). Each is
# multiplied by the number of boards with changes.
URGENT_GAP_S = 1.5
ROUTINE_GAP_S = 5.0
# A finished task stays on the board this long (wall clock); a task nobody
# said anything of for QUIET_ROW_S leaves it (its replica went away).
FINISHED_KEEP_S = 900.0
QUIET_ROW_S = 1800.0
MIN_WINDOW_S = 5.0
# Rows of each kind a board shows at most (the rest are counted).
MAX_ROWS = 100
# The board's blocks stay this far below Slack's undocumented total.
BOARD_JSON = t.TOTAL_BLOCKS_JSON - 1_500
WAITING, FAILED, WORKING, FINISHED = "waiting", "failed", "working", "finished"
GROUPS = (
    (WAITING, "✋ *Waiting for a person*"),
    (FAILED, "❌ *Failed*"),
    (WORKING, "⚙️ *Working*"),
    (FINISHED, "✅ *Finished lately*"),
)


def window(backlog: int, interval_s: float) -> float:
    """How long a folded channel must stay calm before it unfolds: the time
    it takes Slack to post ``backlog`` messages to it, at least 5 s."""
    return max(MIN_WINDOW_S, backlog * interval_s)


@dataclass(frozen=True, slots=True)
class Row:
    """One task on a board, as shared between replicas (raw text: escaped when rendered)."""

    task_id: str
    name: str
    agent: str
    status: str
    version: int  # shared.version_of the view it was made from
    last: str = ""  # the last step or tool call
    question: str = ""  # the first open approval's question
    link: str = ""  # "<channel ID>/<ts>" of the task's parent
    stalled: bool = False
    changed: float = 0.0  # wall clock, when its content last changed
    since: float = 0.0  # wall clock, when its status began (here: first seen in it)

    @property
    def final(self) -> bool:
        return self.status in TERMINAL

    @property
    def group(self) -> str:
        if self.final:
            return FAILED if self.status == "error" else FINISHED
        return WAITING if self.status == "awaiting_approval" or self.question else WORKING

    def same(self, other: Row | None) -> bool:
        """Equal but for when it changed."""
        return other is not None and all(
            getattr(self, f.name) == getattr(other, f.name) for f in fields(self) if f.name not in ("changed", "since")
        )

    def newer_than(self, other: Row | None) -> bool:
        return other is None or (self.version, self.changed) > (other.version, other.changed)

    def dump(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def load(cls, raw: Any) -> Row | None:
        if not isinstance(raw, Mapping):
            return None
        try:
            return cls(
                task_id=str(raw["task_id"]),
                name=str(raw.get("name") or ""),
                agent=str(raw.get("agent") or ""),
                status=str(raw.get("status") or "working"),
                version=int(raw.get("version") or 0),
                last=str(raw.get("last") or ""),
                question=str(raw.get("question") or ""),
                link=str(raw.get("link") or ""),
                stalled=bool(raw.get("stalled")),
                changed=float(raw.get("changed") or 0.0),
                since=float(raw.get("since") or 0.0),
            )
        except (KeyError, TypeError, ValueError):
            return None


def row_of(st: SlackTaskRecord, before: Row | None, wall: float) -> Row:
    """The row of a task's record now (``before``: its previous row here)."""
    v = st.shown_view
    row = Row(
        task_id=v.task_id,
        name=(v.task_name or v.task_id).strip() or v.task_id,
        agent=v.agent_name or v.agent_id,
        status=v.status,
        version=version_of(st.view, st.view_final),
        last=(st.last_call if st.last_call and v.status not in TERMINAL else None) or v.message or v.step or "",
        question=v.approvals[0].question if v.approvals else "",
        link=f"{st.ref[0]}/{st.ref[1]}" if st.ref is not None else "",
        stalled=v.stalled,
        changed=wall,
        since=wall,
    )
    if before is None:
        return row
    since = before.since if before.status == row.status else wall
    changed = before.changed if row.same(before) else wall
    return Row(**{**row.dump(), "changed": changed, "since": since})


def _md(s: str) -> MarkdownTextObject:
    return MarkdownTextObject(text=s, verbatim=True)


def _when(wall: float) -> str:
    """A time each reader sees in their own zone (Slack's date token)."""
    secs = max(0, int(wall))
    return f"<!date^{secs}^{{time}}|{time.strftime('%H:%M', time.gmtime(secs))} UTC>"


def _label(name: str) -> str:
    """Agent text fit for a link's label (no ``|`` or ``>`` to end it early)."""
    return t.safe(name, 60).replace("|", "¦")


def row_text(r: Row, team_url: str | None) -> str:
    """``✋ <link|Deploy api> · rivet · Allow `git push`?``, one line."""
    emoji = STATUS_STYLE.get(r.status, STATUS_STYLE["working"])[1]
    cid, _, ts = r.link.partition("/")
    url = f"{team_url}archives/{cid}/p{ts.replace('.', '')}" if team_url and is_channel_id(cid) and ts else ""
    name = f"<{url}|{_label(r.name)}>" if url else f"*{t.safe(r.name, 60)}*"
    parts = [f"{emoji} {name}", t.safe(r.agent, 40)]
    g = r.group
    if g == WAITING:
        parts.append(f"waiting since {_when(r.since)}" + (f": {t.safe(r.question, 90)}" if r.question else ""))
    elif g == FAILED:
        parts.append(f"failed at {_when(r.since)}" + (f": {t.safe(r.last, 70)}" if r.last else ""))
    elif g == FINISHED:
        parts.append(f"{r.status} at {_when(r.since)}")
    else:
        said = status_text_of(r)
        if said != "working":
            parts.append(said)
        if r.last:
            parts.append(t.safe(r.last, 70))
    return " · ".join(parts)


def status_text_of(r: Row) -> str:
    return r.status.replace("_", " ") + (" · ⏸ stalled" if r.stalled and not r.final else "")


def ordered(rows: Iterable[Row]) -> dict[str, list[Row]]:
    """Rows by group: waiting longest first, failed and finished newest
    first, working in a stable order (by agent, then name)."""
    out: dict[str, list[Row]] = {g: [] for g, _ in GROUPS}
    for r in rows:
        out[r.group].append(r)
    out[WAITING].sort(key=lambda r: (r.since, r.task_id))
    out[FAILED].sort(key=lambda r: (-r.since, r.task_id))
    out[FINISHED].sort(key=lambda r: (-r.since, r.task_id))
    out[WORKING].sort(key=lambda r: (r.agent, r.name, r.task_id))
    return out


def board_payload(
    rows: Iterable[Row], look: Look, *, folded: bool, backlog: int, team_url: str | None
) -> tuple[dict[str, Any], str]:
    """The board's message and a digest of what it shows (the same digest:
    nothing new to show). Waiting and failed rows come first, so they are
    the last to be left out when the rows do not all fit."""
    groups = ordered(rows)
    n = {g: len(rs) for g, rs in groups.items()}
    prefix = f"{t.escape(look.prefix)} " if look.prefix else ""
    head = (
        f"*{n[WORKING] + n[WAITING]}* running · *{n[WAITING]}* waiting for a person · *{n[FAILED]}* failed · "
        f"*{n[FINISHED]}* finished lately"
    )
    said = (
        f"🗂️ This channel is busy ({backlog} posts waiting): tool calls and steps show here and on each task's "
        "message instead of its thread; approvals, decisions, errors and results still get their replies, first."
        if folded
        else "Each task's thread is current; this board keeps listing the channel's tasks."
    )
    texts: list[tuple[str, str]] = []  # (block kind, text)
    size = len(head) + len(said) + 400
    left_out: dict[str, int] = {}
    for g, title in GROUPS:
        section = ""
        shown = 0
        for r in groups[g][:MAX_ROWS]:
            line = row_text(r, team_url)
            if size + len(line) + 40 > BOARD_JSON or len(texts) >= t.MAX_BLOCKS - 6:
                break
            if section and len(section) + len(line) + 1 > t.SECTION_TEXT - 100:
                texts.append(("section", section))
                section = ""
            section = f"{section}\n{line}" if section else f"{title}\n{line}"
            size += len(line) + 1
            shown += 1
        if section:
            texts.append(("section", section))
            size += 120
        if len(groups[g]) > shown:
            left_out[g] = len(groups[g]) - shown
    if left_out:
        words = {WAITING: "waiting", FAILED: "failed", WORKING: "working", FINISHED: "finished"}
        more = ", ".join(f"{k} {words[g]}" for g, k in left_out.items())
        texts.append(("context", f"… and {more}: each task's own message has them."))
    if not any(g for g in n.values()):
        texts.append(("context", "No tasks right now."))
    digest = stable_id(head, said, *(x for _, x in texts))[:10]
    blocks: list[Block] = [
        HeaderBlock(block_id=f"sv-board-{digest}", text=PlainTextObject(text=f"{prefix}📋 Tasks here"[:150])),
        ContextBlock(block_id=f"sv-board-head-{digest}", elements=[_md(head)]),
        ContextBlock(block_id=f"sv-board-said-{digest}", elements=[_md(said)]),
    ]
    for i, (kind, text) in enumerate(texts):
        bid = f"sv-board-{i}-{digest}"
        if kind == "section":
            blocks.append(SectionBlock(block_id=bid, text=_md(t.clip(text, t.SECTION_TEXT))))
        else:
            blocks.append(ContextBlock(block_id=bid, elements=[_md(t.clip(text, t.SECTION_TEXT))]))
    fallback = (
        f"{prefix}Tasks here: {n[WORKING] + n[WAITING]} running, {n[WAITING]} waiting for a person, {n[FAILED]} failed"
    )
    payload = {"text": t.clip(fallback, t.FALLBACK_TEXT), "blocks": [b.to_dict() for b in blocks]}
    if problems(payload):  # cannot happen by the budget above; a smaller board rather than a refused one
        too_many = ContextBlock(block_id=f"sv-board-x-{digest}", elements=[_md("Too many tasks to list here.")])
        payload["blocks"] = [*payload["blocks"][:3], too_many.to_dict()]
    return payload, digest


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
        pass; a task that comes to wait for a person, fails or ends makes
        the board due at once (within :data:`URGENT_GAP_S`)."""
        if not self.on or st.channel is None or st.borrowed or not st.offered:
            return
        b = self.board(st.channel)
        b.records[st.key] = st
        b.gen += 1
        before = b.rows.get(st.key)
        v = st.shown_view
        question = v.approvals[0].question if v.approvals else ""
        if before is None or before.status != v.status or before.question != question:
            b.urgent_gen = b.gen
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
            b.ref, b.state = (str(value["channel"]), str(value["ts"])), "live"
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
        for _ in range(3):
            raw = await self.claims.get(ns, b.channel)
            version = int(raw.get("version") or 0) if raw is not None else 0
            stored = raw.get("rows") if raw is not None else None
            merged = {}
            if isinstance(stored, Mapping):
                for key, value in stored.items():
                    r = Row.load(value)
                    keep = r is not None and wall - r.changed <= (FINISHED_KEEP_S if r.final else QUIET_ROW_S)
                    if r is not None and keep:
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
        payload, digest = board_payload(
            rows, self.look, folded=b.folded, backlog=b.waiting, team_url=await self._team()
        )
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
                b.ref, b.state = ref, "live"
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
