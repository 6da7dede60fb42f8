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
(:func:`spanvisor.cli.emit_live.send`) while the task runs, and its root
span, ended with the outcome, through :func:`spanvisor.cli.emit_spans.otlp_exporter`.
"""

from __future__ import annotations

import argparse
import time
import urllib.parse
from collections.abc import Mapping
from typing import Any

from spanvisor.gate.session import (
    DEFAULT_ENDPOINT,
    ENV_ENDPOINT,
    ENV_TASK_ID,
    ENV_TASK_OWNER,
    RESOURCE_TASK_ID,
    SERVICES,
    endpoint_from,
    launched_task,
    otlp_endpoint,
    resource_attributes,
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


# What OTEL_RESOURCE_ATTRIBUTES may hold unencoded: W3C Baggage's
# baggage-octet (printable ASCII but space, '"', ',', ';' and '\\'), less
# '%' itself, which must be encoded for a decoder to read the value back.
_BAGGAGE_SAFE = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) not in '",;\\%')
# A key is read up to its first '=': one in a key is encoded too.
_KEY_SAFE = _BAGGAGE_SAFE.replace("=", "")


def encode_resource(attrs: Mapping[str, str]) -> str:
    """``attrs`` as ``OTEL_RESOURCE_ATTRIBUTES``: only what the OTel
    specification requires is percent-encoded (characters outside the
    baggage octets, and '%'), so a task id such as ``deploy:web/42`` travels
    as it is, whether or not the CLI decodes."""

    def enc(text: str, safe: str) -> str:
        return urllib.parse.quote(text, safe=safe)

    return ",".join(f"{enc(k, _KEY_SAFE)}={enc(v, _BAGGAGE_SAFE)}" for k, v in attrs.items())


def with_resource(env: Mapping[str, str], attrs: Mapping[str, str]) -> str:
    """The user's ``OTEL_RESOURCE_ATTRIBUTES`` (decoded) with ``attrs`` added
    (ours win), encoded by :func:`encode_resource`."""
    return encode_resource({**resource_attributes(env), **attrs})


def task_owner(env: Mapping[str, str]) -> str | None:
    """The person the agent works for, who may not approve its requests:
    ``SPANVISOR_TASK_OWNER``, else ``agent.owner`` in ``OTEL_RESOURCE_ATTRIBUTES``."""
    return env.get(ENV_TASK_OWNER) or resource_attributes(env).get(cv.OWNER) or None


def otlp_args(endpoint: str, token: str | None, timeout: float) -> argparse.Namespace:
    """The arguments ``emit``'s exporters read: OTLP/HTTP to ``endpoint``."""
    return argparse.Namespace(endpoint=endpoint, protocol="http/protobuf", token=token, timeout=timeout)


class SessionTask:
    """One session's task: its id, ids and where its records go."""

    def __init__(self, key: str, service: str, launched: bool, target: argparse.Namespace) -> None:
        # The key: the launcher's task id, else the CLI's session id, whose
        # task is named in the CLI's namespace (claude-code:<session id>).
        self.key = key
        self.task_id = key if launched else ids.session_task_id(service, key)
        self.service = service
        self.launched = launched
        self.trace_id, self.root_id = task_ids(service, key, launched)
        self.target = target

    def record(self, name: str, attrs: Mapping[str, Any], at: int | None = None) -> bool:
        """One live-channel record in the task root's context."""
        from spanvisor.cli import emit_live

        said = {cv.TASK_ID: self.task_id, **attrs}
        return emit_live.send(self.target, self.service, self.trace_id, self.root_id, name, said, at or time.time_ns())

    def end(self, name: str | None, started_ns: int, status: str, error: str | None, message: str | None) -> bool:
        """The task's root span, ended now with ``status`` (complete, error,
        cancelled): what closes the task whatever the CLI managed to send.
        ``name`` None (a hook ending a session it did not name) leaves the
        task's name as the CLI's records gave it."""
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
        from opentelemetry.sdk.trace.export import SpanExportResult
        from opentelemetry.sdk.trace.id_generator import IdGenerator
        from opentelemetry.trace import Status, StatusCode

        from spanvisor.cli.emit_spans import otlp_exporter

        trace_id, root_id = self.trace_id, self.root_id
        ended: list[ReadableSpan] = []

        class Ids(IdGenerator):
            def generate_trace_id(self) -> int:
                return trace_id

            def generate_span_id(self) -> int:
                return root_id

            def is_trace_id_random(self) -> bool:
                return False

        class Keep(SpanProcessor):
            def on_end(self, span: ReadableSpan) -> None:
                ended.append(span)

        said: dict[str, Any] = {"service.name": self.service}
        if self.launched:
            said[RESOURCE_TASK_ID] = self.task_id
        if name is not None:
            said[RESOURCE_TASK_NAME] = name
        provider = TracerProvider(resource=Resource.create(said), id_generator=Ids())
        provider.add_span_processor(Keep())
        attrs: dict[str, Any] = {
            cv.TASK_ID: self.task_id,
            cv.TASK_ROOT: format(root_id, "016x"),
            cv.AGENT_ID: self.service,
            cv.STATUS: status,
        }
        if name is not None:
            attrs[cv.TASK_NAME] = name
        if message:
            attrs[cv.MESSAGE] = message
        now = time.time_ns()
        span_name = name if name is not None else "session end"
        span = provider.get_tracer("spanvisor.run").start_span(span_name, start_time=started_ns, attributes=attrs)
        if message:
            # Said at the end, as the task's last action: the root's attribute
            # alone reads as said at its start, before the CLI's own warnings.
            span.add_event(cv.EVENT_CHECKPOINT, {cv.MESSAGE: message}, timestamp=max(now, started_ns))
        if status == "error":
            span.set_status(Status(StatusCode.ERROR, error or "failed"))
            span.add_event(
                cv.EVENT_EXCEPTION, {"exception.type": "AgentFailed", "exception.message": error or "failed"}
            )
        span.end(end_time=max(now, started_ns))
        exporter = otlp_exporter(self.target)
        try:
            return exporter.export(ended) is SpanExportResult.SUCCESS
        finally:
            exporter.shutdown()


__all__ = [
    "DEFAULT_ENDPOINT",
    "ENV_ENDPOINT",
    "ENV_TASK_ID",
    "ENV_TASK_OWNER",
    "RESOURCE_TASK_ID",
    "RESOURCE_TASK_NAME",
    "SERVICES",
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
