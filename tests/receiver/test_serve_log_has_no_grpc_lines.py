"""serve's log is spanvisor's: its children (the embedded PostgreSQL's
pg_ctl, run as another user under root, which rules out vfork) fork while
the gRPC server runs, and gRPC's fork handlers used to print "Other threads
are currently calling into gRPC, skipping fork() handlers" at start and stop."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from tests.receiver.serve_proc import ServeProcess, console_env


@pytest.mark.slow
def test_start_and_stop_with_the_embedded_database_print_no_grpc_lines(server_dir: Path) -> None:
    try:
        from spanvisor_postgres.embedded import bin_dir

        bin_dir()
    except Exception as exc:
        pytest.skip(f"no embedded PostgreSQL: {exc}")
    env = {**console_env(server_dir / "serve"), "SPANVISOR_SINKS": "console,postgres", "SPANVISOR_EMBEDDED_DB": "true"}
    env.pop("GRPC_ENABLE_FORK_SUPPORT", None)
    serve = ServeProcess(server_dir / "serve", env)
    try:
        assert serve.terminate(60) == 0, serve.log_text()
    finally:
        serve.stop()
    text = serve.log_text()
    assert "applied migration" in text or "embedded" in text or "postgres" in text, text  # the database ran
    assert "fork" not in text and "gRPC" not in text, text
    if os.geteuid() != 0:
        pytest.skip("not root: pg_ctl runs as this user (vfork), so gRPC's handlers never ran here either")
