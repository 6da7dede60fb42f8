"""OTLP/HTTP details: JSON with hex ids, gzip, limits, errors, auth, admin."""

from __future__ import annotations

import gzip
import json
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from agent_traces import request_for, task_spans
from google.protobuf import json_format
from google.rpc.status_pb2 import Status
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from tests.waiting import wait_until

from conftest import (
    RunningReceiver,
    finished,
    local_settings,
    make_pipeline,
    requests,
)
from spanvisor.config import Config
from spanvisor.events import Checkpoint, TaskFinished
from spanvisor.pipeline.pipeline import Pipeline
from spanvisor.receiver.decode import attributes, decode_request
from spanvisor.receiver.otlp_json import parse_request
from spanvisor.sink import BaseSink
from spanvisor.testing import InMemorySink

TRACE = "5b8efff798038103d269b633813fc60c"
SPAN = "eee19b7ec3c1b174"
PARENT = "00f067aa0ba902b7"


def post(
    url: str, body: bytes, ctype: str = "application/x-protobuf", **headers: str
) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": ctype, **headers})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


def json_request(trace_id: str = TRACE, span_id: str = SPAN) -> dict:  # type: ignore[type-arg]
    return {
        "resourceSpans": [
            {
                "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "js-agent"}}]},
                "scopeSpans": [
                    {
                        "scope": {"name": "x"},
                        "spans": [
                            {
                                "traceId": trace_id,
                                "spanId": span_id,
                                "parentSpanId": PARENT,
                                "name": "invoke_agent",
                                "kind": 1,
                                "startTimeUnixNano": "1700000000000000000",
                                "endTimeUnixNano": "1700000001000000000",
                                "flags": 0x300,
                                "attributes": [
                                    {"key": "agent.task.id", "value": {"stringValue": "T-json"}},
                                    {"key": "agent.progress", "value": {"intValue": "40"}},
                                    {
                                        "key": "agent.steps",
                                        "value": {
                                            "arrayValue": {"values": [{"stringValue": "a"}, {"stringValue": "b"}]}
                                        },
                                    },
                                    {"key": "blob", "value": {"bytesValue": "AQID"}},
                                    {
                                        "key": "kv",
                                        "value": {
                                            "kvlistValue": {"values": [{"key": "k", "value": {"boolValue": True}}]}
                                        },
                                    },
                                ],
                                "events": [
                                    {
                                        "timeUnixNano": "1700000000500000000",
                                        "name": "agent.checkpoint",
                                        "attributes": [{"key": "agent.message", "value": {"stringValue": "hi"}}],
                                    }
                                ],
                                "status": {"code": 2, "message": "boom"},
                            }
                        ],
                    }
                ],
            }
        ]
    }


def test_json_ids_are_hex_not_base64() -> None:
    body = json.dumps(json_request()).encode()
    # The pitfall: a plain protobuf JSON parse reads the hex as base64.
    naive = json_format.Parse(body, ExportTraceServiceRequest())
    assert naive.resource_spans[0].scope_spans[0].spans[0].trace_id.hex() != TRACE
    [span] = decode_request(parse_request(body)).spans
    assert (span.trace_id, span.span_id, span.parent_id) == (TRACE, SPAN, PARENT)
    assert span.parent_remote and span.error and span.status_message == "boom"
    assert span.attributes["agent.progress"] == 40
    assert span.attributes["agent.steps"] == ("a", "b")
    # Only the keys the tracker reads become Python values (conventions.READ_KEYS);
    # the JSON's bytes and kvlist values still parse, as attributes() shows.
    assert "blob" not in span.attributes and "kv" not in span.attributes
    everything = attributes(parse_request(body).resource_spans[0].scope_spans[0].spans[0].attributes)
    assert everything["blob"] == "010203"
    assert json.loads(everything["kv"]) == {"k": True}
    assert span.events[0].name == "agent.checkpoint" and span.events[0].attributes == {"agent.message": "hi"}
    assert span.resource == {"service.name": "js-agent"}


