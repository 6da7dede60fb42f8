"""Replicas that agree: three `spanvisor serve` processes, one
PostgreSQL (audit trail and state store), one strict fake Slack.

Tasks are a stamped root and 10 children (5 model calls, 5 steps with a
checkpoint event) plus plain spans, sent in batches of 1-3 spans; one or
two children of each task are sent after its root (async tools that end
after it). Scenarios: the issue's minimal reproducer; spans sprayed at
random; sprayed with one replica SIGKILLed and restarted mid-stream; routed
by trace id. In every one: each task's Slack parent ends on its final state,
named; every model call and every checkpoint event is there exactly once as
its own row, also when it reached the root's replica after the root (work
that ended before the root is read into the task's story: the late-span
rule); no span is dropped as too late; and after the hold time no replica
keeps a task open.
Slack calls per task under spraying stay within 1.5x of routing.
"""

from __future__ import annotations

import random
import re
import time
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from agent_traces import agent_task, make_provider, request_for
from opentelemetry.sdk.trace import ReadableSpan
from replica_harness import FINAL, db, shown_status
from serve_proc import FakeSlackThread, ServeProcess, post, slack_env
from tests.waiting import wait_until

pytestmark = pytest.mark.slow

N_TASKS = 20
STEPS = 5  # each: a model call and a step with a checkpoint event
REPLICAS = 3
calls_per_task: dict[str, float] = {}
# Per task, its "step" spans sent after its root (shown when a check fails):
# on the root's replica they arrive late, on another replica they are part of
# a partial task; either way their checkpoint events are rows.
late_steps: dict[str, int] = {}


