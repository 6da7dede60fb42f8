"""What ``spanvisor run`` reads of ``codex exec --json``: the last turn
event says how the run ended, an ``error`` event alone does not (Codex
sends one for a stream it reconnects, then completes), and an API's error
body reads as ``type: message``. The lines are Codex CLI 0.169.0's own,
from runs against the matrix's fake Responses API. And the launcher's
export intervals for Claude Code: a second, unless the user chose one."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from spanvisor.launcher.results import ResultReader, plan
from spanvisor.launcher.session import telemetry

STARTED = '{"type":"thread.started","thread_id":"01a21237-2c1b-7912-aa7d-4a8bf82b3746"}'
NOTICE = (
    '{"type":"item.completed","item":{"id":"item_0","type":"error","message":"Model metadata for `gpt-5-codex` '
    'not found. Defaulting to fallback metadata; this can degrade performance and cause issues."}}'
)
RECONNECT = (
    '{"type":"error","message":"Reconnecting... 1/3 (stream disconnected before completion: '
    'stream closed before response.completed)"}'
)
COMPLETED = (
    '{"type":"turn.completed","usage":{"input_tokens":2000,"cached_input_tokens":0,'
    '"cache_write_input_tokens":0,"output_tokens":100,"reasoning_output_tokens":0}}'
)
BODY = json.dumps(
    {
        "error": {
            "message": "scripted: this request was refused",
            "type": "invalid_request_error",
            "param": None,
            "code": "invalid_request_error",
        }
    }
)
ERROR = json.dumps({"type": "error", "message": BODY})
FAILED = json.dumps({"type": "turn.failed", "error": {"message": BODY}})


def _read(*lines: str) -> ResultReader:
    argv, mode = plan("codex", ["codex", "exec", "--json", "say hello"])
    assert (argv, mode) == (["codex", "exec", "--json", "say hello"], "codex-json")
    reader = ResultReader(mode)
    for line in lines:
        assert reader.line(line + "\n") == line + "\n", "every event is passed through"
    reader.finish()
    return reader


def test_a_reconnect_codex_recovers_from_does_not_fail_the_run() -> None:
    reader = _read(STARTED, NOTICE, '{"type":"turn.started"}', RECONNECT, COMPLETED)
    assert (reader.saw_result, reader.failed) == (True, False)


def test_a_failed_turn_fails_the_run_with_the_apis_own_message() -> None:
    reader = _read(STARTED, NOTICE, '{"type":"turn.started"}', ERROR, FAILED)
    assert reader.failed
    assert reader.error == "invalid_request_error: scripted: this request was refused"


def test_an_error_event_is_the_error_of_a_run_that_exits_without_a_turn_event() -> None:
    reader = _read(STARTED, json.dumps({"type": "error", "message": "unexpected status 401 Unauthorized: " + BODY}))
    assert (reader.saw_result, reader.failed) == (False, False), "the exit code decides"
    assert (
        reader.error == "unexpected status 401 Unauthorized: invalid_request_error: scripted: this request was refused"
    )


def test_without_json_codex_output_is_only_passed_through() -> None:
    assert plan("codex", ["codex", "exec", "say hello"])[1] == "passthrough"


@given(st.text(max_size=200))
def test_any_error_message_reads_as_some_text(message: str) -> None:
    reader = ResultReader("codex-json")
    reader.line(json.dumps({"type": "turn.failed", "error": {"message": message}}))
    assert reader.failed and isinstance(reader.error, str) and reader.error


@pytest.mark.parametrize(
    ("theirs", "logs", "metrics"), [({}, "1000", "10000"), ({"OTEL_LOGS_EXPORT_INTERVAL": "250"}, "250", "10000")]
)
def test_claude_code_exports_each_second_unless_the_user_chose_an_interval(
    theirs: dict[str, str], logs: str, metrics: str
) -> None:
    _, env = telemetry("claude-code", ["claude", "-p", "x"], {"HOME": "/h", **theirs}, "http://sv:4318", None, "")
    assert (env["OTEL_LOGS_EXPORT_INTERVAL"], env["OTEL_METRIC_EXPORT_INTERVAL"]) == (logs, metrics)
