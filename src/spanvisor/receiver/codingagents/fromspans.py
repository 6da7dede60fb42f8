"""Sessions of the CLIs that send spans, not log records (``FROM_SPANS`` in
their adapter's records module): each of their spans is read as one record
of its session (the module's ``event_of`` says what each is), into the same :class:`~.batch.Batch`
as the other CLIs' records, so the session becomes one task named, counted
and ended the same way. Their spans themselves are set aside by the trace
decoder (``decode.cli_services``); only the spans made of
these records (stamped with the task's root) join the task.

Only the resources whose ``service.name`` is such a CLI's are walked: any
other trace request costs one look at each resource's attributes.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

from spanvisor.clis import registry
from spanvisor.receiver.codingagents.batch import MAX_ATTRIBUTES, Batch, resource_of
from spanvisor.receiver.decode import any_value
from spanvisor.spans import conventions as cv

# The CLIs read from their spans, by service.name.
SPAN_CLIS: dict[str, ModuleType] = {
    service: m for m in registry.record_readers() if getattr(m, "FROM_SPANS", False) for service in m.SERVICES
}
_STATUS_ERROR = 2


def _service(resource: Any) -> str | None:
    for kv in resource.attributes:
        if kv.key == cv.SERVICE_NAME:
            value = any_value(kv.value)
            return value if isinstance(value, str) else None
    return None


def _read(batch: Batch, cli: ModuleType, span: Any, resource: dict[str, Any]) -> None:
    attrs: dict[str, Any] = {}
    for kv in span.attributes[:MAX_ATTRIBUTES]:
        attrs[kv.key] = any_value(kv.value)
    event = cli.event_of(attrs, span.name)
    if event is None:
        return  # a span of the CLI's that says nothing of the session (set aside, counted by the decoder)
    batch.records += 1
    start, end = span.start_time_unix_nano, span.end_time_unix_nano or span.start_time_unix_nano
    if end >= start > 0:
        attrs[cli.DURATION_KEY] = (end - start) / 1e6
    if span.status.code == _STATUS_ERROR and span.status.message:
        attrs[cli.STATUS_KEY] = span.status.message
    # Some events are heard when their span started (a prompt: the span ends last).
    t = start if start and event in getattr(cli, "AT_START", ()) else end
    batch.add(cli, event, attrs, resource, t, span.span_id.hex())


def claim_spans(req: Any) -> Batch | None:
    """The sessions of ``req`` (an OTLP trace request) that CLIs sent as
    spans, read as records; None when it holds none. Never raises: a span
    that cannot be read is counted."""
    batch: Batch | None = None
    for rs in req.resource_spans:
        service = _service(rs.resource)
        cli = SPAN_CLIS.get(service) if service is not None else None
        if cli is None:
            continue
        if batch is None:
            batch = Batch()
        resource = resource_of(rs.resource)
        for ss in rs.scope_spans:
            for span in ss.spans:
                try:
                    _read(batch, cli, span, resource)
                except Exception:  # what a CLI version sends must never fail the request
                    batch.skip("unreadable_record")
    return batch


__all__ = ["SPAN_CLIS", "claim_spans"]
