"""The audit-trail sink: events into PostgreSQL, through the outbox when it is away.

SUCCESS from :meth:`PostgresSink.export` means the batch is committed in
PostgreSQL or fsynced in the local outbox; either way it survives a crash.
While the outbox holds anything, new batches queue behind it so replay stays
in order, and a background task drains it (also at start, after a crash)
with capped exponential backoff. Only a full outbox loses events, and that
is counted (``dropped_total{reason="outbox_full"}``) and logged.

:meth:`PostgresSink.health` says whether the database took the last write
or probe, and if not why (cannot connect, authentication failed, no such database, unavailable): the
pipeline's readiness (``/readyz``) follows it. While the database is away
with nothing to replay, the same background task probes it with backoff, so
readiness comes back by itself; "PostgreSQL is back" is logged only after
the database was seen away and then answered again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from spanvisor.codec import CodecError, event_from_dict, event_to_dict
from spanvisor.control import faults
from spanvisor.events import Event, HumanIntervention
from spanvisor.pipeline.outbox import Outbox, OutboxFull
from spanvisor.pipeline.outbox_destination import OutboxDestination, database_destination
from spanvisor.sink import BaseSink, SinkContext, SinkResult

from .checkpoints import Checkpointer
from .recorded import Recovery, recovery_for
from .settings import SETTINGS
from .settings import enabled as settings_enabled
from .signing import SigningKey
from .streamrows import SHARED_KEY, StreamRows, settle

if TYPE_CHECKING:
    from spanvisor.config import Config, Setting

    from .db import Database
    from .writer import WriteMethod, Writer

log = logging.getLogger("spanvisor.postgres")

REPLAY_BATCH = 1000
_BACKOFF_START_S = 0.1
_BACKOFF_MAX_S = 5.0
_RETENTION_EVERY_S = 3600.0


class PostgresSink(BaseSink):
    name = "postgres"
    durable = True
    settings: ClassVar[Sequence[Setting]] = SETTINGS
    # Behind, up to 4 batches in one transaction (SinkWorker reads it): most of
    # a write's cost is per transaction (its statements' round trips, the
    # commit's fsync, the stream rows it carries).
    catch_up_batches: ClassVar[int] = 4

    def __init__(self, write_method: WriteMethod = "copy") -> None:
        super().__init__()
        self.write_method: WriteMethod = write_method
        self.db: Database | None = None
        self.writer: Writer | None = None
        self.outbox: Outbox | None = None
        self._degraded = False
        self._wake = asyncio.Event()
        self._drained = asyncio.Event()
        self._closing = False
        self._replayer: asyncio.Task[None] | None = None
        # The decision log's chain head, checkpointed in a task of its own
        # (docs/design/audit.md): None when SPANVISOR_AUDIT_CHECKPOINT_INTERVAL is 0.
        self.checkpointer: Checkpointer | None = None
        self._checkpoints: asyncio.Task[None] | None = None
        # Applied decisions without their row, written (docs/design/audit.md).
        self.recovery: Recovery | None = None
        self._recovering: asyncio.Task[None] | None = None
        self._last_outage_log = 0.0
        # What the last contact with the database said: read by health() from
        # any thread (a tuple is replaced whole, never changed in place).
        self._health: tuple[bool, str] = (False, "not started")
        # The key this process signs its decision rows with (signing.py); None: unsigned (said at start).
        self.signing_key: SigningKey | None = None
        self._unsigned_said = False

    @classmethod
    def enabled(cls, config: Config) -> bool:
        return settings_enabled(config)

    def imports(self, config: Config) -> Sequence[str]:
        """What start, the writer and the replay import (spanvisor.sink.BaseSink.imports),
        with what the standard library imports on their way: importlib.resources'
        readers (the migrations' files), shutil's grp and pwd (the embedded server's)."""
        names = ["asyncpg", "spanvisor_postgres.db", "spanvisor_postgres.writer", "spanvisor_postgres.sanitize"]
        names += ["spanvisor_postgres.queries", "importlib.readers", "importlib.resources.readers"]
        names += ["spanvisor_postgres.signer", "spanvisor_postgres.signkeys"]
        if config.get("embedded_db") and not config.get("database_url"):
            names += ["grp", "pwd"]
        return names

    async def start(self, ctx: SinkContext) -> None:
        from .db import open_shared
        from .writer import Writer

        self.ctx = ctx
        self.signing_key = _signing_key(ctx.config)
        self.outbox = await Outbox.open(
            ctx.config.data_dir / "outbox",
            self.name,
            int(ctx.config.get("outbox_max_events") or 1_000_000),
            ctx.stats,
            # Its own database's file: events held for another are never replayed here.
            destination=outbox_destination(ctx.config),
        )
        if self.outbox.size:
            log.warning("postgres outbox holds %d events from an earlier run; replaying them", self.outbox.size)
        self.db = await open_shared(ctx.config, ctx.shared)
        self.writer = Writer(None, self.write_method, ctx.replica_id)
        if self.signing_key is not None:
            self.writer.sign = self._sign
        # The event stream's PostgreSQL feed, if it runs in this pipeline,
        # hands its batches to this writer's transactions from now on.
        self.writer.stream_rows = ctx.shared.setdefault(SHARED_KEY, StreamRows())
        try:
            await self._probe()
            self._health = (True, "ok")
            await self.writer.warm()
        except Exception as exc:
            self._degraded = True
            self._health = (False, self._describe(exc))
            self._last_outage_log = time.monotonic()
            log.warning(
                "PostgreSQL is not reachable at start: %s; events go to the outbox until it is", self._health[1]
            )
        self._replayer = asyncio.create_task(self._replay_loop(), name="spanvisor-postgres-replay")
        self._wake.set()
        self.recovery = recovery_for(ctx.state_store, self._pool, self._enqueue)
        if self.recovery is not None:
            self._recovering = asyncio.create_task(self.recovery.run(), name="spanvisor-postgres-recovery")
        interval = float(ctx.config.get("audit_checkpoint_interval") or 0.0)
        if interval > 0:
            self.checkpointer = Checkpointer(self._pool, ctx.state_store, ctx.replica_id, interval)
            self._checkpoints = asyncio.create_task(self.checkpointer.run(), name="spanvisor-postgres-checkpoints")

    async def _enqueue(self, events: Sequence[Event]) -> None:
        assert self.outbox is not None
        await self.outbox.append([event_to_dict(e) for e in events])
        self._wake.set()

    async def _pool(self) -> Any:
        from .db import shared_pool

        assert self.db is not None and self.writer is not None and self.ctx is not None
        pool = await shared_pool(self.db, self.ctx.shared)
        self.writer.pool = pool
        return pool

    async def _write(self, events: Sequence[Event]) -> None:
        assert self.writer is not None
        await self._pool()
        await self.writer.write(events)
        if not self._health[0]:
            self._health = (True, "ok")

    async def _sign(self, conn: Any, events: Sequence[Event]) -> None:
        """Sign the batch's decision rows in its transaction, before its
        commit (the writer calls it): a row is committed signed or not at
        all, whenever the process is killed. A failure fails the batch,
        which waits in the outbox and is written and signed again."""
        import asyncpg

        from .signer import sign_written
        from .writer import TransientDbError

        assert self.signing_key is not None
        # A savepoint: a signature the role may not write must not take the rows with it.
        await conn.execute("SAVEPOINT spanvisor_sign")
        try:
            await sign_written(conn, self.signing_key, events)
        except (asyncpg.InsufficientPrivilegeError, asyncpg.UndefinedTableError) as exc:
            # Not transient: a role granted its rights before migration 0018 (the
            # table is new). Failing every batch with a decision would hold them
            # all in the outbox; their rows are written, unsigned, and verify says so.
            await conn.execute("ROLLBACK TO SAVEPOINT spanvisor_sign")
            if not self._unsigned_said:
                self._unsigned_said = True
                log.error("decision rows are written unsigned: %s (grant the role INSERT on it)", exc)
            return
        except Exception as exc:
            raise TransientDbError(f"signing decision rows: {exc}") from exc
        await conn.execute("RELEASE SAVEPOINT spanvisor_sign")

    async def _probe(self) -> None:
        """One round trip (migrating first if needed); raises when the database is away."""
        pool = await self._pool()
        async with pool.acquire() as conn:
            await conn.fetchval("SELECT 1")

    def health(self) -> tuple[bool, str]:
        return self._health

    def _describe(self, exc: BaseException) -> str:
        """Why the database cannot be written, for readiness: the kind of
        failure, the masked URL and the driver's own words."""
        import asyncpg

        shown = self.db.shown_url if self.db is not None else "PostgreSQL"
        root: BaseException = exc
        for _ in range(5):  # TransientDbError wraps what the driver raised
            nxt = root.__cause__ or root.__context__
            if nxt is None:
                break
            root = nxt
        state = str(getattr(root, "sqlstate", "") or "")
        if isinstance(root, asyncpg.InvalidAuthorizationSpecificationError) or state.startswith("28"):
            what = "authentication failed"
        elif isinstance(root, asyncpg.InvalidCatalogNameError):
            what = "no such database"
        elif isinstance(root, OSError | asyncpg.CannotConnectNowError | asyncpg.ConnectionDoesNotExistError):
            what = "cannot connect"
        else:
            what = "unavailable"
        # The setting that points there, unless it is the embedded server.
        setting = ", SPANVISOR_DATABASE_URL" if self.db is not None and self.db.embedded is None else ""
        return f"{what} ({shown}{setting}): {type(root).__name__}: {root}"

    async def export(self, events: Sequence[Event]) -> SinkResult:
        from .writer import TransientDbError

        if not events:
            return SinkResult.SUCCESS
        if faults.armed(faults.BEFORE_ROW) and any(
            isinstance(e, HumanIntervention) and e.outcome == "applied" for e in events
        ):
            await faults.stop_at(faults.BEFORE_ROW)  # a test's crash between the answer and the row
        assert self.outbox is not None and self.ctx is not None
        try:
            if not self._degraded and self.outbox.size == 0:
                try:
                    await self._write(events)
                    return SinkResult.SUCCESS
                except TransientDbError as exc:
                    self._outage(exc)
            await self.outbox.append([event_to_dict(e) for e in events])
            self._wake.set()
            return SinkResult.SUCCESS
        except OutboxFull as exc:
            self.ctx.stats.drop(
                "outbox_full",
                len(events),
                sink=self.name,
                detail=f"{exc}; raise SPANVISOR_OUTBOX_MAX_EVENTS or bring PostgreSQL back",
            )
            return SinkResult.FAILURE
        except Exception as exc:  # never raise into the pipeline; it retries RETRY
            log.exception("postgres export failed unexpectedly: %s", exc)
            return SinkResult.RETRY

    def _outage(self, exc: BaseException) -> None:
        self._degraded = True
        self._health = (False, self._describe(exc))
        now = time.monotonic()
        if now - self._last_outage_log > 60:
            self._last_outage_log = now
            log.warning("PostgreSQL unavailable (%s); batches go to the outbox and are replayed in order", exc)

    async def _replay_once(self) -> bool:
        """Deliver one chunk of the outbox; False when the database is still away."""
        from .sanitize import quarantine
        from .writer import TransientDbError

        assert self.outbox is not None
        items = await self.outbox.peek(REPLAY_BATCH)
        if not items:
            return True
        events: list[Event] = []
        bad: list[tuple[dict[str, Any], str]] = []
        for _, item in items:
            try:
                events.append(event_from_dict(item))
            except CodecError as exc:
                bad.append((item, f"undecodable outbox entry: {exc}"))
        try:
            await self._write(events)
            if bad:
                pool = await self._pool()
                async with pool.acquire() as conn:
                    for item, reason in bad:
                        eid = item.get("event_id")
                        await quarantine(conn, eid if isinstance(eid, str) else None, None, reason, item)
        except TransientDbError as exc:
            self._outage(exc)
            return False
        await self.outbox.ack(items[-1][0])
        return True

    def _stand_by(self) -> bool:
        """Clear the wake-up before a wait; True when the sink is closing. A
        close that came while the loop was away (a connect attempt) set the
        wake-up already: cleared unchecked, the shutdown waited out the
        backoff (half its time) for a replayer that had stopped."""
        self._wake.clear()
        return self._closing

    async def _replay_loop(self) -> None:
        assert self.outbox is not None
        backoff = _BACKOFF_START_S
        next_retention = time.monotonic() + 60.0
        replayed = False  # something went through the outbox since the database was last seen away
        while not self._closing:
            if self.outbox.size == 0:
                if self._degraded and not await self._reachable():
                    # Away, and nothing to replay: probe again later, so
                    # readiness comes back without waiting for traffic.
                    if self._stand_by():
                        break
                    try:
                        await asyncio.wait_for(self._wake.wait(), backoff)
                    except TimeoutError:
                        pass
                    backoff = min(backoff * 2, _BACKOFF_MAX_S)
                    continue
                self._drained.set()
                if self._degraded:
                    self._degraded = False
                    log.info("PostgreSQL is back%s", "; the outbox is drained" if replayed else "")
                replayed = False
                backoff = _BACKOFF_START_S
                self._wake.clear()
                timeout = max(0.0, next_retention - time.monotonic())
                try:
                    await asyncio.wait_for(self._wake.wait(), timeout)
                except TimeoutError:
                    next_retention = time.monotonic() + _RETENTION_EVERY_S
                    await self._apply_retention()
                continue
            try:
                ok = await self._replay_once()
            except Exception as exc:  # keep the loop alive whatever happens
                log.exception("outbox replay failed: %s", exc)
                ok = False
            if ok:
                backoff = _BACKOFF_START_S
                replayed = True
                continue
            if self._stand_by():
                break
            try:
                await asyncio.wait_for(self._wake.wait(), backoff)
            except TimeoutError:
                pass
            backoff = min(backoff * 2, _BACKOFF_MAX_S)

    async def _reachable(self) -> bool:
        """Whether the database answers now; records it for health()."""
        if self._health[0]:
            return True  # the last write or replay went through
        try:
            await self._probe()
        except Exception as exc:
            self._outage(exc)
            return False
        self._health = (True, "ok")
        return True

    async def _apply_retention(self) -> None:
        assert self.ctx is not None
        retention = self.ctx.config.get("retention")
        if not retention:
            return
        from .queries import prune
        from .removals import floor_of

        try:
            pool = await self._pool()
            deleted = await prune(pool, float(retention), floor_s=floor_of(self.ctx.config))
            if deleted:
                log.info("retention: deleted %d tasks older than %ss", deleted, retention)
        except Exception as exc:
            log.warning("retention prune failed: %s", exc)

    async def force_flush(self, timeout_s: float) -> bool:
        """True when the outbox is empty (everything is in PostgreSQL) within the deadline."""
        if self.outbox is None:
            return True
        if self.outbox.size == 0:
            return True
        self._drained.clear()
        self._wake.set()
        try:
            await asyncio.wait_for(self._drained.wait(), timeout_s)
        except TimeoutError:
            pass
        return self.outbox.size == 0

    async def shutdown(self, timeout_s: float) -> None:
        from .db import release_shared

        deadline = time.monotonic() + timeout_s
        try:
            await self._stop(deadline)
        finally:
            # Said even when the close is cut short (the pipeline's own
            # deadline on a loaded machine cancels it): the outbox is on
            # disk either way, and the operator learns it waits for a start.
            if self.outbox is not None and self.outbox.size:
                log.warning(
                    "%d events stay in the postgres outbox and are replayed on the next start", self.outbox.size
                )
        if self.outbox is not None:
            await self.outbox.close()
        if self.db is not None and self.ctx is not None:
            await release_shared(self.db, self.ctx.shared, max(0.5, deadline - time.monotonic()))

    async def _stop(self, deadline: float) -> None:
        """Stop delivering: a last flush, the replayer and the checkpoints, the writer."""
        if self.outbox is not None and self.outbox.size and not self._degraded:
            await self.force_flush(max(0.0, (deadline - time.monotonic()) / 2))
        self._closing = True
        self._wake.set()
        if self._recovering is not None:
            self._recovering.cancel()
        if self._replayer is not None:
            # Half what is left: a replayer stuck connecting must leave the
            # closes below their time. Not wait_for: it would wait out the
            # cancellation too, and a connect attempt may take long to unwind.
            await asyncio.wait([self._replayer], timeout=max(0.1, (deadline - time.monotonic()) / 2))
            if not self._replayer.done():
                self._replayer.cancel()
        if self.checkpointer is not None and self._checkpoints is not None:
            self.checkpointer.stop()
            await asyncio.wait([self._checkpoints], timeout=max(0.1, (deadline - time.monotonic()) / 4))
            if not self._checkpoints.done():
                self._checkpoints.cancel()
        if self.writer is not None:
            carrier, self.writer.stream_rows = self.writer.stream_rows, None
            if carrier is not None and self.ctx is not None:
                if self.ctx.shared.get(SHARED_KEY) is carrier:
                    del self.ctx.shared[SHARED_KEY]
                settle(carrier.take(), committed=False)  # the feed writes them itself
            await self.writer.close()

    @classmethod
    async def check(cls, config: Config) -> list[tuple[str, bool, str]]:
        from .db import Database

        db = Database(config)
        try:
            pool = await db.get_pool()
            version = await pool.fetchval("SELECT max(version) FROM schema_migrations")
            return [(f"postgres {db.shown_url}", True, f"reachable, schema version {version}")]
        except Exception as exc:
            return [(f"postgres {db.shown_url}", False, str(exc))]
        finally:
            await db.close()


def outbox_destination(config: Config) -> OutboxDestination:
    """The database this sink writes to, as its outbox names it: the URL's
    host, port, dbname and user, or the embedded server's directory."""
    from .db import embedded_root

    url = config.get("database_url")
    if url:
        return database_destination(str(url))
    return OutboxDestination.of("embedded database", str(embedded_root(config).resolve()))


def _signing_key(config: Config) -> SigningKey | None:
    from .signkeys import signing_key

    got = signing_key(config)
    if isinstance(got, SigningKey):
        return got
    log.error("decision rows are not signed: %s", got.reason)
    return None
