"""How ``spanvisor run`` reads a run's end, per CLI: a signal is
``cancelled`` for every CLI, and an exit without a result is never read as
success. The exit codes and lines are the pinned CLIs' own, seen with a
model that did not answer and a signal sent to the CLI and what runs
under it (tests/codingagents proves the same with the real CLIs):

* Claude Code 2.1.330 ``-p``: SIGINT exits 0, with no result line (its
  stream says "[Request interrupted by user]") or a result that says
  ``error_during_execution`` / ``aborted_streaming``; SIGTERM exits 143.
* Codex 0.169.0 ``exec --json``: SIGINT exits 1 before any turn event;
  SIGTERM kills it (its node wrapper re-raises it: -15 to a parent).
* Gemini CLI 0.61.0 ``-p``: its parent ignores SIGINT and SIGTERM; its
  worker, signalled, exits 0 and prints no result.
"""

from __future__ import annotations

import signal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from spanvisor.launcher.results import ResultReader, end_of, plan
from spanvisor.launcher.session import telemetry

INTERRUPTED = (
    '{"type":"user","message":{"role":"user","content":[{"type":"text","text":"[Request interrupted by user]"}]},'
    '"parent_tool_use_id":null,"session_id":"1dfd362f-21c8-4a01-aa9e-3560cd22b07f"}\n'
)
ABORTED = (
    '{"type":"result","subtype":"error_during_execution","is_error":true,"terminal_reason":"aborted_streaming",'
    '"session_id":"135bbb49","result":""}\n'
)
GEMINI_OK = [
    '{"type":"init","timestamp":"2026-11-25T19:18:41.510Z","session_id":"cac6092f","model":"gemini-2.5-flash"}\n',
    '{"type":"message","timestamp":"2026-11-25T19:18:41.512Z","role":"user","content":"hello"}\n',
    '{"type":"tool_use","timestamp":"2026-11-25T19:18:41.611Z","tool_name":"run_shell_command","tool_id":"r1",'
    '"parameters":{"command":"echo hi"}}\n',
    '{"type":"tool_result","timestamp":"2026-11-25T19:18:41.740Z","tool_id":"r1","status":"success","output":"hi"}\n',
    '{"type":"message","timestamp":"2026-11-25T19:18:41.749Z","role":"assistant","content":"All done.","delta":true}\n',
    '{"type":"result","timestamp":"2026-11-25T19:18:41.751Z","status":"success","stats":{"total_tokens":2100}}\n',
]
GEMINI_ERROR = [
    GEMINI_OK[0],
    GEMINI_OK[1],
    '{"type":"result","timestamp":"2026-11-25T19:18:44.733Z","status":"error","error":{"type":"unknown",'
    '"message":"[API Error: {\\"error\\":{\\"code\\":400,\\"message\\":\\"scripted refusal\\",'
    '\\"status\\":\\"INVALID_ARGUMENT\\"}}]"},"stats":{"total_tokens":0}}\n',
]


def _read(mode: str, lines: list[str]) -> tuple[ResultReader, str]:
    r = ResultReader(mode)  # type: ignore[arg-type]
    shown = "".join(s for s in (r.line(x) for x in lines) if s)
    r.finish()
    return r, shown


def test_gemini_under_the_launcher_prints_its_text_and_reads_its_result(capsys: pytest.CaptureFixture[str]) -> None:
    argv, mode = plan("gemini", ["gemini", "-p", "hello", "--yolo"])
    assert (argv, mode) == (["gemini", "--output-format", "stream-json", "-p", "hello", "--yolo"], "gemini-text")
    r, shown = _read(mode, GEMINI_OK)
    assert shown == "All done.\n", "what gemini -p prints"
    assert end_of("gemini", "gemini", 0, r) == ("complete", None, "Finished")
    r, shown = _read(mode, GEMINI_ERROR)
    assert shown == "\n" or shown == ""
    status, error, _ = end_of("gemini", "gemini", 144, r)
    assert status == "error" and error is not None and "scripted refusal" in error and "(exit code 144)" in error
    assert "scripted refusal" in capsys.readouterr().err
    # The user's own formats pass through, read all the same.
    assert plan("gemini", ["gemini", "-p", "x", "-o", "json"])[1] == "gemini-json"
    r, shown = _read("gemini-json", ['{"session_id": "s", "response": "done", "stats": {}}\n'])
    assert shown and end_of("gemini", "gemini", 0, r)[0] == "complete"
    assert plan("gemini", ["gemini"])[1] == "passthrough", "interactive: the terminal's"


