"""The parent shows the newest view by the tracker's sequence, not by time:
clock skew and equal timestamps cannot keep an older view."""

from __future__ import annotations

from dataclasses import replace

import pytest
from slack_support import run, slack_env
from tests.taskscript import TaskScript

from spanvisor.events import Checkpoint, Event, TaskView
from spanvisor_slack.record import SlackTaskRecord

FAST = {
    "slack_update_interval_s": 0.0,
    "slack_reply_interval_s": 0.0,
    "slack_channel_interval_s": 0.0,
    "slack_milestones": "",
    "channel_rate": 100.0,
}


def _earlier(ev: Checkpoint, by_ns: int) -> Checkpoint:
    """The same event stamped ``by_ns`` earlier (a skewed clock)."""
    return replace(ev, time_ns=ev.time_ns - by_ns, task=replace(ev.task, updated_ns=ev.task.updated_ns - by_ns))


async def _shown(*batches: list[Event]) -> str:
    async with slack_env(**FAST) as env:
        for batch in batches:
            await env.send(*batch)
        assert await env.sink.force_flush(20)
        (parent,) = env.fake.parents()
        return str(parent.attachments)


def test_a_later_view_with_a_smaller_timestamp_is_shown() -> None:
    task = TaskScript.new("skew")
    started = task.started()
    old = task.checkpoint(progress=40.0, message="step A")
    new = _earlier(task.checkpoint(progress=60.0, message="step B"), 5_000_000_000)
    assert new.task.seq > old.task.seq and new.time_ns < old.time_ns
    shown = run(_shown([started, old], [new]))
    assert "step B" in shown and "step A" not in shown


def test_an_older_view_arriving_late_does_not_replace_a_newer_one() -> None:
    task = TaskScript.new("late")
    started = task.started()
    old = task.checkpoint(progress=40.0, message="step A")
    new = task.checkpoint(progress=60.0, message="step B")
    shown = run(_shown([started, new], [old]))
    assert "step B" in shown and "step A" not in shown


def test_on_equal_sequences_the_later_arrival_wins() -> None:
    # Until every tracker path fills seq in, it is 0 everywhere.
    task = TaskScript.new("ties")
    started = task.started()
    first = task.checkpoint(progress=40.0, message="step A")
    second = _earlier(task.checkpoint(progress=60.0, message="step B"), 5_000_000_000)
    events = [replace(e, task=replace(e.task, seq=0)) for e in (started, first, second)]
    shown = run(_shown(events[:2], events[2:]))
    assert "step B" in shown


def test_the_finished_view_wins_over_any_later_non_final_one() -> None:
    async def main() -> None:
        async with slack_env(**FAST) as env:
            task = TaskScript.new("fin")
            started, finished = task.started(), task.finished("complete")
            straggler = task.checkpoint(progress=10.0, message="late checkpoint")  # higher seq, not final
            await env.send(started, finished, straggler)
            assert await env.sink.force_flush(20)
            (parent,) = env.fake.parents()
            assert "complete" in parent.blocks[0]["text"]["text"]
            assert "late checkpoint" not in str(parent.attachments)

    run(main())


def _view(seq: int) -> TaskView:
    return TaskView(task_id="t", trace_id="0" * 32, root_span_id="0" * 16, agent_id="a", seq=seq)


@pytest.mark.parametrize(
    ("held", "held_final", "offered", "offered_final", "kept"),
    [
        (3, False, 4, False, True),
        (3, False, 3, False, True),  # a tie: the later arrival
        (3, False, 2, False, False),
        (3, False, 1, True, True),  # final beats non-final whatever the seq
        (3, True, 9, False, False),  # non-final never replaces final
        (3, True, 4, True, True),
        (3, True, 2, True, False),
    ],
)
def test_which_view_a_record_keeps(held: int, held_final: bool, offered: int, offered_final: bool, kept: bool) -> None:
    rec = SlackTaskRecord(_view(held), "#agents", view_final=held_final)
    version = rec.version
    assert rec.offer(_view(offered), offered_final) is kept
    assert rec.view.seq == (offered if kept else held)
    assert rec.version == version + (1 if kept else 0)
