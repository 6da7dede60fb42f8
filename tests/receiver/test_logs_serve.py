"""Log tails through `spanvisor serve`: an agent's stdlib logging through the
OTel SDK's LoggingHandler and the real OTLP log exporters (HTTP and gRPC),
its spans through the real OTLP span exporters, into the failed task's
TaskFinished; OTLP/JSON logs; the same token check and answers as traces."""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request
import warnings
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter as GrpcLogExporter
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpanExporter
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter as HttpLogExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpanExporter
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import Status, StatusCode
from tests.waiting import wait_until

from conftest import RunningReceiver, local_settings
from spanvisor.events import TaskFinished
from spanvisor.pipeline.pipeline import Pipeline
from spanvisor.spans import conventions as cv
from spanvisor.testing import InMemorySink

SECRET = "xoxb-1234567890-abcdefghij"


class _Agent:
    """Spans and logs of one agent, each through a real OTLP exporter."""

    def __init__(self, span_exporter: Any, log_exporter: Any) -> None:
        self.tracer_provider = TracerProvider(shutdown_on_exit=False)
        # Simple processors: each log record is exported as it is emitted,
        # each span when it ends, so the logs arrive before the root.
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(span_exporter))
        self.logger_provider = LoggerProvider(shutdown_on_exit=False)
        self.logger_provider.add_log_record_processor(SimpleLogRecordProcessor(log_exporter))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            self.handler = LoggingHandler(level=logging.NOTSET, logger_provider=self.logger_provider)
        self.logger = logging.getLogger(f"agent.serve.{id(self)}")
        self.logger.setLevel(logging.DEBUG)
        self.logger.propagate = False
        self.logger.addHandler(self.handler)
        self.tracer = self.tracer_provider.get_tracer("agent")

    def fail_a_task(self) -> None:
        self.logger.warning("outside any task")
        with self.tracer.start_as_current_span("migrate", attributes={cv.TASK_NAME: "migrate db"}) as root:
            with self.tracer.start_as_current_span("step", attributes={cv.PROGRESS: 40}):
                self.logger.info("connecting")
                self.logger.warning("slow: password=%s", "hunter2")
                self.logger.error("migration failed, token %s", SECRET)
            root.set_status(Status(StatusCode.ERROR, "migration failed"))

    def close(self) -> None:
        self.logger.removeHandler(self.handler)
        self.logger_provider.shutdown()
        self.tracer_provider.shutdown()


def _tail(pipeline: Pipeline, sink: InMemorySink) -> list[tuple[str, str]]:
    assert pipeline.force_flush(10)
    [done] = wait_until(lambda: sink.of_type(TaskFinished), what="the task's end")
    assert done.outcome == "error"
    return [(line.level, line.message) for line in done.log_tail]


# "connecting" (INFO, below the floor) came before anything told the receiver
# that the trace may be a task's (here the root, last, does): it is not kept.
EXPECTED = [
    ("WARN", "slow: password=****"),
    ("ERROR", "migration failed, token xox?-****"),
]


@pytest.fixture
def http_agent(receiver: RunningReceiver) -> Iterator[_Agent]:
    base = receiver.http_url.removesuffix("/v1/traces")
    agent = _Agent(HttpSpanExporter(endpoint=base + "/v1/traces"), HttpLogExporter(endpoint=base + "/v1/logs"))
    yield agent
    agent.close()


def test_otlp_http_logs_reach_the_failed_tasks_tail(http_agent: _Agent, pipeline: Pipeline, sink: InMemorySink) -> None:
    http_agent.fail_a_task()
    assert _tail(pipeline, sink) == EXPECTED
    assert pipeline.stats.value("receiver_requests_total", transport="http", outcome="logs_ok") >= 4


def test_otlp_grpc_logs_reach_the_failed_tasks_tail(
    receiver: RunningReceiver, pipeline: Pipeline, sink: InMemorySink
) -> None:
    agent = _Agent(
        GrpcSpanExporter(endpoint=receiver.grpc_target, insecure=True),
        GrpcLogExporter(endpoint=receiver.grpc_target, insecure=True),
    )
    try:
        agent.fail_a_task()
    finally:
        agent.close()
    assert _tail(pipeline, sink) == EXPECTED
    assert pipeline.stats.value("receiver_requests_total", transport="grpc", outcome="logs_ok") >= 4


