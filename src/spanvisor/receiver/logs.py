"""OTLP logs in (``POST /v1/logs``, ``LogsService/Export``): each task's log tail.

Only what a tail shows becomes Python: per record its trace and span id,
time, severity, the scope's name (Python's logger name) and the body (a
string cut to :data:`spanvisor.pipeline.logtail.MAX_LINE`, any other value
made text later, only if it is shown). Attributes and the resource are not
read. Records go straight to the pipeline's log tails
(:meth:`Pipeline.submit_logs`), which keep those of traces with a task and
count the rest.

**Not journaled.** A tail is best effort: logs are not written to the span
journal, a restart loses the tails of open tasks, and logs take no room in
the inbox (a request is still refused with 503/UNAVAILABLE when the pipeline
is full or not accepting, like spans, so that nothing is parsed under
overload). A record with a malformed trace or span id is rejected in
``partial_success``; one with no trace id is valid OTLP and only counted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

from spanvisor.pipeline.logtail import MAX_LINE, LogIn, severity_of
from spanvisor.receiver import otlp_json
from spanvisor.receiver.decode import any_value


@dataclass(slots=True)
class DecodedLogs:
    records: list[LogIn] = field(default_factory=list)
    rejected: int = 0
    reasons: list[str] = field(default_factory=list)

    @property
    def reason(self) -> str:
        return "; ".join(self.reasons)

    def reject(self, why: str) -> None:
        self.rejected += 1
        if why not in self.reasons and len(self.reasons) < 5:
            self.reasons.append(why)


def _body(value: Any) -> Any:
    kind = value.WhichOneof("value")
    if kind == "string_value":
        s: str = value.string_value
        return s if len(s) <= MAX_LINE else s[:MAX_LINE]
    if kind is None:
        return None
    v = any_value(value)
    return v[:MAX_LINE] if isinstance(v, str) else v


def decode_logs(req: ExportLogsServiceRequest) -> DecodedLogs:
    out = DecodedLogs()
    append = out.records.append
    ids: dict[bytes, int] = {}  # trace ids repeat across a request's records
    for rl in req.resource_logs:
        for sl in rl.scope_logs:
            scope = sl.scope.name or None
            for rec in sl.log_records:
                raw = rec.trace_id
                if raw:
                    if len(raw) != 16:
                        out.reject("invalid trace_id (must be empty or 16 bytes)")
                        continue
                    tid = ids.get(raw)
                    if tid is None:
                        tid = ids[raw] = int.from_bytes(raw, "big")
                else:
                    tid = 0
                sid = rec.span_id
                if sid and len(sid) != 8:
                    out.reject("invalid span_id (must be empty or 8 bytes)")
                    continue
                sev = rec.severity_number or severity_of(rec.severity_text)
                append(
                    LogIn(
                        tid,
                        int.from_bytes(sid, "big") if sid else 0,
                        rec.time_unix_nano or rec.observed_time_unix_nano,
                        sev,
                        rec.severity_text or None,
                        scope,
                        _body(rec.body),
                    )
                )
    return out


def parse_logs_json(body: bytes) -> ExportLogsServiceRequest:
    """An ``ExportLogsServiceRequest`` from OTLP/JSON, ids read as hex (see
    :mod:`.otlp_json`: the protobuf JSON mapping would read them as base64)."""
    levels = (("resourceLogs", "resource_logs"), ("scopeLogs", "scope_logs"), ("logRecords", "log_records"))
    doc, _ = otlp_json.items(body, levels, "log record")
    return otlp_json.parse_as(doc, ExportLogsServiceRequest())


def hand_over(pipeline: Any, decoded: DecodedLogs) -> None:
    """The records to the pipeline's log tails (which never refuse: bounded)."""
    submit = getattr(pipeline, "submit_logs", None)
    if submit is not None and decoded.records:
        submit(decoded.records)


__all__ = ["DecodedLogs", "decode_logs", "hand_over", "parse_logs_json"]
