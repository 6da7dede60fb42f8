"""Applied means recorded, through a real ``spanvisor serve`` killed with
SIGKILL, its control log in the PostgreSQL state store or in the local
SQLite one (the audit trail in PostgreSQL either way).

* At every step of one decision, held there by a test fault point
  (``spanvisor.control.faults``) and killed: before the control-log write,
  after it before the answer, after the answer before the audit row. After
  the restart the decision is applied and recorded, or neither: unanswered
  and unwritten, nothing of it is applied; written but unanswered, the
  agent reads it and its row is written; answered, its row is written.
  The caller that got no answer sends it again with the same
  ``intervention_id`` and is told exactly what happened (``applied`` now,
  or ``duplicate``: already applied).
* At several moments of a burst (before any answer, while they are
  answered, right after, 0.6 s after): every decision answered ``applied``
  has exactly one audit row, every decision the control log holds (what
  agents act on) has its row, nothing has a row that the control log does
  not hold, and ``spanvisor audit verify`` says intact. The rows are written
  once however often the restarted sink looks.
"""

from __future__ import annotations

import json
import re
import sqlite3
import subprocess
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
from spanvisor.control import faults

pytestmark = pytest.mark.slow
KILL_AFTER_S = (0.0, 0.01, 0.05, 0.2, 0.6)
N = 6
STORES = ("postgres", "local")
NO_ANSWER = (0, {"outcome": "no answer"})


def _env(store: str, data_dir: Path, url: str) -> dict[str, str]:
    return {
        **_serve_env(data_dir),
        "SPANVISOR_SINKS": "postgres",
        "SPANVISOR_STATE_STORE": store,
        "SPANVISOR_DATABASE_URL": url,
        "SPANVISOR_EMBEDDED_DB": "false",
        "SPANVISOR_BATCH_DELAY": "300ms",  # rows wait a while: a kill finds some unwritten
    }


def _decide(base: str, task: str, aid: str, iid: str) -> tuple[int, dict[str, Any]]:
    body = {"action": "approve", "approval_id": aid, "actor": "alice", "intervention_id": iid}
    req = urllib.request.Request(
        f"{base}/v1/control/tasks/{task}/decisions",
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"},
    )
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")
    except Exception:  # killed mid-call: no answer
        return NO_ANSWER


