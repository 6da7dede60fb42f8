"""The demo prints its /metrics URL only when it serves it: another process
holding the port gets the error line, never a URL that shows someone else's
page."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path


def _demo(tmp_path: Path, port: int) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SPANVISOR_", "SLACK_", "OTEL_"))}
    env.update(
        SPANVISOR_DATA_DIR=str(tmp_path),
        SPANVISOR_SINKS="console,prometheus",
        SPANVISOR_METRICS_PORT=str(port),
        SPANVISOR_CONSOLE_COLOR="never",
    )
    return subprocess.run(
        [sys.executable, "-m", "spanvisor.cli", "demo", "--fast"],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def test_a_held_port_gets_the_error_and_no_url(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        out = _demo(tmp_path, port)
    text = out.stdout + out.stderr
    assert out.returncode == 0, text
    assert f"cannot serve metrics on 127.0.0.1:{port}" in text, text
    assert "metrics: http://" not in text, text


def test_a_free_port_gets_its_url(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    out = _demo(tmp_path, port)
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"metrics: http://127.0.0.1:{port}/metrics" in out.stdout, out.stdout
