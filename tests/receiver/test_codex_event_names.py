"""Codex CLI 0.169 names each log record twice: its ``event_name`` field
holds the tracing call site its log bridge saw (``event
otel/src/events/session_telemetry.rs:703``, a new one each build), its
``event.name`` attribute the Codex event. The records are read by the
attribute, as the real CLI sends them."""

from __future__ import annotations

from typing import Any

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord

from spanvisor.clis.codex import records as codex
from spanvisor.receiver.codingagents.sessions import SESSIONS
from spanvisor.receiver.logs import decode_logs

THREAD = "01a21230-7814-7431-8b72-50964215c9a4"
T0 = 1_795_601_496_000_000_000


def _record(site: str, event: str | None, t: int, **attrs: Any) -> LogRecord:
    rec = LogRecord(event_name=f"event otel/src/{site}", observed_time_unix_nano=t)
    said = {"conversation.id": THREAD, "model": "gpt-5-codex", "slug": "gpt-5-codex", **attrs}
    if event is not None:
        said = {"event.name": event, **said}
    for k, v in said.items():
        kv = rec.attributes.add()
        kv.key = k
        if isinstance(v, bool):
            kv.value.bool_value = v
        else:
            kv.value.string_value = str(v)
    return rec


def _request(*records: LogRecord) -> ExportLogsServiceRequest:
    req = ExportLogsServiceRequest()
    rl = req.resource_logs.add()
    kv = rl.resource.attributes.add()
    kv.key, kv.value.string_value = "service.name", "codex_exec"
    sl = rl.scope_logs.add()
    sl.scope.name = "codex_otel.log_only"
    sl.log_records.extend(records)
    return req


def test_a_call_site_name_is_read_by_its_event_name_attribute() -> None:
    prompt = _record("events/session_telemetry.rs:1200", "codex.user_prompt", T0, prompt="say hello")
    assert codex.event_name(prompt, prompt.event_name) == "codex.user_prompt"
    # Another Rust program's event, or a Codex event this adapter does not read: not Codex's.
    assert codex.event_name(_record("main.rs:9", None, T0), "event main.rs:9") is None
    assert codex.event_name(_record("x.rs:1", "codex.websocket_connect", T0), "event x.rs:1") is None
    # A name that is no call site is never looked into.
    assert codex.event_name(prompt, "codex.user_prompt") is None


def test_a_codex_session_sent_with_call_site_names_is_one_task_with_its_call_and_step() -> None:
    SESSIONS.clear()
    req = _request(
        _record("events/session_telemetry.rs:703", "codex.conversation_starts", T0, approval_policy="never"),
        _record("events/session_telemetry.rs:1200", "codex.user_prompt", T0 + 1, prompt="say hello"),
        # Codex's first response.completed record carries no counts; the second does.
        _record("events/session_telemetry.rs:1089", "codex.sse_event", T0 + 2, **{"event.kind": "response.completed"}),
        _record(
            "events/session_telemetry.rs:1153",
            "codex.sse_event",
            T0 + 3,
            **{
                "event.kind": "response.completed",
                "input_token_count": "7000",
                "cached_token_count": "1500",
                "output_token_count": "40",
                "reasoning_token_count": "10",
            },
        ),
        _record(
            "tool_result.rs:54",
            "codex.tool_result",
            T0 + 4,
            tool_name="exec_command",
            arguments='{"cmd": "echo hello"}',
            success="true",
            duration_ms="99",
        ),
        _record("metrics/client.rs:324", None, T0 + 5),
    )
    out = decode_logs(req)
    assert out.coding is not None and out.coding.records == 5 and out.coding.unreadable == {}
    assert len(out.records) == 1, "only the record that is no Codex event stays a log line"
    [start] = [f for f in out.live if f.name == "agent.task.start"]
    assert start.attributes["agent.task.name"] == "say hello"
    readings = [r.reading for _, r in out.coding.calls]
    assert [(r.kind, r.input_tokens, r.cache_read, r.output_tokens) for r in readings if r.kind == "call"] == [
        ("call", 7_000, 1_500, 40)
    ]
    assert [(r.tool, r.text) for r in readings if r.kind == "tool"] == [("exec_command", "echo hello")]
