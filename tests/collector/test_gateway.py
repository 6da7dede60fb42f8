"""``collector-config/gateway.yaml``, run verbatim by a real OpenTelemetry
Collector (the distribution of :mod:`tests.collector.build`, contrib
``load_balancing`` at v0.159.0) in front
of two ``spanvisor serve`` replicas sharing one PostgreSQL (audit trail and
state store) and the fake Slack.

Only the listen addresses, the replicas' resolver entries and the queue's
folder are substituted (each exactly once). The replicas require one token
(``SPANVISOR_OTLP_TOKEN``), which the gateway is given in its environment as
the config reads it. The agents are the OpenTelemetry SDK's own OTLP
exporters, spans and log records (the live channel's ``agent.task.start``
and a checkpoint on the root), through the gateway only.

* Straight through: every task opens live (in PostgreSQL and on Slack while
  its root is still open: only its records can say so), then lands whole:
  complete once with its three model calls' tokens once, one Slack parent
  showing it complete, each checkpoint once (the root's, said both as a
  record and as the root's span event, once); its spans all on the one
  replica that finished it, both replicas used; the gateway's own metrics:
  every kept span and every record sent, none refused or failed, its health
  check up.
* One replica stopped (SIGTERM) while agents go on and started again on the
  same port: the gateway holds and retries what is routed to it; nothing
  lost, nothing doubled, one Slack parent each.
* A task's records follow its spans to one replica (the config routes both
  by the trace id as text, which it sets on each: routed by traceID, the
  contrib exporter hashes a record's id as text and a span's as bytes, and
  about half the tasks' records went to the other replica): each replica
  opens live exactly the tasks it finishes, and none is left open.
* One strict expected failure, on its cause: a record the gateway sends
  again while a replica is down is read again unless it carries an
  ``agent.record.id``.
"""

from __future__ import annotations

import os
import random
import secrets
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter as GrpcLogExporter
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpanExporter
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter as HttpLogExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpanExporter
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor, LogRecordExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter

from spanvisor.spans.conventions import ROUTE
from tests.collector._collector import (
    WAIT_S,
    Collector,
    Samples,
    exact,
    free_port,
    gateway_config,
    scrape,
    total,
)
from tests.collector.build import build
from tests.receiver.serve_proc import FakeSlackThread, ServeProcess, db_rows, slack_env
from tests.waiting import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout_s(600)]

N = 20  # tasks per test
ROOT_HOLD_S = 3
STEPS = 3
KEPT = 1 + 2 * STEPS  # spans per task the gateway's filter keeps: root, model calls, steps (not the plain ones)
RECORDS = 2  # log records per task: agent.task.start and the root's checkpoint
EXPORTER = "load_balancing/spanvisor"


def _shown_status(message: Any) -> str | None:
    """The status a Slack parent shows ("rivet · complete — Diagnose …")."""
    head = (message.text or "").split(" — ", 1)[0]
    return head.rsplit(" · ", 1)[-1] if " · " in head else None


def _parents(slack: FakeSlackThread) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for m in slack.parents():
        out.setdefault(str(((m.metadata or {}).get("event_payload") or {}).get("task_id")), []).append(m)
    return out


