"""Scripted coding-agent sessions as each CLI exports them: the event names,
attributes and resource the real CLIs set (FIELD-NOTES, checked against
Claude Code 2.1, Codex CLI 0.169 and Gemini CLI 0.61), emitted through the
real OpenTelemetry SDK's logger and encoded by its OTLP encoder, so a
request is byte for byte what an OTLP log exporter sends. Gemini CLI sends
OTLP/JSON over HTTP: :func:`as_json` writes that form (ids in hex).

Each session: a prompt holding a secret, model calls whose input grows
past 70 % and 85 % of the model's window, two tool calls (one failing), an
API error and a denied tool call.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from google.protobuf.json_format import MessageToDict
from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.resources import Resource

PROMPT = "fix the flaky test in tests/test_io.py, the key is sk-ant-api03-SECRETSECRETSECRET"


@dataclass(frozen=True)
class Rec:
    event: str  # the full event name
    attrs: dict[str, Any]
    body: str | None = None
    short_name: bool = False  # Claude Code: event.name holds the name without its prefix


@dataclass
class Session:
    cli: str
    service: str
    session_id: str
    model: str
    window: int
    records: list[Rec] = field(default_factory=list)
    # What the task must show.
    calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float | None = None
    resource_extra: dict[str, str] = field(default_factory=dict)

    def resource(self) -> Resource:
        return Resource.create({"service.name": self.service, "service.version": "test", **self.resource_extra})


def _growth(window: int) -> list[int]:
    # 50 %, 75 % (past 70: a warning), 90 % (past 85: critical).
    return [window // 2, window * 3 // 4, window * 9 // 10]


def claude(session_id: str, model: str = "claude-sonnet-4-5-20250929", **resource: str) -> Session:
    s = Session("claude", "claude-code", session_id, model, 200_000, resource_extra=resource)
    seq = iter(range(1, 1000))

    def rec(name: str, **a: Any) -> None:
        attrs = {"session.id": session_id, "prompt.id": "p-1", "event.sequence": next(seq), "event.name": name, **a}
        s.records.append(Rec(f"claude_code.{name}", attrs, body=f"claude_code.{name}", short_name=True))

    rec("user_prompt", prompt=PROMPT, prompt_length=len(PROMPT))
    cost = 0.0
    for i, total in enumerate(_growth(s.window)):
        cache_read, cache_write = total // 2, 1_000
        fresh = total - cache_read - cache_write
        rec(
            "api_request",
            model=model,
            input_tokens=fresh,
            output_tokens=800,
            cache_read_tokens=cache_read,
            cache_creation_tokens=cache_write,
            cost_usd=0.25 + i / 10,
            duration_ms=1200,
        )
        s.calls += 1
        s.input_tokens += total
        s.output_tokens += 800
        cost += 0.25 + i / 10
        if i == 0:
            rec("tool_decision", tool_name="Bash", decision="accept", source="config")
            rec(
                "tool_result",
                tool_name="Bash",
                success="true",
                duration_ms=40,
                tool_input=json.dumps({"command": "git status"}),
            )
            rec(
                "tool_result",
                tool_name="Read",
                success="false",
                duration_ms=3,
                error="file not found",
                tool_input=json.dumps({"file_path": "/src/missing.py"}),
            )
        if i == 1:
            rec("api_error", model=model, error="Overloaded", status_code="529", attempt=1, duration_ms=300)
            rec("tool_decision", tool_name="Bash", decision="reject", source="user_reject")
    s.cost_usd = round(cost, 6)
    return s


def codex(session_id: str, model: str = "gpt-5-codex", **resource: str) -> Session:
    s = Session("codex", "codex_exec", session_id, model, 400_000, resource_extra=resource)

    def rec(name: str, **a: Any) -> None:
        attrs = {
            "conversation.id": session_id,
            "event.name": f"codex.{name}",
            "model": model,
            "app.version": "0.169.0",
            **a,
        }
        s.records.append(Rec(f"codex.{name}", attrs))

    rec("conversation_starts", approval_policy="never", sandbox_policy="workspace-write")
    rec("user_prompt", prompt=PROMPT, prompt_length=len(PROMPT))
    for i, total in enumerate(_growth(s.window)):
        rec("api_request", **{"http.response.status_code": 200, "attempt": 1, "duration_ms": 900})
        rec("sse_event", **{"event.kind": "response.created"})
        rec(
            "sse_event",
            **{
                "event.kind": "response.completed",
                "input_token_count": total,
                "cached_token_count": total // 3,
                "output_token_count": 900,
                "reasoning_token_count": 300,
            },
        )
        s.calls += 1
        s.input_tokens += total
        s.output_tokens += 900
        if i == 0:
            rec("tool_decision", tool_name="shell", call_id="c1", decision="approved", source="config")
            rec(
                "tool_result",
                tool_name="shell",
                call_id="c1",
                duration_ms=35,
                success="true",
                output="ok",
                arguments=json.dumps({"command": ["bash", "-lc", "git status"]}),
            )
            rec(
                "tool_result",
                tool_name="shell",
                call_id="c2",
                duration_ms=5,
                success="false",
                output="exit 1",
                arguments=json.dumps({"command": ["bash", "-lc", "make test"]}),
            )
        if i == 1:
            rec("api_request", **{"http.response.status_code": 500, "attempt": 1, "error.message": "upstream timeout"})
            rec("tool_decision", tool_name="shell", call_id="c3", decision="denied", source="user")
    return s


def gemini(session_id: str, model: str = "gemini-2.5-pro", **resource: str) -> Session:
    s = Session("gemini", "gemini-cli", session_id, model, 1_048_576, resource_extra=resource)

    def rec(name: str, body: str, **a: Any) -> None:
        attrs = {"session.id": session_id, "installation.id": "i-1", "event.name": f"gemini_cli.{name}", **a}
        s.records.append(Rec(f"gemini_cli.{name}", attrs, body=body))

    rec("config", "CLI configuration loaded.", model=model)
    rec("user_prompt", "User prompt.", prompt=PROMPT, prompt_length=len(PROMPT), prompt_id="g-1")
    for i, total in enumerate(_growth(s.window)):
        rec("api_request", "API request.", model=model, prompt_id="g-1")
        rec(
            "api_response",
            "API response.",
            model=model,
            status_code=200,
            duration_ms=700,
            prompt_id="g-1",
            input_token_count=total,
            output_token_count=600,
            cached_content_token_count=total // 4,
            thoughts_token_count=200,
            total_token_count=total + 800,
        )
        s.calls += 1
        s.input_tokens += total
        s.output_tokens += 800
        if i == 0:
            rec(
                "tool_call",
                "Tool call.",
                function_name="run_shell_command",
                decision="accept",
                success=True,
                duration_ms=50,
                function_args=json.dumps({"command": "git status"}),
                prompt_id="g-1",
            )
            rec(
                "tool_call",
                "Tool call.",
                function_name="read_file",
                decision="auto_accept",
                success=False,
                duration_ms=2,
                error="ENOENT",
                function_args=json.dumps({"absolute_path": "/src/missing.py"}),
                prompt_id="g-1",
            )
        if i == 1:
            rec("api_error", "API error.", model=model, error="Resource exhausted", status_code=429, duration_ms=20)
            rec(
                "tool_call",
                "Tool call.",
                function_name="run_shell_command",
                decision="reject",
                success=False,
                duration_ms=0,
                function_args=json.dumps({"command": "rm -rf /"}),
                prompt_id="g-1",
            )
    return s


def request(
    session: Session, records: Sequence[Rec] | None = None, start_ns: int | None = None
) -> ExportLogsServiceRequest:
    """``records`` (the session's by default) as one OTLP logs request, made
    by the SDK: a logger of the CLI's resource, its in-memory exporter and
    the OTLP encoder every OTLP log exporter uses. Times are 10 ms apart
    from ``start_ns`` (now by default), so a request made twice is the same."""
    exporter = InMemoryLogRecordExporter()
    provider = LoggerProvider(resource=session.resource(), shutdown_on_exit=False)
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    logger = provider.get_logger(f"com.{session.cli}.telemetry")
    t0 = start_ns if start_ns is not None else time.time_ns()
    for i, r in enumerate(session.records if records is None else records):
        index = session.records.index(r)
        logger.emit(
            timestamp=t0 + index * 10_000_000,
            observed_timestamp=t0 + index * 10_000_000,
            body=r.body,
            attributes=r.attrs,
        )
        del i
    provider.shutdown()
    return encode_logs(exporter.get_finished_logs())


def as_json(req: ExportLogsServiceRequest) -> bytes:
    """OTLP/JSON as the JavaScript exporters (Gemini CLI's) write it: camelCase, ids in hex."""
    doc = MessageToDict(req, preserving_proto_field_name=False)
    for rl in doc.get("resourceLogs", []):
        for sl in rl.get("scopeLogs", []):
            for lr in sl.get("logRecords", []):
                for k in ("traceId", "spanId"):
                    if k in lr:
                        lr[k] = base64.b64decode(lr[k]).hex()
    return json.dumps(doc).encode()