def test_json_request_becomes_a_task(receiver: RunningReceiver, pipeline: Pipeline, sink: InMemorySink) -> None:
    status, headers, raw = post(receiver.http_url, json.dumps(json_request()).encode(), "application/json")
    assert status == 200 and headers["Content-Type"].startswith("application/json")
    assert json.loads(raw) == {} or "partialSuccess" not in json.loads(raw)
    assert pipeline.force_flush(10)
    events = sink.for_task("T-json")
    assert any(isinstance(e, Checkpoint) and e.task.message == "hi" for e in events)
    final = events[-1]
    assert isinstance(final, TaskFinished) and final.task.trace_id == TRACE
    assert final.task.status == "error" and final.task.progress == 40
    assert requests(pipeline, "http", "ok") == 1


def test_json_gzip_chunked(receiver: RunningReceiver, pipeline: Pipeline, sink: InMemorySink) -> None:
    body = gzip.compress(json.dumps(json_request()).encode())

    def chunks():  # type: ignore[no-untyped-def]
        for i in range(0, len(body), 50):
            yield body[i : i + 50]

    req = urllib.request.Request(
        receiver.http_url,
        data=chunks(),
        method="POST",
        headers={"Content-Type": "application/json", "Content-Encoding": "gzip", "Transfer-Encoding": "chunked"},
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.status == 200
    assert pipeline.force_flush(10)
    assert finished(sink) == ["T-json"]


def test_invalid_ids_give_partial_success(receiver: RunningReceiver, pipeline: Pipeline, sink: InMemorySink) -> None:
    doc = json_request()
    spans = doc["resourceSpans"][0]["scopeSpans"][0]["spans"]
    spans.append({**spans[0], "traceId": "zz-not-hex", "spanId": "eee19b7ec3c1b175"})
    spans.append({**spans[0], "traceId": TRACE, "spanId": "0000000000000000"})
    status, _, raw = post(receiver.http_url, json.dumps(doc).encode(), "application/json")
    assert status == 200
    resp = json_format.Parse(raw, ExportTraceServiceResponse())
    assert resp.partial_success.rejected_spans == 2
    assert "trace_id" in resp.partial_success.error_message and "span_id" in resp.partial_success.error_message
    assert pipeline.force_flush(10)
    assert finished(sink) == ["T-json"]
    assert pipeline.stats.value("spans_received_total", path="receiver") == 1
    assert pipeline.stats.value("receiver_spans_rejected_total") == 2
    assert requests(pipeline, "http", "partial") == 1


def test_protobuf_partial_success_answers_protobuf(receiver: RunningReceiver) -> None:
    req = request_for(task_spans(1))
    req.resource_spans[0].scope_spans[0].spans[0].trace_id = b"short"
    status, headers, raw = post(receiver.http_url, req.SerializeToString())
    assert status == 200 and headers["Content-Type"] == "application/x-protobuf"
    assert ExportTraceServiceResponse.FromString(raw).partial_success.rejected_spans == 1


def test_malformed_bodies_are_clear_400s(receiver: RunningReceiver, pipeline: Pipeline) -> None:
    cases = [
        (b"\xff\xff\xff", "application/x-protobuf", None, "protobuf"),
        (b"{not json", "application/json", None, "JSON"),
        (b"[1, 2]", "application/json", None, "object"),
        (b'{"resourceSpans": 3}', "application/json", None, "array"),
        (b"not gzip at all", "application/x-protobuf", "gzip", "gzip"),
        (gzip.compress(b"x" * 100)[:-8], "application/x-protobuf", "gzip", "gzip"),
        (b"", "application/x-protobuf", "br", "Content-Encoding"),
    ]
    for body, ctype, enc, needle in cases:
        headers = {"Content-Encoding": enc} if enc else {}
        status, _, raw = post(receiver.http_url, body, ctype, **headers)
        assert status == 400, (body, status)
        msg = json.loads(raw)["message"] if ctype == "application/json" else Status.FromString(raw).message
        assert needle in msg, msg
    status, _, raw = post(receiver.http_url, b"x", "text/plain")
    assert status == 415 and b"application/x-protobuf" in raw
    assert requests(pipeline, "http", "bad_request") == len(cases) + 1
    assert requests(pipeline, "http", "ok") == 0


def test_oversize_bodies_get_413(tmp_path: Path, pipeline: Pipeline, sink: InMemorySink) -> None:
    r = RunningReceiver(pipeline, local_settings(tmp_path, max_body_bytes=10_000))
    try:
        big = request_for(task_spans(2)).SerializeToString()
        assert len(big) > 10_000
        assert post(r.http_url, big)[0] == 413
        # A gzip bomb: tiny on the wire, huge once inflated.
        bomb = gzip.compress(b"\x00" * 5_000_000)
        assert len(bomb) < 10_000
        status, _, raw = post(r.http_url, bomb, **{"Content-Encoding": "gzip"})
        assert status == 413 and b"decompression" in raw
        assert requests(pipeline, "http", "too_large") == 2
    finally:
        r.close()
    assert sink.events == []


def test_too_many_spans_get_413(tmp_path: Path, pipeline: Pipeline, sink: InMemorySink) -> None:
    """More spans than the pipeline's inbox could ever take (SPANVISOR_INBOX_SIZE):
    refused for good (413), not retried forever (503)."""
    spans = task_spans(1)
    r = RunningReceiver(pipeline, local_settings(tmp_path, max_spans=len(spans) - 1))
    try:
        status, _, raw = post(r.http_url, request_for(spans).SerializeToString())
        assert status == 413
        status_msg = Status.FromString(raw)
        assert status_msg.code == 8 and f"{len(spans)} spans in one request" in status_msg.message
        assert post(r.http_url, request_for(spans[: len(spans) - 1]).SerializeToString())[0] == 200
        assert requests(pipeline, "http", "too_large") == 1 and requests(pipeline, "http", "ok") == 1
    finally:
        r.close()
    assert pipeline.stats.value("spans_received_total", path="receiver") == len(spans) - 1


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.binary(max_size=400), as_json=st.booleans(), gz=st.booleans())
def test_fuzzed_payloads_never_500(receiver: RunningReceiver, body: bytes, as_json: bool, gz: bool) -> None:
    headers = {"Content-Encoding": "gzip"} if gz else {}
    if gz and body[:1] == b"\x00":
        body = gzip.compress(body)
    ctype = "application/json" if as_json else "application/x-protobuf"
    status, _, _ = post(receiver.http_url, body, ctype, **headers)
    assert status in (200, 400, 413), status


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    span=st.dictionaries(
        st.sampled_from(
            [
                "traceId",
                "spanId",
                "parentSpanId",
                "name",
                "attributes",
                "events",
                "status",
                "startTimeUnixNano",
                "flags",
                "links",
            ]
        ),
        json_values,
        max_size=6,
    )
)
def test_fuzzed_json_spans_never_500(receiver: RunningReceiver, span: dict) -> None:  # type: ignore[type-arg]
    doc = {"resourceSpans": [{"scopeSpans": [{"spans": [span]}]}]}
    status, _, _ = post(receiver.http_url, json.dumps(doc).encode(), "application/json")
    assert status in (200, 400), status


