"""The shipped gateway's routing key (``spanvisor.route``, the trace id as
text that ``collector-config/gateway.yaml`` sets on every span and record so
that a task's spans and records reach one replica) is nobody's fact: the
receiver drops it from the live records it reads, so it never shows as a
checkpoint's extra or in the audit trail (spans keep only the keys the
tracker reads anyway)."""

from __future__ import annotations

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from spanvisor.receiver.logs import decode_logs
from spanvisor.spans import conventions as cv

TRACE, ROOT = bytes.fromhex("ab" * 16), bytes.fromhex("cd" * 8)


def test_a_live_record_is_read_without_the_gateways_routing_key() -> None:
    req = ExportLogsServiceRequest()
    rl = req.resource_logs.add()
    rl.resource.attributes.append(KeyValue(key=cv.SERVICE_NAME, value=AnyValue(string_value="triage")))
    rec = rl.scope_logs.add().log_records.add()
    rec.event_name, rec.trace_id, rec.span_id, rec.time_unix_nano = cv.EVENT_CHECKPOINT, TRACE, ROOT, 1_000
    for key, value in ((cv.MESSAGE, "half way"), ("team", "infra"), (cv.ROUTE, TRACE.hex())):
        rec.attributes.append(KeyValue(key=key, value=AnyValue(string_value=value)))
    [fact] = decode_logs(req).live
    assert (fact.trace_id, fact.root_span_id, fact.name) == (TRACE.hex(), ROOT.hex(), cv.EVENT_CHECKPOINT)
    assert fact.attributes == {cv.MESSAGE: "half way", "team": "infra"}
