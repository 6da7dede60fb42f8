"""People's decisions, task results and log tails in the audit trail.

HumanIntervention rows are keyed by the intervention id; ``known=False``
never touches the task row; results live on the task row and the log tail in
``task_logs``; ``spanvisor interventions`` and ``spanvisor task`` show them.
Events are built by hand (``_events``) and also come from a real Pipeline
through ``pipeline.control.decide``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
import time
from pathlib import Path
from typing import Any

import pytest

from spanvisor.canonical import approval_digest
from spanvisor.cli.main import main
from spanvisor.events import (
    Decision,
    HumanIntervention,
    LogLine,
    ResultField,
    TaskFinished,
    TaskView,
    stable_id,
)
from spanvisor.sink import SinkResult
from spanvisor_postgres import PostgresSink

from ._events import SECOND, task_stream
from .conftest import fetch, make_config, make_ctx, run
from .test_sink_basic import export_all

MS = 1_000_000


def decision(task_id: str, n: int, action: str = "approve", actor: str = "U1", **kw: Any) -> Decision:
    base = Decision(
        intervention_id=stable_id("click", task_id, n),
        task_id=task_id,
        action=action,  # type: ignore[arg-type]
        actor_id=actor,
        time_ns=kw.pop("time_ns", 0) or (1_750_000_000 + n) * SECOND,
        source="slack",
    )
    return dataclasses.replace(base, **kw)


def intervention(view: TaskView, d: Decision, **kw: Any) -> HumanIntervention:
    return HumanIntervention(event_id=d.intervention_id, time_ns=d.time_ns, task=view, decision=d, **kw)


def bare(task_id: str) -> TaskView:
    return TaskView(task_id=task_id, trace_id="", root_span_id="", agent_id="unknown")


def task_row(rows: list[Any]) -> dict[str, Any]:
    assert len(rows) == 1
    return dict(rows[0])


def _open_task() -> tuple[list[Any], TaskView]:
    events = task_stream(1, checkpoints=3, finish=False)
    return events, events[-1].task


def test_each_intervention_is_one_row_and_unknown_ones_leave_the_task_alone(pg_server: Any, tmp_path: Path) -> None:
    url = pg_server.database()
    events, last = _open_task()
    tid = last.task_id
    # Applied on a task open here: its view is the newest (status and seq moved).
    d1 = decision(tid, 1, approval_id="a1", actor_name="alice", comment="ship it")
    applied_view = dataclasses.replace(
        last, status="working", decisions=(d1,), seq=last.seq + 1, updated_ns=last.updated_ns + MS
    )
    applied = intervention(applied_view, d1)
    # Denied (known=False): carries a view that would look newer (higher seq,
    # a terminal status), which must not reach the task row.
    d2 = decision(tid, 2, action="cancel", actor="U9")
    lying = dataclasses.replace(last, status="cancelled", seq=99, updated_ns=last.updated_ns + 9 * SECOND)
    denied = intervention(lying, d2, outcome="denied", reason="not an approver", known=False)
    # Applied on a task this process does not know: a bare view with ids only.
    d3 = decision("elsewhere-7", 3, action="acknowledge", source="cli", actor="ops")
    remote = intervention(bare("elsewhere-7"), d3, known=False)
    batch = [applied, denied, remote]

    async def main() -> None:
        await export_all(url, tmp_path, [events])
        before = task_row(await fetch(url, "SELECT * FROM agent_tasks WHERE task_id = $1", tid))
        # Twice, and once more by every write method: still one row each.
        for method in ("copy", "unnest", "executemany"):
            await export_all(url, tmp_path, [batch, batch], method)
        rows = await fetch(url, "SELECT * FROM human_interventions ORDER BY time_ns")
        assert [r["intervention_id"] for r in rows] == [d1.intervention_id, d2.intervention_id, d3.intervention_id]
        a, b, c = (dict(r) for r in rows)
        assert (a["action"], a["actor"], a["actor_name"], a["outcome"], a["approval_id"], a["source"]) == (
            "approve",
            "U1",
            "alice",
            "applied",
            "a1",
            "slack",
        )
        assert a["comment"] == "ship it" and a["known"] and a["agent_id"] == "rivet"
        assert (b["outcome"], b["reason"], b["known"], b["action"]) == ("denied", "not an approver", False, "cancel")
        # A bare view's agent is not known: no made-up agent id.
        assert (c["agent_id"], c["source"], c["known"]) == (None, "cli", False)
        after = task_row(await fetch(url, "SELECT * FROM agent_tasks WHERE task_id = $1", tid))
        # The applied one moved the row forward; the denied one did not.
        assert after["status"] == "working" and after["last_event_id"] == d1.intervention_id
        assert after["seq"] == last.seq + 1 and after["ended_at"] is None
        changed = {k for k in before if before[k] != after[k]}
        assert changed <= {"status", "last_event_id", "seq", "updated_at", "updated_ns"}, changed
        # A person's click is not the agent's activity (stall checks).
        assert after["last_checkpoint_at"] == before["last_checkpoint_at"]
        assert await fetch(url, "SELECT 1 FROM agent_tasks WHERE task_id = 'elsewhere-7'") == []

    run(main)


def test_unknown_intervention_alone_in_a_batch_creates_no_task_row(pg_server: Any, tmp_path: Path) -> None:
    url = pg_server.database()
    d = decision("ghost", 1, action="retry")

    async def main() -> None:
        await export_all(url, tmp_path, [[intervention(bare("ghost"), d, known=False)]])
        assert await fetch(url, "SELECT 1 FROM agent_tasks") == []
        assert len(await fetch(url, "SELECT 1 FROM human_interventions")) == 1

    run(main)


def _failed_task(n_logs: int) -> list[Any]:
    events = task_stream(2, checkpoints=2, outcome="error")
    fin = events[-1]
    assert isinstance(fin, TaskFinished)
    results = (
        ResultField("arr_gain_1h", 4820.0, "USD"),
        ResultField("prs_opened", 3),
        ResultField("precision", 0.94),
        ResultField("verified", True),
        ResultField("downtime_avoided", 5400, "s"),
    )
    t = fin.time_ns
    tail = tuple(
        LogLine(t - (n_logs - i) * MS, "ERROR" if i == n_logs - 1 else "WARNING", f"line {i}", "agent.worker")
        for i in range(n_logs)
    )
    # A person's and an agent's text may hold NULs and terminal escapes.
    tail = (*tail[:-1], dataclasses.replace(tail[-1], message="boom\x00 \x1b[31mred\x1b[0m"))
    view = dataclasses.replace(fin.task, results=results)
    return [*events[:-1], dataclasses.replace(fin, task=view, log_tail=tail)]


def test_results_and_log_tail_are_stored_once_and_bounded(pg_server: Any, tmp_path: Path) -> None:
    url = pg_server.database()
    events = _failed_task(70)

    async def main() -> None:
        await export_all(url, tmp_path, [events, events[-1:]])
        await export_all(url, tmp_path, [events], "unnest")
        row = task_row(await fetch(url, "SELECT results FROM agent_tasks"))
        assert json.loads(row["results"]) == [
            {"name": "arr_gain_1h", "value": 4820.0, "unit": "USD"},
            {"name": "prs_opened", "value": 3, "unit": None},
            {"name": "precision", "value": 0.94, "unit": None},
            {"name": "verified", "value": True, "unit": None},
            {"name": "downtime_avoided", "value": 5400, "unit": "s"},
        ]
        logs = await fetch(url, "SELECT pos, level, logger, message, notes FROM task_logs ORDER BY pos")
        # Bounded: the newest 50 of 70, oldest first.
        assert len(logs) == 50 and logs[0]["message"] == "line 20" and logs[0]["pos"] == 0
        last = logs[-1]
        assert last["level"] == "ERROR" and last["message"] == "boom \x1b[31mred\x1b[0m"
        assert "NUL" in last["notes"]

    run(main)


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> Any:
    monkeypatch.setenv("SPANVISOR_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("COLUMNS", "250")

    def call(url: str, *argv: str) -> tuple[int, str]:
        monkeypatch.setenv("SPANVISOR_DATABASE_URL", url)
        code = main(list(argv))
        return code, capsys.readouterr().out

    return call


@pytest.fixture(scope="module")
def loaded(pg_server: Any, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    url = pg_server.database()
    events = _failed_task(5)
    view = events[-2].task
    tid = view.task_id
    now = time.time_ns()
    d1 = decision(tid, 1, approval_id="deploy", actor_name="alice", comment="ok \x1b[2Jgo", time_ns=now - 60 * SECOND)
    d2 = decision(tid, 2, action="retry", actor="U9", time_ns=now - 30 * SECOND)
    batch = [
        intervention(dataclasses.replace(view, seq=view.seq + 1, updated_ns=view.updated_ns + 1), d1),
        intervention(events[-1].task, d2, outcome="denied", reason="not an approver", known=False),
        intervention(bare("other-task"), decision("other-task", 3, action="cancel", time_ns=now), known=False),
    ]
    tmp = tmp_path_factory.mktemp("loaded")
    run(lambda: export_all(url, tmp, [events[:-1], batch, events[-1:]]))
    return url, tid


def test_interventions_table_json_and_filters(loaded: tuple[str, str], cli: Any) -> None:
    url, tid = loaded
    code, out = cli(url, "interventions")
    assert code == 0
    lines = out.splitlines()
    head = ["TIME", "TASK", "AGENT", "ACTION", "WHO", "VIA", "OUTCOME", "QUESTION", "REASON", "/", "COMMENT"]
    assert lines[0].split() == head
    assert len(lines) == 2 + 3
    # Newest first: the cancel of a task this database has no row for, then the denied retry.
    assert "cancel" in lines[2] and "other-task" in lines[2]
    assert "retry" in lines[3] and "denied" in lines[3] and "not an approver" in lines[3]
    assert "approve deploy" in lines[4] and "alice (U1)" in lines[4] and "applied" in lines[4]
    # A person's text cannot drive the terminal.
    assert "\x1b" not in out and '"ok ?[2Jgo"' in lines[4]

    code, out = cli(url, "interventions", "--task", tid[:10], "--json")
    rows = [json.loads(x) for x in out.splitlines()]
    assert code == 0 and [r["action"] for r in rows] == ["retry", "approve"]
    assert rows[0]["outcome"] == "denied" and rows[1]["actor_name"] == "alice" and rows[1]["agent_id"] == "rivet"
    assert rows[1]["comment"] == "ok \x1b[2Jgo"  # JSON keeps the text as stored (escaped by json)

    code, out = cli(url, "interventions", "--since", "45s", "--json")
    assert code == 0 and [json.loads(x)["action"] for x in out.splitlines()] == ["cancel", "retry"]
    code, out = cli(url, "interventions", "--since", "2999-01-01T00:00")
    assert code == 0 and out.strip() == "no interventions match"
    with pytest.raises(SystemExit):
        cli(url, "interventions", "--since", "yesterday-ish")


def test_task_shows_results_interventions_and_log_tail(loaded: tuple[str, str], cli: Any) -> None:
    url, tid = loaded
    code, out = cli(url, "task", tid)
    assert code == 0
    head, timeline, *rest = out.split("\n\n")
    # Each result as the console and Slack show it (spanvisor.display.readable).
    assert "  results  arr_gain_1h: $4,820" in head
    assert "           prs_opened: 3" in head and "precision: 0.94" in head and "verified: yes" in head
    assert "           downtime_avoided: 1h 30m" in head and "5400" not in head
    kinds = [line.split()[3] for line in timeline.splitlines()[2:] if len(line.split()) > 3]
    assert kinds.count("intervention") == 2
    assert "alice (U1) approved deploy via slack: ok ?[2Jgo" in timeline
    assert "U9 tried to retry via slack: denied (not an approver)" in timeline
    tail = "\n\n".join(rest)
    assert tail.startswith("LOG TAIL") and "agent.worker" in tail and "line 0" in tail
    assert "boom ?[31mred?[0m" in tail and "\x1b" not in out

    code, out = cli(url, "task", tid, "--json")
    doc = json.loads(out)
    assert [r["name"] for r in doc["task"]["results"]][:2] == ["arr_gain_1h", "prs_opened"]
    assert [r["action"] for r in doc["interventions"]] == ["approve", "retry"]
    assert [r["message"] for r in doc["log_tail"]][:2] == ["line 0", "line 1"]

    # A task with decisions but no row of its own still shows them.
    code, out = cli(url, "task", "other-task")
    assert code == 0 and "no task row for other-task" in out and "cancel" in out


def test_decisions_through_a_real_pipeline(pg_server: Any, tmp_path: Path) -> None:
    """An approval request on a real agent's root, answered through
    ``pipeline.control.decide``: the applied decision, a denied one and a
    decision on a task the pipeline does not know all reach PostgreSQL once."""
    from opentelemetry.sdk.trace import TracerProvider

    from spanvisor.otel.processor import SpanvisorSpanProcessor
    from spanvisor.pipeline.pipeline import Pipeline
    from spanvisor.spans import conventions as cv

    url = pg_server.database()
    config = make_config(tmp_path, url).with_values(shutdown_timeout_s=5.0)
    pipeline = Pipeline(config, sinks=[PostgresSink()]).start()
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SpanvisorSpanProcessor(pipeline=pipeline))
    tracer = provider.get_tracer("agent")
    now = time.time_ns()
    verdicts = []

    def decide(d: Decision, denied: str | None = None) -> Any:
        return asyncio.run(pipeline.control.decide(d, denied=denied))

    try:
        attrs = {cv.TASK_ID: "deploy-1", cv.TASK_NAME: "Deploy", cv.AGENT_ID: "rivet"}
        with tracer.start_as_current_span("deploy", attributes=attrs) as root:
            root.add_event(cv.EVENT_APPROVAL_REQUEST, {cv.APPROVAL_ID: "a1", cv.APPROVAL_QUESTION: "Apply?"})
            deadline = time.monotonic() + 20
            while (
                asyncio.run(pipeline.control.task("deploy-1")) is None
                or not asyncio.run(pipeline.control.task("deploy-1")).approvals
            ):  # type: ignore[union-attr]
                assert time.monotonic() < deadline, "the approval request never opened"
                time.sleep(0.05)
            ok = decision("deploy-1", 1, approval_id="a1", actor_name="alice", time_ns=now)
            verdicts.append(decide(ok))
            verdicts.append(decide(ok))  # the same click again: a duplicate, no second row
            verdicts.append(decide(decision("deploy-1", 2, approval_id="a1", actor="U2", time_ns=now + 1)))
            verdicts.append(decide(decision("deploy-1", 3, action="cancel", actor="U3", time_ns=now + 2), "no"))
            verdicts.append(decide(decision("not-here", 4, action="acknowledge", source="cli", time_ns=now + 3)))
            root.add_event(cv.EVENT_APPROVAL_DECISION, {cv.APPROVAL_ID: "a1", cv.APPROVAL_OUTCOME: "approve"})
        assert pipeline.force_flush(20)
    finally:
        pipeline.shutdown(5.0)
    assert [v.outcome for v in verdicts] == ["applied", "duplicate", "already_decided", "denied", "denied"]
    assert verdicts[-1].code == "unknown_task"

    async def check() -> None:
        rows = await fetch(url, "SELECT * FROM human_interventions ORDER BY time_ns")
        assert [(r["task_id"], r["action"], r["outcome"], r["known"], r["refusal"]) for r in rows] == [
            ("deploy-1", "approve", "applied", True, None),
            ("deploy-1", "approve", "denied", False, "already_decided"),
            ("deploy-1", "cancel", "denied", False, "denied"),
            ("not-here", "acknowledge", "denied", False, "unknown_task"),
        ]
        assert rows[0]["actor_name"] == "alice" and rows[2]["reason"] == "no"
        # What was approved, and who asked: the question, its digest, the agent, the run.
        asked = approval_digest(
            agent="",
            task="deploy-1",
            run=rows[0]["run_id"],
            approval_id="a1",
            question="Apply?",
            options=("approve", "reject"),
        )
        assert (rows[0]["question"], rows[0]["question_digest"]) == ("Apply?", asked)
        assert rows[0]["agent_id"] == "rivet" and rows[0]["run_id"] and rows[1]["question"] == "Apply?"
        task = task_row(await fetch(url, "SELECT status, ended_at FROM agent_tasks WHERE task_id = 'deploy-1'"))
        assert task["status"] == "complete" and task["ended_at"] is not None
        assert await fetch(url, "SELECT 1 FROM agent_tasks WHERE task_id = 'not-here'") == []

    run(check)


def test_prune_takes_a_tasks_logs_and_old_orphan_interventions(pg_server: Any, tmp_path: Path) -> None:
    from spanvisor_postgres.queries import prune

    url = pg_server.database()
    events = _failed_task(3)  # started in 2025: old
    tid = events[0].task.task_id
    old = decision(tid, 1, time_ns=events[0].time_ns + SECOND)
    orphan_old = decision("gone", 2, time_ns=events[0].time_ns)
    orphan_new = decision("fresh", 3, time_ns=time.time_ns())
    batch = [
        intervention(events[1].task, old, known=False),
        intervention(bare("gone"), orphan_old, known=False),
        intervention(bare("fresh"), orphan_new, known=False),
    ]

    async def main() -> None:
        import asyncpg

        await export_all(url, tmp_path, [events, batch])
        assert len(await fetch(url, "SELECT 1 FROM task_logs")) == 3
        pool = await asyncpg.create_pool(url, min_size=1, max_size=2)
        try:
            assert await prune(pool, 86400.0, batch=1) == 1
        finally:
            await pool.close()
        assert await fetch(url, "SELECT 1 FROM task_logs") == []
        left = await fetch(url, "SELECT task_id FROM human_interventions")
        assert [r["task_id"] for r in left] == ["fresh"]

    run(main)


def test_decisions_and_log_tails_survive_the_outbox(pg_server: Any, tmp_path: Path) -> None:
    """With PostgreSQL away, decisions and a finish with its tail wait in the
    outbox (through the codec) and land once when the next process starts."""
    url = pg_server.database()
    events = _failed_task(4)
    view = events[-2].task
    d1 = decision(view.task_id, 1, approval_id="a1", actor_name="alice", comment="ok")
    d2 = decision("ghost", 2, action="cancel")
    batch = [
        *events[:-1],
        intervention(dataclasses.replace(view, seq=view.seq + 1, updated_ns=view.updated_ns + 1), d1),
        intervention(bare("ghost"), d2, outcome="denied", reason="not allowed", known=False),
        events[-1],
    ]
    # The same database refusing a wrong password: events are held for the
    # destination the next process writes to (host, port, dbname, user).
    dead = re.sub(r":[^:@/]+@", ":wrong-password@", url, count=1)

    async def away() -> None:
        sink = PostgresSink()
        await sink.start(make_ctx(make_config(tmp_path, dead)))
        try:
            assert await sink.export(batch) is SinkResult.SUCCESS
            assert sink.outbox is not None and sink.outbox.size == len(batch)
        finally:
            await sink.shutdown(1)

    async def back() -> None:
        for _ in range(2):  # the second start finds nothing left to replay
            sink = PostgresSink()
            await sink.start(make_ctx(make_config(tmp_path, url)))
            try:
                assert await sink.force_flush(10.0)
            finally:
                await sink.shutdown(5)
        rows = await fetch(url, "SELECT intervention_id, outcome, known FROM human_interventions ORDER BY time_ns")
        assert [(r["intervention_id"], r["outcome"], r["known"]) for r in rows] == [
            (d1.intervention_id, "applied", True),
            (d2.intervention_id, "denied", False),
        ]
        assert len(await fetch(url, "SELECT 1 FROM task_logs")) == 4
        assert await fetch(url, "SELECT 1 FROM agent_tasks WHERE task_id = 'ghost'") == []
        (task,) = await fetch(url, "SELECT status, results FROM agent_tasks")
        assert task["status"] == "error" and "prs_opened" in task["results"]

    run(away)
    run(back)


def test_a_large_batch_of_decisions_goes_through_copy_and_unnest_alike(pg_server: Any, tmp_path: Path) -> None:
    clicks = [
        intervention(bare(f"t{n % 3}"), decision(f"t{n % 3}", n, action="retry"), outcome="denied", known=False)
        for n in range(40)
    ]
    snaps = []
    for method in ("copy", "unnest", "executemany"):
        url = pg_server.database()

        async def main(url: str = url, method: str = method) -> None:
            await export_all(url, tmp_path / method, [clicks, clicks[::-1]], method)
            snaps.append([dict(r) for r in await fetch(url, "SELECT * FROM human_interventions ORDER BY 1")])

        run(main)
    assert len(snaps[0]) == 40 and snaps[0] == snaps[1] == snaps[2]