class Replicas:
    def __init__(self, tmp: Path, db_url: str, slack: FakeSlackThread) -> None:
        self.db_url, self.slack = db_url, slack
        self.procs = [
            ServeProcess(
                tmp / f"r{i}",
                slack_env(
                    tmp / f"r{i}",
                    slack.base_url,
                    SPANVISOR_DATABASE_URL=db_url,
                    SPANVISOR_SINKS="postgres,slack,prometheus",
                    SPANVISOR_STATE_STORE="postgres",
                    SPANVISOR_ROOT_HOLD="2s",
                    SPANVISOR_SHUTDOWN_TIMEOUT="10s",
                ),
            )
            for i in range(REPLICAS)
        ]

    def send(self, replica: int, spans: Sequence[ReadableSpan], timeout: float = 60) -> None:
        """Post to ``replica``, or, while it is down, to the next live one (a client resending)."""
        body = request_for(spans).SerializeToString()
        deadline = time.monotonic() + timeout
        while True:
            live = [p for p in self.procs[replica:] + self.procs[:replica] if p.alive]
            if live and post(live[0].url, body):
                return
            if time.monotonic() >= deadline:
                raise AssertionError("no replica accepted a batch")
            time.sleep(0.05)

    def metric(self, proc: ServeProcess, name: str, **labels: str) -> float:
        with urllib.request.urlopen(f"http://127.0.0.1:{proc.admin}/metrics", timeout=10) as resp:
            text = resp.read().decode()
        total = 0.0
        for line in text.splitlines():
            m = re.match(rf"^{name}(\{{[^}}]*\}})? ([0-9.e+-]+)$", line)
            if m and all(f'{k}="{v}"' in (m.group(1) or "") for k, v in labels.items()):
                total += float(m.group(2))
        return total

    def wait_done(self, tasks: Sequence[str], timeout: float = 90) -> None:
        def done() -> bool:
            rows = db(
                self.db_url,
                "SELECT count(*) AS n FROM agent_tasks WHERE task_id = ANY($1) AND ended_at IS NOT NULL",
                list(tasks),
            )
            if rows[0]["n"] < len(tasks):
                return False
            parents = _parents(self.slack)
            return all(len(parents.get(t, ())) == 1 and shown_status(parents[t][0]) in FINAL for t in tasks)

        try:
            wait_until(done, timeout, f"{len(tasks)} tasks finished in PostgreSQL and on Slack", every=0.2)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.diagnosis(tasks)}") from None

    def diagnosis(self, tasks: Sequence[str]) -> str:
        """What a timeout left behind: unfinished rows, parents, each replica's log tail."""
        rows = db(self.db_url, "SELECT task_id, status, ended_at FROM agent_tasks WHERE task_id = ANY($1)", list(tasks))
        ended = {r["task_id"] for r in rows if r["ended_at"] is not None}
        parents = _parents(self.slack)
        lines = [
            f"not ended in PostgreSQL: {sorted(set(tasks) - ended)}",
            "parents not final: "
            + str(
                {t: [shown_status(p) for p in parents.get(t, [])] for t in tasks if t not in ended or t not in parents}
            ),
        ]
        for i, p in enumerate(self.procs):
            tail = "\n".join(p.log_text().splitlines()[-15:]) if p.logs else "(no log)"
            lines.append(f"--- replica {i} (alive={p.alive}) log tail:\n{tail}")
        return "\n".join(lines)

    def check(self, tasks: Sequence[str], outcome: str = "complete", steps: int = STEPS) -> None:
        parents = _parents(self.slack)
        for t in tasks:
            [parent] = parents[t]
            assert shown_status(parent) == outcome, (t, parent.text)
            assert f"Diagnose {t}" in (parent.text or ""), (t, parent.text)

        def rows() -> dict[tuple[str, str], int]:
            found = db(
                self.db_url,
                "SELECT task_id, COALESCE(source, kind) AS what, count(*) AS n FROM agent_checkpoints"
                " WHERE task_id = ANY($1) AND (source IN ('event', 'model_call') OR kind = 'corrected')"
                " GROUP BY task_id, COALESCE(source, kind)",
                list(tasks),
            )
            return {(r["task_id"], r["what"]): r["n"] for r in found}

        def wrong() -> dict[str, tuple[int, int, int]]:
            got = rows()
            out = {}
            for t in tasks:
                # Work that ended before its root and arrived after it is
                # written as the rows it would have been (arrived_late), so
                # every call and every checkpoint is a row of its own kind;
                # the correction row beside them only sums them up.
                calls = got.get((t, "model_call"), 0)
                events = got.get((t, "event"), 0)
                if calls != steps or events != steps:
                    out[t] = (calls, events, late_steps.get(t, 0))
            return out

        # A restarted replica may still be replaying its journal: its rows come, each once.
        try:
            wait_until(lambda: not wrong(), 30, "every model call and checkpoint row", every=0.5)
        finally:
            assert not wrong(), f"(model calls, checkpoint events, late steps) of {steps}: {wrong()}"
        states = db(self.db_url, "SELECT task_id, status FROM agent_tasks WHERE task_id = ANY($1)", list(tasks))
        assert {r["task_id"]: r["status"] for r in states} == dict.fromkeys(tasks, outcome)
        # Late spans were written, none dropped; after the hold time nothing stays open.
        live = [p for p in self.procs if p.alive]
        assert sum(self.metric(p, "spanvisor_dropped_total", reason="late_span") for p in live) == 0

        def closed() -> bool:
            return all(self.metric(p, "spanvisor_open_tasks") == 0 for p in live)

        wait_until(closed, 20, "no open tasks on any replica after the hold time", every=0.5)

    def stop(self) -> None:
        for p in self.procs:
            p.stop()


def _parents(slack: FakeSlackThread) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for m in slack.parents():
        task = ((m.metadata or {}).get("event_payload") or {}).get("task_id")
        out.setdefault(str(task), []).append(m)
    return out


def _calls_per_task(slack: FakeSlackThread, prefix: str) -> float:
    """chat.* calls (posts, edits, replies, deletes) that belong to tasks named ``prefix*``."""

    def count() -> tuple[int, int]:
        ts_task: dict[str, str] = {}
        for c in slack.fake.calls_to("chat.postMessage"):
            task = ((c.args.get("metadata") or {}).get("event_payload") or {}).get("task_id")
            if task and c.response.get("ts"):
                ts_task[str(c.response["ts"])] = str(task)
        tasks, n = set(), 0
        for c in slack.fake.calls:
            if not c.method.startswith("chat."):
                continue
            a = c.args
            meta = ((a.get("metadata") or {}).get("event_payload") or {}).get("task_id")
            task = meta or ts_task.get(str(a.get("thread_ts") or a.get("ts") or a.get("message_ts") or ""))
            if task and str(task).startswith(prefix):
                tasks.add(task)
                n += 1
        return n, len(tasks)

    n, tasks = slack.on_loop(count)
    return n / max(1, tasks)