class Agent:
    """An agent with the SDK's batch processors and OTLP exporters aimed at
    the gateway: its spans, and the live channel's records in each root's
    context (as the helper sends them, here by hand)."""

    def __init__(
        self,
        name: str,
        http: int | None = None,
        grpc: int | None = None,
        record_ids: bool = False,
        resource: dict[str, str] | None = None,
    ) -> None:
        spans: SpanExporter
        logs: LogRecordExporter
        if grpc is not None:
            spans = GrpcSpanExporter(endpoint=f"127.0.0.1:{grpc}", insecure=True, timeout=30)
            logs = GrpcLogExporter(endpoint=f"127.0.0.1:{grpc}", insecure=True, timeout=30)
        else:
            spans = HttpSpanExporter(endpoint=f"http://127.0.0.1:{http}/v1/traces", timeout=30)
            logs = HttpLogExporter(endpoint=f"http://127.0.0.1:{http}/v1/logs", timeout=30)
        attrs = {"service.name": f"agent-{name}", **(resource or {})}
        self.tp = TracerProvider(resource=Resource.create(attrs), shutdown_on_exit=False)
        self.tp.add_span_processor(BatchSpanProcessor(spans))
        self.lp = LoggerProvider(resource=Resource.create(attrs), shutdown_on_exit=False)
        self.lp.add_log_record_processor(BatchLogRecordProcessor(logs))
        self.tracer = self.tp.get_tracer("agent")
        self.logger = self.lp.get_logger("agent")
        self.rng = random.Random(name)
        # Each record named by an agent.record.id, as a sender that may
        # send a record again must (conventions.md#the-live-channel).
        self.record_ids = record_ids

    def _emit(self, root: trace.Span, task_id: str, name: str, at: int, attrs: dict[str, Any]) -> None:
        if self.record_ids:
            attrs = {**attrs, "agent.record.id": f"{task_id}/{name}"}
        self.logger.emit(timestamp=at, context=trace.set_span_in_context(root), event_name=name, attributes=attrs)

    def open(self, task_id: str) -> trace.Span:
        """The task's root, started and said at once on the live channel."""
        attrs = {
            "gen_ai.operation.name": "invoke_agent",
            "agent.task.id": task_id,
            "agent.task.name": f"Diagnose {task_id}",
            "agent.id": "rivet",
            "agent.repo": "acme/plant",
        }
        root = self.tracer.start_span("invoke_agent rivet", attributes=attrs)
        self._emit(root, task_id, "agent.task.start", time.time_ns(), attrs)
        return root

    def work(self, root: trace.Span, task_id: str) -> None:
        """The task's model calls (1,000, 2,000, 3,000 input tokens), steps
        with a checkpoint event each, plain spans the gateway drops, a
        checkpoint on the root (its span event and its record), the end."""
        root_id = format(root.get_span_context().span_id, "016x")
        stamp = {"agent.task.id": task_id, "agent.task.root_span_id": root_id, "agent.id": "rivet"}
        with trace.use_span(root, end_on_exit=True):
            for step in range(STEPS):
                with self.tracer.start_as_current_span("chat claude-sonnet-4") as m:
                    m.set_attributes(
                        {
                            **stamp,
                            "gen_ai.operation.name": "chat",
                            "gen_ai.request.model": "claude-sonnet-4",
                            "gen_ai.usage.input_tokens": 1000 * (step + 1),
                            "gen_ai.usage.output_tokens": 100,
                        }
                    )
                    self._plain()
                with self.tracer.start_as_current_span("step") as c:
                    c.set_attributes({**stamp, "agent.progress": int(100 * (step + 1) / STEPS)})
                    c.add_event("agent.checkpoint", {"agent.message": f"step {step} of {task_id}"})
                    self._plain()
            at = time.time_ns()
            said = {"agent.message": f"wrapping up {task_id}"}
            root.add_event("agent.checkpoint", said, timestamp=at)
            self._emit(root, task_id, "agent.checkpoint", at, said)
            root.set_attribute("agent.status", "complete")

    def _plain(self) -> None:
        for i in range(2):
            with self.tracer.start_as_current_span(f"GET /api/{i}") as s:
                s.set_attributes({"http.request.method": "GET", "url.full": f"https://example.com/{self.rng.random()}"})

    def flush(self) -> None:
        """Everything said so far accepted by the gateway."""
        assert self.lp.force_flush(60_000), "the gateway did not take the agent's log records"
        assert self.tp.force_flush(60_000), "the gateway did not take the agent's spans"

    def close(self) -> None:
        self.lp.shutdown()
        self.tp.shutdown()


