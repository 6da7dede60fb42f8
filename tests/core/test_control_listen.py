"""SPANVISOR_CONTROL_LISTEN: an agent's own process serves the control API
(the approvals guide's agent is answered from a terminal). A value
that is not an address, or a port another process holds, is one warning,
and the agent's processor runs on."""

from __future__ import annotations

import json
import logging
import socket
import urllib.request
from pathlib import Path

import pytest

from spanvisor.config import Config
from spanvisor.otel.controlport import parse_listen, serve_control
from spanvisor.otel.processor import SpanvisorSpanProcessor
from spanvisor.testing import InMemorySink


def _processor(tmp: Path, listen: str) -> SpanvisorSpanProcessor:
    config = Config.load(env={"SPANVISOR_DATA_DIR": str(tmp), "SPANVISOR_CONTROL_LISTEN": listen})
    return SpanvisorSpanProcessor(sinks=[InMemorySink()], config=config)


def test_addresses_are_read_or_refused_in_one_line() -> None:
    assert parse_listen("4320") == ("127.0.0.1", 4320)
    assert parse_listen("0.0.0.0:8080") == ("0.0.0.0", 8080)
    assert parse_listen("[::1]:4320") == ("::1", 4320)
    for bad in ("abc", "127.0.0.1:99999", ":0"):
        with pytest.raises(ValueError, match=r"SPANVISOR_CONTROL_LISTEN=.*host:port"):
            parse_listen(bad)


def test_the_processor_serves_the_control_api(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    processor = _processor(tmp_path, f"127.0.0.1:{port}")
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/control/approvals", timeout=5) as r:
            assert r.status == 200 and "approvals" in json.loads(r.read())
    finally:
        processor.shutdown()


class _Said(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def test_a_bad_address_is_one_warning_and_the_agent_runs_on(tmp_path: Path) -> None:
    said = _Said()
    logger = logging.getLogger("spanvisor")
    logger.addHandler(said)
    processor = _processor(tmp_path, "not-an-address")
    try:
        serve_control(processor.pipeline)  # an exporter sharing the pipeline: not said again
        lines = [line for line in said.lines if "control API" in line]
        assert len(lines) == 1 and "SPANVISOR_CONTROL_LISTEN='not-an-address'" in lines[0], lines
        assert processor.force_flush(5000)
    finally:
        processor.shutdown()
        logger.removeHandler(said)
