"""Clicks over HTTP: signed requests from the fake Slack to the admin port's
``/slack/interactions``, through a real pipeline, to the control log and an
ephemeral answer."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from interact_support import SECRET, live
from slack_support import run, until

from spanvisor.canonical import approval_digest
from spanvisor.events import HumanIntervention, run_id_of
from spanvisor_slack import actions as A
from spanvisor_slack.actions import button_value


def test_a_signed_click_approves_and_answers_ephemerally() -> None:
    async def go() -> None:
        async with live() as env:
            env.ask("T1", "a1")
            parent = await env.awaiting("T1", "a1")
            sent = await env.one.sender.interaction(  # type: ignore[union-attr]
                env.click(parent, "T1", A.APPROVE, "a1", user_id="U0ALICE", user_name="alice")
            )
            assert sent.status == 200 and sent.text == ""
            await until(env.answers, 10, "the ephemeral answer")
            decisions = await env.one.decisions("T1")
            assert [(d.action, d.actor_id, d.actor_name, d.approval_id, d.source) for d in decisions] == [
                ("approve", "U0ALICE", "alice", "a1", "slack")
            ]
            post = env.fake.interactions.responses[0].body
            assert post["response_type"] == "ephemeral" and post["replace_original"] is False
            assert post["text"].startswith("✅ Approved `a1`")
            await until(env.one.interventions, 10, "the HumanIntervention")
            [ev] = env.one.interventions()
            assert ev.outcome == "applied" and ev.decision == decisions[0] and ev.known

    run(go(), 60)


@pytest.mark.parametrize("how", ["tampered", "stale", "unsigned", "other secret"])
def test_a_bad_signature_is_refused_and_changes_nothing(how: str) -> None:
    async def go() -> None:
        async with live() as env:
            env.ask("T2", "a1")
            parent = await env.awaiting("T2", "a1")
            payload = env.click(parent, "T2", A.APPROVE, "a1")
            sender = env.one.sender
            assert sender is not None
            kw = {
                "tampered": {"tamper": True},
                "stale": {"age_s": 301.0},
                "unsigned": {"signed": False},
                "other secret": {"secret": SECRET[::-1]},
            }[how]
            sent = await sender.interaction(payload, **kw)
            assert sent.status == 401
            command = await sender.command(env.fake.interactions.slash_command("status"), **kw)
            assert command.status == 401
            # The same request signed right goes through: nothing was recorded before it.
            await asyncio.sleep(0.3)
            assert await env.one.decisions("T2") == []
            assert env.answers() == [] and env.one.interventions() == []
            assert (await sender.interaction(payload)).status == 200
            await until(env.answers, 10, "the answer to the good request")
            assert len(await env.one.decisions("T2")) == 1

    run(go(), 60)


def test_a_replayed_payload_is_acked_and_applied_once() -> None:
    async def go() -> None:
        async with live() as env:
            env.ask("T3", "a1")
            parent = await env.awaiting("T3", "a1")
            payload = env.click(parent, "T3", A.REJECT, "a1")
            sender = env.one.sender
            assert sender is not None
            for _ in range(3):  # Slack retrying, or an attacker replaying inside the window
                assert (await sender.interaction(payload)).status == 200
            await until(env.answers, 10, "the answer")
            await env.one.pipeline.control.decisions("T3")
            # The intervention reaches the sinks after the answer is sent; wait for it, then
            # give a doubled one the same time to show.
            await until(env.one.interventions, 10, "the HumanIntervention")
            await asyncio.sleep(0.5)
            assert [d.action for d in await env.one.decisions("T3")] == ["reject"]
            assert len(env.answers()) == 1, env.answers()
            assert env.answers()[0].startswith("❌ Rejected")
            assert [e.outcome for e in env.one.interventions()] == ["applied"]

    run(go(), 60)


def test_someone_not_an_approver_is_told_and_audited_as_denied() -> None:
    async def go() -> None:
        async with live(slack_approvers="U0ALICE, @oncall") as env:
            env.fake.interactions.groups["S0ONCALL"] = ("oncall", ["U0CAROL"])
            env.ask("T4", "a1")
            parent = await env.awaiting("T4", "a1")
            sender = env.one.sender
            assert sender is not None
            await sender.interaction(env.click(parent, "T4", A.APPROVE, "a1", user_id="U0MALLORY", user_name="m"))
            await until(env.answers, 10, "the refusal")
            assert env.answers()[0].startswith("🚫 You are not allowed to approve")
            await until(env.one.interventions, 10, "the denied intervention")
            [denied] = env.one.interventions()
            assert denied.outcome == "denied" and denied.reason == "not an approver"
            assert denied.decision.actor_id == "U0MALLORY"
            assert await env.one.decisions("T4") == []
            # A member of @oncall may: the group is read with usergroups.users.list.
            await sender.interaction(env.click(parent, "T4", A.APPROVE, "a1", user_id="U0CAROL", user_name="carol"))
            await until(lambda: len(env.answers()) == 2, 10, "carol's answer")
            assert env.answers()[1].startswith("✅ Approved")
            assert [d.actor_id for d in await env.one.decisions("T4")] == ["U0CAROL"]
            assert env.fake.calls_to("usergroups.users.list", ok=True)

    run(go(), 60)


def test_a_second_approver_is_told_who_decided_first() -> None:
    async def go() -> None:
        async with live() as env:
            env.ask("T5", "a1")
            parent = await env.awaiting("T5", "a1")
            sender = env.one.sender
            assert sender is not None
            await sender.interaction(env.click(parent, "T5", A.APPROVE, "a1", user_id="U0ALICE"))
            await until(env.answers, 10, "alice's answer")
            await sender.interaction(env.click(parent, "T5", A.REJECT, "a1", user_id="U0BOB", user_name="bob"))
            await until(lambda: len(env.answers()) == 2, 10, "bob's answer")
            assert env.answers()[1] == "☑️ Not changed: already approved by <@U0ALICE>."
            assert [d.actor_id for d in await env.one.decisions("T5")] == ["U0ALICE"]

    run(go(), 60)


def test_the_same_click_on_two_replicas_is_recorded_and_applied_once() -> None:
    async def go() -> None:
        async with live(replicas=2) as env:
            env.ask("T6", "a1")
            parent = await env.awaiting("T6", "a1")
            payload = env.click(parent, "T6", A.APPROVE, "a1")
            a, b = env.replicas
            assert a.sender is not None and b.sender is not None
            assert (await a.sender.interaction(payload)).status == 200
            await until(env.answers, 10, "the answer")
            assert (await b.sender.interaction(payload)).status == 200

            def applied() -> list[HumanIntervention]:
                return [e for r in env.replicas for e in r.interventions() if e.outcome == "applied"]

            # The intervention reaches the sinks after the answer is sent; wait for it, then
            # give a doubled one the same time to show.
            await until(applied, 10, "the applied intervention")
            await asyncio.sleep(0.5)
            assert len(await a.decisions("T6")) == 1 and len(await b.decisions("T6")) == 1
            assert len(applied()) == 1 and len(env.answers()) == 1

    run(go(), 60)


def test_the_comment_modal_approves_with_a_comment(caplog: pytest.LogCaptureFixture) -> None:
    async def go() -> None:
        async with live() as env:
            env.ask("T7", "a1", question="Drop table <!channel>?")
            parent = await env.awaiting("T7", "a1")
            sender = env.one.sender
            assert sender is not None
            await sender.interaction(env.click(parent, "T7", A.COMMENT, "a1"))
            await until(lambda: env.fake.interactions.views, 10, "the modal")
            [view] = env.fake.interactions.views.values()
            assert view["callback_id"] == A.MODAL_CALLBACK
            assert "&lt;!channel&gt;" in view["blocks"][0]["text"]["text"]
            values = {
                A.MODAL_CHOICE_BLOCK: {
                    A.MODAL_CHOICE_ACTION: {"type": "radio_buttons", "selected_option": {"value": "approve"}}
                },
                A.MODAL_COMMENT_BLOCK: {A.MODAL_COMMENT_ACTION: {"type": "plain_text_input", "value": "ok <@U0BOB>"}},
            }
            submission = env.fake.interactions.view_submission(view["id"], values)
            assert (await sender.interaction(submission)).status == 200
            await until(lambda: env.fake.interactions.ephemerals, 10, "the ephemeral answer")
            [d] = await env.one.decisions("T7")
            assert (d.action, d.comment, d.approval_id) == ("approve", "ok <@U0BOB>", "a1")
            eph = env.fake.interactions.ephemerals[0]
            assert eph.user == "U0ALICE" and eph.channel == parent.channel
            assert SECRET not in caplog.text

    caplog.set_level(logging.DEBUG)
    run(go(), 60)


def test_a_trigger_older_than_3s_cannot_open_the_modal() -> None:
    async def go() -> None:
        async with live() as env:
            env.fake.interactions.trigger_ttl_s = 0.0
            env.ask("T8", "a1")
            parent = await env.awaiting("T8", "a1")
            sender = env.one.sender
            assert sender is not None
            await sender.interaction(env.click(parent, "T8", A.COMMENT, "a1"))
            await until(env.answers, 10, "the answer")
            assert env.answers()[0].startswith("⚠️ The comment form could not be opened")
            assert env.fake.calls_to("views.open", ok=False)[0].response["error"] == "expired_trigger_id"

    run(go(), 60)


def test_large_and_malformed_payloads() -> None:
    async def go() -> None:
        async with live() as env:
            env.ask("T9", "a1")
            parent = await env.awaiting("T9", "a1")
            sender = env.one.sender
            assert sender is not None
            huge = env.click(parent, "T9", A.APPROVE, "a1")
            huge["message"]["text"] = "x" * 600_000
            assert (await sender.interaction(huge)).status == 413
            # A big message (sent in many chunks) under the limit is read whole.
            big = env.click(parent, "T9", A.APPROVE, "a1")
            big["message"]["text"] = "y" * 300_000
            assert (await sender.interaction(big)).status == 200
            await until(env.answers, 10, "the answer to the big payload")
            for junk in (
                {"type": "block_actions", "user": {"id": "nope"}, "actions": []},
                {"type": "block_actions", "user": {"id": "U0X"}, "actions": [{"action_id": "spanvisor.approve"}]},
                {"type": "block_actions", "user": {"id": "U0X"}, "actions": [{"action_id": "x", "value": "{}"}]},
                {"type": "view_submission", "user": {"id": "U0X"}, "view": {"callback_id": "spanvisor.comment"}},
                {"type": "shortcut"},
            ):
                assert (await sender.interaction(junk)).status == 200
            assert (await sender.post("/slack/interactions", {"payload": "not json"})).status == 400
            await asyncio.sleep(0.3)
            assert len(await env.one.decisions("T9")) == 1 and len(env.answers()) == 1

    run(go(), 60)


def _button(blocks: Any, action_id: str) -> dict[str, Any] | None:
    """The button with this action_id anywhere in a message's blocks."""
    if isinstance(blocks, dict):
        if blocks.get("type") == "button" and blocks.get("action_id") == action_id:
            return blocks
        blocks = list(blocks.values())
    if isinstance(blocks, list):
        for b in blocks:
            if (found := _button(b, action_id)) is not None:
                return found
    return None