def _task_spans(prefix: str, seed: int) -> list[list[ReadableSpan]]:
    """Per task its spans in end order, then one or two children moved after the root."""
    tp, cap = make_provider()
    tracer = tp.get_tracer("agent")
    rng = random.Random(seed)
    for i in range(N_TASKS):
        agent_task(tracer, f"{prefix}{i}", rng, checkpoints=STEPS, plain_per_step=1)
    tp.shutdown()
    by_trace: dict[int, list[ReadableSpan]] = {}
    for s in cap.spans:
        by_trace.setdefault(s.context.trace_id, []).append(s)
    out = []
    for spans in by_trace.values():
        root, rest = spans[-1], spans[:-1]
        stamped = [s for s in rest if (s.attributes or {}).get("agent.task.root_span_id")]
        late = rng.sample(stamped, rng.randint(1, 2))
        task = str((root.attributes or {}).get("agent.task.id"))
        late_steps[task] = sum(s.name == "step" for s in late)
        out.append([s for s in rest if s not in late] + [root] + late)
    return out


def _batches(tasks: list[list[ReadableSpan]], rng: random.Random) -> list[list[ReadableSpan]]:
    """Tasks interleaved as concurrent agents export them, in batches of 1-3."""
    queues = [list(t) for t in tasks]
    out: list[list[ReadableSpan]] = []
    while queues:
        q = rng.choice(queues)
        n = rng.randint(1, 3)
        out.append(q[:n])
        del q[:n]
        queues = [q for q in queues if q]
    return out


@pytest.fixture(scope="module")
def replicas(pg_server: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Replicas]:
    slack = FakeSlackThread()
    r = Replicas(tmp_path_factory.mktemp("agree"), pg_server.database(), slack)
    try:
        yield r
    finally:
        r.stop()
        slack.close()


def test_the_minimal_reproducer(replicas: Replicas) -> None:
    """[child1, root] to A, [child2] to B, [child3] to A: one parent, final and
    named; 3 of 3 checkpoint rows; nothing late dropped; nothing left open on B."""
    tp, cap = make_provider()
    agent_task(tp.get_tracer("agent"), "R0", random.Random(1), checkpoints=3, plain_per_step=0)
    tp.shutdown()
    steps = [s for s in cap.spans if s.name == "step"]
    chats = [s for s in cap.spans if s.name.startswith("chat")]
    root = cap.spans[-1]
    replicas.send(0, [chats[0], steps[0], root])
    replicas.send(1, [chats[1], steps[1]])
    replicas.send(0, [chats[2], steps[2]])
    late_steps["R0"] = 1  # steps[2], after the root on A
    replicas.wait_done(["R0"])
    replicas.check(["R0"], steps=3)


def test_sprayed(replicas: Replicas) -> None:
    rng = random.Random(17)
    for batch in _batches(_task_spans("S", 17), rng):
        replicas.send(rng.randrange(REPLICAS), batch)
    tasks = [f"S{i}" for i in range(N_TASKS)]
    replicas.wait_done(tasks)
    replicas.check(tasks)
    calls_per_task["sprayed"] = _calls_per_task(replicas.slack, "S")


def test_sprayed_with_a_replica_killed_and_restarted(replicas: Replicas) -> None:
    rng = random.Random(23)
    batches = _batches(_task_spans("K", 23), rng)
    for k, batch in enumerate(batches):
        if k == len(batches) // 2:
            replicas.procs[0].kill()
        replicas.send(rng.randrange(REPLICAS), batch)
    replicas.procs[0].start()  # its journal replays what it had acknowledged
    tasks = [f"K{i}" for i in range(N_TASKS)]
    replicas.wait_done(tasks)
    replicas.check(tasks)


def test_routed_by_trace_id(replicas: Replicas) -> None:
    rng = random.Random(29)
    for batch in _batches(_task_spans("Q", 29), rng):
        replicas.send(batch[0].context.trace_id % REPLICAS, batch)
    tasks = [f"Q{i}" for i in range(N_TASKS)]
    replicas.wait_done(tasks)
    replicas.check(tasks)
    calls_per_task["routed"] = _calls_per_task(replicas.slack, "Q")
    if "sprayed" in calls_per_task:
        assert calls_per_task["sprayed"] <= 1.5 * calls_per_task["routed"], calls_per_task
