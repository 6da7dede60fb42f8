"""A finished task's progress is never stale: a task that completed shows a
full bar (an agent that reported 30 % and then finished showed "✅ complete"
beside a bar at 30 %); any other shows the last figure it reported. The
console and Slack show the same."""

from __future__ import annotations

import json
import re

from hypothesis import given
from hypothesis import strategies as st

from spanvisor.display.task import NONE, STATUS_STYLE
from spanvisor.events import TaskView
from spanvisor_console import ConsoleSink
from spanvisor_slack.blocks import Look, parent_payload

progress = st.none() | st.floats(0, 100, allow_nan=False)
statuses = st.sampled_from(sorted(STATUS_STYLE))


def _view(status: str, value: float | None) -> TaskView:
    ended = 2_000_000_000 if status in ("complete", "error", "cancelled", "lost", "evicted") else None
    return TaskView("t1", "ab" * 16, "cd" * 8, "rivet", status=status, progress=value, started_ns=1, ended_ns=ended)  # type: ignore[arg-type]


def _bars(text: str) -> list[str]:
    return re.findall(r"[▰▱]{10} (?:\d+%|" + NONE + ")", text)


@given(status=statuses, value=progress)
def test_the_bar_of_a_complete_task_is_full_and_the_others_show_what_was_reported(
    status: str, value: float | None
) -> None:
    v = _view(status, value)
    console = ConsoleSink(interval_s=3600).render_card(v, 3_000_000_000)
    slack = json.dumps(parent_payload(v, Look(), 3_000_000_000), ensure_ascii=False)
    if status == "complete":
        want = "▰▰▰▰▰▰▰▰▰▰ 100%"
    elif value is None:
        want = "▱▱▱▱▱▱▱▱▱▱ " + NONE
    else:
        filled = round(value / 100 * 10)
        want = "▰" * filled + "▱" * (10 - filled) + f" {value:.0f}%"
    assert _bars(console) == [want], console
    assert set(_bars(slack)) == {want}, slack