def test_the_parents_own_button_and_a_click_on_a_finished_task() -> None:
    async def go() -> None:
        async with live() as env:
            root = env.ask("T10", "a1")
            parent = await env.awaiting("T10", "a1")
            await until(lambda: _button(parent.blocks, A.APPROVE) is not None, 10, "the Approve button")
            button = _button(parent.blocks, A.APPROVE)
            ctx = root.get_span_context()
            run_id = run_id_of(f"{ctx.trace_id:032x}", f"{ctx.span_id:016x}")
            digest = approval_digest(
                agent="",
                task="T10",
                run=run_id,
                approval_id="a1",
                question="Apply migration 0007 to prod?",
                options=("approve", "reject"),
            )
            assert button is not None and button["value"] == button_value("T10", "a1", run_id, digest)
            sender = env.one.sender
            assert sender is not None
            payload = env.fake.interactions.block_actions(
                channel_id=parent.channel, message_ts=parent.ts, action_id=A.APPROVE, value=button["value"]
            )
            await sender.interaction(payload)
            await until(env.answers, 10, "the answer")
            assert env.answers()[0].startswith("✅ Approved")
            env.roots.remove(root)
            root.end()
            for _ in range(500):  # the tracker has closed the task
                view = await env.one.pipeline.control.task("T10")
                if view is not None and view.ended_ns is not None:
                    break
                await asyncio.sleep(0.02)
            await sender.interaction(env.click(parent, "T10", A.CANCEL, user_id="U0BOB"))
            await until(lambda: len(env.answers()) == 2, 10, "the refusal")
            assert env.answers()[1].startswith("⛔ Not done: the task has already finished")
            await until(lambda: [e for e in env.one.interventions() if e.outcome == "denied"], 10, "the audit")

    run(go(), 60)
