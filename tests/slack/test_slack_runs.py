"""A task id reused by a new root is a new run, with a Slack parent of its
own: an orchestrator's retry of ``job-42`` never edits run 1's message (which
stays failed) and never inherits its buttons or decisions."""

from __future__ import annotations

from slack_support import run, slack_env
from tests.core._reused import two_runs

FAST = {"slack_update_interval_s": 0.0, "slack_reply_interval_s": 0.0, "slack_channel_interval_s": 0.0}


def test_each_run_of_a_reused_task_id_gets_its_own_parent() -> None:
    events = two_runs()
    runs = {e.task.run_id for e in events}
    assert len(runs) == 2 and all(runs)

    async def main() -> None:
        async with slack_env(**FAST) as env:
            await env.send(*events)
            assert await env.sink.force_flush(20)
            parents = env.fake.parents()
            assert len(parents) == 2, [p.text for p in parents]
            first, second = sorted((f"{p.text} {p.blocks}" for p in parents), key=lambda t: "attempt 2" in t)
            assert "attempt 1" in first and "· error" in first, first  # run 1 stays as it ended
            assert "attempt 2" in second and "· complete" in second, second
            metas = sorted((p.metadata or {}).get("event_payload", {}).get("run_id") for p in parents)
            assert metas == sorted(runs)

    run(main())
