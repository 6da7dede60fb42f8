"""Reminders of open requests, as a property over any sequence of asks,
answers (in the task's view, or a decision noted before it), a cancel, the
task's end and time passing: a reminder is said only for a request open at
that moment, never before its interval, at most once per request; and every
request left open for its whole interval on a live task is reminded."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import example, given, settings
from hypothesis import strategies as st
from tests.taskscript import BASE_NS

from spanvisor.events import ApprovalRequest, Decision, TaskView
from spanvisor_slack.record import SlackTaskRecord
from spanvisor_slack.remind import Reminders

AFTER = 60.0
REQUESTS = 4

ops = st.lists(
    st.one_of(
        st.tuples(st.just("ask"), st.integers(0, REQUESTS - 1)),
        st.tuples(st.just("answer"), st.integers(0, REQUESTS - 1)),
        st.tuples(st.just("note"), st.integers(0, REQUESTS - 1)),
        st.tuples(st.just("advance"), st.floats(0, 2 * AFTER)),
        st.tuples(st.just("cancel"), st.just(0)),
        st.tuples(st.just("end"), st.just(0)),
    ),
    max_size=40,
)


@settings(max_examples=300, deadline=None)
@given(ops)
@example([("advance", 4.320639697407252), ("ask", 0)])  # float sums: due exactly at its interval
def test_a_reminder_is_said_only_for_an_open_request_once_and_never_early(steps: list[tuple[str, float]]) -> None:
    view = TaskView(
        task_id="T", trace_id="0" * 32, root_span_id="r", agent_id="a", started_ns=BASE_NS, updated_ns=BASE_NS
    )
    rec = SlackTaskRecord(view=view, channel="#agents")
    reminders = Reminders(AFTER, ("U0ALICE",))
    now = 0.0
    asked_at: dict[str, float] = {}
    closed: set[str] = set()  # answered: never reopened (the tracker's rule)
    said: list[str] = []

    def is_open(aid: str) -> bool:
        v = rec.shown_view
        return v.ended_ns is None and not v.cancel_requested and any(r.approval_id == aid for r in v.approvals)

    def tick() -> None:
        reminders.track(rec, now)
        if reminders.due(rec) <= now:
            for line in reminders.take(rec, now):
                aid = line.key.removeprefix("remind:") if line.key else ""
                assert is_open(aid), f"reminded {aid}, not open"
                assert now - asked_at[aid] >= AFTER - 1e-9, "reminded early"  # float sums
                assert aid not in said, "reminded twice"
                assert line.mentions == ("<@U0ALICE>",)
                said.append(aid)

    for op, arg in steps:
        aid = f"a-{int(arg)}"
        if op == "ask" and aid not in closed and aid not in asked_at:
            asked_at[aid] = now
            rec.view = replace(rec.view, approvals=(*rec.view.approvals, ApprovalRequest(aid, f"Q {aid}?")))
        elif op == "answer" and aid in asked_at:
            closed.add(aid)
            rec.view = replace(rec.view, approvals=tuple(r for r in rec.view.approvals if r.approval_id != aid))
        elif op == "note" and aid in asked_at:
            closed.add(aid)
            rec.note_decision(Decision(f"i-{aid}", "T", "approve", "U0ALICE", BASE_NS, approval_id=aid))
        elif op == "advance":
            now += arg
        elif op == "cancel":
            rec.view = replace(rec.view, cancel_requested=True)
        elif op == "end":
            rec.view = replace(rec.view, ended_ns=BASE_NS + 1)
            rec.finished = True
        tick()
    # Whatever is still open on a live task is reminded once its interval is over.
    now += AFTER
    tick()
    still_open = [a for a in asked_at if is_open(a)]
    assert set(still_open) <= set(said), (still_open, said)
