"""``spanvisor demo``: simulated agents, real OTel spans, every sink.

* **rivet** diagnoses a fault, walks its steps and completes with artifacts;
  its root carries a $1.25 budget (``agent.budget.usd``), which it passes:
  a budget warning at 80 %, then at 100 %. Before applying its fix it asks
  "Apply the fix to prod?" (``t.request_approval``) and waits
  ``--approval-wait`` seconds (20; 1 with ``--fast``) for
  ``spanvisor approve <task> a1`` (the demo serves the control API on
  127.0.0.1:4318, or a free port when that is taken, and prints the
  command); without an answer it goes on as "timed out"; its results
  (``t.result``: downtime avoided, sensors correlated) end its summary;
* **sprocket** migrates a schema and fails with an exception; its own
  logging (stdlib, through the OTel SDK's handler) is the error line's log
  tail, a password in a connection string redacted;
* **gauge** summarises a long log; its context grows by the same step every
  call, so a forecast ("at this rate, 70 % in about 3 calls") comes before
  it crosses 70 %, then 85 % of its 200,000-token context window;
* **ledger** asks for a migration with one approver; the demo's central
  policy raises it to two people, who approve with the real CLI; the
  decision log's chain is verified at the end (:mod:`.demo_signoff`).

Every model call names its provider and model, so each task's cost is priced
(genai-prices) and shown as an estimate. The budget is a root attribute, not
config, so it works however the pipeline is configured.

The agents use only the OpenTelemetry API and :mod:`spanvisor.agent`; the
processor on their TracerProvider feeds whatever sinks config selects. With
``--via-serve`` they export OTLP to the receiver of ``spanvisor serve`` in
front of the same sinks instead (:mod:`spanvisor.cli.demo_serve`), as agents
behind a Collector do, and the live channel keeps the story live.
"""

from __future__ import annotations

import dataclasses
import logging
import random
import secrets
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider

from spanvisor.agent import TaskHandle, task
from spanvisor.cli import demo_signoff
from spanvisor.cli.demo_flow import (
    PACE_STEPS,
    DemoStopped,
    deliver,
    durable_sinks_unable_to_write,
    expected_s,
    linger_hint,
    stop_now,
    stopped_by_sigterm,
)
from spanvisor.cli.pasteable import command_name
from spanvisor.config import Config
from spanvisor.control.client import HttpSource
from spanvisor.otel.logs import SpanvisorLogProcessor
from spanvisor.otel.processor import SpanvisorSpanProcessor
from spanvisor.pipeline.pipeline import Pipeline
from spanvisor.spans import conventions as cv
from spanvisor.stream.sink import attach as attach_stream


class DemoPace:
    """How fast the agents go; how long rivet waits for its approval, and
    what to print so a person can answer it."""

    def __init__(self, seconds: float, steps: int, approval_wait_s: float = 20.0, control_url: str = "") -> None:
        self.pause = seconds / steps
        self.approval_wait_s = approval_wait_s
        self.control_url = control_url

    def tick(self, n: float = 1.0) -> None:
        time.sleep(self.pause * n * random.uniform(0.8, 1.2))


# The demo's budget for rivet's task, in dollars: its calls cost about $1.51.
RIVET_BUDGET_USD = 1.25
# Where the demo serves the control API (spanvisor approve's default URL);
# a free port when it is taken (e.g. by spanvisor serve).
DEMO_CONTROL_PORT = 4318


def _chat(tracer: trace.Tracer, model: str, tokens_in: int, tokens_out: int, provider: str = "anthropic") -> None:
    with tracer.start_as_current_span(
        f"chat {model}",
        attributes={
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": provider,
            "gen_ai.request.model": model,
        },
    ) as span:
        span.set_attribute("gen_ai.usage.input_tokens", tokens_in)
        span.set_attribute("gen_ai.usage.output_tokens", tokens_out)


def _tool(tracer: trace.Tracer, name: str) -> None:
    with tracer.start_as_current_span(
        f"execute_tool {name}",
        attributes={
            "gen_ai.operation.name": "execute_tool",
            "gen_ai.tool.name": name,
        },
    ):
        pass


