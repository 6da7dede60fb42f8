"""A correction after a task's end (TaskCorrected, the late-span rule) on the
fake Slack: the finished parent is re-rendered with the corrected totals
(still finished), and the thread says what changed, once."""

from __future__ import annotations

from slack_support import run, slack_env
from tests.core._late import late_call_events

FAST = {"slack_update_interval_s": 0.0, "slack_reply_interval_s": 0.0, "slack_channel_interval_s": 0.0}


def test_a_late_call_corrects_the_parent_and_says_so_in_the_thread() -> None:
    events = late_call_events(artifact=True)
    assert [e.kind for e in events][-2:] == ["TaskFinished", "TaskCorrected"]

    async def main() -> None:
        async with slack_env(**FAST) as env:
            await env.send(*events[:-1])
            assert await env.sink.force_flush(20)
            [parent] = env.fake.parents()
            shown = f"{parent.text} {parent.blocks} {parent.attachments}"
            assert "1,000" in shown and "6,000" not in shown
            await env.send(events[-1])
            await env.send(events[-1])  # delivered twice: said once
            assert await env.sink.force_flush(20)
            [parent] = env.fake.parents()
            shown = f"{parent.text} {parent.blocks} {parent.attachments}"
            assert "6,000" in shown and "complete" in shown.lower()
            replies = [f"{m.text} {m.blocks}" for m in env.fake.thread(parent)]
            said = [r for r in replies if "corrected: +5,000 input tokens" in r]
            assert len(said) == 1, replies
            assert "from a call that ended after the task" in said[0] and "+1 artifact" in said[0]

    run(main())
