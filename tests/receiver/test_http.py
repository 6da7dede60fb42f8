"""OTLP/HTTP details: JSON with hex ids, gzip, limits, errors, auth, admin."""

from __future__ import annotations

import gzip
import json
import urllib.error
import urllib.request
from pathlib import Path

from agent_traces import request_for, task_spans
from google.protobuf import json_format
from google.rpc.status_pb2 import Status
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from conftest import RunningReceiver, StubPipeline, local_settings

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


def test_json_ids_are_hex_not_base64(receiver: RunningReceiver, stub: StubPipeline) -> None:
    body = json.dumps(json_request()).encode()
    # The pitfall: a plain protobuf JSON parse reads the hex as base64.
    naive = json_format.Parse(body, ExportTraceServiceRequest())
    assert naive.resource_spans[0].scope_spans[0].spans[0].trace_id.hex() != TRACE
    status, headers, raw = post(receiver.http_url, body, "application/json")
    assert status == 200 and headers["Content-Type"].startswith("application/json")
    assert json.loads(raw) == {} or "partialSuccess" not in json.loads(raw)
    [span] = stub.spans
    assert (span.trace_id, span.span_id, span.parent_id) == (TRACE, SPAN, PARENT)
    assert span.parent_remote and span.error and span.status_message == "boom"
    assert span.attributes["agent.progress"] == 40
    assert span.attributes["agent.steps"] == ("a", "b")
    assert span.attributes["blob"] == "010203"
    assert json.loads(span.attributes["kv"]) == {"k": True}
    assert span.events[0].name == "agent.checkpoint" and span.events[0].attributes == {"agent.message": "hi"}
    assert span.resource == {"service.name": "js-agent"}


def test_json_gzip_chunked(receiver: RunningReceiver, stub: StubPipeline) -> None:
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
    assert [s.trace_id for s in stub.spans] == [TRACE]


def test_invalid_ids_give_partial_success(receiver: RunningReceiver, stub: StubPipeline) -> None:
    doc = json_request()
    spans = doc["resourceSpans"][0]["scopeSpans"][0]["spans"]
    spans.append({**spans[0], "traceId": "zz-not-hex", "spanId": "eee19b7ec3c1b175"})
    spans.append({**spans[0], "traceId": TRACE, "spanId": "0000000000000000"})
    status, _, raw = post(receiver.http_url, json.dumps(doc).encode(), "application/json")
    assert status == 200
    resp = json_format.Parse(raw, ExportTraceServiceResponse())
    assert resp.partial_success.rejected_spans == 2
    assert "trace_id" in resp.partial_success.error_message and "span_id" in resp.partial_success.error_message
    assert len(stub.spans) == 1


def test_protobuf_partial_success_answers_protobuf(receiver: RunningReceiver, stub: StubPipeline) -> None:
    req = request_for(task_spans(1))
    req.resource_spans[0].scope_spans[0].spans[0].trace_id = b"short"
    status, headers, raw = post(receiver.http_url, req.SerializeToString())
    assert status == 200 and headers["Content-Type"] == "application/x-protobuf"
    assert ExportTraceServiceResponse.FromString(raw).partial_success.rejected_spans == 1


def test_malformed_bodies_are_clear_400s(receiver: RunningReceiver) -> None:
    for body, ctype, enc, needle in [
        (b"\xff\xff\xff", "application/x-protobuf", None, "protobuf"),
        (b"{not json", "application/json", None, "JSON"),
        (b"[1, 2]", "application/json", None, "object"),
        (b'{"resourceSpans": 3}', "application/json", None, "array"),
        (b"not gzip at all", "application/x-protobuf", "gzip", "gzip"),
        (gzip.compress(b"x" * 100)[:-8], "application/x-protobuf", "gzip", "gzip"),
        (b"", "application/x-protobuf", "br", "Content-Encoding"),
    ]:
        headers = {"Content-Encoding": enc} if enc else {}
        status, _, raw = post(receiver.http_url, body, ctype, **headers)
        assert status == 400, (body, status)
        msg = json.loads(raw)["message"] if ctype == "application/json" else Status.FromString(raw).message
        assert needle in msg, msg
    status, _, raw = post(receiver.http_url, b"x", "text/plain")
    assert status == 415 and b"application/x-protobuf" in raw


def test_oversize_bodies_get_413(stub: StubPipeline, tmp_path: Path) -> None:
    r = RunningReceiver(stub, local_settings(tmp_path, max_body_bytes=10_000))
    try:
        big = request_for(task_spans(2)).SerializeToString()
        assert len(big) > 10_000
        assert post(r.http_url, big)[0] == 413
        # A gzip bomb: tiny on the wire, huge once inflated.
        bomb = gzip.compress(b"\x00" * 5_000_000)
        assert len(bomb) < 10_000
        status, _, raw = post(r.http_url, bomb, **{"Content-Encoding": "gzip"})
        assert status == 413 and b"decompression" in raw
        assert stub.spans == []
    finally:
        r.close()


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


def test_auth_on_and_off(stub: StubPipeline, tmp_path: Path) -> None:
    body = request_for(task_spans(1)).SerializeToString()
    r = RunningReceiver(stub, local_settings(tmp_path, token="t0ken"))
    try:
        status, headers, _ = post(r.http_url, body)
        assert status == 401 and headers["WWW-Authenticate"] == "Bearer"
        assert post(r.http_url, body, Authorization="Bearer wrong")[0] == 401
        assert stub.spans == []
        assert post(r.http_url, body, Authorization="Bearer t0ken")[0] == 200
        assert stub.spans
    finally:
        r.close()
    open_r = RunningReceiver(StubPipeline(), local_settings(tmp_path / "b"))
    try:
        assert post(open_r.http_url, body)[0] == 200
    finally:
        open_r.close()


def test_admin_endpoints(receiver: RunningReceiver, stub: StubPipeline) -> None:
    def get(path: str) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(receiver.admin_url + path, timeout=5) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as err:
            return err.code, err.read()

    assert get("/healthz") == (200, b"ok\n")
    assert get("/readyz")[0] == 200
    stub.is_ready = (False, "database unreachable")
    status, text = get("/readyz")
    assert status == 503 and b"database unreachable" in text
    assert get("/metrics")[0] == 404  # no prometheus sink in this pipeline
    from prometheus_client import CollectorRegistry, Counter

    reg = CollectorRegistry()
    Counter("spanvisor_demo", "x", registry=reg).inc()
    stub.shared["prometheus.registry"] = reg
    status, text = get("/metrics")
    assert status == 200 and b"spanvisor_demo_total 1.0" in text
