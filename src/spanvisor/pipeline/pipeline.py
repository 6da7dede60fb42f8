"""Pipeline: the one place that assembles tracker, sinks and their queues.

::

    agent thread(s)                      pipeline thread (owned asyncio loop)
    ───────────────                      ────────────────────────────────────
    processor.on_start ─┐                ┌─ pump (5/50 ms) ─── TaskTracker ─┬─ SinkWorker(postgres) ─ sink.export
    processor.on_end  ──┼─▶ inbox ──────▶┤   poll open roots (every 1 s)      ├─ SinkWorker(slack)    ─ sink.export
    exporter.export   ──┤  (deque,       └─ expire held roots (every 1 s)     └─ SinkWorker(...)      ─ sink.export
    receiver          ──┘   bounded)

Producers only append to a bounded deque (:mod:`spanvisor.pipeline.inbox`): no lock, no I/O, no wake-up syscall.
Each sink has its own bounded queue and worker, so a slow Slack never stalls PostgreSQL; events keep their order
because one tracker feeds every queue in order and each worker exports its batches one at a time. Sink I/O runs
with OpenTelemetry instrumentation suppressed: an instrumented aiohttp or asyncpg feeds no spans back.
"""

from __future__ import annotations

import asyncio
import concurrent.futures.thread  # noqa: F401 - its exit hook must be registered before ours (see start)
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from contextlib import closing
from typing import Any

from opentelemetry import context as otel_context

from spanvisor.budgets.spend import SpendSync
from spanvisor.config import Config
from spanvisor.control import hub
from spanvisor.control.judge import PipelineControl
from spanvisor.control.log import ControlLog
from spanvisor.events import Event
from spanvisor.logs import install_redaction
from spanvisor.logtails.tails import LogTails
from spanvisor.pipeline import exiting
from spanvisor.pipeline.admission import Admission
from spanvisor.pipeline.assemble import build_sinks, open_state_store, prepare, table_within, warm_prices
from spanvisor.pipeline.assemble import replica_id as _replica_id
from spanvisor.pipeline.barrier import flush_workers
from spanvisor.pipeline.inbox import Entry, Inbox
from spanvisor.pipeline.rate import Rate
from spanvisor.pipeline.readiness import readiness
from spanvisor.pipeline.sdkspans import light_span, snapshot_live
from spanvisor.pipeline.sinkworker import SinkWorker
from spanvisor.sink import Sink, SinkContext
from spanvisor.spans.data import SpanData, from_sdk
from spanvisor.spans.live import LiveFact
from spanvisor.statestores.api import ConditionalStateStore, StateStore
from spanvisor.stats import PipelineStats
from spanvisor.tracking.taskstate import TrackerSettings
from spanvisor.tracking.tracker import TaskTracker

log = logging.getLogger("spanvisor.pipeline")

PUMP_INTERVAL_S = 0.05
# After a pump that found spans: spans held a whole interval are more live
# objects for a young collection on the agent's thread (bench_agent_thread).
PUMP_BUSY_INTERVAL_S = 0.005
# Most a pump tracks before it lets the loop run the sinks: a pump that took
# a whole backlog at once kept the sinks (and the database) idle meanwhile,
# and each database round trip of a batch waits for such a turn.
PUMP_SLICE_S = 0.005
# The end of an exporter's delivered batch (one export() call), queued after
# its spans: the exporter path decides provisional tasks there, for the
# batch as a whole, as the receiver does at a request's end. Deciding at
# every pump's end instead cut a batch wherever a pump ended, and a run whose
# root (naming its task id) came after its children in the same batch was
# shown under a derived id now and then (issue 66).
BATCH_END: tuple[str] = ("batch_end",)
# Spans tracked on the exporter path with no batch end after them (the
# processor's, on a pipeline an exporter made; a batch whose end never came)
# are decided anyway once the inbox is worked off and they have waited this
# many pumps and seconds: far longer than an export() call takes to queue
# its spans, so a batch is not cut this way either, short of a stall.
SETTLE_AFTER_PUMPS = 20
SETTLE_AFTER_S = 1.0

