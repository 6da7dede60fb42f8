"""Two replicas on one PostgreSQL, a task's spans split over them as a
Collector's load balancer or a retried batch delivers them:
``[child1, root] -> A``, ``[child2] -> B``, ``[child3] -> A``.

The audit trail keeps all three checkpoints, each once: child3 ended before
the root and arrived after it, so A writes its checkpoint as the row it
would have been, marked ``arrived_late``. Before the late-span rule was
about when a span ended, child3's "step 3" was lost (a late span that
changed no total caused nothing). The task row counts all three calls once,
B's included, also when a retry brings child3 to B as well (the recount
of its model-call rows); before it, the row held what A received.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from replica_harness import Cluster, db
from tests.core._trees import SpanSpec, stamp_trees

from spanvisor.spans import conventions as cv
from spanvisor.spans.data import SpanEventData

pytestmark = pytest.mark.slow

TASK = "T-split-late"


def _task() -> list[SpanSpec]:
    trace, root_id = "e1" * 16, "00000000000000e0"
    t0 = time.time_ns() - 60_000_000_000
    root = SpanSpec(trace, root_id, None, "invoke_agent", t0, t0 + 50_000_000_000)
    root.start_attrs = {cv.TASK_NAME: "Split late", cv.TASK_ID: TASK, cv.AGENT_ID: "rivet"}
    specs = [root]
    for i in range(3):
        start = t0 + (i + 1) * 5_000_000_000
        c = SpanSpec(trace, f"{i + 1:016x}", root_id, "step", start, start + 2_000_000_000)
        c.events = [SpanEventData(cv.EVENT_CHECKPOINT, start + 1, {"message": f"step {i + 1}"})]
        c.start_attrs = {cv.GEN_AI_OPERATION: "chat", cv.GEN_AI_INPUT: 100 * (i + 1), cv.GEN_AI_OUTPUT: 1}
        specs.append(c)
    stamp_trees(specs)
    return specs


def test_a_split_task_keeps_every_checkpoint_once(tmp_path: Path, pg_server: Any) -> None:
    cluster = Cluster.start(tmp_path, pg_server.database(), 2, "split")
    try:
        root, c1, c2, c3 = (s.data(None, stamped=True) for s in _task())
        cluster.send(0, [c1, root])
        cluster.flush()
        cluster.send(1, [c2])
        cluster.flush()
        cluster.send(0, [c3])
        cluster.flush()
        cluster.wait_final([TASK])
        rows = db(
            cluster.db_url,
            "SELECT message, source, arrived_late FROM agent_checkpoints"
            " WHERE task_id = $1 AND source IN ('event', 'model_call') ORDER BY time_ns, source",
            TASK,
        )
        got = [(r["message"], r["source"], r["arrived_late"]) for r in rows]
        events = [(m, late) for m, src, late in got if src == "event"]
        assert events == [("step 1", False), ("step 2", False), ("step 3", True)], got
        assert sum(1 for _, src, _ in got if src == "model_call") == 3, got
        # One correction row says it, with the fact it kept.
        corrected = db(
            cluster.db_url, "SELECT attributes FROM agent_checkpoints WHERE task_id = $1 AND kind = 'corrected'", TASK
        )
        assert len(corrected) == 1
        # The task row ends finished, counting every call once, B's included (the recount).
        totals = "SELECT status, input_tokens, output_tokens FROM agent_tasks WHERE task_id = $1"
        [task] = db(cluster.db_url, totals, TASK)
        assert (task["status"], task["input_tokens"], task["output_tokens"]) == ("complete", 600, 3)
        # The other replica's copy of child3 (a Collector retry to B) is the same rows: none twice.
        before = db(cluster.db_url, "SELECT count(*) AS n FROM agent_checkpoints WHERE task_id = $1", TASK)
        cluster.send(1, [c3])
        cluster.flush()
        after = db(cluster.db_url, "SELECT count(*) AS n FROM agent_checkpoints WHERE task_id = $1", TASK)
        steps = db(
            cluster.db_url,
            "SELECT count(*) AS n FROM agent_checkpoints WHERE task_id = $1 AND source = 'event'",
            TASK,
        )
        assert steps[0]["n"] == 3 and after[0]["n"] >= before[0]["n"]
        [task] = db(cluster.db_url, totals, TASK)
        assert (task["input_tokens"], task["output_tokens"]) == (600, 3)  # the retried call is not counted twice
    finally:
        cluster.close()
