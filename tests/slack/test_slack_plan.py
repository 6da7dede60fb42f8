"""The parent's steps as Slack's native plan block, and the fall back to text.

Payloads are checked by the fake Slack's own rules (tests/fakes/slack_blocks);
delivery runs the real Transport and Deliverer against the fake over HTTP,
wired as SlackSink.start wires them when SPANVISOR_SLACK_PLAN is set: one
PlanSwitch shared by the Look and the PlanFallback retry strategy.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import pytest
from slack_support import run, slack_config, until
from tests.fakes.slack_api import FakeSlack
from tests.fakes.slack_blocks import InvalidBlocks, message_error, validate_attachments, validate_blocks
from tests.fakes.slack_methods import TEXT_UPDATE, Answer, error
from tests.taskscript import TaskScript

from spanvisor.chat.retry import Failure
from spanvisor.events import TaskView
from spanvisor.sink import MonotonicClock
from spanvisor.statestores.memory import InMemoryStateStore
from spanvisor.stats import PipelineStats
from spanvisor_slack.blocks import Look, parent_payload
from spanvisor_slack.plan import MAX_CARDS, PlanFallback, PlanSwitch, card_statuses
from spanvisor_slack.record import SlackTaskRecord
from spanvisor_slack.retry import default_strategies
from spanvisor_slack.settings import SETTINGS
from spanvisor_slack.transport import SlackClient, Transport
from spanvisor_slack.worker import Deliverer

STEPS = ("Read the logs", "Correlate <!channel> sensors", "Write the report")


def _view(
    status: str = "working", step: str | None = STEPS[1], steps: tuple[str, ...] = STEPS, seq: int = 5
) -> TaskView:
    return TaskView(
        task_id="task-plan",
        trace_id="0af7651916cd43dd8448eb211c80319c",
        root_span_id="b7ad6b7169203331",
        agent_id="rivet",
        task_name="Diagnose F47",
        status=status,  # type: ignore[arg-type]
        step=step,
        steps=steps,
        started_ns=1_760_000_000_000_000_000,
        updated_ns=1_760_000_001_000_000_000,
        seq=seq,
    )


def _plan(payload: dict[str, Any]) -> dict[str, Any] | None:
    plans = [b for b in payload["blocks"] if b["type"] == "plan"]
    assert len(plans) <= 1
    return plans[0] if plans else None


def _ids(payload: dict[str, Any]) -> set[str]:
    blocks = [*payload["blocks"], *(b for a in payload.get("attachments", []) for b in a["blocks"])]
    return {b["block_id"] for b in blocks} | {c["block_id"] for b in blocks for c in b.get("tasks", [])}


# --- the plan's content ------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "step", "expected"),
    [
        ("working", STEPS[1], ["complete", "in_progress", "pending"]),
        ("waiting", STEPS[0], ["in_progress", "pending", "pending"]),
        ("error", STEPS[1], ["complete", "error", "pending"]),
        ("cancelled", STEPS[2], ["complete", "complete", "pending"]),
        ("complete", STEPS[1], ["complete", "complete", "complete"]),
        ("working", "not one of the steps", ["pending", "pending", "pending"]),
        ("working", None, ["pending", "pending", "pending"]),
    ],
)
def test_each_step_gets_the_status_slack_shows(status: str, step: str | None, expected: list[str]) -> None:
    view = _view(status, step)
    assert [s for _, s in card_statuses(view)] == expected
    plan = _plan(parent_payload(view, Look(plan=PlanSwitch("on")), view.updated_ns))
    assert plan is not None
    assert [c["status"] for c in plan["tasks"]] == expected
    assert [c["task_id"] for c in plan["tasks"]] == ["step-0", "step-1", "step-2"]


def test_a_step_without_a_list_is_one_card_and_no_steps_is_no_plan() -> None:
    alone = _view(step="Thinking", steps=())
    plan = _plan(parent_payload(alone, Look(plan=PlanSwitch("on")), alone.updated_ns))
    assert plan is not None and [(c["title"], c["status"]) for c in plan["tasks"]] == [("Thinking", "in_progress")]
    none = _view(step=None, steps=())
    payload = parent_payload(none, Look(plan=PlanSwitch("on")), none.updated_ns)
    assert _plan(payload) is None


def test_the_plan_replaces_the_text_line_and_escapes_step_names() -> None:
    view = _view()
    with_plan = parent_payload(view, Look(plan=PlanSwitch("auto")), view.updated_ns)
    text = json.dumps(with_plan, ensure_ascii=False)
    assert "<!channel>" not in text and "&lt;!channel&gt;" in text
    assert "*Steps*" not in text
    assert _plan(with_plan)["title"] == "Steps (2/3)"  # type: ignore[index]
    for look in (Look(), Look(plan=PlanSwitch("off"))):
        plain = parent_payload(view, look, view.updated_ns)
        assert _plan(plain) is None
        assert "*Steps*" in json.dumps(plain)


def test_a_long_plan_shows_a_window_around_the_current_step() -> None:
    steps = tuple(f"step number {i}" for i in range(60))
    view = _view(step=steps[40], steps=steps)
    plan = _plan(parent_payload(view, Look(plan=PlanSwitch("on")), view.updated_ns))
    assert plan is not None
    cards = plan["tasks"]
    assert len(cards) == MAX_CARDS
    assert plan["title"] == "Steps (41/60)"
    current = [c for c in cards if c["status"] == "in_progress"]
    assert [c["task_id"] for c in current] == ["step-40"]
    assert cards[0]["status"] == "complete" and cards[-1]["status"] == "pending"


def test_block_ids_are_new_with_every_version_of_the_message() -> None:
    look = Look(plan=PlanSwitch("on"))
    first = parent_payload(_view(seq=5), look, 0)
    second = parent_payload(_view(seq=6, step=STEPS[2]), look, 0)
    assert _ids(first) and not _ids(first) & _ids(second)


@pytest.mark.parametrize("mode", ["on", "off"])
def test_every_parent_passes_slacks_rules(mode: str) -> None:
    look = Look(plan=PlanSwitch(mode))
    huge = "x" * 5000
    cases = [
        _view(),
        _view(status="complete"),
        _view(steps=tuple(f"{huge} {i}" for i in range(100)), step=f"{huge} 50"),
        _view(steps=("",), step=""),
        _view(steps=tuple(f"<@U{i}> & <https://evil|click>" for i in range(30)), step="<@U7> & <https://evil|click>"),
    ]
    for view in cases:
        payload = parent_payload(view, look, view.updated_ns)
        assert message_error({"channel": "C1", **payload}, TEXT_UPDATE) is None, json.dumps(payload)[:500]


@pytest.mark.parametrize(
    ("block", "why"),
    [
        ({"type": "task_card", "task_id": "a", "title": "t", "status": "completed"}, "status"),
        ({"type": "task_card", "task_id": "a", "title": {"type": "plain_text", "text": "t"}}, "title"),
        ({"type": "task_card", "task_id": "", "title": "t"}, "task_id"),
        ({"type": "task_card", "task_id": "a", "title": "t" * 256}, "title"),
        ({"type": "task_card", "task_id": "a", "title": "t", "text": "x"}, "does not take"),
        ({"type": "plan", "title": "p", "tasks": [{"type": "section", "text": "x"}]}, "task_card"),
        ({"type": "plan", "title": "p", "tasks": [{"type": "task_card", "task_id": "a", "title": "t"}] * 2}, "unique"),
        (
            {
                "type": "plan",
                "title": "p",
                "tasks": [{"type": "task_card", "task_id": str(i), "title": "t"} for i in range(51)],
            },
            "at most",
        ),
        ({"type": "plan", "title": "", "tasks": []}, "title"),
    ],
)
def test_the_fake_rejects_what_slack_would(block: dict[str, Any], why: str) -> None:
    with pytest.raises(InvalidBlocks, match=why):
        validate_blocks([block])


def test_the_fake_wants_plans_at_the_top_level_with_unique_ids() -> None:
    card = {"type": "task_card", "task_id": "a", "title": "t", "block_id": "dup"}
    with pytest.raises(InvalidBlocks, match="top level"):
        validate_attachments([{"blocks": [{"type": "plan", "title": "p", "tasks": [card]}]}])
    with pytest.raises(InvalidBlocks, match="unique"):
        validate_blocks([{"type": "divider", "block_id": "dup"}, {"type": "plan", "title": "p", "tasks": [card]}])


# --- the switch ---------------------------------------------------------------------


def test_auto_falls_back_once_and_on_or_off_never() -> None:
    auto = PlanSwitch("auto")
    strategy = PlanFallback(auto)
    rejected = Failure("chat.update", "invalid_blocks")
    # No plan built yet: the rejection is not about plans.
    assert strategy.decide(rejected) is None and auto.active
    parent_payload(_view(), Look(plan=auto), 0)
    decision = strategy.decide(rejected)
    assert decision is not None and decision.kind == "retry" and decision.delay_s == 0
    assert not auto.active
    assert strategy.decide(rejected) is None  # once: the next one is a permanent error as before
    assert strategy.decide(Failure("chat.update", "msg_too_long")) is None
    for mode in ("on", "off"):
        switch = PlanSwitch(mode)
        parent_payload(_view(), Look(plan=switch), 0)
        assert PlanFallback(switch).decide(rejected) is None
        assert switch.active == (mode == "on")
    with pytest.raises(ValueError):
        PlanSwitch("sometimes")


def test_the_setting_defaults_to_auto_and_takes_only_its_values() -> None:
    assert slack_config("http://127.0.0.1:1/api/").get("slack_plan") == "auto"
    assert slack_config("http://127.0.0.1:1/api/", slack_plan="OFF").get("slack_plan") == "off"
    [setting] = [s for s in SETTINGS if s.name == "slack_plan"]
    assert setting.env == "SPANVISOR_SLACK_PLAN"
    with pytest.raises(ValueError):
        setting.parse("maybe")


# --- delivery over HTTP -----------------------------------------------------------------


class PlanlessSlack(FakeSlack):
    """A workspace whose Slack does not take plan blocks: invalid_blocks, as for any unknown block."""

    async def _answer(self, method: str, token: str | None, args: dict[str, Any]) -> Answer:
        blocks = args.get("blocks")
        native = isinstance(blocks, list) and any(
            isinstance(b, dict) and b.get("type") in ("plan", "task_card") for b in blocks
        )
        if method.startswith("chat.") and native:
            return error("invalid_blocks")
        return await super()._answer(method, token, args)


@dataclass
class Wire:
    fake: FakeSlack
    switch: PlanSwitch
    deliverer: Deliverer
    stats: PipelineStats

    async def task(self, views: list[TaskView]) -> SlackTaskRecord:
        """Deliver these views of one task in order, each once Slack has the one before."""
        st = SlackTaskRecord(views[0], "#agents")
        worker = asyncio.create_task(self.deliverer.run(st))
        for i, view in enumerate(views):
            if i:
                st.offer(view, final=view.status in ("complete", "error", "cancelled"))
                st.wake.set()
            await until(lambda: (st.ref is not None and not st.dirty) or st.dead, what="the view delivered")
            if st.dead:
                break
        st.finished = True
        st.wake.set()
        await asyncio.wait_for(worker, 10)
        return st


@asynccontextmanager
async def wired(mode: str, fake: FakeSlack | None = None) -> AsyncIterator[Wire]:
    fake = fake or FakeSlack(channel_rate=100.0, channel_burst=100)
    await fake.start()
    switch = PlanSwitch(mode)
    stats = PipelineStats()
    client = SlackClient("xoxb-plan", fake.base_url, 5.0)
    transport = Transport(client, MonotonicClock(), 0.0, strategies=(PlanFallback(switch), *default_strategies()))
    deliverer = Deliverer(
        transport=transport,
        store=InMemoryStateStore(),
        stats=stats,
        look=Look(plan=switch),
        owner="test-replica",
        clock=MonotonicClock(),
        update_interval_s=0.0,
        reply_interval_s=0.0,
    )
    try:
        yield Wire(fake, switch, deliverer, stats)
    finally:
        await client.close()
        await fake.stop()


def _script() -> list[TaskView]:
    s = TaskScript.new("task-wire", "rivet", task_name="Diagnose F47", steps=STEPS)
    views = [s.started().task]
    for step in STEPS:
        views.append(s.checkpoint("working", step=step).task)
    views.append(s.finished("complete").task)
    return views


def test_auto_posts_and_edits_a_plan_with_new_block_ids_each_time() -> None:
    async def go() -> None:
        async with wired("auto") as w:
            st = await w.task(_script())
            assert not st.dead
            [parent] = w.fake.parents()
            plan = _plan({"blocks": parent.blocks})
            assert plan is not None and [c["status"] for c in plan["tasks"]] == ["complete"] * 3
            sends = [c for c in w.fake.calls if c.method in ("chat.postMessage", "chat.update")]
            assert all(c.response["ok"] for c in sends)
            # Every call for the parent carried a plan, and no two shared a block id.
            versions = [_ids(c.args) for c in sends]
            assert len(versions) >= 3 and all(_plan(c.args) for c in sends)
            for a, b in itertools.pairwise(versions):
                assert not a & b
            assert w.switch.active

    run(go())


def test_auto_falls_back_to_text_once_for_the_workspace() -> None:
    async def go() -> None:
        async with wired("auto", PlanlessSlack(channel_rate=100.0, channel_burst=100)) as w:
            first = await w.task(_script())
            second = await w.task([dataclasses.replace(v, task_id="task-two") for v in _script()])
            assert not first.dead and not second.dead
            assert not w.switch.active
            rejected = [c for c in w.fake.calls if c.response.get("error") == "invalid_blocks"]
            assert len(rejected) == 1  # once, then remembered
            assert rejected[0].method == "chat.postMessage"
            parents = w.fake.parents()
            assert len(parents) == 2
            for parent in parents:
                text = json.dumps(parent.attachments)
                assert "*Steps*" in text and _plan({"blocks": parent.blocks}) is None
            assert w.stats.total("dropped_total") == 0

    run(go())


def test_on_keeps_plans_and_reports_a_rejection_like_any_other() -> None:
    async def go() -> None:
        async with wired("on", PlanlessSlack(channel_rate=100.0, channel_burst=100)) as w:
            st = await w.task(_script()[:2])
            assert st.dead and w.switch.active
            assert w.fake.parents() == []
            assert w.stats.total("dropped_total") >= 1

    run(go())
