"""Decisions while the state store is down, through a real ``spanvisor serve``
on a real PostgreSQL that the test stops mid-way: the control API answers
503 with ``Retry-After`` and a JSON body naming the cause (never a 500 or a
traceback per request), ``spanvisor cancel`` says to retry in one line with
its own exit code, the same command retried once the database is back is
recorded once, and ``spanvisor emit approval --wait`` waits through the
outage and reads the answer given after it."""

from __future__ import annotations

import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest
from serve_proc import ServeProcess
from test_control_api import TOKEN, _serve_env, call, cli, start_task
from tests.waiting import wait_until

from spanvisor.cli.decide import EXIT_APPLIED, EXIT_RETRY

pytestmark = pytest.mark.slow
EMIT = (sys.executable, "-m", "spanvisor.cli", "emit", "approval")


def _post_raw(base: str, path: str, body: bytes) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(
        base + path,
        data=body,
        method="POST",
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"},
    )
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def test_a_decision_while_the_store_is_down_is_a_503_to_retry_and_the_retry_is_recorded_once(
    own_pg_server: Any, tmp_path: Path
) -> None:
    import json

    url = own_pg_server.url()
    env = {
        **_serve_env(tmp_path / "serve"),
        "SPANVISOR_SINKS": "postgres",
        "SPANVISOR_STATE_STORE": "postgres",
        "SPANVISOR_DATABASE_URL": url,
        "SPANVISOR_EMBEDDED_DB": "false",
    }
    serve = ServeProcess(tmp_path / "serve", env)
    cli_env = {k: v for k, v in env.items() if k != "SPANVISOR_OTLP_TOKEN"}
    waiter: subprocess.Popen[str] | None = None
    try:
        base = f"http://127.0.0.1:{serve.http}"
        task = f"T-{uuid.uuid4().hex[:8]}"
        start_task(base, task)
        wait, to = ("--wait", "300"), ("--endpoint", base, "--token", TOKEN)
        # A shell agent asks and waits (it polls the control API throughout).
        waiter = subprocess.Popen(
            [*EMIT, "--task", task, "--agent", "sh", "--question", "Ship it?", "--id", "a1", *wait, *to],
            env=cli_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        wait_until(lambda: call(base, "GET", f"/v1/control/tasks/{task}")[1].get("approvals"), 60, "the open request")

        own_pg_server.stop()
        body = json.dumps({"action": "cancel", "actor": "alice", "intervention_id": "iv-outage"}).encode()
        for _ in range(5):
            status, headers, raw = _post_raw(base, f"/v1/control/tasks/{task}/decisions", body)
            assert status == 503, (status, raw)
            assert int(headers["Retry-After"]) >= 1
            assert headers["Content-Type"].startswith("application/json")
            doc = json.loads(raw)
            assert doc["cause"] == "state_store_unavailable" and "retry" in doc["error"], doc
        status, doc = call(base, "GET", f"/v1/control/tasks/{task}")
        assert status == 503 and doc["cause"] == "state_store_unavailable", doc

        down = cli(cli_env, "cancel", task, "--url", base, "--token", TOKEN, "--as", "bob", "--intervention-id", "iv-2")
        assert down.returncode == EXIT_RETRY, down
        lines = down.stderr.strip().splitlines()
        assert len(lines) == 1 and "retry" in lines[0] and "--intervention-id iv-2" in lines[0], down.stderr

        own_pg_server.start()
        own_pg_server.wait_ready()

        def retried() -> bool:
            again = cli(
                cli_env, "cancel", task, "--url", base, "--token", TOKEN, "--as", "bob", "--intervention-id", "iv-2"
            )
            assert again.returncode in (EXIT_APPLIED, EXIT_RETRY), again
            return bool(again.returncode == EXIT_APPLIED)

        wait_until(retried, 60, "the retried cancel to be recorded", every=0.5)
        # The agent waited through the outage and reads the cancel once it
        # is recorded: a cancel ends its wait (exit 5).
        out, err = waiter.communicate(timeout=120)
        assert waiter.returncode == 5 and "cancelled by bob" in out, (out, err)

        status, doc = call(base, "GET", f"/v1/control/tasks/{task}")
        ids = [d["intervention_id"] for d in doc["decisions"]]
        assert status == 200 and ids.count("iv-2") == 1 and "iv-outage" not in ids, doc
        log = serve.log_text()
        assert "Traceback" not in log and "Server got itself in trouble" not in log, log[-4000:]
        # Logged once for the outage, not once per request.
        assert log.count("the state store is unavailable") <= 2, log[-4000:]
    finally:
        if waiter is not None and waiter.poll() is None:
            waiter.kill()
            waiter.communicate(timeout=30)
        serve.stop()