def test_auth_on_and_off(tmp_path: Path, pipeline: Pipeline, sink: InMemorySink) -> None:
    body = request_for(task_spans(1)).SerializeToString()
    r = RunningReceiver(pipeline, local_settings(tmp_path, token="t0ken"))
    try:
        status, headers, _ = post(r.http_url, body)
        assert status == 401 and headers["WWW-Authenticate"] == "Bearer"
        assert post(r.http_url, body, Authorization="Bearer wrong")[0] == 401
        assert post(r.http_url, body, Authorization="Basic t0ken")[0] == 401
        assert post(r.http_url, body, Authorization="t0ken")[0] == 401
        assert requests(pipeline, "http", "unauthenticated") == 4
        assert pipeline.stats.value("spans_received_total", path="receiver") == 0
        assert post(r.http_url, body, Authorization="Bearer t0ken")[0] == 200
        # RFC 7235: the scheme is case-insensitive.
        assert post(r.http_url, body, Authorization="bearer t0ken")[0] == 200
        assert post(r.http_url, body, Authorization="BEARER  t0ken")[0] == 200
        assert requests(pipeline, "http", "ok") == 3
        assert pipeline.force_flush(10)
        assert finished(sink) == ["T1-0"]  # the resent spans are the same task, finished once
    finally:
        r.close()
    other = make_pipeline(tmp_path / "b-data", [InMemorySink()])
    open_r = RunningReceiver(other, local_settings(tmp_path / "b"))
    try:
        assert post(open_r.http_url, body)[0] == 200
    finally:
        open_r.close()


