"""The peers' servers, each at its defaults in a process of its own, and
their persisted spans counted in their own stores.

* Arize Phoenix: ``phoenix serve`` with its SQLite store in
  ``PHOENIX_WORKING_DIR``; OTLP/HTTP (protobuf) at ``/v1/traces``. It
  answers before it persists (a queue, 503 above 20,000 queued spans), so
  an acknowledged span is persisted only once its row is in ``spans``.
* MLflow: ``mlflow server`` on a SQLite backend store; OTLP/HTTP at
  ``/v1/traces`` with the ``x-mlflow-experiment-id`` header. It persists
  before it answers (its rows are in ``spans``, one a span, and
  ``trace_info``, one a trace). It prices each model call as it ingests it,
  from the price catalogue inside its package (LiteLLM's is used only where
  installed; the plain install has none), as spanvisor prices from the
  catalogue inside its own. One setting is not its default: uvicorn's
  worker healthcheck, 60 s instead of 5. uvicorn kills a worker that misses
  a ping for that long, and on a loaded machine a worker busy with a
  request of ~500 spans missed it on 3 of 8 requests (each killed mid-request,
  its spans lost and its connection dropped); the figure would measure the
  kill-and-restart loop, not MLflow's ingest.

Counts are read on a connection of this process, in read-only mode, while
the server writes (SQLite's WAL lets a reader see what was committed).
"""

from __future__ import annotations

import os
import socket
import sqlite3
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Server:
    """A running server: where to POST, with which headers, how to count."""

    name: str
    proc: subprocess.Popen[bytes]
    port: int
    headers: dict[str, str]
    db: Path | None  # the SQLite file whose ``spans`` rows are counted
    log: Path
    ready_path: str  # answers 200 once the server takes requests

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1/traces"

    def spans(self) -> int:
        """Span rows persisted so far (0 before the table exists)."""
        assert self.db is not None
        if not self.db.exists():
            return 0
        conn = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=30)
        try:
            return int(conn.execute("SELECT count(*) FROM spans").fetchone()[0])
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return 0
            raise
        finally:
            conn.close()

    def wait_ready(self) -> None:
        deadline = time.monotonic() + READY_S
        while time.monotonic() < deadline and self.proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{self.ready_path}", timeout=5) as resp:
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"{self.name} did not become ready:\n" + self.log.read_text()[-4000:])

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


# Both take a minute or two to start on a loaded 2-core machine (imports).
READY_S = 400


def _env(**extra: str) -> dict[str, str]:
    # The peers' own interpreters and site-packages only: nothing of this
    # process's venv (PYTHONPATH) leaks into theirs.
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    return env | extra


def start_phoenix(bin_dir: Path, work: Path) -> Server:
    """Started, not yet ready (``Server.wait_ready``): the peers start side by side."""
    work.mkdir(parents=True, exist_ok=True)
    port = free_port()
    env = _env(
        PHOENIX_WORKING_DIR=str(work),
        PHOENIX_HOST="127.0.0.1",
        PHOENIX_PORT=str(port),
        PHOENIX_GRPC_PORT=str(free_port()),
        # No calls out of the machine (there is no route; a try would only wait).
        PHOENIX_TELEMETRY_ENABLED="false",
    )
    log = work / "phoenix.log"
    proc = subprocess.Popen(
        [str(bin_dir / "phoenix"), "serve"], env=env, stdout=log.open("w"), stderr=subprocess.STDOUT, cwd=work
    )
    return Server("Phoenix", proc, port, {}, work / "phoenix.db", log, "/healthz")


MLFLOW_HEALTHCHECK_S = 60


def start_mlflow(bin_dir: Path, work: Path) -> Server:
    work.mkdir(parents=True, exist_ok=True)
    port = free_port()
    db = work / "mlflow.db"
    env = _env(MLFLOW_DISABLE_TELEMETRY="true", DO_NOT_TRACK="true")
    log = work / "mlflow.log"
    cmd = [
        str(bin_dir / "mlflow"),
        "server",
        "--backend-store-uri",
        f"sqlite:///{db}",
        "--default-artifact-root",
        str(work / "artifacts"),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--uvicorn-opts",
        f"--timeout-worker-healthcheck {MLFLOW_HEALTHCHECK_S}",
    ]
    proc = subprocess.Popen(cmd, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT, cwd=work)
    # Experiment 0 ("Default") is made with the store: the traces go there.
    return Server("MLflow", proc, port, {"x-mlflow-experiment-id": "0"}, db, log, "/health")