def rivet(tracer: trace.Tracer, clock: DemoPace) -> None:
    steps = ["Read alarm history", "Correlate sensor data", "Route to SME", "Write report"]
    # On the root from the start, so every path (in-process, exporter, receiver) reads it.
    budget: dict[str, Any] = {cv.BUDGET_USD: RIVET_BUDGET_USD}
    # A short id of its own per run, easy to type in `spanvisor approve`.
    task_id = f"rivet-{secrets.token_hex(3)}"
    with task(
        "Diagnose fault F47 on press line 3",
        agent_id="rivet",
        task_id=task_id,
        repo="plant-ops/line3",
        steps=steps,
        tracer=tracer,
        **budget,
    ) as t:
        tokens = 12_000
        for i, step in enumerate(steps):
            t.checkpoint(f"{step}…", progress=i * 25, step=step)
            for _ in range(3):
                _tool(tracer, "query_historian")
                tokens += 4_000
                _chat(tracer, "claude-sonnet-4-5", tokens, 800)
                clock.tick()
            if step == "Route to SME":
                _ask_to_apply_the_fix(t, clock)
        t.artifact(
            "diagnosis-F47.md", uri="https://git.example.com/plant-ops/line3/blob/main/diagnosis-F47.md", kind="report"
        )
        t.artifact("sensor-correlation.csv", uri="s3://plant-ops/f47/sensor-correlation.csv", kind="data")
        t.checkpoint("Routed to siemens SME; report filed", progress=100, step=steps[-1])
        t.result("downtime_avoided", 5_400, "s")
        t.result("sensors_correlated", 37)


def _say_once_held(url: str, task_id: str, approval_id: str, hint: str, answered: threading.Event) -> None:
    """Print the hint once the control API lists the request: through
    ``serve`` the request reaches it a moment after the agent asks, and a
    decision typed in that moment was refused as unknown. Said after 10 s
    anyway; never once the agent has its answer."""
    client = HttpSource(url, None, request_timeout_s=2.0)
    deadline = time.monotonic() + 10.0
    while not answered.is_set() and time.monotonic() < deadline:
        status, doc = client.approvals()
        held = doc.get("approvals") if status == 200 else None
        if any(x.get("task_id") == task_id and x.get("approval_id") == approval_id for x in held or ()):
            break
        answered.wait(0.05)
    if not answered.is_set():
        print(hint, flush=True)


def _ask_to_apply_the_fix(t: TaskHandle, clock: DemoPace) -> None:
    wait = clock.approval_wait_s
    url = "" if clock.control_url.endswith(f":{DEMO_CONTROL_PORT}") else f" --url {clock.control_url}"
    me = command_name()
    hint = (
        f"\n🙋 [rivet] asks: Apply the fix to prod? (waiting {wait:g}s)\n"
        f"   see it with: {me} approvals{url}   (every open request, with the command that answers it)\n"
        f"   answer with: {me} approve{url} {t.task_id} a1   (or: {me} reject{url} {t.task_id} a1)\n"
    )
    answered = threading.Event()
    watcher = threading.Thread(
        target=_say_once_held, args=(clock.control_url, t.task_id, "a1", hint, answered), name="demo-hint", daemon=True
    )
    watcher.start()
    decision = t.request_approval("Apply the fix to prod?", approval_id="a1", timeout=wait)
    answered.set()
    watcher.join(5)
    by = f" by {decision.by}" if decision.by else ""
    note = f" ({decision.comment})" if decision.comment else ""
    if decision.approved:
        print(f"✅ [rivet] Approved{by}{note}: applying the fix to prod", flush=True)
        t.checkpoint(f"Fix applied to prod (approved{by})")
    elif decision.outcome == "reject":
        print(f"🚫 [rivet] Rejected{by}{note}: leaving prod alone", flush=True)
        t.checkpoint(f"Fix not applied (rejected{by})")
    else:
        print(f"⌛ [rivet] No answer within {wait:g}s (timed out): leaving prod alone", flush=True)
        t.checkpoint("Fix not applied (approval timed out)")


