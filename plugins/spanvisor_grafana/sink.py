"""GrafanaAnnotationSink: one region annotation per task, created once, and a
point per person's decision (``interventions.py``).

TaskStarted POSTs a point at the task's start; TaskFinished PATCHes it into
the full region (``timeEnd``, final text and tags). Grafana has no idempotency
key, so the annotation id lives in the state store under
``("grafana.annotation", task_id)``: a claim is taken before the POST and the
id put after it, so a restarted sink or another replica patches the same
annotation. A TaskFinished whose start was never posted creates the whole
region in one POST. Other events are ignored, except those that correct a
finished task (``TaskCorrected``: a span that ended after its root; its view
is final, with a higher ``seq``), which PATCH the region's text and tags again.

With replicas, the region shows the newest *final* view (``TaskView.seq``):
each finish or correction is recorded under ``("grafana.shown", task_id)``
with ``put_if_newer``, and one older than the recorded one is not sent (a
root delivered to two replicas, a replayed journal). The recorded outcome
and error let a correction keep them.

Per event the sink is idempotent by ``event_id``; a batch that hits the retry
budget, or meets a state-store failure, returns RETRY and the events already
done are skipped when it comes back. A task whose create may have happened
without its id being stored (an ambiguous POST, a failed ``put``, a claim
another owner held) is looked up by its task tag and start time before any
new POST, so it is adopted rather than created twice. Permanent errors are counted as drops (``dropped_total{sink="grafana"}``)
and logged once with the fix, and the batch goes on.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from spanvisor.events import Event, HumanIntervention, TaskFinished, TaskStarted, TaskView
from spanvisor.sink import BaseSink, SinkContext, SinkResult
from spanvisor.statestores.api import StoreUnavailable
from spanvisor_grafana.errors import GrafanaError, PermanentError, TransientError
from spanvisor_grafana.interventions import INTERVENTION_TAG, on_intervention
from spanvisor_grafana.settings import SETTINGS
from spanvisor_grafana.settings import enabled as settings_enabled
from spanvisor_grafana.store import GuardedStore
from spanvisor_grafana.text import BASE_TAG, finish_payload, run_key, run_tag, start_payload, task_tag

if TYPE_CHECKING:
    from spanvisor.config import Config, Setting
    from spanvisor.sink import Clock
    from spanvisor_grafana.client import GrafanaClient

NAMESPACE = "grafana.annotation"
SHOWN = "grafana.shown"
TERMINAL = frozenset({"complete", "error", "cancelled", "lost", "evicted"})
SEEN_EVENTS = 50_000
log = logging.getLogger("spanvisor.grafana")


class GrafanaAnnotationSink(BaseSink):
    name = "grafana"
    settings: ClassVar[Sequence[Setting]] = SETTINGS

    def __init__(self, clock: Clock | None = None) -> None:
        super().__init__()
        # The client's retry clock (the event loop's by default); tests pass
        # a fake one to run the real backoff schedule without waiting.
        self._clock = clock
        self.client: GrafanaClient | None = None
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._done: OrderedDict[str, None] = OrderedDict()
        self._extra_tags: tuple[str, ...] = ()
        self._dashboard_uid: str | None = None
        self._max_text = 2000
        self._lease_s = 60.0
        self._logged: set[int | None] = set()
        # Tasks whose annotation may exist without its id in the store: an
        # ambiguous POST, a failed put, or a claim held by another owner.
        self._uncertain: OrderedDict[str, None] = OrderedDict()

    @classmethod
    def enabled(cls, config: Config) -> bool:
        return settings_enabled(config)

    def imports(self, config: Config) -> Sequence[str]:
        """What start imports (spanvisor.sink.BaseSink.imports)."""
        return ("spanvisor_grafana.client",)

    async def start(self, ctx: SinkContext) -> None:
        from spanvisor_grafana.client import GrafanaClient

        await super().start(ctx)
        if ctx.replica_id:
            self.owner = ctx.replica_id
        cfg = ctx.config
        url, token = cfg.get("grafana_url"), cfg.get("grafana_token")
        if not url or not token:
            log.error("grafana sink: SPANVISOR_GRAFANA_URL and SPANVISOR_GRAFANA_TOKEN are required")
            return
        self.client = GrafanaClient(
            url,
            token,
            timeout_s=cfg.get("grafana_timeout_s", 10.0),
            retry_budget_s=cfg.get("grafana_retry_budget_s", 30.0),
            clock=self._clock,
        )
        self._extra_tags = tuple(cfg.get("grafana_tags", ()) or ())
        self._dashboard_uid = cfg.get("grafana_dashboard_uid")
        self._max_text = max(50, int(cfg.get("grafana_max_text", 2000)))
        self._lease_s = float(cfg.get("grafana_lease_s", 60.0))

    async def shutdown(self, timeout_s: float) -> None:
        if self.client is not None:
            await self.client.close()

    # --- export ---------------------------------------------------------------

    async def export(self, events: Sequence[Event]) -> SinkResult:
        if self.ctx is None or self.client is None:
            return SinkResult.FAILURE
        # Of a batch's corrections to one finished task, only the newest is sent.
        newest: dict[str, int] = {}
        for event in events:
            if _corrects(event):
                newest[run_key(event.task)] = max(newest.get(run_key(event.task), 0), event.task.seq)
        for event in events:
            if event.event_id in self._done:
                continue
            try:
                if event.task.former_id is not None:
                    await self._move(event.task)
                if isinstance(event, TaskStarted):
                    await self._on_start(event)
                elif isinstance(event, TaskFinished):
                    await self._on_finish(event)
                elif isinstance(event, HumanIntervention):
                    await on_intervention(self, event)
                elif _corrects(event) and event.task.seq == newest.get(run_key(event.task)):
                    await self._on_correction(event)
            except (TransientError, StoreUnavailable) as exc:
                log.warning("grafana sink: %s; the batch will be retried", exc)
                return SinkResult.RETRY
            except PermanentError as exc:
                self._permanent(exc)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a bug here must not take the pipeline down
                log.exception("grafana sink: unexpected error on %s", event.kind)
                self.ctx.stats.drop("grafana_internal_error", 1, sink=self.name, detail=type(exc).__name__)
            self._remember(event.event_id)
        return SinkResult.SUCCESS

    def _remember(self, event_id: str) -> None:
        self._done[event_id] = None
        if len(self._done) > SEEN_EVENTS:
            self._done.popitem(last=False)

    def _permanent(self, exc: Exception) -> None:
        assert self.ctx is not None
        status = exc.status if isinstance(exc, PermanentError) else None
        fix = exc.fix if isinstance(exc, PermanentError) else ""
        reason = f"grafana_http_{status}" if status in (400, 401, 403, 404, 413) else "grafana_rejected"
        if status not in self._logged:
            self._logged.add(status)
            log.error("grafana sink: %s; fix: %s (logged once per status)", exc, fix)
        self.ctx.stats.drop(reason, 1, sink=self.name, detail=fix)

    # --- lifecycle of one annotation -----------------------------------

    async def _on_start(self, event: TaskStarted) -> None:
        store = self._store()
        task_id = run_key(event.task)  # one region per run
        if await store.get(NAMESPACE, task_id) is not None:
            return
        claim = await store.claim(NAMESPACE, task_id, self.owner, self._lease_s)
        if not claim.won:
            # Created already, or being created by another replica, whose
            # finish path (or ours, once its lease lapses) completes the region.
            return
        body = start_payload(event.task, self._extra_tags, self._max_text, self._dashboard_uid)
        await self._create(task_id, body, tag=run_tag(event.task))

    async def _move(self, view: TaskView) -> None:
        """A run renamed by its root (``TaskView.former_id``): its region, kept
        under the key it had before, is kept under its new one from now on,
        the same annotation (its next PATCH adds the new task tag and keeps the
        former). Idempotent and read from the store alone, so a restart, a
        replay or a replica moves it once; the former key is left pointing at
        it (``moved_to``), so a replayed start under it never creates another."""
        store = self._store()
        new = run_key(view)
        old = f"{view.former_id}/{view.run_id}" if view.run_id else str(view.former_id)
        if await store.get(NAMESPACE, new) is not None:
            return
        claim = await store.claim(NAMESPACE, old, self.owner, self._lease_s)
        if claim.value is None and not claim.won:
            # Another replica is creating the region under the former key: its id comes soon.
            raise TransientError(f"task {old}: annotation being created elsewhere before its rename")
        shown = await store.get(SHOWN, old)
        if shown is not None and isinstance(shown.get("seq"), int):
            await store.put_if_newer(SHOWN, new, shown, int(shown["seq"]), self.owner)
        if claim.value is not None and "id" in claim.value:
            await store.put(NAMESPACE, new, {"id": _annotation_id(claim.value)}, self.owner)
            if claim.value.get("moved_to") != new:
                await store.put(NAMESPACE, old, {**claim.value, "moved_to": new}, self.owner)
        elif claim.won:
            # Nothing was made under the former key: the new one makes the region.
            await store.put(NAMESPACE, old, {"moved_to": new}, self.owner)

    async def _newer_shown(self, event: Event) -> Mapping[str, Any] | None:
        """What a replica recorded as shown, when it is at least as new as ``event``."""
        shown = await self._store().get(SHOWN, run_key(event.task))
        seq = shown.get("seq") if shown is not None else None
        return shown if isinstance(seq, int) and seq >= event.task.seq else None

    async def _record_shown(self, event: TaskFinished) -> None:
        value = {
            "seq": event.task.seq,
            "outcome": event.outcome,
            "error_type": event.error_type,
            "error_message": (event.error_message or "")[:2000] or None,
        }
        await self._store().put_if_newer(SHOWN, run_key(event.task), value, event.task.seq, self.owner)

    async def _on_correction(self, event: Event) -> None:
        """A late span changed a finished task's view: PATCH the region again."""
        shown = await self._store().get(SHOWN, run_key(event.task))
        seq = shown.get("seq") if shown is not None else None
        value = await self._store().get(NAMESPACE, run_key(event.task))
        if shown is None or not isinstance(seq, int) or seq >= event.task.seq or value is None or _moved(value):
            return  # no finish shown yet (it carries the view), or a newer one is, or it is shown under its new id
        outcome = shown.get("outcome")
        v = event.task
        finished = TaskFinished(
            event_id=event.event_id,
            time_ns=event.time_ns,
            task=v,
            outcome=outcome if outcome in TERMINAL else "complete",
            duration_s=max(0.0, ((v.ended_ns or v.started_ns) - v.started_ns) / 1e9),
            error_type=shown.get("error_type"),
            error_message=shown.get("error_message"),
        )
        body = finish_payload(finished, self._extra_tags, self._max_text, self._dashboard_uid)
        patch = {k: x for k, x in body.items() if k != "dashboardUID"}
        await self._client().call("PATCH", f"/api/annotations/{_annotation_id(value)}", patch)
        await self._record_shown(finished)

    async def _on_finish(self, event: TaskFinished) -> None:
        if await self._newer_shown(event) is not None:
            return  # another replica (or a replay) showed a newer final view
        await self._finish(event)
        await self._record_shown(event)

    async def _finish(self, event: TaskFinished) -> None:
        store = self._store()
        task_id = run_key(event.task)  # one region per run
        tag = run_tag(event.task)
        body = finish_payload(event, self._extra_tags, self._max_text, self._dashboard_uid)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._client().retry_budget_s
        while True:
            value = await store.get(NAMESPACE, task_id)
            if value is not None and _moved(value):
                # Still under the id its root replaced (a replica that never saw
                # the root): its stand-in view must not overwrite the region.
                return
            if value is not None:
                ann_id = _annotation_id(value)
                patch = {k: v for k, v in body.items() if k != "dashboardUID"}
                try:
                    await self._client().call("PATCH", f"/api/annotations/{ann_id}", patch)
                except PermanentError as exc:
                    if exc.status != 404:
                        raise
                    # Someone deleted the annotation in Grafana: make a new one (the
                    # tag lookup cannot find the deleted one, so no risk of adopting it).
                    log.warning("grafana sink: annotation %s is gone; creating it again", ann_id)
                    await self._create(task_id, body, tag=tag)
                self._uncertain.pop(task_id, None)
                return
            claim = await store.claim(NAMESPACE, task_id, self.owner, self._lease_s)
            if claim.value is not None:
                continue
            if claim.won:
                # A finish that has to create may follow a start whose POST
                # landed but whose id was never stored (a crash between the
                # two, on any replica): one GET on this rare path rules it out.
                self._mark_uncertain(task_id)
                await self._create(task_id, body, tag=tag)
                return
            # Another replica is creating it right now: wait for its id. If its
            # lease lapses instead, it may have posted without a put: look first.
            self._mark_uncertain(task_id)
            if loop.time() > deadline:
                raise TransientError(f"task {task_id}: annotation being created elsewhere")
            await asyncio.sleep(0.2)

    async def _create(
        self,
        task_id: str,
        body: Mapping[str, Any],
        *,
        namespace: str = NAMESPACE,
        tag: str | None = None,
        uncertain: str | None = None,
    ) -> None:
        """POST ``body`` once and keep its id under ``(namespace, task_id)``.
        ``tag`` finds it again after an ambiguous failure (the task tag by
        default); ``uncertain`` is its key in ``_uncertain`` (the task id)."""
        store = self._store()
        lookup = tag or task_tag(task_id)
        mark = uncertain or task_id
        start_ms = body["time"]

        async def find_existing() -> Any:
            # An ambiguous failure (timeout, 5xx, dropped connection) may
            # have created it: look for it by its task tag before posting again.
            # The tag is unique per task id; the start time guards against an
            # annotation someone else tagged the same way.
            params = [
                ("tags", BASE_TAG),
                ("tags", lookup),
                ("type", "annotation"),
                ("from", str(start_ms)),
                ("to", str(start_ms)),
                ("limit", "10"),
            ]
            found = await self._client().call("GET", "/api/annotations", params=params)
            for item in found if isinstance(found, list) else ():
                if not isinstance(item, dict) or item.get("time") != start_ms or not isinstance(item.get("id"), int):
                    continue
                # A decision's point carries its task's tag too: never adopt one as the task's region.
                if namespace == NAMESPACE and INTERVENTION_TAG in (item.get("tags") or ()):
                    continue
                return {"id": item["id"], "found": True}
            return None

        try:
            data = await find_existing() if mark in self._uncertain else None
            if data is None:
                data = await self._client().call("POST", "/api/annotations", body, recover=find_existing)
        except TransientError:
            # Keep the claim (same owner retakes it) and look before the next POST.
            self._mark_uncertain(mark)
            raise
        except PermanentError:
            self._uncertain.pop(mark, None)
            await store.release(namespace, task_id, self.owner)
            raise
        # Until the put succeeds, the annotation exists but nobody knows its id.
        self._mark_uncertain(mark)
        ann_id = data.get("id") if isinstance(data, dict) else None
        if not isinstance(ann_id, int):
            self._uncertain.pop(mark, None)
            await store.release(namespace, task_id, self.owner)
            raise PermanentError(f"POST /api/annotations: no id in the answer: {data!r:.200}")
        if isinstance(data, dict) and data.get("found") and "timeEnd" in body:
            # The earlier POST landed; bring it up to date like a finish would.
            patch = {k: v for k, v in body.items() if k != "dashboardUID"}
            await self._client().call("PATCH", f"/api/annotations/{ann_id}", patch)
        await store.put(namespace, task_id, {"id": ann_id}, self.owner)
        self._uncertain.pop(mark, None)

    def _mark_uncertain(self, task_id: str) -> None:
        self._uncertain[task_id] = None
        self._uncertain.move_to_end(task_id)
        if len(self._uncertain) > SEEN_EVENTS:
            self._uncertain.popitem(last=False)

    def _store(self) -> GuardedStore:
        assert self.ctx is not None
        return GuardedStore(self.ctx.state_store)

    def _client(self) -> GrafanaClient:
        assert self.client is not None
        return self.client

    # --- spanvisor check ----------------------------------------------------

    @classmethod
    async def check(cls, config: Config) -> list[tuple[str, bool, str]]:
        from spanvisor_grafana.client import GrafanaClient

        url, token = config.get("grafana_url"), config.get("grafana_token")
        if not url or not token:
            return [("grafana", False, "set SPANVISOR_GRAFANA_URL and SPANVISOR_GRAFANA_TOKEN")]
        client = GrafanaClient(url, token, timeout_s=config.get("grafana_timeout_s", 10.0), retry_budget_s=0.0)
        out: list[tuple[str, bool, str]] = []
        try:
            health = await client.call("GET", "/api/health")
            version = health.get("version", "?") if isinstance(health, dict) else "?"
            out.append(("grafana reachable", True, f"{client.base_url} (Grafana {version})"))
            await client.call("GET", "/api/annotations", params=[("limit", "1")])
            out.append(("grafana token", True, "accepted (annotations readable)"))
        except GrafanaError as exc:
            fix = getattr(exc, "fix", "is Grafana running and SPANVISOR_GRAFANA_URL right?")
            out.append(("grafana", False, f"{exc}; {fix}"))
        finally:
            await client.close()
        return out


def _corrects(event: Event) -> bool:
    """An event after a task's end (a TaskCorrected, the late-span rule; or a
    late view from an older replica): its view is final, its totals newer."""
    v = event.task
    if isinstance(event, TaskStarted | TaskFinished | HumanIntervention):
        # A decision carries the view it was taken on (or one not known
        # here): it is the decision's own point, never a newer task view.
        return False
    return v.ended_ns is not None and v.status in TERMINAL


def _moved(value: Mapping[str, Any]) -> bool:
    """A key the run's region left when its root renamed it (``_move``)."""
    return value.get("moved_to") is not None


def _annotation_id(value: Mapping[str, Any]) -> int:
    ann_id = value.get("id")
    if not isinstance(ann_id, int):
        raise ValueError(f"state store holds no annotation id: {dict(value)!r:.200}")
    return ann_id
