"""Applied means recorded, through a real ``spanvisor serve`` on PostgreSQL
killed with SIGKILL at several moments of a burst of decisions (before any
answer, while they are answered, right after, 0.6 s after): after the
restart every decision answered ``applied`` has exactly one audit row, every
decision the control log holds (what agents act on) has its row, nothing
has a row that the control log does not hold, and ``spanvisor audit
verify`` says intact. The rows are written once however often the restarted
sink looks."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest
from serve_proc import ServeProcess, db_rows
from test_control_api import TOKEN, _serve_env, cli, start_task
from tests.waiting import wait_until

from spanvisor.cli.main import main

pytestmark = pytest.mark.slow
KILL_AFTER_S = (0.0, 0.01, 0.05, 0.2, 0.6)
N = 6


def _decide(base: str, task: str, aid: str, iid: str) -> str:
    body = {"action": "approve", "approval_id": aid, "actor": "alice", "intervention_id": iid}
    req = urllib.request.Request(
        f"{base}/v1/control/tasks/{task}/decisions",
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"},
    )
    try:
        with urllib.request.urlopen(req, timeout=20) as resp:
            return str(json.loads(resp.read())["outcome"])
    except urllib.error.HTTPError as exc:
        return f"http {exc.code}"
    except Exception:  # killed mid-call: no answer
        return "no answer"


def _logged(url: str) -> set[str]:
    """The intervention ids of every decision the control log holds."""
    got: set[str] = set()
    for r in db_rows(url, "SELECT value::text AS v FROM delivery_state WHERE namespace = 'decisions'"):
        rec = json.loads(r["v"])
        got |= {d["intervention_id"] for d in rec.get("items") or []}
    return got


def test_every_applied_answer_has_one_row_after_a_sigkill(pg_server: Any, tmp_path: Path) -> None:
    url = pg_server.database()
    env = {
        **_serve_env(tmp_path / "serve"),
        "SPANVISOR_SINKS": "postgres",
        "SPANVISOR_STATE_STORE": "postgres",
        "SPANVISOR_DATABASE_URL": url,
        "SPANVISOR_EMBEDDED_DB": "false",
        "SPANVISOR_BATCH_DELAY": "300ms",  # rows wait a while: a kill finds some unwritten
    }
    serve = ServeProcess(tmp_path / "serve", env)
    answered: dict[str, str] = {}
    try:
        for n, delay in enumerate(KILL_AFTER_S):
            answered |= _round(serve, n, delay)
            serve.start()
        applied = {iid for iid, a in answered.items() if a == "applied"}
        assert applied, answered  # the later kills come after answers

        def rows() -> dict[str, int]:
            got = db_rows(url, "SELECT intervention_id, count(*) AS n FROM human_interventions GROUP BY 1")
            return {r["intervention_id"]: int(r["n"]) for r in got}

        logged = _logged(url)
        # Every applied answer is in the control log; the restarted sink
        # writes every logged decision's row (the recovery's first round).
        assert applied <= logged, (applied - logged, answered)
        wait_until(lambda: logged <= set(rows()), 30, "every decision of the control log to have its row")
        time.sleep(1.0)  # and nothing twice, however often it looks
        got = rows()
        assert all(got[iid] == 1 for iid in logged), got
        assert set(got) == logged, "a row for a decision the control log does not hold"
        verdict = cli({**env, "SPANVISOR_DATABASE_URL": url}, "audit", "verify")
        assert verdict.returncode == 0 and "decision log intact" in verdict.stdout, verdict.stdout + verdict.stderr
    finally:
        serve.stop()


def _round(serve: ServeProcess, n: int, delay: float) -> dict[str, str]:
    """A run with N open requests, N approvals at once, SIGKILL ``delay``
    after they start: each one's answer (``no answer`` when killed first)."""
    base = f"http://127.0.0.1:{serve.http}"
    task = f"T-{uuid.uuid4().hex[:8]}"
    start_task(base, task)
    asks = [f"a{i}" for i in range(N)]
    for aid in asks:
        argv = ["emit", "approval", "--task", task, "--id", aid, "--question", f"{aid}?", "--wait", "0"]
        main([*argv, "--endpoint", base, "--token", TOKEN, "--url", base])
    wait_until(lambda: len(_open(base, task)) == N, 20, "the requests open")
    answers: dict[str, str] = {}

    def one(i: int) -> None:
        iid = f"k{n}-{i}"
        answers[iid] = _decide(base, task, asks[i], iid)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(N)]
    for th in threads:
        th.start()
    time.sleep(delay)
    serve.kill()
    for th in threads:
        th.join(30)
    return answers


def _open(base: str, task: str) -> list[Any]:
    req = urllib.request.Request(f"{base}/v1/control/tasks/{task}", headers={"Authorization": f"Bearer {TOKEN}"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return list(json.loads(resp.read())["approvals"])
