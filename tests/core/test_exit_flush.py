"""Nothing an agent said just before it crashed is lost at exit.

An agent run under ``opentelemetry-instrument`` with spanvisor as its traces
and logs exporter (the BatchSpanProcessor waits 5 s, the batch log processor
1 s before they export) checkpoints, logs an error and raises at once. The
process exits with the traceback; the console sink's output must still
show the checkpoint and, on the failed task's summary, the error line: the
pipeline's exit flush pulls both providers' queues in before it stops.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

AGENT = """
import logging
from spanvisor.agent import task
log = logging.getLogger("agent")
with task("Crashy", agent_id="crashy", task_id="crash-1") as t:
    t.checkpoint("About to fall over", progress=60)
    log.error("disk full while writing shard 7")
    raise RuntimeError("boom")
"""


@pytest.mark.timeout_s(120)
def test_a_checkpoint_and_the_log_tail_emitted_just_before_a_crash_reach_the_sinks(tmp_path: Path) -> None:
    script = tmp_path / "agent.py"
    script.write_text(AGENT)
    env = {
        **os.environ,
        "OTEL_TRACES_EXPORTER": "spanvisor",
        "OTEL_LOGS_EXPORTER": "spanvisor",
        "OTEL_METRICS_EXPORTER": "none",
        "OTEL_PYTHON_LOGGING_AUTO_INSTRUMENTATION_ENABLED": "true",
        # The SDK's logging handler stays; the installed frameworks'
        # instrumentations (a minute to import) are not under test.
        "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": "*",
        "SPANVISOR_SINKS": "console",
        "SPANVISOR_EMBEDDED_DB": "false",
        "SPANVISOR_DATA_DIR": str(tmp_path / "data"),
        "SLACK_BOT_TOKEN": "",
    }
    instrument = Path(sys.executable).with_name("opentelemetry-instrument")
    done = subprocess.run(
        [str(instrument), sys.executable, str(script)], check=False, env=env, capture_output=True, text=True, timeout=90
    )
    out = done.stdout + done.stderr
    assert done.returncode == 1 and "RuntimeError: boom" in out, out
    assert "About to fall over" in out, out
    assert "disk full while writing shard 7" in out, out  # the failed task's log tail
