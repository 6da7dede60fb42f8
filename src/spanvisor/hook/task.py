"""A coding-agent session's task, as ``spanvisor run`` and ``spanvisor hook``
name it and speak of it over OTLP.

Both are separate processes from the receiver that builds the task out of
the CLI's own telemetry, and from each other: so the task's trace id and
root span id are derived from its key, never drawn. The key is the
launcher's ``spanvisor.task.id`` (a fresh id it puts in the CLI's
``OTEL_RESOURCE_ATTRIBUTES`` for the CLI's telemetry, and in
``SPANVISOR_TASK_ID`` for its hooks: Claude Code runs hooks without any
``OTEL_*`` variable), else the CLI's session id.

The derivation is the receiver's coding-agent adapter's
(:mod:`spanvisor.receiver.codingagents.ids`), so that every record of the
session, the launcher's and the hook's included, names one task.

What goes out reuses ``spanvisor emit``'s senders: live-channel records
(:func:`spanvisor.hook.live.send`) while the task runs, and its root
span, ended with the outcome, through :func:`spanvisor.cli.emit_spans.otlp_exporter`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from collections.abc import Mapping
from typing import Any

from spanvisor.gate import otlp
from spanvisor.gate.session import (
    DEFAULT_ENDPOINT,
    ENV_ENDPOINT,
    ENV_TASK_ID,
    ENV_TASK_OWNER,
    RESOURCE_TASK_ID,
    encode_resource,
    endpoint_from,
    launched_task,
    otlp_endpoint,
    resource_attributes,
    task_owner,
    with_resource,
)
from spanvisor.receiver.codingagents import ids
from spanvisor.spans import conventions as cv

RESOURCE_TASK_NAME = "spanvisor.task.name"


def task_ids(service: str, key: str, launched: bool) -> tuple[int, int]:
    """(trace id, root span id) of the session's task keyed ``key``;
    ``launched`` when the key is the launcher's ``spanvisor.task.id``. The
    receiver's adapter derives the same ids from the same key."""
    trace_hex, span_hex = ids.launcher_task_ids(key) if launched else ids.task_ids(service, key)
    return int(trace_hex, 16), int(span_hex, 16)


def otlp_args(endpoint: str, token: str | None, timeout: float) -> argparse.Namespace:
    """The arguments ``emit``'s exporters read: OTLP/HTTP to ``endpoint``."""
    return argparse.Namespace(endpoint=endpoint, protocol="http/protobuf", token=token, timeout=timeout)