__all__ = ["Pipeline", "build_sinks"]


class Pipeline:
    def __init__(
        self,
        config: Config | None = None,
        sinks: Sequence[Sink] | None = None,
        *,
        path: str = "processor",
        state_store: StateStore | None = None,
    ) -> None:
        self.config = config if config is not None else Config.load()
        self.path = path
        self.stats = PipelineStats()
        self.shared: dict[str, Any] = {}
        c = self.config
        self.tracker = TaskTracker(
            TrackerSettings.from_config(c),
            max_open_tasks=c["max_open_tasks"],
            dedup_window=c["dedup_window"],
            root_hold_s=c["root_hold_s"],
            stats=self.stats,
        )
        self.sinks: list[Sink] = list(sinks) if sinks is not None else build_sinks(c, in_agent=path != "receiver")
        self._state_store = state_store
        # What this pipeline's thread would import, imported here, before it starts.
        self._store_factory = prepare(c, self.sinks, self.tracker.settings.pricer, path)
        self._inbox = Inbox(int(c["inbox_size"]), self.stats)
        # Spans tracked per second while the pump works: how soon the inbox has room.
        self._tracked = Rate(stale_s=None)
        self._pumped = False  # the last pump found spans: the next comes sooner
        self._admission = Admission(self._inbox, self._tracked, lambda: self._workers)
        self._workers: list[SinkWorker] = []
        self.control = PipelineControl(self.tracker, self._dispatch, lambda: self._loop)
        self.logtails = LogTails(c, self.stats, path)
        self.spend = SpendSync(self.tracker.settings.ledger, self.tracker.settings.outliers)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._started = threading.Event()
        self._ready = threading.Event()
        self._closed = False
        self._last_poll = 0.0
        self._last_expire = 0.0
        # Exporter path: when spans with no batch end after them were first
        # tracked (None: none wait), and the pumps since.
        self._unsettled_since: float | None = None
        self._unsettled_pumps = 0
        self.stats.gauge("inbox_depth", lambda: float(len(self._inbox)))
        self.stats.gauge("open_tasks", lambda: float(self.tracker.open_tasks))

    @property
    def closed(self) -> bool:
        """Shut down: whatever is handed over now is dropped (and counted)."""
        return self._closed

    # -- producers (any thread; never block, never raise) ------------------------

    def submit_start(self, span: Any) -> None:
        self._inbox.put(("start", span))

    def submit_end(self, span: Any) -> None:
        self._inbox.put(("end", span))

    def submit_batch(self, spans: Sequence[Any]) -> None:
        """An exporter's delivered batch of ended SDK spans (any thread): each
        span's end, then, on the exporter path, the batch's end, where its
        provisional tasks are decided. The spans are bounded as
        :meth:`submit_end`'s; the end is not (see :meth:`Inbox.put_mark`)."""
        if not spans:
            return
        put = self._inbox.put
        try:
            for span in spans:
                put(("end", span))
        finally:
            if self.path == "exporter":
                self._inbox.put_mark(BATCH_END)

    def submit_logs(self, records: Sequence[Any]) -> bool:
        """OpenTelemetry log records for the tasks' log tails (any thread)."""
        return self.logtails.add(records)

    def submit_live(self, facts: Sequence[LiveFact]) -> bool:
        """Live-channel records (any thread): through the inbox, in order with the spans around them."""
        return bool(facts) and self._inbox.put(("live", facts))

    def submit_replayed(self) -> bool:
        """The journal's replay is handed over (any thread): ``TaskTracker.rebuilt`` after it. False: retry."""
        return bool(self._inbox.put(("replayed",)))

    def inbox_free(self) -> int:
        return self._inbox.free()

    def accepting(self, n: int = 1) -> bool:
        """Room for ``n`` more spans from the receiver, and no durable sink near its bound."""
        return self._admission.accepting(n)

    def room_in(self, n: int = 1) -> float | None:
        """0.0 when ``n`` more receiver spans fit now, else about how many seconds until they will (None: unknown)."""
        return None if self._closed else self._admission.room_in(n)

    def submit_spans(self, spans: Sequence[SpanData]) -> bool:
        """Hand ended spans over, all or nothing. False: no room, retry later."""
        if not self.accepting(len(spans)):
            return False
        self.stats.inc("spans_received_total", len(spans), path=self.path)
        self._inbox.put_spans(spans)
        return True

    # -- lifecycle -----------------------------------------------------------

    def start(self) -> Pipeline:
        install_redaction()
        if self._thread is None:
            # In an agent a misspelt setting must not break anything: say it, once.
            for problem in getattr(self.config, "unknown", ()):
                log.warning("spanvisor configuration: %s (ignored)", problem)
            self._thread = threading.Thread(target=self._run, name="spanvisor-pipeline", daemon=True)
            self._thread.start()
            self._started.wait(10)
            hub.set_current(self.control)
            exiting.register(lambda: exiting.at_exit(self))
        return self

    def wait_ready(self, timeout_s: float) -> bool:
        return self._ready.wait(timeout_s)

    def ready(self) -> tuple[bool, str]:
        """Whether every sink started and every durable sink can write now (:mod:`.readiness`)."""
        return readiness(self._workers, self._ready.is_set())

    def _run(self) -> None:
        # Everything on this thread, and every task it creates, inherits the
        # suppression flag: our own I/O never produces spans.
        otel_context.attach(otel_context.set_value(otel_context._SUPPRESS_INSTRUMENTATION_KEY, True))
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        self._main_task = loop.create_task(self._main())
        self._started.set()
        try:
            loop.run_forever()
        finally:
            exiting.settle(loop)
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def _main(self) -> None:
        c = self.config  # the price table is read while the store opens; calls are priced with it
        warm_prices(self.tracker.settings.pricer, c.data_dir, self.path == "receiver")
        store = self._state_store or await open_state_store(c, self.sinks, self.shared, self._store_factory)
        ctx = SinkContext(config=c, state_store=store, stats=self.stats, shared=self.shared)
        ctx.replica_id, ctx.control = self.replica_id(), self.control
        if isinstance(store, ConditionalStateStore):
            self.control.attach(ControlLog(store, ctx.replica_id))
        self.spend.start(ctx.state_store, ctx.replica_id)
        await self.spend.ready(2.0)  # the day's shared totals before the first call is tracked
        self._ctx = ctx
        self._workers = [SinkWorker(s, ctx, self.config) for s in self.sinks]
        for w in self._workers:
            w.launch()
        await table_within(self.tracker.settings.pricer, float("inf"))  # or a flush or shutdown stops waiting
        self._ready_task = asyncio.get_running_loop().create_task(self._when_started())
        while not self._closed:
            # A backlog is worked off in slices with the loop let go between
            # them, so the sinks write (and the database works) while the
            # tracker goes on; with none, the pump waits for its interval.
            more = self._pump(PUMP_SLICE_S)
            await asyncio.sleep(0 if more else PUMP_BUSY_INTERVAL_S if self._pumped else PUMP_INTERVAL_S)

    async def _when_started(self) -> None:
        await asyncio.gather(*(w.started.wait() for w in self._workers))
        install_redaction()  # sinks' modules create their loggers lazily
        self._ready.set()

    def replica_id(self) -> str:
        """Who this pipeline is to the state store (:func:`spanvisor.pipeline.assemble.replica_id`)."""
        return _replica_id(self.config, self.path)

    def _pump(self, slice_s: float | None = None) -> bool:
        """Track what the inbox holds (at most ``slice_s`` of it) and hand the events to the sinks; True
        when entries were left for the next slice."""
        more = False
        try:
            self.stats.sync_inbox_drops()
            now = time.monotonic()
            # Roots are read as of before the drain: a later checkpoint must not overtake a queued child's end.
            wall = time.time_ns()
            until = now + slice_s if slice_s is not None else None
            events: list[Event] = []
            spans = 0
            marked = 0  # spans tracked when the last batch end was read
            inbox = self._inbox
            # A durable (or delivering paced) sink near its bound: the receiver's batches stay in the inbox. It
            # fills and the receiver answers 503, rather than accepted spans being dropped later. The drain stops
            # at the slice's end itself (see Inbox.drain).
            with closing(inbox.drain(lambda: self._admission.sinks_room(len(events)), until)) as drain:
                for item in drain:
                    if item[0] == "spans":
                        # A receiver batch (hundreds of spans) is cut at the slice's end too, the rest put back first.
                        done = self._track_batch(item[1], until, events)
                        spans += done
                        if done < len(item[1]):
                            inbox.put_back(item[1][done:])
                            more = True
                            break
                    elif item is BATCH_END:
                        marked = spans
                        try:
                            events.extend(self._settle())
                        except Exception as exc:  # nor the spans after it theirs
                            self.stats.drop("tracker_error", detail=f"{type(exc).__name__}: {exc}")
                            log.exception("tracker error at a batch's end; its provisional tasks are skipped")
                    else:
                        spans += 1
                        try:
                            events.extend(self._track(item))
                        except Exception as exc:  # one bad span must not cost the others their events
                            self.stats.drop("tracker_error", detail=f"{type(exc).__name__}: {exc}")
                            log.exception("tracker error on one span; it is skipped")
            more = more or inbox.stopped
            if self.path == "exporter":  # provisional tasks (the processor sees roots start)
                events.extend(self._settle_unmarked(spans > marked, more, now))
            spans += inbox.skipped  # spans of no task: they took the pump's time too
            self._pumped = spans > 0
            if spans:
                self._tracked.add(spans)
            if not more and now - self._last_poll >= self.config["poll_interval_s"]:
                # Only once the inbox is worked off: ends still queued came first.
                self._last_poll = now
                events.extend(self.tracker.poll(snapshot_live, now_ns=wall))
            if now - self._last_expire >= 1.0:
                self._last_expire = now
                events.extend(self.tracker.expire())
            self._dispatch(events)
        except Exception as exc:  # a tracker bug must not stop the pipeline
            self.stats.drop("tracker_error", detail=f"{type(exc).__name__}: {exc}")
            log.exception("tracker error")
        return more

    def _settle(self) -> list[Event]:
        """Provisional tasks of what was tracked so far (exporter path)."""
        self._unsettled_since = None
        return self.tracker.settle()

    def _settle_unmarked(self, tracked: bool, more: bool, now: float) -> list[Event]:
        """At a pump's end: spans tracked with no batch end after them are
        decided once the inbox is worked off and they waited
        ``SETTLE_AFTER_PUMPS`` pumps and ``SETTLE_AFTER_S``."""
        if self._unsettled_since is None:
            if not tracked:
                return []
            self._unsettled_since, self._unsettled_pumps = now, 0
        self._unsettled_pumps += 1
        if more or self._unsettled_pumps < SETTLE_AFTER_PUMPS or now - self._unsettled_since < SETTLE_AFTER_S:
            return []
        return self._settle()

    def _track(self, item: Entry) -> list[Event]:
        kind = item[0]
        if kind == "start":
            self.stats.inc("spans_received_total", path=self.path)
            span = item[1]
            ctx, parent = span.get_span_context(), span.parent
            if parent is not None and self.tracker.add_member(
                format(ctx.span_id, "016x"), format(parent.span_id, "016x")
            ):
                return []  # a span inside a task: its start needs no copy
            return self.tracker.span_started(from_sdk(span), live=span)
        if kind == "end":
            if self.path != "processor":
                self.stats.inc("spans_received_total", path=self.path)
            return self.tracker.span_ended(light_span(item[1]))
        if kind == "raw":
            # A span the processor handed over as it is, with what tells its
            # task on this thread (in hook order): nothing, or a start or end.
            entry = item[1](item[2])
            return self._track(entry) if entry is not None else []
        if kind == "live":
            return self.tracker.live(item[1])
        if kind == "replayed":
            self.tracker.rebuilt()
            return []
        out: list[Event] = []
        self._track_batch(item[1], None, out)
        return out

    def _track_batch(self, spans: Sequence[SpanData], until: float | None, out: list[Event]) -> int:
        """A receiver batch's spans in order, until ``until`` (checked every few spans); how many were tracked."""
        span_ended, extend = self.tracker.span_ended, out.extend
        for i, span in enumerate(spans):
            if until is not None and i % 16 == 15 and time.monotonic() >= until:
                return i
            try:
                extend(span_ended(span))
            except Exception as exc:  # one bad span must not cost the batch its events
                self.stats.drop("tracker_error", detail=f"{type(exc).__name__}: {exc}")
                log.exception("tracker error on one span; it is skipped")
        extend(self.tracker.settle())  # provisional tasks, at a delivered batch's end (as a replay)
        return len(spans)

    def _dispatch(self, events: list[Event], tails: bool = True) -> None:
        self.control.observe(events)  # runs' facts for the control log, before a failed end is held below
        if tails:
            events = self.logtails.enrich(events)  # every pump: held ends come due here
        if not events:
            return
        kinds = Counter(ev.kind for ev in events)  # counted once a pump, not once an event
        for kind, n in kinds.items():
            self.stats.inc("events_emitted_total", n, kind=kind)
        for w in self._workers:
            w.put_many(events)

    # -- flush and shutdown (any thread but the pipeline's) ------------------------

    def _call(self, coro_fn: Callable[[], Any], timeout_s: float) -> Any:
        loop = self._loop
        if loop is None or not loop.is_running() or threading.current_thread() is self._thread:
            return None
        fut: Future[Any] = asyncio.run_coroutine_threadsafe(coro_fn(), loop)
        try:
            return fut.result(timeout=max(0.0, timeout_s))
        except Exception:
            fut.cancel()
            return None

    async def _flush(self, deadline: float) -> bool:
        await table_within(self.tracker.settings.pricer, time.monotonic() + max(0.0, deadline - time.monotonic()) / 2)
        while not self._ready.is_set() and time.monotonic() < deadline:  # noqa: ASYNC110 - a threading.Event
            await asyncio.sleep(0.02)  # sinks are still starting
        self._last_poll = 0.0
        self._pump()
        if self.path == "exporter" and self._unsettled_since is not None:
            # Everything handed over so far is delivered, decided: a batch
            # whose end was lost, the processor's spans on this path.
            self._dispatch(self._settle())
        self._dispatch(self.logtails.release_all(), tails=False)
        return await flush_workers(self._workers, deadline)

    def force_flush(self, timeout_s: float = 30.0) -> bool:
        """Deliver everything handed over so far, within ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        return bool(self._call(lambda: self._flush(deadline), timeout_s + 0.5))

    def shutdown(self, timeout_s: float = 30.0) -> None:
        if self._closed or self._thread is None:
            self._closed = self._inbox.closed = True
            return
        deadline = time.monotonic() + timeout_s
        # First: a pipeline shutting down is no longer where this process's
        # agents read decisions, even if a stuck sink holds its shutdown.
        hub.clear_current(self.control)
        self.tracker.settings.pricer.abandon("spanvisor shut down before the price table was read")
        # The flush may wait its whole share for a sink that cannot deliver (a
        # database that is down). The closes get at least `floor` even when it
        # overran (a loaded machine): an unclosed sink cannot say what it kept.
        self.force_flush(timeout_s * 0.6)
        self._closed = self._inbox.closed = True
        floor = timeout_s * 0.3

        async def stop() -> None:
            self._main_task.cancel()
            # Within _call's time, so its accounting (drops at the deadline) runs, not cancelled with it.
            budget = max(deadline - time.monotonic(), floor) * 0.85
            await self.spend.stop()
            await self.control.close()
            await asyncio.gather(*(w.shutdown(budget) for w in self._workers))
            store = getattr(self, "_ctx", None)
            if store is not None and self._state_store is None:
                try:
                    await asyncio.wait_for(store.state_store.close(), max(0.1, deadline - time.monotonic()))
                except Exception as exc:
                    log.warning("state store close failed: %s", exc)

        self._call(stop, max(floor, deadline - time.monotonic()))
        loop = self._loop
        if loop is not None and loop.is_running():
            loop.call_soon_threadsafe(loop.stop)
        self._thread.join(max(2 * exiting.SETTLE_S, deadline - time.monotonic()))
