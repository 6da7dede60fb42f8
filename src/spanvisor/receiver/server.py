"""The receiver: journal, OTLP/HTTP, OTLP/gRPC and admin, on one event loop.

The pipeline runs on its own thread and loop; this loop only decodes,
journals and hands spans over, so a slow sink never stalls a socket here.
Start order: admin port, journal open, the tracker rebuilt from the
entries every sink already had, the pipeline started (when ``start`` is
given it), the other entries replayed, then listeners, then ``ready``. Stop
order: stop accepting (``/readyz`` false, new requests get 503 /
UNAVAILABLE with the retry hint, on listeners that stay open), let in-flight
exports finish, flush and drain the pipeline, mark the journal delivered if
every sink got everything (see :mod:`.delivery`), close the listeners and
the journal, all within one deadline (see :mod:`.drain`).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from spanvisor.receiver import admin, grpc_service, http
from spanvisor.receiver.browser_guard import HostPolicy
from spanvisor.receiver.delivery import DeliveryWatch
from spanvisor.receiver.drain import InFlight
from spanvisor.receiver.headlimits import Runner
from spanvisor.receiver.httplog import MalformedRequests, ServerLog
from spanvisor.receiver.ingest import Ingest, PipelineLike
from spanvisor.receiver.journal import SpanJournal
from spanvisor.spans.data import SpanData
from spanvisor.spans.live import LiveFact

log = logging.getLogger("spanvisor.receiver")
# Binds that only this machine reaches.
LOOPBACK = ("127.0.0.1", "localhost", "::1")
_WILDCARD = ("", "0.0.0.0", "::")


@dataclass(frozen=True, slots=True)
class ReceiverSettings:
    """What the receiver reads of the configuration, once, typed. Every
    default lives in the settings table (:mod:`.settings` and the core's):
    build it with :meth:`from_config`; tests replace fields with
    ``dataclasses.replace``."""

    bind: str
    http_port: int | None  # None: that transport is off
    grpc_port: int | None
    admin_port: int | None
    admin_bind: str | None  # None: same as bind
    token: str | None
    tls_cert: str | None
    tls_key: str | None
    max_body_bytes: int
    max_spans: int
    retry_after_s: float
    journal_path: Path | None  # None: no journal (2xx = handed to the pipeline only)
    journal_retention_s: float
    journal_max_bytes: int
    journal_sync: str
    shutdown_timeout_s: float
    # Host names clients use besides loopback names and addresses (browser_guard).
    allowed_hosts: tuple[str, ...] = ()

    @classmethod
    def from_config(cls, config: Any) -> ReceiverSettings:
        return cls(
            bind=config["otlp_bind"],
            http_port=config["otlp_http_port"],
            grpc_port=config["otlp_grpc_port"],
            admin_port=config["admin_port"],
            admin_bind=config["admin_bind"],
            token=config["otlp_token"],
            tls_cert=config["tls_cert"],
            tls_key=config["tls_key"],
            max_body_bytes=config["max_body_bytes"],
            max_spans=int(config["inbox_size"]),
            retry_after_s=config["retry_after_s"],
            journal_path=journal_path(config) if config["journal"] else None,
            journal_retention_s=config["journal_retention_s"],
            journal_max_bytes=config["journal_max_bytes"],
            journal_sync=config["journal_sync"],
            shutdown_timeout_s=config["shutdown_timeout_s"],
            allowed_hosts=tuple(config["allowed_hosts"]),
        )


def own_url(bind: str, port: int | None, tls: bool, allowed_hosts: Sequence[str] = ()) -> str:
    """The URL of serve's own OTLP/HTTP port, from its configuration alone
    (never from a request's ``Host``): what serve hands the hooks it runs.
    A wildcard bind is reached on loopback; with TLS the first allowed host
    name comes first, since the certificate names it and not an address."""
    names = [h for h in allowed_hosts if h and h != "*" and not h.startswith(".")]
    if tls and names:
        host = names[0]
    elif bind in _WILDCARD:
        host = "127.0.0.1"
    else:
        host = bind
    if ":" in host and not host.startswith("["):  # an IPv6 address
        host = f"[{host}]"
    return f"{'https' if tls else 'http'}://{host}:{port or 0}"


def journal_path(config: Any) -> Path:
    return Path(config.data_dir) / "receiver" / "journal.db"


class Receiver:
    def __init__(self, pipeline: PipelineLike, settings: ReceiverSettings, admin_extra: Sequence[Any] = ()) -> None:
        """``admin_extra``: objects with ``admin_routes()`` served after the
        pipeline's sinks' (what serves ``/metrics`` when no sink does)."""
        self.pipeline = pipeline
        self.settings = settings
        self.admin_extra = tuple(admin_extra)
        s = settings
        self.journal = (
            SpanJournal(s.journal_path, s.journal_max_bytes, s.journal_sync) if s.journal_path is not None else None
        )
        self.ingest = Ingest(pipeline, self.journal, s.retry_after_s, s.max_spans)
        self.watch = DeliveryWatch(pipeline.stats, s.journal_retention_s)
        # What the last stop found: (everything delivered, why or why not).
        self.delivered: tuple[bool, str] | None = None
        self.http_port: int | None = None
        self.grpc_port: int | None = None
        self.admin_port: int | None = None
        self._runners: list[web.AppRunner] = []
        self._malformed: list[MalformedRequests] = []
        self.inflight = InFlight()
        self._http_runner: web.AppRunner | None = None
        self._grpc: Any = None
        self._state = "starting"
        self._trim_task: asyncio.Task[None] | None = None

    def _ready(self) -> tuple[bool, str]:
        if self._state != "serving":
            return False, f"receiver {self._state}"
        return True, "receiver serving"

    def _ssl(self) -> ssl.SSLContext | None:
        s = self.settings
        if not (s.tls_cert and s.tls_key):
            return None
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(s.tls_cert, s.tls_key)
        return ctx

    async def _site(
        self, app: web.Application, host: str, port: int, tls: ssl.SSLContext | None, name: str, transport: str
    ) -> tuple[web.AppRunner, int]:
        # Counted like any refused request (outcome "malformed"), logged once per interval.
        malformed = MalformedRequests(name, on_malformed=lambda: self.ingest.count(transport, "malformed"))
        self._malformed.append(malformed)
        # Runner: a head over aiohttp's limits answers 431 (headlimits).
        runner = Runner(
            app, access_log=None, shutdown_timeout=self.settings.shutdown_timeout_s, logger=ServerLog(malformed)
        )
        await runner.setup()
        site = web.TCPSite(runner, host, port, ssl_context=tls, reuse_address=True)
        await site.start()
        bound = runner.addresses[0][1]
        return runner, int(bound)

    async def start(
        self,
        rebuild: Callable[[Sequence[SpanData | LiveFact]], object] | None = None,
        start_pipeline: Callable[[], object] | None = None,
    ) -> None:
        """Start serving. ``rebuild`` takes the spans and live records every
        sink already had (the tracker's, before its pipeline runs); without it
        they are skipped. ``start_pipeline`` runs after the rebuild and
        before the replay (the pipeline must not run during a rebuild)."""
        s = self.settings
        hosts = HostPolicy.of((s.bind, s.admin_bind), s.allowed_hosts)
        # The admin port comes up first, so /healthz answers during replay.
        if s.admin_port is not None:
            runner, self.admin_port = await self._site(
                admin.make_app(self.ingest, self._ready, self.admin_extra, hosts),
                s.admin_bind or s.bind,
                s.admin_port,
                None,
                "admin",
                "admin",
            )
            self._runners.append(runner)
        if self.journal is not None:
            await asyncio.to_thread(self.journal.open)
            if rebuild is not None:
                self._state = "rebuilding open tasks from the span journal"
                await self.ingest.rebuild(s.journal_retention_s, rebuild)
        if start_pipeline is not None:
            await asyncio.to_thread(start_pipeline)
        if self.journal is not None:
            self._state = "replaying the span journal"
            await self.ingest.replay(s.journal_retention_s, asyncio.sleep)
            self._trim_task = asyncio.create_task(self._trim_loop())
        tls = self._ssl()
        if s.http_port is not None:
            app = http.make_app(
                self.ingest,
                s.token,
                s.max_body_bytes,
                self.inflight,
                lambda: self._state == "draining",
                hosts=hosts,
                own_url=lambda: own_url(s.bind, self.http_port, tls is not None, s.allowed_hosts),
            )
            self._http_runner, self.http_port = await self._site(app, s.bind, s.http_port, tls, "OTLP/HTTP", "http")
        if s.grpc_port is not None:
            self._grpc = grpc_service.make_server(self.ingest, s.token, s.max_body_bytes, self.inflight)
            addr = f"{s.bind}:{s.grpc_port}"
            if tls is not None and s.tls_cert and s.tls_key:
                creds = await asyncio.to_thread(grpc_service.server_credentials, s.tls_cert, s.tls_key)
                self.grpc_port = self._grpc.add_secure_port(addr, creds)
            else:
                self.grpc_port = self._grpc.add_insecure_port(addr)
            await self._grpc.start()
        self.ingest.accepting = True
        self._state = "serving"
        log.info(
            "spanvisor receiving OTLP: http=%s grpc=%s admin=%s tls=%s auth=%s journal=%s",
            self.http_port,
            self.grpc_port,
            self.admin_port,
            tls is not None,
            bool(s.token),
            s.journal_path,
        )
        if s.bind in LOOPBACK:
            log.info(
                "listening on %s only: other machines cannot reach serve; to open it, bind to 0.0.0.0 "
                "(SPANVISOR_OTLP_BIND=0.0.0.0 or --bind 0.0.0.0), give its clients its token (SPANVISOR_OTLP_TOKEN, "
                "or the one it made in its data dir), and name the host clients use in SPANVISOR_ALLOWED_HOSTS",
                s.bind,
            )
        if not s.token and s.http_port is not None and s.bind not in LOOPBACK:
            # The control API shares the OTLP/HTTP port and its token: without
            # one, whoever reaches the port can approve, cancel and retry.
            log.warning(
                "no OTLP token and bound to %s: anyone who reaches port %s can post decisions to the control API "
                "(approve, cancel, retry); set SPANVISOR_OTLP_TOKEN or bind to 127.0.0.1",
                s.bind,
                self.http_port,
            )

    async def _trim_loop(self) -> None:
        assert self.journal is not None
        period = max(1.0, min(60.0, self.settings.journal_retention_s / 10))
        while True:
            await asyncio.sleep(period)
            self.watch.sample()
            try:
                await self.journal.trim(time.time_ns() - int(self.settings.journal_retention_s * 1e9))
            except Exception as exc:
                log.warning("span journal trim failed: %s", exc)

    async def stop(self, drain: Callable[[float], object] | None = None) -> None:
        """Stop within ``shutdown_timeout_s``; ``drain(timeout_s)`` shuts the pipeline down.

        The listeners stay open while the pipeline drains: new exports get
        503 + ``Retry-After`` / UNAVAILABLE + ``RetryInfo`` (a client told
        when to come back, instead of a refused connection that looks like a
        dead replica), and close at the end."""
        deadline = time.monotonic() + self.settings.shutdown_timeout_s
        served = self._state == "serving"
        self._state = "draining"
        self.ingest.accepting = False
        # Exports admitted before this point hand their spans over first, so
        # the flush below (and the journal's delivered mark) covers them.
        if not await self.inflight.idle(max(0.1, (deadline - time.monotonic()) / 4)):
            log.warning("stopping: %d requests still in flight; draining without them", self.inflight.count)
        if self._trim_task is not None:
            self._trim_task.cancel()
        if drain is not None:
            # Flushed first, so the drain's outcome is known: a shutdown only
            # counts what it drops, and only when it gets to.
            flushed = await asyncio.to_thread(self.pipeline.force_flush, max(0.1, (deadline - time.monotonic()) * 0.75))
            await asyncio.to_thread(drain, max(0.1, deadline - time.monotonic()))
            self.delivered = self.watch.verdict(bool(flushed))
            if self.journal is not None and self.journal.is_open and served:
                await self._mark(*self.delivered)
        await self._close_listeners(deadline)
        if self.journal is not None:
            await asyncio.to_thread(self.journal.close)
        for runner in self._runners:
            await runner.cleanup()
        for malformed in self._malformed:
            malformed.close()
        self._state = "stopped"

    async def _close_listeners(self, deadline: float) -> None:
        """The OTLP ports close: what is in flight now is only refusals."""
        grace = max(0.1, min(1.0, deadline - time.monotonic()))
        if self._grpc is not None:
            await self._grpc.stop(grace)
        if self._http_runner is not None:
            await self._http_runner.cleanup()

    async def _mark(self, delivered: bool, why: str) -> None:
        assert self.journal is not None
        if not delivered:
            log.warning(
                "span journal: not marked delivered (%s); the next start replays what arrived since entry %d",
                why,
                self.journal.delivered_through,
            )
            return
        try:
            mark = await self.journal.mark_delivered()
        except Exception as exc:
            log.warning("span journal: cannot mark entries delivered (%s); the next start replays them", exc)
            return
        log.info("span journal: %s; marked delivered through entry %d, a restart resends nothing", why, mark)