def sprocket(tracer: trace.Tracer, clock: DemoPace) -> None:
    steps = ["Dump schema", "Plan migration", "Apply migration", "Verify"]
    with task(
        "Migrate orders schema to v7", agent_id="sprocket", repo="shop/orders-db", steps=steps, tracer=tracer
    ) as t:
        t.checkpoint("Dumping schema", progress=10, step=steps[0])
        _chat(tracer, "gpt-4o", 9_000, 1_500, provider="openai")
        clock.tick(3)
        t.checkpoint("Planning the migration", progress=35, step=steps[1])
        _chat(tracer, "gpt-4o", 21_000, 2_500, provider="openai")
        clock.tick(3)
        t.checkpoint("Applying 0007_split_orders.sql", progress=60, step=steps[2])
        # Its own logs, through the OpenTelemetry logging handler: the last
        # ones land on its error line (a log tail), the password redacted.
        log = logging.getLogger("sprocket.migrate")
        log.info("connecting to postgresql://migrator:hunter2@orders-db:5432/orders")
        log.warning("orders_archive exists from an earlier partial run (lock wait 4.2s)")
        _tool(tracer, "psql")
        clock.tick(2)
        log.error('psql: ERROR: relation "orders_archive" already exists (0007_split_orders.sql:42)')
        raise RuntimeError('relation "orders_archive" already exists (migration 0007, line 42)')


def gauge(tracer: trace.Tracer, clock: DemoPace) -> None:
    with task("Summarise 30 days of gateway logs", agent_id="gauge", repo="infra/gateway", tracer=tracer) as t:
        t.checkpoint("Loading log shards", progress=5)
        # The same 12,000 tokens more per call: a steady rise, so the forecast
        # of 70 % comes about three calls before the crossing.
        used = 60_000
        for shard in range(1, 12):
            used += 12_000
            _tool(tracer, "read_shard")
            _chat(tracer, "claude-sonnet-4-5", used, 1_200)
            t.checkpoint(f"Summarised shard {shard}/11", progress=5 + shard * 8.5)
            clock.tick()
        t.artifact("gateway-30d-summary.md", kind="report")
        t.checkpoint("Summary written; context nearly full, compaction advised", progress=100)
        t.result("error_rate", 0.4, "%")
        t.result("shards_read", 11)


AGENTS: tuple[Callable[[trace.Tracer, DemoPace], None], ...] = (rivet, sprocket, gauge)


def run_demo(
    config: Config, seconds: float = 20.0, linger_s: float = 0.0, approval_wait_s: float = 20.0, via_serve: bool = False
) -> int:
    config, signoff = demo_signoff.people(config)  # alice and bob, with tokens of their own
    config, mine = demo_signoff.central(config)  # a central rule that raises ledger's request to two people
    signoff = dataclasses.replace(signoff, central=mine)
    pipeline = Pipeline(config, path="receiver" if via_serve else "processor")
    attach_stream(pipeline)  # GET /v1/events on the control API, for `spanvisor follow`
    serving: list[Any] = []  # the control API, once it serves
    with stopped_by_sigterm():
        try:
            return _run(config, signoff, pipeline, serving, seconds, linger_s, approval_wait_s, via_serve)
        except DemoStopped:
            pass
    return stop_now(pipeline, serving)


