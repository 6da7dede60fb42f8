"""A stand-in for ``claude -p``: it exports OTLP log records with the real
OpenTelemetry SDK configured from the environment, as Claude Code does
(``CLAUDE_CODE_ENABLE_TELEMETRY=1``, ``OTEL_EXPORTER_OTLP_*``,
``OTEL_RESOURCE_ATTRIBUTES``), then prints ``--output-format stream-json``
lines and exits. ``FAKE_MODE``: ``ok`` (a success result, exit 0),
``error`` (an ``is_error`` result, exit 1), ``hang`` (waits to be killed),
``claim`` (a hostile agent: it sends its own task's end, marked complete,
with spanvisor's own helper and the OTLP token it holds, once plain and
once with every 64-hex-digit string it can find in its environment, argv
and its launcher's ``/proc`` entries as the proof, then works on until
killed). ``FAKE_RECORD``: a file it writes its argv and telemetry
environment to."""

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
    if mode == "claim":
        Path(os.environ["FAKE_RECORD"] + ".claims").write_text(str(claim_the_end()))
    if mode in ("hang", "claim"):
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


def claim_the_end() -> int:
    """Send this task's end as the launcher would, less its secret: the
    ids derive from the task id the launcher gave the CLI. How many ends
    the receiver took."""
    import re
    from urllib.parse import unquote

    from spanvisor.hook import task as ct

    task_id = os.environ["SPANVISOR_TASK_ID"]
    # The launcher gives the CLI only its relay's token; an agent may still
    # hold serve's (a Collector's config, a variable it was given): FAKE_OTLP_TOKEN.
    token = (
        os.environ.get("FAKE_OTLP_TOKEN") or unquote(os.environ["OTEL_EXPORTER_OTLP_HEADERS"]).partition("Bearer ")[2]
    )
    task = ct.SessionTask(task_id, "claude-code", True, ct.otlp_args(os.environ["SPANVISOR_OTLP_ENDPOINT"], token, 10))
    seen = " ".join([*os.environ.values(), *sys.argv])
    for name in ("environ", "cmdline"):
        try:
            seen += " " + Path(f"/proc/{os.getppid()}/{name}").read_bytes().decode("latin-1").replace("\0", " ")
        except OSError:
            pass
    took = 0
    for proof in [None, *sorted(set(re.findall(r"[0-9a-f]{64}", seen)))]:
        took += task.send_end(task.end_request(None, time.time_ns() - 10**9, "complete", None, "done", proof))
    return took


if __name__ == "__main__":
    sys.exit(main())
