"""End to end: the sink with the real OTel SDK (LoggerProvider, batch
processor, OTLP/HTTP log exporter) posting to a Collector stand-in on
loopback that decodes every ``ExportLogsServiceRequest``."""

from __future__ import annotations

import asyncio

import pytest

from spanvisor.events import TaskStarted
from spanvisor.sink import SinkResult
from spanvisor_decisionlogs import DecisionLogSink
from tests.decisionlogs.conftest import (
    ROOT_SPAN,
    T0,
    TRACE,
    VIEW,
    Collector,
    attributes,
    decision,
    free_port,
    intervention,
    started,
    stats,
)

pytestmark = pytest.mark.timeout_s(60)


def test_each_decision_is_one_log_event_on_the_task_trace(collector: Collector) -> None:
    env = {
        "SPANVISOR_DECISION_LOGS_ENDPOINT": collector.url,
        "SPANVISOR_DECISION_LOGS_HEADERS": "x-api-key=k%3D1,X-Tenant=acme",
    }
    approve = intervention()
    refused = intervention(
        decision("approve", "iv-2", actor_id="U9", actor_name=None), outcome="denied", code="not_approver"
    )
    cancel = intervention(decision("cancel", "iv-3"))

    async def scenario() -> DecisionLogSink:
        sink = await started(env)
        try:
            other = TaskStarted(event_id="e0", time_ns=T0, task=VIEW)
            assert await sink.export([other, approve, refused]) is SinkResult.SUCCESS
            assert await sink.export([approve, cancel]) is SinkResult.SUCCESS  # approve again: logged once
            assert await sink.force_flush(10)
        finally:
            await sink.shutdown(5)
        return sink

    sink = asyncio.run(scenario())
    records = collector.records()
    assert [attributes(r)["spanvisor.decision.id"] for r in records] == ["iv-1", "iv-2", "iv-3"]
    first = records[0]
    assert first.event_name == "spanvisor.decision"
    assert first.trace_id == bytes.fromhex(TRACE) and first.span_id == bytes.fromhex(ROOT_SPAN)
    assert first.time_unix_nano == T0 and first.observed_time_unix_nano > 0
    assert (first.severity_number, first.severity_text) == (9, "INFO")
    assert first.body.string_value == "alice approved a1 on task T1"
    a = attributes(first)
    assert a["spanvisor.decision.outcome"] == "allow" and a["gen_ai.tool.name"] == "deploy"
    assert a["gen_ai.agent.id"] == "deployer" and a["user.id"] == "U1" and a["spanvisor.decision.verified"] is True
    denied = attributes(records[1])
    assert denied["spanvisor.decision.outcome"] == "deny" and denied["spanvisor.decision.code"] == "not_approver"
    assert (
        records[1].severity_number == 13
        and records[1].body.string_value == "U9 could not approve a1 on task T1: not_approver"
    )
    assert attributes(records[2])["spanvisor.decision.outcome"] == "cancel"

    resource, scope, _ = collector.exports[0].records()[0]
    assert attributes(resource)["service.name"] == "spanvisor"
    assert scope.name == "spanvisor.decisionlogs"
    headers = {k.lower(): v for k, v in collector.exports[0].headers.items()}
    assert headers["x-api-key"] == "k=1" and headers["x-tenant"] == "acme"  # percent-decoded, as OTel's own
    assert headers["content-type"] == "application/x-protobuf"

    s = stats(sink)
    assert s.value("decision_log_records_total", sink="decisionlogs", outcome="sent") == 3
    assert s.total("dropped_total") == 0
    assert sink.health() == (True, "ok")


def test_an_outage_drops_what_the_exporter_gave_up_on_counted_and_later_ones_arrive() -> None:
    """The endpoint is down: the SDK's exporter retries within the timeout,
    then drops the batch; the sink counts it and never sends it again. Once
    the endpoint is up, later decisions arrive."""
    collector = Collector(port=free_port())  # not listening yet
    env = {"SPANVISOR_DECISION_LOGS_ENDPOINT": collector.url, "SPANVISOR_DECISION_LOGS_TIMEOUT": "1s"}

    async def scenario() -> DecisionLogSink:
        sink = await started(env)
        try:
            await sink.export([intervention()])
            assert await sink.force_flush(15)  # settled: given up on
            assert stats(sink).value("dropped_total", reason="decision_logs_export_failed", sink="decisionlogs") == 1
            ok, why = sink.health()
            assert not ok and "127.0.0.1" in why and "/v1/logs" not in why  # scheme, host and port only
            collector.open()
            await sink.export([intervention(decision("cancel", "iv-2"))])
            assert await sink.force_flush(15)
        finally:
            await sink.shutdown(5)
        return sink

    try:
        sink = asyncio.run(scenario())
    finally:
        collector.stop()
    assert [attributes(r)["spanvisor.decision.id"] for r in collector.records()] == ["iv-2"]
    s = stats(sink)
    assert s.value("decision_log_records_total", sink="decisionlogs", outcome="failed") == 1
    assert s.value("decision_log_records_total", sink="decisionlogs", outcome="sent") == 1
    assert s.total("dropped_total") == 1  # nothing else lost, nothing counted twice
    assert sink.health() == (True, "ok")


def test_shutdown_while_the_endpoint_is_down_stops_retrying_and_counts_the_loss() -> None:
    env = {"SPANVISOR_DECISION_LOGS_ENDPOINT": f"http://127.0.0.1:{free_port()}/v1/logs"}  # the 10 s default timeout

    async def scenario() -> DecisionLogSink:
        sink = await started(env)
        await sink.export([intervention()])
        await sink.shutdown(2)  # within it: the exporter is told to stop rather than retry for 10 s
        return sink

    sink = asyncio.run(scenario())
    s = stats(sink)
    lost = s.value("dropped_total", reason="decision_logs_export_failed", sink="decisionlogs") + s.value(
        "dropped_total", reason="decision_logs_unsent", sink="decisionlogs"
    )
    assert lost == 1 and s.total("dropped_total") == 1
    assert sink.pending == 0


def test_named_without_an_endpoint_it_exports_nothing_and_counts_it(caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> DecisionLogSink:
        sink = await started({})
        assert await sink.export([intervention()]) is SinkResult.SUCCESS
        assert await sink.force_flush(1)
        await sink.shutdown(1)
        return sink

    sink = asyncio.run(scenario())
    assert sink.emitter is None
    assert stats(sink).value("dropped_total", reason="decision_logs_not_configured", sink="decisionlogs") == 1
    assert sink.health() == (False, "SPANVISOR_DECISION_LOGS_ENDPOINT is not set")
    assert "SPANVISOR_DECISION_LOGS_ENDPOINT is not set" in caplog.text


def test_with_the_otel_sdk_disabled_it_says_so_instead_of_waiting_for_records(
    collector: Collector, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")

    async def scenario() -> DecisionLogSink:
        sink = await started({"SPANVISOR_DECISION_LOGS_ENDPOINT": collector.url})
        await sink.export([intervention()])
        assert await sink.force_flush(1)  # nothing waits for a record that would never leave
        await sink.shutdown(1)
        return sink

    sink = asyncio.run(scenario())
    ok, why = sink.health()
    assert not ok and "OTEL_SDK_DISABLED" in why
    assert stats(sink).value("dropped_total", reason="decision_logs_not_configured", sink="decisionlogs") == 1
    assert collector.records() == []
