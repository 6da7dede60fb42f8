"""A stand-in for ``claude -p``: it exports OTLP log records with the real
OpenTelemetry SDK configured from the environment, as Claude Code does
(``CLAUDE_CODE_ENABLE_TELEMETRY=1``, ``OTEL_EXPORTER_OTLP_*``,
``OTEL_RESOURCE_ATTRIBUTES``), then prints ``--output-format stream-json``
lines and exits. ``FAKE_MODE``: ``ok`` (a success result, exit 0),
``error`` (an ``is_error`` result, exit 1), ``hang`` (waits to be killed).
``FAKE_RECORD``: a file it writes its argv and telemetry environment to."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path


def main() -> int:
    mode = os.environ.get("FAKE_MODE", "ok")
    keys = [k for k in os.environ if k.startswith(("OTEL_", "CLAUDE_CODE_", "SPANVISOR_"))]
    Path(os.environ["FAKE_RECORD"]).write_text(json.dumps({"argv": sys.argv, "env": {k: os.environ[k] for k in keys}}))
    if os.environ.get("CLAUDE_CODE_ENABLE_TELEMETRY") == "1":
        from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
        from opentelemetry.sdk._logs import LoggerProvider
        from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
        from opentelemetry.sdk.resources import Resource

        provider = LoggerProvider(resource=Resource.create({"service.name": "claude-code"}))
        provider.add_log_record_processor(SimpleLogRecordProcessor(OTLPLogExporter()))
        logger = provider.get_logger("com.anthropic.claude_code.events")
        common = {"session.id": "fake-session", "prompt.id": "p-1"}
        logger.emit(
            body="claude_code.user_prompt", attributes={**common, "event.name": "user_prompt", "prompt_length": 13}
        )
        logger.emit(
            body="claude_code.api_request",
            attributes={**common, "event.name": "api_request", "model": "claude-sonnet-4-5", "input_tokens": 120},
        )
        provider.shutdown()
    print(json.dumps({"type": "system", "subtype": "init", "session_id": "fake-session"}), flush=True)
    if mode == "hang":
        Path(os.environ["FAKE_RECORD"] + ".running").write_text("1")
        while True:
            time.sleep(1)
    if mode == "error":
        result = {
            "type": "result",
            "subtype": "error_during_execution",
            "is_error": True,
            "terminal_reason": "api_error",
            "result": "API Error: 529 overloaded",
        }
        print(json.dumps(result), flush=True)
        return 1
    print(json.dumps({"type": "result", "subtype": "success", "is_error": False, "result": "All tests pass."}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