def _run(
    config: Config,
    signoff: Any,
    pipeline: Pipeline,
    serving: list[Any],
    seconds: float,
    linger_s: float,
    approval_wait_s: float,
    via_serve: bool,
) -> int:
    pipeline.start()
    problems = durable_sinks_unable_to_write(pipeline)
    if problems:
        # Said first, then stopped: nothing ran yet, so there is nothing to
        # flush, and a longer stop only added its sinks' retry warnings.
        print(
            "spanvisor demo: a sink that stores the events cannot write, so the demo would only wait:", file=sys.stderr
        )
        for problem in problems:
            print(f"  {problem}", file=sys.stderr)
        pipeline.shutdown(1.0)
        return 1
    from spanvisor.receiver.control_thread import ControlApiThread

    resource = Resource.create({"service.name": "spanvisor-demo"})
    if via_serve:
        from opentelemetry import _logs

        from spanvisor.cli.demo_serve import LocalServe, agent_providers, read_decisions_from

        # serve's receiver carries the control API on its OTLP/HTTP port.
        control_api: Any = LocalServe(pipeline, config).start()
        provider, logs = agent_providers(control_api.url, resource, fast=seconds < 10)
        _logs.set_logger_provider(logs)  # the helper's live channel goes through it too
        read_decisions_from(control_api.url)
    else:
        # On loopback with no token: only this machine's `spanvisor approve` reaches it.
        control_api = ControlApiThread(pipeline, "127.0.0.1", DEMO_CONTROL_PORT)
        control_api.start()
        provider = TracerProvider(resource=resource)
        processor = SpanvisorSpanProcessor(pipeline=pipeline)
        provider.add_span_processor(processor)
        # The agents' stdlib logging, through the OTel SDK's handler: log tails.
        logs = LoggerProvider(resource=resource)
        logs.add_log_record_processor(SpanvisorLogProcessor(processor))
    serving.append(control_api)
    tracer = provider.get_tracer("spanvisor.demo")
    handler = LoggingHandler(level=logging.INFO, logger_provider=logs)
    agent_logs = logging.getLogger("sprocket")
    agent_logs.addHandler(handler)
    agent_logs.setLevel(logging.INFO)
    agent_logs.propagate = False  # the console shows them in the error line, not twice
    names = ", ".join(getattr(s, "name", "?") for s in pipeline.sinks) or "none"
    how = f" through spanvisor serve's OTLP receiver at {control_api.url}" if via_serve else ""
    count = len(AGENTS) + signoff.on
    about = f"about {expected_s(seconds, approval_wait_s):.0f}s when nobody answers rivet, less when you do"
    print(f"spanvisor demo: {count} agents, {about}{how}; into sinks: {names}", flush=True)
    me = command_name()
    print(f"control API: {control_api.url} ({me} approve/reject/cancel answer the agents)", flush=True)
    print(f"live events: {me} follow --url {control_api.url} (in another terminal)", flush=True)
    port = config.get("metrics_port")
    admin = [s for s in pipeline.sinks if hasattr(s, "bound_port")]  # the sink serving /metrics
    # Only a port it bound, once started: another process may hold it.
    bound = [s.bound_port for s in admin if s.bound_port] if port and admin and pipeline.wait_ready(30) else []
    if bound:
        host = config.get("metrics_host") or "127.0.0.1"
        where = bound[0]
        print(
            f"metrics: http://{host}:{where}/metrics ({linger_hint(via_serve)} keeps it up after the agents finish)",
            flush=True,
        )
    print(flush=True)
    errors: list[BaseException] = []
    failed: list[str] = []  # the scripted sign-off's failures: the demo then exits 1

    def run(agent: Callable[[trace.Tracer, DemoPace], None]) -> None:
        try:
            agent(tracer, DemoPace(seconds, PACE_STEPS, approval_wait_s, control_api.url))
        except RuntimeError:
            pass  # sprocket's failure is the point of the demo
        except BaseException as exc:  # pragma: no cover - a bug in the demo itself
            errors.append(exc)

    def sign_off(tracer: trace.Tracer, clock: DemoPace) -> None:
        demo_signoff.ledger(tracer, control_api.url, signoff, max(30.0, approval_wait_s), clock.tick, failed)

    # Daemons: a demo stopped by SIGTERM does not wait for its agents.
    threads = [threading.Thread(target=run, args=(a,), name=a.__name__, daemon=True) for a in (*AGENTS, sign_off)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    if via_serve:
        # The agents' exporters hand over what they still hold, as at an exit.
        provider.shutdown()
        logs.shutdown()
    agent_logs.removeHandler(handler)
    flushed = deliver(pipeline)
    if linger_s > 0:
        print(f"\nlingering {linger_s:.0f}s (metrics and sinks stay up)…", flush=True)
        time.sleep(linger_s)
    # Up until here, so `spanvisor follow` sees every event, the last included.
    control_api.stop()
    stats = pipeline.stats
    dropped = stats.total("dropped_total")
    pipeline.shutdown(30.0)
    print(
        f"\ndemo done: {int(stats.total('events_emitted_total'))} events from "
        f"{int(stats.total('spans_received_total'))} spans; dropped {int(dropped)}"
        + ("" if flushed else "; some sinks did not flush in time"),
        flush=True,
    )
    if not demo_signoff.verify_chain(config, pipeline.sinks, flushed):
        failed.append("`audit verify` did not confirm the decision log")
    if any(getattr(s, "durable", False) for s in pipeline.sinks):
        me = command_name()
        print(f"audit trail: run `{me} tasks` and `{me} task <id>`", flush=True)
    for problem in failed:
        print(f"spanvisor demo: failed: {problem}", file=sys.stderr, flush=True)
    return 1 if errors or failed or not flushed else 0
