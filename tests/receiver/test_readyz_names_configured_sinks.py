"""/readyz names what the user configured: with the database unreachable,
serve's reason is the PostgreSQL sink's (the URL, masked, and the setting
that points there), never "sinks failed to start: stream", a sink serve
added for its admin port."""

from __future__ import annotations

import socket
from pathlib import Path

from tests.waiting import wait_until

from spanvisor.config import Config
from spanvisor.pipeline.pipeline import Pipeline
from spanvisor.receiver.serve import serve_sinks


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_an_unreachable_database_is_the_reason_not_the_implicit_stream(tmp_path: Path) -> None:
    url = f"postgresql://svc:hunter2@127.0.0.1:{_closed_port()}/audit"
    config = Config.load(
        env={
            "SPANVISOR_DATA_DIR": str(tmp_path),
            "SPANVISOR_DATABASE_URL": url,
            "SPANVISOR_DB_COMMAND_TIMEOUT": "2s",
            "SPANVISOR_CONSOLE_STREAM": "stderr",
        }
    ).with_values(shutdown_timeout_s=3.0)
    sinks = serve_sinks(config)
    names = {s.name for s in sinks}
    assert {"postgres", "stream"} <= names and next(s for s in sinks if s.name == "stream").implicit
    pipeline = Pipeline(config, sinks, path="receiver").start()
    try:
        wait_until(lambda: pipeline.ready()[1] != "sinks starting", what="the sinks to start", timeout=60)
        ok, why = pipeline.ready()
        assert not ok
        assert why.startswith("postgres: cannot connect (postgresql://svc:****@127.0.0.1:"), why
        assert ", SPANVISOR_DATABASE_URL)" in why and "hunter2" not in why, why
        assert "stream" not in why, why
    finally:
        pipeline.shutdown(3.0)