class SessionTask:
    """One session's task: its id, ids and where its records go."""

    def __init__(
        self, key: str, service: str, launched: bool, target: argparse.Namespace, agent: str | None = None
    ) -> None:
        # The key: the launcher's task id, else the CLI's session id, whose
        # task is named in the CLI's namespace (claude-code:<session id>).
        self.key = key
        self.task_id = key if launched else ids.session_task_id(service, key)
        self.service = service
        # The agent its end names (the launcher's --agent): else the service.
        self.agent = agent or service
        self.launched = launched
        self.trace_id, self.root_id = task_ids(service, key, launched)
        self.target = target

    def record(self, name: str, attrs: Mapping[str, Any], at: int | None = None) -> bool:
        """One live-channel record in the task root's context."""
        from spanvisor.hook import live as emit_live

        said = {cv.TASK_ID: self.task_id, **attrs}
        return emit_live.send(self.target, self.service, self.trace_id, self.root_id, name, said, at or time.time_ns())

    def post(self, name: str, attrs: Mapping[str, Any], timeout_s: float) -> bool:
        """One live-channel record in the task root's context, sent once as
        OTLP/JSON over the standard library within ``timeout_s`` (no SDK to
        import, no retries to wait out): whether the receiver took it."""
        said = {cv.TASK_ID: self.task_id, **attrs}
        body = otlp.encode(
            self.service, format(self.trace_id, "032x"), format(self.root_id, "016x"), [(name, said, time.time_ns())]
        )
        return timeout_s > 0 and otlp.post(self.target.endpoint, self.target.token, body, timeout_s, "logs")

    def end(
        self,
        name: str | None,
        started_ns: int,
        status: str,
        error: str | None,
        message: str | None,
        proof: str | None = None,
    ) -> bool:
        """The task's root span, ended now with ``status`` (complete, error,
        cancelled): what closes the task whatever the CLI managed to send.
        ``name`` None (a hook ending a session it did not name) leaves the
        task's name as the CLI's records gave it; ``proof``: the secret the
        task was keyed with (:mod:`spanvisor.hook.sessionkey`). Sent once, as
        OTLP/JSON over the standard library (no SDK to import, no retries to
        wait out): False when the receiver did not take it (:meth:`end_note`
        keeps it for a later delivery)."""
        return self.send_end(self.end_request(name, started_ns, status, error, message, proof))

    def end_request(
        self,
        name: str | None,
        started_ns: int,
        status: str,
        error: str | None,
        message: str | None,
        proof: str | None = None,
    ) -> dict[str, Any]:
        """The ended root span as an OTLP/JSON trace request; ``proof``: the
        secret its starter keyed the task with, the launcher or the system
        gate (tracking/launcherend.py)."""
        resource: dict[str, Any] = {"service.name": self.service}
        if self.launched:
            resource[RESOURCE_TASK_ID] = self.task_id
        if name is not None:
            resource[RESOURCE_TASK_NAME] = name
        attrs: dict[str, Any] = {
            cv.TASK_ID: self.task_id,
            cv.TASK_ROOT: format(self.root_id, "016x"),
            cv.AGENT_ID: self.agent,
            cv.STATUS: status,
        }
        if name is not None:
            attrs[cv.TASK_NAME] = name
        if message:
            attrs[cv.MESSAGE] = message
        if proof is not None:
            attrs[cv.SESSION_PROOF] = proof
        end_ns = max(time.time_ns(), started_ns)
        events: list[otlp.Record] = []
        if message:
            # Said at the end, as the task's last action: the root's attribute
            # alone reads as said at its start, before the CLI's own warnings.
            events.append((cv.EVENT_CHECKPOINT, {cv.MESSAGE: message}, end_ns))
        failed = (error or "failed") if status == "error" else None
        if failed is not None:
            events.append((cv.EVENT_EXCEPTION, {"exception.type": "AgentFailed", "exception.message": failed}, end_ns))
        return otlp.span_request(
            resource,
            format(self.trace_id, "032x"),
            format(self.root_id, "016x"),
            name if name is not None else "session end",
            started_ns,
            end_ns,
            attrs,
            events,
            failed,
        )

    def send_end(self, request: Mapping[str, Any]) -> bool:
        body = json.dumps(request, separators=(",", ":")).encode()
        return otlp.post(self.target.endpoint, self.target.token, body, float(self.target.timeout), "traces")

    def end_note(self, request: Mapping[str, Any]) -> dict[str, Any]:
        """The end as an item of the gate's spool (:mod:`spanvisor.gate.notes`),
        delivered with the next hook's or launcher's notes."""
        ident = hashlib.blake2b(f"{self.key}\x1fend".encode(), digest_size=12).hexdigest()
        return {
            "id": ident,
            "kind": "end",
            "session": [self.key, self.service, self.launched],
            "endpoint": self.target.endpoint,
            "spans": dict(request),
        }


__all__ = [
    "DEFAULT_ENDPOINT",
    "ENV_ENDPOINT",
    "ENV_TASK_ID",
    "ENV_TASK_OWNER",
    "RESOURCE_TASK_ID",
    "RESOURCE_TASK_NAME",
    "SessionTask",
    "encode_resource",
    "endpoint_from",
    "launched_task",
    "otlp_args",
    "otlp_endpoint",
    "resource_attributes",
    "task_ids",
    "task_owner",
    "with_resource",
]
