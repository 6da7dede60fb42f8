"""The transports' step for coding-agent records: after a logs request's
live facts are handed over, its model and tool calls are taken as a trace
export (journaled before the answer, :meth:`Ingest.accept`), and what could
not be read is counted and logged once per reason (never the content). A
trace request's sessions of CLIs that send spans are taken the same way
(:func:`accept_span_sessions`)."""

from __future__ import annotations

import logging
from typing import Any

from spanvisor.receiver.codingagents.batch import Batch
from spanvisor.receiver.codingagents.fromspans import claim_spans
from spanvisor.receiver.codingagents.spans import calls_request
from spanvisor.receiver.decode import decode_request
from spanvisor.receiver.ingest import Ingest, Refusal
from spanvisor.receiver.logs import DecodedLogs

log = logging.getLogger("spanvisor.receiver")
_logged: set[str] = set()


def _count(ingest: Ingest, batch: Batch) -> None:
    stats = ingest.stats
    read = batch.records - sum(batch.unreadable.values())
    if read:
        stats.inc("coding_agent_records_total", read, outcome="read")
    for reason, n in batch.unreadable.items():
        stats.inc("coding_agent_records_total", n, outcome=reason)
        if reason not in _logged:
            _logged.add(reason)
            log.warning(
                "coding-agent records not read as tasks (%s); counted in "
                "spanvisor_coding_agent_records_total{outcome=%r} and not logged again",
                reason.replace("_", " "),
                reason,
            )
    if batch.forgotten and "forgotten" not in _logged:
        _logged.add("forgotten")
        log.warning("more coding-agent sessions than remembered at once: the oldest are started again if heard of")


async def accept_span_sessions(ingest: Ingest, req: Any) -> Refusal | None:
    """A trace request's coding-agent sessions sent as spans (Copilot CLI:
    :mod:`.codingagents.fromspans`), taken as a logs request's records
    are: their facts handed over, their calls journaled."""
    batch = claim_spans(req)
    if batch is None:
        return None
    decoded = DecodedLogs(coding=batch)
    batch.finish(decoded.live)
    refusal = await ingest.accept_logs(decoded)
    if refusal is None:
        refusal = await accept_calls(ingest, decoded)
    return refusal


async def accept_calls(ingest: Ingest, decoded_logs: Any) -> Refusal | None:
    """Take the request's coding-agent calls; a refusal means the client
    must send the whole logs request again (its facts are idempotent)."""
    batch: Batch | None = getattr(decoded_logs, "coding", None)
    if batch is None:
        return None
    req = calls_request(batch)  # first: what it could not carry is counted too
    _count(ingest, batch)
    if req is None:
        return None
    body = req.SerializeToString()
    return await ingest.accept(decode_request(req, body=body), body)


__all__ = ["accept_calls", "accept_span_sessions"]
