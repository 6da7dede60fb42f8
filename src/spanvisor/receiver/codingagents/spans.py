"""A session's model calls, tool calls and warnings as ended OTLP spans,
and the CLIs' own spans set aside.

The calls are built as an OTLP trace request (protobuf, in a scope of
their own) and taken like any export to ``/v1/traces``: decoded by the same
decoder, written to the span journal before the logs request is answered,
replayed from it after a restart. Each span is stamped with the session's
task root, so it joins the task at once; its span id is derived from the
record (session, event, time, sequence), so a resent record is deduplicated
by the tracker as any resent span is.

The CLIs' own spans (Claude Code's traces beta, Codex's internal spans,
Gemini CLI's root-less ``llm_call``/``tool_call``) are not task sources:
the log records say every fact they say, and reading both would make a
second task of one session or count a call twice. The trace decoder sets
aside every keyed span of a CLI's ``service.name`` that carries no task
root stamp (``decode.cli_services``, every adapter's ``services``; counted); the spans made
here carry one.
"""

from __future__ import annotations

from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from spanvisor.clis.records import step_name
from spanvisor.receiver.codingagents.batch import Batch, Heard, SessionRecord
from spanvisor.receiver.codingagents.ids import span_id
from spanvisor.spans import conventions as cv

# The scope of the spans made here (what they are, to a reader of the journal).
SCOPE = "spanvisor.codingagents"
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def _kv(span: Span, key: str, value: Any) -> None:
    if value is None:
        return
    kv: KeyValue = span.attributes.add()
    kv.key = key
    if isinstance(value, bool):
        kv.value.bool_value = value
    elif isinstance(value, int):
        if _INT64_MIN <= value <= _INT64_MAX:
            kv.value.int_value = value
        else:
            # Past what OTLP's int64 holds (a CLI's absurd count, or three
            # large ones added): a double, which the tracker clamps and notes
            # on the call's event, as it does any absurd count.
            kv.value.double_value = float(value)
    elif isinstance(value, float):
        kv.value.double_value = value
    else:
        kv.value.string_value = str(value)


def _span(span: Span, h: Heard, r: SessionRecord, n: int) -> None:
    rd = r.reading
    span.trace_id = bytes.fromhex(h.trace_id)
    span.span_id = bytes.fromhex(span_id(h.trace_id, r.event, str(r.time_ns), r.part, str(n)))
    span.parent_span_id = bytes.fromhex(h.root_id)
    span.end_time_unix_nano = r.time_ns
    span.start_time_unix_nano = max(0, r.time_ns - int((rd.duration_ms or 0) * 1e6))
    _kv(span, cv.TASK_ROOT, h.root_id)
    _kv(span, cv.TASK_ID, h.task_id)
    if rd.kind == "call":
        span.name = f"chat {rd.model}" if rd.model else "chat"
        span.kind = Span.SPAN_KIND_CLIENT
        _kv(span, cv.GEN_AI_OPERATION, "chat")
        _kv(span, cv.GEN_AI_REQUEST_MODEL, rd.model)
        _kv(span, cv.GEN_AI_PROVIDER, rd.provider)
        _kv(span, cv.GEN_AI_INPUT, rd.input_tokens if rd.input_tokens is not None else 0)
        _kv(span, cv.GEN_AI_OUTPUT, rd.output_tokens if rd.output_tokens is not None else 0)
        _kv(span, cv.GEN_AI_CACHE_READ, rd.cache_read)
        _kv(span, cv.GEN_AI_CACHE_WRITE, rd.cache_write)
        _kv(span, cv.GEN_AI_COST, rd.cost_usd)
    elif rd.kind in ("warning", "answer"):
        span.name = rd.kind
        span.start_time_unix_nano = r.time_ns
        ev = span.events.add()
        ev.name, ev.time_unix_nano = cv.EVENT_CHECKPOINT, r.time_ns
        kv = ev.attributes.add()
        said = f"⚠ {rd.text or 'warning'}" if rd.kind == "warning" else (rd.text or "answered")
        kv.key, kv.value.string_value = cv.MESSAGE, said
        if rd.status is not None:  # a timed fact: it ends a wait said earlier, never a later one
            kv = ev.attributes.add()
            kv.key, kv.value.string_value = cv.STATUS, rd.status
    else:
        step = step_name(rd.tool, rd.text)
        span.name = f"execute_tool {step}"
        span.kind = Span.SPAN_KIND_INTERNAL
        _kv(span, cv.GEN_AI_OPERATION, "execute_tool")
        _kv(span, cv.GEN_AI_TOOL_NAME, step)
        if rd.failed:
            span.status.code = Status.STATUS_CODE_ERROR
            span.status.message = rd.error or "failed"


def calls_request(batch: Batch) -> ExportTraceServiceRequest | None:
    """The batch's model and tool calls as one trace request, or None."""
    if not batch.calls:
        return None
    req = ExportTraceServiceRequest()
    scopes: dict[str, Any] = {}
    seen: dict[tuple[str, str, int, str], int] = {}
    for h, r in batch.calls:
        ss = scopes.get(h.service)
        if ss is None:
            rs = req.resource_spans.add()
            kv = rs.resource.attributes.add()
            kv.key, kv.value.string_value = cv.SERVICE_NAME, h.service
            ss = scopes[h.service] = rs.scope_spans.add()
            ss.scope.name = SCOPE
        # Two records alike in all but place (no sequence number): the n-th.
        k = (h.trace_id, r.event, r.time_ns, r.part)
        n = seen[k] = seen.get(k, 0) + 1
        span = Span()
        try:
            _span(span, h, r, n)
        except Exception:  # a value no span can carry costs this record only, never the request
            batch.skip("unreadable_record")
            continue
        ss.spans.append(span)
    return req if any(ss.spans for ss in scopes.values()) else None


__all__ = ["SCOPE", "calls_request"]