def _get(base: str, path: str) -> dict[str, Any]:
    req = urllib.request.Request(f"{base}/v1/control{path}", headers={"Authorization": f"Bearer {TOKEN}"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return dict(json.loads(resp.read()))


def _records(store: str, url: str, data_dir: Path) -> list[dict[str, Any]]:
    """Every run's record of the control log, read where the store keeps it."""
    if store == "postgres":
        got = db_rows(url, "SELECT value::text AS v FROM delivery_state WHERE namespace = 'decisions'")
        return [json.loads(r["v"]) for r in got]
    conn = sqlite3.connect(f"file:{data_dir / 'state.db'}?mode=ro", uri=True)
    try:
        got = conn.execute("SELECT value FROM state WHERE namespace = 'decisions' AND value IS NOT NULL").fetchall()
        return [json.loads(v) for (v,) in got]
    finally:
        conn.close()


def _logged(store: str, url: str, data_dir: Path) -> set[str]:
    """The intervention ids of every decision the control log holds."""
    got: set[str] = set()
    for rec in _records(store, url, data_dir):
        got |= {d["intervention_id"] for d in rec.get("items") or []}
    return got


def _rows(url: str) -> dict[str, int]:
    got = db_rows(url, "SELECT intervention_id, count(*) AS n FROM human_interventions GROUP BY 1")
    return {r["intervention_id"]: int(r["n"]) for r in got}


def _intact(env: dict[str, str]) -> None:
    verdict = cli(env, "audit", "verify")
    assert verdict.returncode == 0 and "decision log intact" in verdict.stdout, verdict.stdout + verdict.stderr


def _ask(base: str, task: str, asks: list[str]) -> None:
    start_task(base, task)
    for aid in asks:
        argv = ["emit", "approval", "--task", task, "--id", aid, "--question", f"{aid}?", "--wait", "0"]
        main([*argv, "--endpoint", base, "--token", TOKEN, "--url", base])
    wait_until(lambda: len(_get(base, f"/tasks/{task}")["approvals"]) == len(asks), 20, "the requests open")


@pytest.mark.parametrize("store", STORES)
@pytest.mark.parametrize("step", faults.POINTS)
def test_a_kill_at_each_step_of_a_decision_leaves_it_applied_and_recorded_or_neither(
    pg_server: Any, tmp_path: Path, store: str, step: str
) -> None:
    url = pg_server.database()
    data = tmp_path / "serve"
    env = _env(store, data, url)
    serve = ServeProcess(data, {**env, faults.ENV: step})
    try:
        base = f"http://127.0.0.1:{serve.http}"
        task = f"T-{uuid.uuid4().hex[:8]}"
        _ask(base, task, ["a1"])
        # A person approves with the CLI.
        approve = ["approve", task, "a1", "--as", "alice", "--url", base, "--token", TOKEN]
        done: list[subprocess.CompletedProcess[str]] = []
        person = threading.Thread(target=lambda: done.append(cli(env, *approve)))
        person.start()
        if step == faults.BEFORE_ROW:
            wait_until(lambda: done, 30, "the answer")
            assert done[0].returncode == 0 and "Approved: task" in done[0].stdout, done
        wait_until(lambda: f"test fault point {step} reached" in serve.log_text(), 30, f"the decision at {step}")

        # What the kill finds.
        logged = _logged(store, url, data)
        assert len(logged) == (0 if step == faults.BEFORE_LOG else 1), logged
        assert _rows(url) == {}
        assert bool(done) is (step == faults.BEFORE_ROW)
        serve.kill()
        person.join(60)
        if step == faults.BEFORE_ROW:
            [iid] = logged
        else:
            # No answer: the CLI says so, and how to send it again safely.
            said = done[0].stderr
            assert done[0].returncode != 0 and "no answer from the control API" in said, said
            m = re.search(r"--intervention-id (\S+) \(it is recorded once\)", said)
            assert m is not None, said
            iid = m.group(1)
            assert logged <= {iid}

        serve.env = env  # restarted as usual, on the same data dir and database
        serve.start()
        base = f"http://127.0.0.1:{serve.http}"
        seen = _get(base, f"/tasks/{task}")
        if step == faults.BEFORE_LOG:
            # Nothing unanswered and unwritten is applied: the agent reads
            # no decision, the request is still open.
            assert seen["decisions"] == [] and [a["approval_id"] for a in seen["approvals"]] == ["a1"], seen
            assert iid not in _logged(store, url, data)
        else:
            # Written (answered or not): the agent reads it, and the
            # restarted sink writes its row from the control log, unasked.
            assert [d["intervention_id"] for d in seen["decisions"]] == [iid], seen
            wait_until(lambda: _rows(url).get(iid) == 1, 30, "the restarted sink to write the row")
            # Nor is it listed as open any more (the restarted process caught up on the run).
            wait_until(lambda: not _get(base, "/approvals")["approvals"], 10, "the request no longer listed")

        # The person sends it again as told: applied now, or already applied.
        again = cli(env, *approve[:-4], "--url", base, "--token", TOKEN, "--intervention-id", iid)
        assert again.returncode == 0, again.stdout + again.stderr
        if step == faults.BEFORE_LOG:
            assert "Approved: task" in again.stdout, again.stdout
        else:
            assert "Already recorded (the same decision)" in again.stdout, again.stdout
        # Over HTTP, what the answer says (now for every step: it is applied).
        status, doc = _decide(base, task, "a1", iid)
        assert status == 200 and doc["outcome"] == "duplicate", doc
        assert doc["reason"] == f"already applied: {iid} was recorded before (approved by alice); nothing changed", doc
        assert doc["question"] == "a1?" and doc["digest"] and doc["run_id"] == seen["run_id"], doc
        wait_until(lambda: _rows(url).get(iid) == 1, 30, "the row")
        wait_until(lambda: not _get(base, "/approvals")["approvals"], 10, "the request no longer listed as open")
        time.sleep(1.0)  # and nothing twice
        assert _rows(url) == {iid: 1}
        assert [d["intervention_id"] for d in _get(base, f"/tasks/{task}")["decisions"]] == [iid]
        assert _logged(store, url, data) == {iid}
        _intact(env)
    finally:
        serve.stop()


@pytest.mark.parametrize("store", STORES)
def test_every_applied_answer_has_one_row_after_a_sigkill(pg_server: Any, tmp_path: Path, store: str) -> None:
    url = pg_server.database()
    data = tmp_path / "serve"
    env = _env(store, data, url)
    serve = ServeProcess(data, env)
    answered: dict[str, str] = {}
    try:
        for n, delay in enumerate(KILL_AFTER_S):
            answered |= _round(serve, n, delay)
            serve.start()
        applied = {iid for iid, a in answered.items() if a == "applied"}
        assert applied, answered  # the later kills come after answers

        logged = _logged(store, url, data)
        # Every applied answer is in the control log; the restarted sink
        # writes every logged decision's row (the recovery's first round).
        assert applied <= logged, (applied - logged, answered)
        wait_until(lambda: logged <= set(_rows(url)), 30, "every decision of the control log to have its row")
        time.sleep(1.0)  # and nothing twice, however often it looks
        got = _rows(url)
        assert all(got[iid] == 1 for iid in logged), got
        assert set(got) == logged, "a row for a decision the control log does not hold"
        _intact(env)
    finally:
        serve.stop()


def _round(serve: ServeProcess, n: int, delay: float) -> dict[str, str]:
    """A run with N open requests, N approvals at once, SIGKILL ``delay``
    after they start: each one's answer (``no answer`` when killed first)."""
    base = f"http://127.0.0.1:{serve.http}"
    task = f"T-{uuid.uuid4().hex[:8]}"
    asks = [f"a{i}" for i in range(N)]
    _ask(base, task, asks)
    answers: dict[str, str] = {}

    def one(i: int) -> None:
        iid = f"k{n}-{i}"
        status, doc = _decide(base, task, asks[i], iid)
        answers[iid] = str(doc.get("outcome")) if status in (0, 200) else f"http {status}"

    threads = [threading.Thread(target=one, args=(i,)) for i in range(N)]
    for th in threads:
        th.start()
    time.sleep(delay)
    serve.kill()
    for th in threads:
        th.join(30)
    return answers
