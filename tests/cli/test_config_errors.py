"""A configuration mistake is one line naming the setting and what is accepted,
never a traceback; in an agent's process it is said once and the agent runs on."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import TracerProvider

from spanvisor.config import Config
from spanvisor.otel.processor import SpanvisorSpanProcessor

SPANVISOR = [sys.executable, "-m", "spanvisor.cli.main"]


def _spanvisor(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("SPANVISOR_", "SLACK_", "OTEL_"))}
    return subprocess.run(
        [*SPANVISOR, *args],
        env={**base, "SPANVISOR_DATA_DIR": str(tmp_path / "data"), **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize("command", ["serve", "demo"])
def test_an_unknown_sink_is_one_line_naming_the_setting(tmp_path: Path, command: str) -> None:
    out = _spanvisor(tmp_path, command, SPANVISOR_SINKS="slakc")
    assert out.returncode == 2, out
    assert out.stdout == "" and "Traceback" not in out.stderr, out
    assert out.stderr.strip().splitlines() == [
        "spanvisor: configuration error: SPANVISOR_SINKS: no sink named 'slakc' in entry-point group "
        "'spanvisor.sinks'; installed: console, decisionlogs, grafana, postgres, prometheus, slack, stream, teams, telegram, webhook"
    ]
    assert not (tmp_path / "data").exists()  # nothing started, nothing replayed


@pytest.mark.parametrize("flag", ["--http-port", "--grpc-port", "--admin-port"])
def test_a_port_out_of_range_is_refused_before_anything_starts(tmp_path: Path, flag: str) -> None:
    out = _spanvisor(tmp_path, "serve", flag, "99999")
    assert out.returncode == 2, out
    assert f"spanvisor serve: error: argument {flag}: '99999' is not a port: give 0-65535" in out.stderr, out
    assert "Traceback" not in out.stderr and not (tmp_path / "data").exists()


def test_an_agent_with_a_misspelt_sink_runs_on_with_the_others(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = Config.load(env={"SPANVISOR_SINKS": "slakc,stream", "SPANVISOR_DATA_DIR": str(tmp_path)}, extra=())
    with caplog.at_level(logging.ERROR, logger="spanvisor.pipeline"):
        processor = SpanvisorSpanProcessor(config=config.with_values(shutdown_timeout_s=2.0))
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(processor)
    try:
        with provider.get_tracer("agent").start_as_current_span("task", attributes={"agent.task.name": "t"}):
            pass
        assert processor.force_flush(30_000)
    finally:
        provider.shutdown()
    assert [s.name for s in processor.pipeline.sinks] == ["stream"]
    said = [r.getMessage() for r in caplog.records if "SPANVISOR_SINKS" in r.getMessage()]
    assert said == [
        "configuration error: SPANVISOR_SINKS: no sink named 'slakc' in entry-point group 'spanvisor.sinks'; "
        "installed: console, decisionlogs, grafana, postgres, prometheus, slack, stream, teams, telegram, webhook; the agent runs on without it"
    ]