def test_a_json_result_followed_by_an_exporters_complaint_is_still_the_result() -> None:
    """Behind a Collector with no metrics pipeline, Gemini CLI prints its
    exporter's failure after its JSON result (found by
    tests/collector/test_cli_records.py): the run finished all the same."""
    trailing = [
        '{"session_id": "s", "response": "done",\n',
        ' "stats": {}}\n',
        "Export failed with non-retryable error: OTLPExporterError: Not Found\n",
    ]
    r, _ = _read("gemini-json", trailing)
    assert end_of("gemini", "gemini", 0, r) == ("complete", None, "Finished")
    r, _ = _read(
        "claude-code-json", ['{"type": "result", "subtype": "success", "is_error": false, "result": "ok"}\n', "{oops\n"]
    )
    assert end_of("claude-code", "claude", 0, r)[0] == "complete"
    r, _ = _read("gemini-json", ["Export failed before anything\n"])
    assert end_of("gemini", "gemini", 0, r)[0] == "cancelled"  # no result at all: as before


@pytest.mark.parametrize(
    ("cli", "mode", "lines", "code"),
    [
        ("claude-code", "claude-code-text", [INTERRUPTED], 0),  # SIGINT
        ("claude-code", "claude-code-text", [ABORTED], 0),  # SIGINT, as it streamed
        ("claude-code", "claude-code-text", [], 143),  # SIGTERM
        ("codex", "codex-json", ['{"type":"turn.started"}\n'], -15),  # SIGTERM
        ("gemini", "gemini-text", [GEMINI_OK[0], GEMINI_OK[1]], 0),  # its worker, SIGINT or SIGTERM
        ("codex", "passthrough", [], 130),
    ],
)
def test_a_cli_stopped_by_a_signal_is_cancelled_not_complete_nor_failed(
    cli: str, mode: str, lines: list[str], code: int
) -> None:
    r, _ = _read(mode, lines)
    status, error, message = end_of(cli, cli, code, r)
    assert (status, error) == ("cancelled", None), message


def test_a_signal_the_launcher_sent_is_cancelled_whatever_the_cli_exits_with() -> None:
    for code in (0, 1, 143, -9):
        r, _ = _read("codex-json", ['{"type":"turn.started"}\n'])
        assert end_of("codex", "codex", code, r, signal.SIGTERM) == ("cancelled", None, "Stopped by SIGTERM")


def test_an_exit_without_a_result_is_never_success() -> None:
    r, _ = _read("claude-code-text", ['{"type":"system","subtype":"init"}\n'])
    assert end_of("claude-code", "claude", 0, r) == ("error", "claude exited without a result", "Failed")
    r, _ = _read("codex-json", ['{"type":"thread.started","thread_id":"t"}\n', '{"type":"turn.started"}\n'])
    assert end_of("codex", "codex", 0, r)[0] == "error"
    assert end_of("codex", "codex", 2, r) == ("error", "codex exited with code 2", "Failed")


def test_codex_ending_mid_turn_with_1_and_nothing_said_was_interrupted() -> None:
    """Measured: an interrupted Codex exits 130 or 1 by timing and says
    nothing; one that fails says so (an error event or a failed turn)."""
    r, _ = _read("codex-json", ['{"type":"thread.started","thread_id":"t"}\n', '{"type":"turn.started"}\n'])
    assert end_of("codex", "codex", 1, r)[0] == "cancelled"
    r, _ = _read("codex-json", ['{"type":"turn.started"}\n', '{"type":"error","message":"stream disconnected"}\n'])
    assert end_of("codex", "codex", 1, r) == ("error", "stream disconnected (exit code 1)", "Failed")


@given(
    code=st.integers(-64, 255), mode=st.sampled_from(["claude-code-text", "codex-json", "gemini-text", "passthrough"])
)
def test_only_a_result_that_says_success_or_a_plain_exit_0_is_complete(code: int, mode: str) -> None:
    r, _ = _read(mode, [])
    status, _, _ = end_of({"c": "claude-code", "g": "gemini"}.get(mode[0], "codex"), "x", code, r)
    assert status != "complete" or (code == 0 and mode == "passthrough")


def test_the_launcher_asks_for_tool_details_unless_told_not_to() -> None:
    _, on = telemetry("claude-code", ["claude", "-p", "x"], {}, "http://sv:4318", None, "")
    assert on["OTEL_LOG_TOOL_DETAILS"] == "1" and on["OTEL_LOGS_EXPORT_INTERVAL"] == "1000"
    _, off = telemetry("claude-code", ["claude", "-p", "x"], {}, "http://sv:4318", None, "", tool_details=False)
    assert off["OTEL_LOG_TOOL_DETAILS"] == "0"
    _, kept = telemetry("claude-code", ["claude"], {"OTEL_LOG_TOOL_DETAILS": "0"}, "http://sv:4318", None, "")
    assert kept["OTEL_LOG_TOOL_DETAILS"] == "0", "the user's own choice"
