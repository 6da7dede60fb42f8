"""Agents that export metrics to serve's endpoint (the coding-agent CLIs do
by default) get an OTLP success, not a 404 their exporter prints: the real
SDK's metric exporters, over HTTP and gRPC, report success; what serve
acknowledged is counted, never read; a malformed body is still a 400."""

from __future__ import annotations

import urllib.error
import urllib.request

import pytest
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter as GrpcMetricExporter
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter as HttpMetricExporter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, MetricExportResult
from opentelemetry.sdk.resources import Resource

from conftest import RunningReceiver, requests
from spanvisor.pipeline.pipeline import Pipeline
from spanvisor.testing import InMemorySink


def _metrics_url(receiver: RunningReceiver) -> str:
    return receiver.http_url.replace("/v1/traces", "/v1/metrics")


def _metrics() -> object:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader], resource=Resource.create({"service.name": "claude-code"}))
    provider.get_meter("t").create_counter("claude_code.token.usage").add(120, {"type": "input"})
    data = reader.get_metrics_data()
    provider.shutdown()
    return data


@pytest.mark.parametrize("transport", ["http", "grpc"])
def test_the_sdks_metric_exporter_succeeds_and_nothing_is_read(
    transport: str, receiver: RunningReceiver, pipeline: Pipeline, sink: InMemorySink
) -> None:
    if transport == "http":
        exporter = HttpMetricExporter(endpoint=_metrics_url(receiver))
    else:
        exporter = GrpcMetricExporter(endpoint=receiver.grpc_target, insecure=True)
    try:
        assert exporter.export(_metrics()) is MetricExportResult.SUCCESS  # type: ignore[arg-type]
    finally:
        exporter.shutdown()
    assert requests(pipeline, transport, "metrics_ignored") == 1
    assert pipeline.force_flush(10)
    assert sink.events == []


def test_a_malformed_metrics_body_is_a_400(receiver: RunningReceiver, pipeline: Pipeline) -> None:
    req = urllib.request.Request(
        _metrics_url(receiver), data=b"\xff\xff not protobuf", headers={"Content-Type": "application/x-protobuf"}
    )
    with pytest.raises(urllib.error.HTTPError) as got:
        urllib.request.urlopen(req, timeout=10)
    assert got.value.code == 400
    assert requests(pipeline, "http", "bad_request") == 1