@dataclass
class Gateway:
    replicas: list[ServeProcess]
    collector: Collector
    slack: FakeSlackThread
    db_url: str
    http: int
    grpc: int
    health: int
    sent: list[str] = field(default_factory=list)  # every task sent through it so far

    def agent(
        self, name: str, grpc: bool = False, record_ids: bool = False, resource: dict[str, str] | None = None
    ) -> Agent:
        if grpc:
            return Agent(name, grpc=self.grpc, record_ids=record_ids, resource=resource)
        return Agent(name, http=self.http, record_ids=record_ids, resource=resource)

    def live_then_work(self, agent: Agent, ids: list[str]) -> dict[str, dict[str, Any]]:
        """Every task's root started and said on the live channel; once each
        task is in PostgreSQL with its Slack parent (waited for: no root has
        ended, so only the records can have said it), the tasks' work and
        ends. Their rows as they were while live."""
        roots = [agent.open(t) for t in ids]
        agent.flush()

        def live() -> dict[str, dict[str, Any]] | None:
            rows = self.rows(ids)
            parents = _parents(self.slack)
            return rows if len(rows) == len(ids) and all(t in parents for t in ids) else None

        rows: dict[str, dict[str, Any]] = wait_until(live, WAIT_S, f"{len(ids)} tasks opened live", every=0.2)
        for root, t in zip(roots, ids, strict=True):
            agent.work(root, t)
        agent.flush()
        return rows

    def rows(self, ids: list[str]) -> dict[str, dict[str, Any]]:
        got = db_rows(
            self.db_url,
            "SELECT t.task_id, t.status, t.task_name, t.message, t.input_tokens,"
            " (SELECT count(*) FROM agent_checkpoints c WHERE c.task_id = t.task_id AND c.source = 'model_call') AS calls"
            " FROM agent_tasks t WHERE t.task_id = ANY($1::text[])",
            ids,
        )
        return {r["task_id"]: r for r in got}

    def checkpoints(self, ids: list[str]) -> dict[str, int]:
        """Each task's checkpoint rows of ``agent.checkpoint`` events."""
        got = db_rows(
            self.db_url,
            "SELECT task_id, count(*) AS n FROM agent_checkpoints"
            " WHERE kind = 'checkpoint' AND source = 'event' AND task_id = ANY($1::text[]) GROUP BY task_id",
            ids,
        )
        return {r["task_id"]: r["n"] for r in got}

    def checkpoint_rows(self, ids: list[str]) -> list[dict[str, Any]]:
        return db_rows(
            self.db_url,
            "SELECT task_id, event_id, source, time_ns, progress, message FROM agent_checkpoints"
            " WHERE kind = 'checkpoint' AND task_id = ANY($1::text[]) ORDER BY task_id, time_ns",
            ids,
        )

    def finished(self, ids: list[str]) -> dict[str, dict[str, Any]]:
        """Every task of ``ids`` complete in PostgreSQL and its one Slack
        parent showing it complete (waited for); their rows."""

        def done() -> dict[str, dict[str, Any]] | None:
            rows = self.rows(ids)
            if sum(r["status"] == "complete" for r in rows.values()) < len(ids):
                return None
            parents = _parents(self.slack)
            if not all(len(parents.get(t, ())) == 1 and _shown_status(parents[t][0]) == "complete" for t in ids):
                return None
            return rows

        return dict(wait_until(done, WAIT_S, f"{len(ids)} tasks complete in PostgreSQL and on Slack", every=0.2))

    def whole(self, ids: list[str]) -> None:
        """Each task once in PostgreSQL, complete with its calls' tokens
        once, one Slack parent, each checkpoint once; the whole channel has
        one parent per task sent through here (the board aside)."""
        exact(self.finished(ids), ids)
        parents = _parents(self.slack)
        assert all(len(parents[t]) == 1 for t in ids), {t: len(parents.get(t, ())) for t in ids}
        # Three steps' events and the root's, which was said twice (its
        # record and its span event): one row.
        got = self.checkpoints(ids)
        odd = [t for t in ids if got.get(t) != STEPS + 1]
        assert not odd, f"checkpoint events of {odd}: {[got.get(t) for t in odd]}, not {STEPS + 1} each\n" + "\n".join(
            map(str, self.checkpoint_rows(odd))
        )
        rows = self.rows(ids)
        assert {t: r["message"] for t, r in rows.items()} == {t: f"wrapping up {t}" for t in ids}
        assert self.slack.parent_posts() == len(self.sent), (self.slack.parent_posts(), len(self.sent))

    def serve_metrics(self, replica: ServeProcess) -> Samples:
        return scrape(f"http://127.0.0.1:{replica.admin}/metrics")

    def drained(self) -> Samples:
        """The gateway sent every kept span and every record of the tasks
        sent so far (waited for) and refused none; its metrics."""
        spans, records = KEPT * len(self.sent), RECORDS * len(self.sent)

        def all_sent() -> Samples | None:
            m = self.collector.metrics()
            sent = (
                total(m, "otelcol_exporter_sent_spans", exporter=EXPORTER),
                total(m, "otelcol_exporter_sent_log_records", exporter=EXPORTER),
            )
            return m if sent == (spans, records) else None

        m: Samples = wait_until(all_sent, WAIT_S, f"the gateway to send {spans} spans and {records} records")
        for kind in ("spans", "log_records"):
            for name in (f"otelcol_receiver_refused_{kind}", f"otelcol_exporter_enqueue_failed_{kind}"):
                assert total(m, name) == 0, (name, m.get(name))
        return m


