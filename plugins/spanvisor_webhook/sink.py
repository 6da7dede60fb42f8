"""WebhookSink: one signed POST per applied intervention, for orchestrators.

``export`` keeps only ``HumanIntervention`` events with outcome ``applied``
(and, if configured, of the chosen actions); everything else is skipped at
the cost of one ``isinstance``. Each kept one is appended to a local outbox
(:class:`spanvisor.pipeline.outbox.Outbox`, SQLite, fsynced, in the data
directory) and ``export`` answers SUCCESS; a background sender POSTs the
outbox in order and removes an entry once it is settled:

* 2xx: delivered.
* 408, 425, 429, 5xx, timeouts, connection errors: sent again, every attempt
  signed anew with a fresh timestamp, after ``Retry-After`` when the
  receiver gives one, else after 0.5 s doubling to 30 s (the pipeline's own
  schedule). The oldest entry waits at the head, so a receiver sees
  interventions in the order they were made.
* any other answer (4xx, a redirect): rejected for good, counted in
  ``dropped_total{reason="webhook_rejected", sink="webhook"}``, logged once
  per status, with the intervention id (ids only).
* older than ``webhook_max_age_s`` (or past ``webhook_max_attempts``): given
  up, counted (``webhook_expired`` / ``webhook_gave_up``): an orchestrator
  retrying a task an hour after the click may do more harm than good.

Why an outbox and not ``RETRY`` to the pipeline: the sink worker's queue
holds *every* event of every task, and a ``RETRY`` holds that whole queue
behind the head batch. A receiver down for a minute under load would fill
the queue (10,000 events by default) with events this sink ignores, and the
interventions arriving meanwhile would be dropped as ``queue_full``. The
outbox holds only interventions, and keeps them across a restart: the next
start sends what is left, with the same intervention id in the body and in
``X-Spanvisor-Intervention-Id``, so a receiver that saw a request whose
answer we never got drops the second copy. Delivery is at least once.

With ``webhook_checkpoints`` on, the decision log's chain head goes through
the same outbox when it moves (:mod:`spanvisor_webhook.checkpoints`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from spanvisor.events import Event, HumanIntervention
from spanvisor.pipeline.outbox import Outbox, OutboxFull
from spanvisor.sink import BaseSink, SinkContext, SinkResult
from spanvisor_webhook.checkpoints import POLL_S, CheckpointWatch
from spanvisor_webhook.payload import encode, payload, wanted
from spanvisor_webhook.settings import SETTINGS, config_problem, where
from spanvisor_webhook.settings import enabled as settings_enabled

if TYPE_CHECKING:
    from spanvisor.config import Config, Setting
    from spanvisor_webhook.client import Attempt, WebhookClient

# Interventions waiting for the receiver; past it new ones are dropped, counted.
QUEUE_MAX = 10_000
SEEN_MAX = 10_000
PEEK = 32
BACKOFF_START_S = 0.5
BACKOFF_MAX_S = 30.0
log = logging.getLogger("spanvisor.webhook")


class WebhookSink(BaseSink):
    """POSTs each applied intervention, signed, through a local outbox.

    ``durable`` is False on purpose. True would make the receiver answer 503 to
    *all* spans when this sink's queue nears its bound, and make ``/readyz``
    follow this sink's health: one unreachable orchestrator would stop
    telemetry intake and take replicas out of a load balancer. The outbox
    already gives what durability is for here (SUCCESS means stored on disk),
    and as ``export`` only appends a rare event the queue never fills in
    practice. What can still lose an intervention is counted: a full outbox
    (``webhook_queue_full``), an expired or rejected one.
    """

    name = "webhook"
    settings: ClassVar[Sequence[Setting]] = SETTINGS
    durable: ClassVar[bool] = False  # see the class docstring

    def __init__(self, checkpoint_poll_s: float = POLL_S) -> None:
        super().__init__()
        self.outbox: Outbox | None = None
        # The chain head's watch, with webhook_checkpoints on.
        self.checkpoints: CheckpointWatch | None = None
        self._checkpoint_poll_s = checkpoint_poll_s
        self._watcher: asyncio.Task[None] | None = None
        self.client: WebhookClient | None = None
        self._problem: str | None = "not started"
        self._actions: tuple[str, ...] = ()
        self._max_age_s = 3600.0
        self._max_attempts = 0
        # Ids queued by this process: an intervention announced twice is sent once.
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._attempts: dict[str, int] = {}
        self._logged: set[int | None] = set()
        self._wake = asyncio.Event()  # something was queued
        self._kick = asyncio.Event()  # stop waiting out a backoff (flush, shutdown)
        self._closing = False
        self._sender: asyncio.Task[None] | None = None
        # What the last attempt said; read by health() from any thread.
        self._health: tuple[bool, str] = (True, "ok")

    @classmethod
    def enabled(cls, config: Config) -> bool:
        return settings_enabled(config)

    def imports(self, config: Config) -> Sequence[str]:
        """What start imports (spanvisor.sink.BaseSink.imports)."""
        return ("spanvisor_webhook.client",)

    async def start(self, ctx: SinkContext) -> None:
        await super().start(ctx)
        cfg = ctx.config
        url, secret = cfg.get("webhook_url"), cfg.get("webhook_secret")
        self._problem = config_problem(url, secret)
        if self._problem is not None:
            log.error("webhook sink: %s; interventions are not sent (see docs/reference/webhooks.md)", self._problem)
            return
        from spanvisor_webhook.client import WebhookClient

        self._actions = tuple(cfg.get("webhook_actions") or ())
        self._max_age_s = float(cfg.get("webhook_max_age_s", 3600.0))
        self._max_attempts = int(cfg.get("webhook_max_attempts", 0) or 0)
        if self.outbox is None:  # start may be retried by the worker
            self.outbox = await Outbox.open(cfg.data_dir / "outbox", self.name, QUEUE_MAX, ctx.stats)
            if self.outbox.size:
                log.warning("webhook outbox holds %d interventions from an earlier run; sending them", self.outbox.size)
        if self.client is None:
            self.client = WebhookClient(url, secret, float(cfg.get("webhook_timeout_s", 10.0)))
        if self._sender is None:
            self._sender = asyncio.get_running_loop().create_task(self._send_loop(), name="spanvisor-webhook-sender")
        if cfg.get("webhook_checkpoints") and self._watcher is None:
            self.checkpoints = CheckpointWatch(ctx.state_store, ctx.replica_id, self._queue, self._checkpoint_poll_s)
            self._watcher = asyncio.get_running_loop().create_task(
                self.checkpoints.run(), name="spanvisor-webhook-checkpoints"
            )

    async def _queue(self, items: list[dict[str, Any]]) -> bool:
        """Put chain checkpoints in the outbox; False when it cannot take them
        now (full, the disk): the watch tries again at its next read."""
        if self.outbox is None:
            return False
        try:
            await self.outbox.append(items)
        except Exception as exc:
            log.warning("webhook sink: cannot queue a chain checkpoint (%s); trying again", type(exc).__name__)
            return False
        self._wake.set()
        return True

    # --- export: queue the interventions ------------------------------------

    async def export(self, events: Sequence[Event]) -> SinkResult:
        items: list[dict[str, Any]] = []
        for event in events:
            if wanted(event, self._actions) and event.event_id not in self._seen:
                assert isinstance(event, HumanIntervention)
                items.append({"id": event.event_id, "queued_at": time.time(), "body": payload(event)})
        if not items or self.ctx is None:
            return SinkResult.SUCCESS
        if self._problem is not None or self.outbox is None:
            self.ctx.stats.drop(
                "webhook_not_configured", len(items), sink=self.name, detail=self._problem or "not started"
            )
            return SinkResult.SUCCESS
        try:
            await self.outbox.append(items)
        except OutboxFull:
            self.ctx.stats.drop(
                "webhook_queue_full",
                len(items),
                sink=self.name,
                detail=f"{QUEUE_MAX} interventions wait for {where(self.client.url if self.client else '')}",
            )
            return SinkResult.SUCCESS
        except Exception as exc:  # the disk: the worker retries the batch
            log.warning("webhook sink: cannot write the outbox (%s); retrying", exc)
            return SinkResult.RETRY
        for item in items:
            self._seen[str(item["id"])] = None
            if len(self._seen) > SEEN_MAX:
                self._seen.popitem(last=False)
        self._wake.set()
        return SinkResult.SUCCESS

    # --- the sender ---------------------------------------------------------

    async def _send_loop(self) -> None:
        assert self.outbox is not None
        backoff = BACKOFF_START_S
        while not self._closing:
            try:
                # Cleared before the read: an append that lands after it sets it again.
                self._wake.clear()
                items = await self.outbox.peek(PEEK)
                if not items:
                    await self._wake.wait()
                    continue
                for seq, item in items:
                    wait = await self._send(item)
                    if wait is None:
                        await self.outbox.ack(seq)
                        backoff = BACKOFF_START_S
                    else:
                        await self._pause(wait if wait > 0 else backoff)
                        backoff = min(BACKOFF_MAX_S, backoff * 2)
                        break
                    if self._closing:
                        break
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug or a disk error must not end delivery for good
                log.exception("webhook sink: sender failed; retrying in %.1f s", backoff)
                await self._pause(backoff)
                backoff = min(BACKOFF_MAX_S, backoff * 2)

    async def _pause(self, seconds: float) -> None:
        self._kick.clear()
        if self._closing:
            # The close kicked while the attempt was under way, and that kick
            # was just cleared: waited out, a Retry-After held the close.
            return
        try:
            await asyncio.wait_for(self._kick.wait(), max(BACKOFF_START_S, seconds))
        except TimeoutError:
            pass

    async def _send(self, item: Mapping[str, Any]) -> float | None:
        """One attempt at the outbox entry ``item``: None when it is settled
        (delivered, rejected, given up), else seconds to wait (0: the backoff)."""
        assert self.ctx is not None and self.client is not None
        iid, body = item.get("id"), item.get("body")
        if not isinstance(iid, str) or not isinstance(body, dict):
            self.ctx.stats.drop("webhook_bad_entry", sink=self.name, detail="an unreadable webhook outbox entry")
            return None
        age = time.time() - float(item.get("queued_at") or 0.0)
        if age > self._max_age_s:
            self._give_up(iid, "webhook_expired", f"not delivered within SPANVISOR_WEBHOOK_MAX_AGE ({age:.0f} s)")
            return None
        attempt = await self.client.post(encode(body), iid)
        self.ctx.stats.inc("webhook_requests_total", sink=self.name, outcome=attempt.outcome)
        if attempt.outcome == "delivered":
            failed = self._attempts.pop(iid, 0)
            if failed:
                log.info("webhook sink: intervention %s delivered after %d failed attempts", iid, failed)
            self._health = (True, "ok")
            return None
        if attempt.outcome == "rejected":
            self._attempts.pop(iid, None)
            self._reject(iid, attempt)
            return None
        n = self._attempts[iid] = self._attempts.get(iid, 0) + 1
        if self._health[0]:
            log.warning("webhook sink: %s; retrying with backoff (intervention %s)", attempt.detail, iid)
        self._health = (False, attempt.detail)
        if self._max_attempts and n >= self._max_attempts:
            self._attempts.pop(iid, None)
            self._give_up(iid, "webhook_gave_up", f"{n} attempts failed (SPANVISOR_WEBHOOK_MAX_ATTEMPTS)")
            return None
        return attempt.retry_after or 0.0

    def _reject(self, iid: str, attempt: Attempt) -> None:
        assert self.ctx is not None
        fix = "the receiver refused it; check its URL, its secret and its logs"
        if attempt.status is not None and 300 <= attempt.status < 400:
            fix = "the URL redirects (not followed): set SPANVISOR_WEBHOOK_URL to the final URL"
        if attempt.status not in self._logged:
            self._logged.add(attempt.status)
            log.error("webhook sink: %s for intervention %s; not retried: %s (logged once per status)",
                      attempt.detail, iid, fix)  # fmt: skip
        self.ctx.stats.drop("webhook_rejected", sink=self.name, detail=f"{attempt.detail}: {fix}")

    def _give_up(self, iid: str, reason: str, why: str) -> None:
        assert self.ctx is not None
        log.warning("webhook sink: intervention %s is not sent: %s", iid, why)
        self.ctx.stats.drop(reason, sink=self.name, detail=why)

    # --- lifecycle ------------------------------------------------------------

    async def force_flush(self, timeout_s: float) -> bool:
        """True once every queued intervention is settled, within ``timeout_s``."""
        if self.outbox is None:
            return True
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        self._kick.set()  # a flush is worth one attempt now, backoff or not
        self._wake.set()
        # The file, not the size this process counted: agents on one host share
        # the default data directory, and another's sender may have sent ours.
        while self.outbox.size > 0 and await self.outbox.peek(1):
            if loop.time() >= deadline:
                return False
            await asyncio.sleep(0.05)
        return True

    async def shutdown(self, timeout_s: float) -> None:
        self._closing = True
        self._kick.set()
        self._wake.set()
        if self.checkpoints is not None and self._watcher is not None:
            self.checkpoints.stop()
            await asyncio.wait([self._watcher], timeout=timeout_s * 0.2)
            if not self._watcher.done():
                self._watcher.cancel()
        try:
            if self._sender is not None:
                try:
                    await asyncio.wait_for(asyncio.shield(self._sender), timeout_s * 0.7)
                except (TimeoutError, asyncio.CancelledError):
                    # A POST in flight is abandoned: its entry stays and is sent again.
                    self._sender.cancel()
                    await asyncio.wait([self._sender], timeout=1.0)
        finally:
            # Said even when the pipeline's deadline cuts the close short.
            if self.outbox is not None and self.outbox.size:
                log.warning(
                    "%d interventions stay in the webhook outbox and are sent on the next start", self.outbox.size
                )
        if self.outbox is not None:
            await self.outbox.close()
        if self.client is not None:
            await self.client.close()

    def health(self) -> tuple[bool, str]:
        """From the last attempt (not used for readiness: the sink is not durable)."""
        if self._problem is not None and self.ctx is not None:
            return False, self._problem
        return self._health

    @classmethod
    async def check(cls, config: Config) -> list[tuple[str, bool, str]]:
        url, secret = config.get("webhook_url"), config.get("webhook_secret")
        problem = config_problem(url, secret)
        if problem is not None:
            return [("webhook", False, problem)]
        actions = ", ".join(config.get("webhook_actions") or ()) or "all actions"
        also = "; and the decision log's chain checkpoints" if config.get("webhook_checkpoints") else ""
        return [("webhook", True, f"POST to {where(url)}, signed; {actions}{also}")]
