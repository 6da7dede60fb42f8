"""Settings, selection, ``spanvisor check``, lazy imports, and the sink in a
real pipeline with decisions made through its Control."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import Status, StatusCode

from spanvisor.config import ConfigError
from spanvisor.events import Decision, HumanIntervention
from spanvisor.otel.processor import SpanvisorSpanProcessor
from spanvisor.pipeline.pipeline import Pipeline
from spanvisor.testing import InMemorySink
from spanvisor_decisionlogs import DecisionLogSink
from spanvisor_decisionlogs.settings import config_problem, p_headers
from tests.decisionlogs.conftest import ROOT, Collector, attributes, config, free_port
from tests.waiting import wait_until

SECRET = "sk-3f9a7c1e0b2d4a6f"


def test_headers_read_as_otel_reads_them_and_malformed_ones_are_refused() -> None:
    assert p_headers("") == ()
    assert p_headers("x-api-key=k%3D1, X-Tenant = acme ,") == (("x-api-key", "k=1"), ("X-Tenant", "acme"))
    assert p_headers({"authorization": "Bearer t"}) == (("authorization", "Bearer t"),)  # a TOML table
    for bad in ("novalue", "=v", "a b=1", "a=1%0D%0Ab=2"):
        with pytest.raises(ValueError):
            p_headers(bad)
    with pytest.raises(ConfigError) as err:
        config({"SPANVISOR_DECISION_LOGS_HEADERS": f"{SECRET}"})
    assert SECRET not in str(err.value) and "SPANVISOR_DECISION_LOGS_HEADERS" in str(err.value)
    with pytest.raises(ConfigError):
        config({"SPANVISOR_DECISION_LOGS_TIMEOUT": "0s"})


def test_the_endpoint_enables_the_sink_and_check_shows_no_secret() -> None:
    assert not DecisionLogSink.enabled(config({}))
    url = f"https://collector.example:4318/v1/logs?token={SECRET}"
    cfg = config({"SPANVISOR_DECISION_LOGS_ENDPOINT": url, "SPANVISOR_DECISION_LOGS_HEADERS": f"x-api-key={SECRET}"})
    assert DecisionLogSink.enabled(cfg)
    (row,) = asyncio.run(DecisionLogSink.check(cfg))
    assert row == ("decision logs", True, "OTLP/HTTP log events to https://collector.example:4318; headers: x-api-key")
    assert all(SECRET not in value for _, _, value, _ in cfg.rows())
    assert config_problem("collector:4318") is not None and config_problem("ftp://h/v1/logs") is not None
    (row,) = asyncio.run(DecisionLogSink.check(config({})))
    assert row[1] is False


@pytest.mark.timeout_s(120)
def test_what_the_sink_imports_lazily_it_names_in_imports() -> None:
    """Once the modules ``imports()`` names are imported, building the
    exporter and exporting import nothing more: nothing half imported on the
    pipeline's thread is visible to an agent's threads."""
    script = textwrap.dedent(
        f"""
        import importlib, sys, time
        from spanvisor_decisionlogs import DecisionLogSink
        for name in DecisionLogSink().imports(None):
            importlib.import_module(name)
        from spanvisor.events import Decision, HumanIntervention, TaskView
        from spanvisor_decisionlogs.otlp import Emitter
        from spanvisor_decisionlogs.record import decision_record
        before = set(sys.modules)
        view = TaskView(task_id="T1", trace_id="ab" * 16, root_span_id="cd" * 8, agent_id="a")
        d = Decision("iv-1", "T1", "cancel", "U1", 1)
        event = HumanIntervention(event_id="iv-1", time_ns=1, task=view, decision=d)
        ended = []
        e = Emitter("http://localhost:{free_port()}/v1/logs", {{}}, 0.3, lambda n, ok: ended.append(ok))
        e.emit(decision_record(event))
        while not ended:
            time.sleep(0.02)
        e.close()
        print(sorted(set(sys.modules) - before))
        """
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "plugins"), env.get("PYTHONPATH", "")])
    out = subprocess.run(
        [sys.executable, "-c", script], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60, check=False
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]", out.stdout


@pytest.mark.timeout_s(120)
def test_decisions_made_in_a_pipeline_arrive_linked_to_the_task_trace(tmp_path: Path, collector: Collector) -> None:
    cfg = config({"SPANVISOR_DATA_DIR": str(tmp_path), "SPANVISOR_DECISION_LOGS_ENDPOINT": collector.url})
    sink, memory = DecisionLogSink(), InMemorySink()
    pipeline = Pipeline(cfg, sinks=[sink, memory]).start()
    try:
        assert pipeline.wait_ready(10)
        provider = TracerProvider()
        provider.add_span_processor(SpanvisorSpanProcessor(pipeline=pipeline))
        tracer = provider.get_tracer("decisionlogs-test")
        with tracer.start_as_current_span("deploy", attributes={"agent.task.id": "T1", "agent.id": "deployer"}) as root:
            root.set_status(Status(StatusCode.ERROR, "boom"))
        assert pipeline.force_flush(10)
        for iid, actor in (("iv-retry", "U1"), ("iv-late", "U2")):
            d = Decision(iid, "T1", "retry", actor, time.time_ns(), actor_name=actor.lower(), source="cli")
            asyncio.run(pipeline.control.decide(d))
        wait_until(lambda: len(memory.of_type(HumanIntervention)) == 2, what="both decisions' events")
        assert pipeline.force_flush(30)
        events = {e.event_id: e for e in memory.of_type(HumanIntervention)}
        wait_until(lambda: len(collector.records()) == len(events), what="one record per decision")
    finally:
        pipeline.shutdown(5)
    by_id = {attributes(r)["spanvisor.decision.id"]: r for r in collector.records()}
    assert by_id.keys() == events.keys() == {"iv-retry", "iv-late"}
    retry = by_id["iv-retry"]
    assert retry.trace_id == bytes.fromhex(events["iv-retry"].task.trace_id)
    assert retry.span_id == bytes.fromhex(events["iv-retry"].task.root_span_id)
    a = attributes(retry)
    assert a["spanvisor.decision.outcome"] == "retry" and a["gen_ai.agent.id"] == "deployer"
    assert retry.body.string_value == "u1 retried task T1"
    # The second retry came too late: refused, and logged as such.
    assert events["iv-late"].outcome == "denied"
    late = by_id["iv-late"]
    assert late.severity_number == 13
    assert attributes(late)["spanvisor.decision.outcome"] == "deny"
    assert attributes(late)["spanvisor.decision.code"] == events["iv-late"].code == "already_decided"