def _replica(root: Path, name: str, db_url: str, slack: FakeSlackThread, grpc: int, token: str) -> ServeProcess:
    env = slack_env(
        root / name,
        slack.base_url,
        SPANVISOR_DATABASE_URL=db_url,
        SPANVISOR_SINKS="postgres,slack,prometheus",
        SPANVISOR_STATE_STORE="postgres",
        SPANVISOR_REPLICA_ID=name,
        # A fixed port: the gateway's resolver lists it, and a replica
        # started again is where the gateway sends.
        SPANVISOR_OTLP_GRPC_PORT=str(grpc),
        # The replicas' one token, which the gateway sends (not open).
        SPANVISOR_OTLP_TOKEN=token,
        SPANVISOR_OPEN="0",
        SPANVISOR_SHUTDOWN_TIMEOUT="10s",
        # How long a task only records told of stays open here once quiet,
        # before the shared record of runs is asked whether another replica
        # finished it (30 s by default): the third test waits for it.
        SPANVISOR_ROOT_HOLD=f"{ROOT_HOLD_S}s",
    )
    env.pop("SPANVISOR_CONTROL_TOKEN", None)
    return ServeProcess(root / name, env, start=False)


def _grew(after: list[Samples], before: list[Samples], name: str, **labels: str) -> list[float]:
    """Each replica's growth of a counter between two scrapes."""
    return [total(a, name, **labels) - total(b, name, **labels) for a, b in zip(after, before, strict=True)]


def _start_gateway(binary: Path, root: Path, token: str, r1: int, r2: int) -> tuple[Collector, int, int, int]:
    """The gateway Collector started in front of replicas on ``r1`` and ``r2``:
    (it, its gRPC, HTTP and health ports). A port picked free can be taken
    by another process before the Collector binds it (the suite runs beside
    it): then it is started again on others."""
    for attempt in range(3):
        grpc, http, health = (free_port() for _ in range(3))
        config = gateway_config(root, grpc, http, health, r1, r2)
        collector = Collector(
            binary,
            config,
            root / "gateway.log",
            metrics_port=free_port(),
            env={**os.environ, "SPANVISOR_OTLP_TOKEN": token},
        )
        try:
            collector.start(http)
            return collector, grpc, http, health
        except AssertionError:
            collector.stop()
            if attempt == 2 or "address already in use" not in collector.log_text():
                raise
    raise AssertionError("unreachable")