class FailsToStart(BaseSink):
    name = "fails-to-start"

    async def start(self, ctx: object) -> None:
        raise ConnectionRefusedError("database unreachable")


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def test_admin_endpoints(receiver: RunningReceiver, tmp_path: Path) -> None:
    assert _get(receiver.admin_url + "/healthz") == (200, b"ok\n")
    assert _get(receiver.admin_url + "/readyz")[0] == 200
    assert _get(receiver.admin_url + "/metrics")[0] == 404  # no prometheus sink in this pipeline


def test_readyz_follows_the_real_pipeline(tmp_path: Path) -> None:
    """A sink that cannot start makes the pipeline not ready: 503 naming it."""
    config = Config.load(env={"SPANVISOR_DATA_DIR": str(tmp_path)}, extra=[])
    pipeline = Pipeline(config=config, sinks=[FailsToStart()], path="receiver").start()
    r = RunningReceiver(pipeline, local_settings(tmp_path))
    try:

        def names_it() -> bool:
            status, text = _get(r.admin_url + "/readyz")
            return status == 503 and b"fails-to-start" in text

        wait_until(names_it, 30, "readyz naming the sink that failed to start")
        assert _get(r.admin_url + "/healthz")[0] == 200  # alive all the same
    finally:
        r.close()


def test_metrics_from_the_prometheus_sink(tmp_path: Path) -> None:
    from spanvisor_prometheus import PrometheusSink

    pipeline = make_pipeline(tmp_path / "data", [PrometheusSink()])
    r = RunningReceiver(pipeline, local_settings(tmp_path, token="tok"))
    try:
        body = request_for(task_spans(1)).SerializeToString()
        assert post(r.http_url, body, Authorization="Bearer tok")[0] == 200
        assert post(r.http_url, body)[0] == 401
        status, text = _get(r.admin_url + "/metrics")
        assert status == 200
        for line in (
            'spanvisor_receiver_requests_total{outcome="ok",transport="http"} 1.0',
            'spanvisor_receiver_requests_total{outcome="unauthenticated",transport="http"} 1.0',
        ):
            assert line.encode() in text, text.decode()
    finally:
        r.close()


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BeArEr"])
def test_bearer_scheme_any_case(scheme: str) -> None:
    from spanvisor.control.bearer import bearer_matches

    assert bearer_matches(f"{scheme} s3cret", b"s3cret")
    assert bearer_matches(f"{scheme} s3cret".encode(), b"s3cret")
    assert not bearer_matches(f"{scheme} s3cre", b"s3cret")
    assert not bearer_matches(f"{scheme}s3cret", b"s3cret")
    assert not bearer_matches(None, b"s3cret")
