"""One agent session per task across two replicas (issue 67).

Two Slack sinks share one state store and one fake Slack, as two ``serve``
replicas do, with ``SPANVISOR_SLACK_AGENT_SESSIONS`` on. One replica holds
each task whole (its name, its request for approval, its end); the other
holds only some of its children (no name, never finished, a ``seq`` of its
own), and their events interleave. Each task gets one parent and one
session (Slack keys a session by its thread), whose status ends ``closed``
and is never set again after that, whichever replica set it.
"""

from __future__ import annotations

import asyncio

from slack_support import run, slack_env
from tests.fakes.slack_api import FakeSlack
from tests.taskscript import TaskScript

from spanvisor.events import ApprovalRequest
from spanvisor.statestores.memory import InMemoryStateStore
from spanvisor_slack.sessions import NAMESPACE, session_key

FAST = {"slack_update_interval_s": 0.0, "slack_reply_interval_s": 0.0, "slack_channel_interval_s": 0.0}


def test_two_replicas_make_one_session_per_task_that_ends_closed() -> None:
    async def main() -> None:
        fake = FakeSlack(channel_rate=200.0, channel_burst=200)
        await fake.start()
        store = InMemoryStateStore()
        try:
            kw = {"fake": fake, "store": store, "slack_agent_sessions": "on", "flush_s": 30, **FAST}
            async with slack_env(**kw) as a, slack_env(**kw) as b:
                names = {f"R{i}": f"Replicated {i}" for i in range(4)}
                for task_id, name in names.items():
                    whole, part = TaskScript.new(task_id, task_name=name), TaskScript.new(task_id)
                    req = ApprovalRequest(approval_id=f"a-{task_id}", question=f"Go on with {name}?")
                    await a.send(whole.started())
                    await b.send(part.started(), part.checkpoint(progress=10.0))
                    await a.send(whole.checkpoint("awaiting_approval", approvals=(req,)))
                    await b.send(part.checkpoint(progress=20.0))
                    await asyncio.gather(
                        a.send(whole.checkpoint("working", approvals=()), whole.finished("complete")),
                        b.send(part.checkpoint(progress=30.0), part.checkpoint(progress=40.0)),
                    )
                for _ in range(2):
                    assert await a.sink.force_flush(30) and await b.sink.force_flush(30)
            parents = fake.parents("#agents")
            assert len(parents) == len(names)
            sessions = fake.agents.sessions
            assert set(sessions) == {(p.channel, p.ts) for p in parents}  # one each, on its own thread
            for p in parents:
                s = sessions[(p.channel, p.ts)]
                assert s.status == "closed", (p.text, s.statuses)
                first = s.statuses.index("closed")
                assert set(s.statuses[first:]) == {"closed"}, s.statuses  # never reopened
                said = await store.get(NAMESPACE, session_key(p.channel, p.ts))
                assert said is not None and said["task_id"] in names and str(names[said["task_id"]]) in str(p.text)
        finally:
            await fake.stop()

    run(main(), timeout=120)