def _post(url: str, body: bytes, ctype: str, token: str | None = None) -> tuple[int, bytes]:
    headers = {"Content-Type": ctype}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_otlp_json_logs_with_hex_ids_and_bad_bodies(
    receiver: RunningReceiver, pipeline: Pipeline, sink: InMemorySink
) -> None:
    url = receiver.http_url.removesuffix("/v1/traces") + "/v1/logs"
    trace = "5b8efff798038103d269b633813fc60c"
    doc = {
        "resourceLogs": [
            {
                "scopeLogs": [
                    {
                        "scope": {"name": "json.agent"},
                        "logRecords": [
                            {
                                "timeUnixNano": "1700000000000000000",
                                "severityNumber": 17,
                                "severityText": "ERROR",
                                "body": {"stringValue": "disk full"},
                                "traceId": trace,
                                "spanId": "eee19b7ec3c1b174",
                            },
                            {"severityNumber": 17, "body": {"stringValue": "x"}, "spanId": "abcd"},
                        ],
                    }
                ]
            }
        ]
    }
    status, body = _post(url, json.dumps(doc).encode(), "application/json")
    assert status == 200
    # The record with a 2-byte span id is rejected, with the reason.
    answer = json.loads(body)
    assert answer["partialSuccess"]["rejectedLogRecords"] == "1"
    assert "span_id" in answer["partialSuccess"]["errorMessage"]
    # A body that is not a request is 400 INVALID_ARGUMENT, in the request's type.
    status, body = _post(url, b"\x08\x96\x01\xff", "application/x-protobuf")
    assert status == 400
    status, body = _post(url, b"[1,", "application/json")
    assert status == 400 and b"not valid JSON" in body
    # The span that makes the trace a task arrives after its logs: the tail waited.
    spans = {
        "resourceSpans": [
            {
                "scopeSpans": [
                    {
                        "spans": [
                            {
                                "traceId": trace,
                                "spanId": "eee19b7ec3c1b174",
                                "name": "backup",
                                "startTimeUnixNano": "1699999999000000000",
                                "endTimeUnixNano": "1700000001000000000",
                                "attributes": [{"key": cv.TASK_NAME, "value": {"stringValue": "backup"}}],
                                "status": {"code": 2, "message": "disk full"},
                            }
                        ]
                    }
                ]
            }
        ]
    }
    status, _ = _post(receiver.http_url, json.dumps(spans).encode(), "application/json")
    assert status == 200
    assert _tail(pipeline, sink) == [("ERROR", "disk full")]


def test_logs_need_the_token_like_traces(pipeline: Pipeline, tmp_path: Any) -> None:
    r = RunningReceiver(pipeline, local_settings(tmp_path, token="s3cret"))
    try:
        url = f"http://127.0.0.1:{r.receiver.http_port}/v1/logs"
        status, _ = _post(url, b"", "application/x-protobuf")
        assert status == 401
        status, _ = _post(url, b"", "application/x-protobuf", token="s3cret")
        assert status == 200
        exporter = GrpcLogExporter(endpoint=r.grpc_target, insecure=True)
        try:
            provider = LoggerProvider(shutdown_on_exit=False)
            provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
            provider.get_logger("x").emit(body="no token")  # exported (and refused) before emit returns
            assert pipeline.stats.value("receiver_requests_total", transport="grpc", outcome="unauthenticated") >= 1
        finally:
            exporter.shutdown()
    finally:
        r.close()


def test_logs_that_arrive_after_the_failed_root_still_make_its_tail(
    receiver: RunningReceiver, pipeline: Pipeline, sink: InMemorySink
) -> None:
    """Through a Collector, traces and logs travel apart: the root may come
    first. A failed task's end waits (SPANVISOR_LOG_TAIL_WAIT, 2 s) for logs
    still on their way; no flush here, so nothing but the wait lets them in."""
    base = receiver.http_url.removesuffix("/v1/traces")
    trace, span = "6c8efff798038103d269b633813fc60c", "aee19b7ec3c1b174"
    root = {
        "traceId": trace,
        "spanId": span,
        "name": "backup",
        "startTimeUnixNano": "1699999999000000000",
        "endTimeUnixNano": "1700000001000000000",
        "attributes": [{"key": cv.TASK_NAME, "value": {"stringValue": "backup"}}],
        "status": {"code": 2, "message": "disk full"},
    }
    status, _ = _post(
        receiver.http_url,
        json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [root]}]}]}).encode(),
        "application/json",
    )
    assert status == 200
    wait_until(lambda: pipeline.stats.value("spans_in_tasks_total") >= 1, what="the root to be tracked")
    record = {
        "timeUnixNano": "1700000000000000000",
        "severityNumber": 17,
        "body": {"stringValue": "disk full on /var"},
        "traceId": trace,
        "spanId": span,
    }
    logs = {"resourceLogs": [{"scopeLogs": [{"scope": {"name": "late.agent"}, "logRecords": [record]}]}]}
    status, _ = _post(base + "/v1/logs", json.dumps(logs).encode(), "application/json")
    assert status == 200
    [done] = wait_until(lambda: sink.of_type(TaskFinished), what="the task's end")
    assert [(line.level, line.message) for line in done.log_tail] == [("ERROR", "disk full on /var")]