@pytest.fixture(scope="module")
def gw(pg_server: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    binary = build()
    root = tmp_path_factory.mktemp("gateway")
    token = secrets.token_urlsafe(24)
    db_url = pg_server.database()
    slack = FakeSlackThread()
    r1, r2 = free_port(), free_port()
    replicas = [_replica(root, f"spanvisor-{i + 1}", db_url, slack, port, token) for i, port in enumerate((r1, r2))]
    collector: Collector | None = None
    try:
        for r in replicas:
            r.start(timeout=300)
        # Its ports picked once the replicas listen: the shortest window for
        # another process to take one.
        collector, grpc, http, health = _start_gateway(binary, root, token, r1, r2)
        yield Gateway(replicas, collector, slack, db_url, http, grpc, health)
    finally:
        if collector is not None:
            collector.stop()
        for r in replicas:
            r.stop()
        slack.close()
        log = root / "gateway.log"
        print(f"--- the gateway's log ---\n{log.read_text(errors='replace')[-6000:] if log.exists() else ''}")


def test_tasks_through_the_shipped_gateway_open_live_and_land_whole_on_one_replica(gw: Gateway) -> None:
    with urllib.request.urlopen(f"http://127.0.0.1:{gw.health}/", timeout=10) as resp:
        assert resp.status == 200  # the config's health_check extension
    before = [gw.serve_metrics(r) for r in gw.replicas]
    ids = [f"G1-{i}" for i in range(N)]
    gw.sent += ids
    agent = gw.agent("G1")
    try:
        live = gw.live_then_work(agent, ids)
    finally:
        agent.close()
    # Live: named, and not complete, while its root was open.
    assert {t: r["task_name"] for t, r in live.items()} == {t: f"Diagnose {t}" for t in ids}
    assert not [t for t, r in live.items() if r["status"] == "complete"]
    gw.whole(ids)
    m = gw.drained()
    for kind in ("spans", "log_records"):
        assert total(m, f"otelcol_exporter_send_failed_{kind}") == 0, m.get(f"otelcol_exporter_send_failed_{kind}")

    # Spans routed by trace id: each task finished once, by one replica, and
    # each replica received exactly the kept spans of the tasks it finished.
    after = [gw.serve_metrics(r) for r in gw.replicas]
    finished = _grew(after, before, "spanvisor_events_emitted_total", kind="TaskFinished")
    assert sum(finished) == N and min(finished) > 0, finished
    assert _grew(after, before, "spanvisor_spans_received_total") == [KEPT * n for n in finished]


def test_a_replica_stopped_and_started_again_while_agents_go_on_loses_nothing_and_doubles_nothing(
    gw: Gateway,
) -> None:
    """Half a batch of tasks, the first replica stopped (SIGTERM), twice as
    many while it is away (the gateway takes them and holds, on disk, what
    is routed to it), the replica started again on the same port. The
    agent's records carry ``agent.record.id``: the gateway sends again what
    the live replica already took (below, without ids)."""
    ids = [f"G2-{i}" for i in range(N + N // 2)]
    gw.sent += ids
    agent = gw.agent("G2", grpc=True, record_ids=True)
    down = gw.replicas[0]
    try:
        for t in ids[: N // 2]:
            agent.work(agent.open(t), t)
        agent.flush()
        assert down.terminate() == 0, down.log_text()
        for t in ids[N // 2 :]:
            agent.work(agent.open(t), t)
        agent.flush()  # taken by the gateway, which holds what is routed to the stopped replica
    finally:
        agent.close()
    down.start(timeout=300)  # the same gRPC port: the gateway's retry finds it again
    gw.whole(ids)
    m = gw.drained()
    # The stopped replica failed the gateway's exports meanwhile (the fault
    # happened), and nothing of the first test came again.
    assert total(m, "otelcol_loadbalancer_backend_outcome", endpoint=f"127.0.0.1:{down.grpc}", success="false") > 0
    first = [t for t in gw.sent if t.startswith("G1-")]
    exact(gw.rows(first), first)


def test_a_tasks_records_reach_the_replica_of_its_spans(gw: Gateway) -> None:
    """Routed by traceID, contrib load_balancing v0.159.0 keyed a log record
    by its trace id's hex text and a span by the id's 16 bytes, so about half
    the tasks' live records reached the replica that did not get their
    spans: that replica opened the task from its start record and never saw
    its end (it let it go later, once the shared record of runs said the
    other had finished it), and the key a launched task's start record names
    (only its launcher's proof ends it) never reached the replica that
    judged its end. The config now sets the trace id as text on every span
    and record (transform/route) and routes both by it: each replica opens
    live exactly the tasks whose spans it gets and finishes, none is let go
    as finished elsewhere, and none is left open. The agents name the
    routing attribute on their resource themselves (the exporter reads the
    resource's first): the gateway deletes it, so it chooses nothing (else
    every task would go to one replica)."""
    before = [gw.serve_metrics(r) for r in gw.replicas]
    ids = [f"G3-{i}" for i in range(N)]
    gw.sent += ids
    agent = gw.agent("G3", resource={ROUTE: "one replica for all"})
    try:
        gw.live_then_work(agent, ids)
    finally:
        agent.close()
    gw.whole(ids)
    # Open on each replica, counted absolutely: every task sent so far has
    # finished. (A task opened by records alone would be open until the root
    # hold passed and it was let go: counted below.)
    seen: list[list[float]] = []

    def left() -> bool:
        seen.append([total(gw.serve_metrics(r), "spanvisor_open_tasks") for r in gw.replicas])
        return seen[-1] == [0, 0]

    try:
        wait_until(left, ROOT_HOLD_S * 2 + WAIT_S, "no task left open on a replica")
    except AssertionError as exc:
        raise AssertionError(f"{exc}: open on each replica at the last look {seen[-1]}") from None
    after = [gw.serve_metrics(r) for r in gw.replicas]
    let_go = _grew(after, before, "spanvisor_evicted_tasks_total", reason="finished_by_another_replica")
    assert let_go == [0, 0], f"tasks whose records reached another replica than their spans: {let_go}"
    opened = _grew(after, before, "spanvisor_live_records_total", outcome="opened")
    finished = _grew(after, before, "spanvisor_events_emitted_total", kind="TaskFinished")
    assert opened == finished and sum(finished) == N and min(finished) > 0, (opened, finished)


def test_a_live_record_the_gateway_sends_again_while_a_replica_is_down_is_read_once(gw: Gateway) -> None:
    """Records without ``agent.record.id`` (as a plain OTel sender sends them) while
    one replica is stopped: the load balancer splits each batch by replica
    and, when one part fails, the batch goes back to its queue whole, so the
    part the live replica took reaches it again at every retry. A span's
    repeat is the same span (same event ids: nothing doubles); a record's
    repeat is known by what it says (its event, time and attributes) and
    read once (it was read as a new checkpoint: another row for the root's
    checkpoint)."""
    ids = [f"G4-{i}" for i in range(N)]
    gw.sent += ids
    down = gw.replicas[1]
    assert down.terminate() == 0, down.log_text()
    agent = gw.agent("G4")
    try:
        for t in ids:
            agent.work(agent.open(t), t)
        agent.flush()
    finally:
        agent.close()
    down.start(timeout=300)
    gw.whole(ids)
