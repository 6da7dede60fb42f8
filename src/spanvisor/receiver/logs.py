"""OTLP logs in (``POST /v1/logs``, ``LogsService/Export``): each task's log
tail, and the live channel.

A record named (``event_name``, or an ``event.name`` attribute from older
senders) as one of the live channel's events (:mod:`spanvisor.spans.live`)
is a fact about its task's open root: it becomes a
:class:`~spanvisor.spans.live.LiveFact`, attributes and all, and goes to the
tracker through the pipeline's inbox; it is not a log line. An
``exception`` record (span events are becoming log records) is both: the
error of its task (``tracking/tasktable.py``) and a line of its tail. Every
other record is a candidate for a tail:

Only what a tail shows becomes Python: per record its trace and span id,
time, severity, the scope's name (Python's logger name) and the body (a
string cut to :data:`spanvisor.logtails.tails.MAX_LINE`, any other value
made text later, only if it is shown). Attributes and the resource are not
read. Records go straight to the pipeline's log tails
(:meth:`Pipeline.submit_logs`), which keep those of traces with a task and
count the rest.

**The live channel is journaled, tails are not.** A request's live records
(only those, re-encoded as an ``ExportLogsServiceRequest`` of their own) are
committed to the span journal before the 2xx, like spans, and replayed in
order with them at start (:mod:`.ingest`), so an open live task keeps its
name, progress, waiting approvals and last sign of life through a restart.
A tail is best effort: a restart loses the tails of open tasks, and logs
take no room in the inbox (a request is still refused with 503/UNAVAILABLE
when the pipeline is full or not accepting, like spans, so that nothing is
parsed under overload). A record with a malformed trace or span id is
rejected in ``partial_success``; one with no trace id is valid OTLP and only
counted.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

from spanvisor.logtails.records import MAX_LINE, LogIn, severity_of
from spanvisor.receiver import otlp_json
from spanvisor.receiver.codingagents import ids as coding_ids
from spanvisor.receiver.codingagents.batch import Batch as CodingBatch
from spanvisor.receiver.codingagents.batch import claim as claim_coding
from spanvisor.receiver.decode import any_value
from spanvisor.receiver.vocabulary import limit_of
from spanvisor.spans import conventions as cv
from spanvisor.spans.live import LiveFact, root_of

# The most attributes read of one live record (a root's start lists its
# attributes; the SDK's own limit is 128).
MAX_LIVE_ATTRIBUTES = 256


@dataclass(slots=True)
class DecodedLogs:
    records: list[LogIn] = field(default_factory=list)
    live: list[LiveFact] = field(default_factory=list)
    # The live records alone, as a request of their own: what the journal keeps.
    live_request: ExportLogsServiceRequest | None = None
    rejected: int = 0
    reasons: list[str] = field(default_factory=list)
    # Records of coding-agent CLIs (receiver/codingagents): facts and calls, not log lines.
    coding: CodingBatch | None = None

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


def _event_name(rec: Any) -> str | None:
    name: str = rec.event_name
    if name:
        return name
    for kv in rec.attributes:  # older senders: an event.name attribute
        if kv.key == "event.name":
            v = any_value(kv.value)
            return v if isinstance(v, str) else None
    return None


def _live(rec: Any, name: str, tid: int, resource: dict[str, Any], out: DecodedLogs, heard_ns: int) -> bool:
    sid = rec.span_id
    attrs = {
        kv.key: any_value(kv.value, limit_of(kv.key))
        for kv in rec.attributes[:MAX_LIVE_ATTRIBUTES]
        if kv.key != cv.ROUTE
    }
    root = root_of(sid.hex() if sid else "", attrs)
    if not tid or root is None:
        out.reject(f"a {name} record needs the task's trace id and its root span id (the span it was emitted in)")
        return False
    t = rec.time_unix_nano or rec.observed_time_unix_nano
    trace = format(tid, "032x")
    service = resource.get(cv.SERVICE_NAME)
    if isinstance(service, str) and coding_ids.namespace_of(service) is not None and cv.TASK_ID in attrs:
        # A coding-agent session's task is named in its CLI's namespace (codingagents/ids.py).
        attrs[cv.TASK_ID] = coding_ids.live_task_id(service, attrs[cv.TASK_ID], trace, root)
    out.live.append(LiveFact(trace, root, name, t, attrs, resource, heard_ns))
    return True


def _keep(out: DecodedLogs, rl: Any, rec: Any, first: bool) -> None:
    """``rec`` into the request of live records (``first``: the first of its
    resource, which goes with its service name only)."""
    req = out.live_request
    if req is None:
        req = out.live_request = ExportLogsServiceRequest()
    if first:
        kept = req.resource_logs.add()
        kept.resource.attributes.extend(kv for kv in rl.resource.attributes if kv.key == cv.SERVICE_NAME)
        kept.scope_logs.add()
    req.resource_logs[-1].scope_logs[-1].log_records.append(rec)


def decode_logs(req: ExportLogsServiceRequest, heard_ns: int | None = None) -> DecodedLogs:
    """``heard_ns``: when the records were received (now by default; a
    replayed journal entry's own time)."""
    out = DecodedLogs()
    heard = time.time_ns() if heard_ns is None else heard_ns
    append = out.records.append
    ids: dict[bytes, int] = {}  # trace ids repeat across a request's records
    live_names = cv.LIVE_EVENTS
    for rl in req.resource_logs:
        resource: dict[str, Any] | None = None
        kept = False  # a live record of this resource is in out.live_request
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
                name = _event_name(rec) if rec.event_name or rec.attributes else None
                if name is not None and claim_coding(rec, name, rl.resource, out):
                    continue
                if name in live_names:
                    if resource is None:
                        resource = {
                            kv.key: any_value(kv.value) for kv in rl.resource.attributes if kv.key == cv.SERVICE_NAME
                        }
                    if _live(rec, name, tid, resource, out, heard):
                        _keep(out, rl, rec, not kept)
                        kept = True
                    if name != cv.EVENT_EXCEPTION:
                        continue  # an exception is a fact of its task and a line of its tail
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
    if out.coding is not None:
        out.coding.finish(out.live)
    return out


def parse_logs_json(body: bytes) -> ExportLogsServiceRequest:
    """An ``ExportLogsServiceRequest`` from OTLP/JSON, ids read as hex (see
    :mod:`.otlp_json`: the protobuf JSON mapping would read them as base64)."""
    levels = (("resourceLogs", "resource_logs"), ("scopeLogs", "scope_logs"), ("logRecords", "log_records"))
    doc, _ = otlp_json.items(body, levels, "log record")
    return otlp_json.parse_as(doc, ExportLogsServiceRequest())


def live_of(body: bytes, heard_ns: int) -> list[LiveFact]:
    """The live records a journal entry holds (:meth:`DecodedLogs.live_request`),
    heard at ``heard_ns``."""
    return decode_logs(ExportLogsServiceRequest.FromString(body), heard_ns).live


def hand_over(pipeline: Any, decoded: DecodedLogs) -> bool:
    """The records to the pipeline's log tails (which never refuse: bounded),
    the live facts to its inbox. False: the inbox had no room for them."""
    submit = getattr(pipeline, "submit_logs", None)
    if submit is not None and decoded.records:
        submit(decoded.records)
    live = getattr(pipeline, "submit_live", None)
    if live is not None and decoded.live:
        return bool(live(decoded.live))
    return True


__all__ = ["DecodedLogs", "decode_logs", "hand_over", "live_of", "parse_logs_json"]
