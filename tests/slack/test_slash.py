"""``/spanvisor status|task|help`` over HTTP: signed slash commands, answered
ephemerally through response_url, escaped and within Block Kit's limits
(the fake checks the blocks as Slack would)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Any

from interact_support import Live, live
from slack_support import run, until
from tests.fakes.slack_store import channel_id

from spanvisor.events import run_id_of
from spanvisor.spans import conventions as cv
from spanvisor_slack.shared import Stored
from spanvisor_slack.slash import MAX_LISTED, SlashAnswers


async def _ask(
    env: Live, text: str, replica: int = 0, *, user_id: str = "U0ALICE", channel: str = "#agents"
) -> dict[str, Any]:
    """``/spanvisor <text>`` typed by ``user_id`` in ``channel`` (a #name, or
    a D… id: a direct message with the app)."""
    before = len(env.fake.interactions.responses)
    sender = env.replicas[replica].sender
    assert sender is not None
    fields = env.fake.interactions.slash_command(text, user_id=user_id, channel_id=channel_id(channel))
    fields["channel_name"] = "directmessage" if channel.startswith("D") else channel.lstrip("#")
    sent = await sender.command(fields)
    assert sent.status == 200 and sent.text == ""
    await until(lambda: len(env.fake.interactions.responses) > before, 10, f"the answer to {text!r}")
    body = env.fake.interactions.responses[before].body
    assert body["response_type"] == "ephemeral"
    return body


def test_status_lists_running_tasks_with_their_thread() -> None:
    async def go() -> None:
        async with live() as env:
            env.ask("T1", "a1")
            other = env.tracer.start_span(
                "review", attributes={cv.TASK_NAME: "<!channel> review", cv.TASK_ID: "T2", cv.AGENT_ID: "lint-bot"}
            )
            env.roots.append(other)
            await env.awaiting("T1", "a1")
            await until(lambda: env.parent("T2") is not None, 10, "T2's parent")
            body = await _ask(env, "status")
            text = json.dumps(body["blocks"])
            assert "2 running tasks" in text and "`T1`" in text and "`T2`" in text
            assert "awaiting approval" in text
            assert "&lt;!channel&gt; review" in text and "<!channel>" not in text
            assert "https://fake-workspace.slack.com/archives/" in text and "open thread" in text
            only = json.dumps((await _ask(env, "status lint-*"))["blocks"])
            assert "`T2`" in only and "`T1`" not in only and "of `lint-*`" in only
            assert "partial" not in text and "replica" not in text  # one process's store: the whole list

    run(go(), 60)


def test_task_shows_one_task_and_help_the_commands() -> None:
    async def go() -> None:
        async with live() as env:
            env.ask("T3", "a1", question="Ship <https://evil|it>?")
            await env.awaiting("T3", "a1")
            one = json.dumps((await _ask(env, "task T3"))["blocks"])
            assert "`T3`" in one and "Waiting for approval `a1`" in one
            assert "&lt;https://evil|it&gt;" in one
            missing = json.dumps((await _ask(env, "task nope<>"))["blocks"])
            assert "knows no task `nope&lt;&gt;`" in missing and "no Slack message" in missing
            for text in ("help", "", "what"):
                assert "/spanvisor status" in json.dumps((await _ask(env, text))["blocks"])

    run(go(), 60)


def test_task_that_finished_on_another_replica_is_shown_from_the_shared_view() -> None:
    """Replica 1 never saw T6's spans: its tracker has no view of the task,
    so the answer comes from the view the Slack sink stored for the parent."""

    async def go() -> None:
        async with live(replicas=2) as env:
            r = cv.RESULT_PREFIX
            span = env.tracer.start_span(
                "migrate",
                attributes={
                    cv.TASK_NAME: "migrate <!here>",
                    cv.TASK_ID: "T6",
                    f"{r}downtime_avoided": 5400,
                    f"{r}downtime_avoided{cv.RESULT_UNIT_SUFFIX}": "s",
                    f"{r}summary": "<@U0BOSS> *all* done",
                },
            )
            span.end()
            c = span.get_span_context()
            key = f"T6/{run_id_of(f'{c.trace_id:032x}', f'{c.span_id:016x}')}"  # the run's parent

            async def shown_final() -> bool:
                rec = Stored.load(await env.store.get("slack.view", key))
                return rec is not None and rec.final and rec.is_shown

            for _ in range(500):
                if await shown_final():
                    break
                await asyncio.sleep(0.02)
            else:
                raise AssertionError("T6's final view was never stored as shown")
            assert await env.replicas[1].pipeline.control.task("T6") is None
            # Which run is T6's latest is in the shared control log, written by
            # the replica that tracked it within half a second of its end.
            for _ in range(100):
                body = await _ask(env, "task T6", replica=1)
                blocks = body["blocks"]
                text = json.dumps(blocks)
                if "knows no task" not in text:
                    break
                await asyncio.sleep(0.05)
            assert "`T6`" in text and "complete" in text
            assert "*downtime_avoided:* 1h 30m" in text  # as the console and the parent show it
            assert "&lt;@U0BOSS&gt; *all* done" in text and "<@U0BOSS>" not in text
            assert "&lt;!here&gt;" in text and "<!here>" not in text
            assert "https://fake-workspace.slack.com/archives/" in text and "open thread" in text
            assert "As last posted to Slack" in text and "not open in this process" in text
            assert len(blocks) <= 50 and all(len(b.get("text", {}).get("text", "")) <= 3000 for b in blocks)
            # The replica that ran it still has it (just finished): the live view, no note.
            here = json.dumps((await _ask(env, "task T6"))["blocks"])
            assert "*downtime_avoided:* 1h 30m" in here and "As last posted" not in here

    run(go(), 60)


def test_many_tasks_stay_within_block_kit_limits() -> None:
    async def go() -> None:
        async with live() as env:
            for i in range(MAX_LISTED + 7):
                env.roots.append(
                    env.tracer.start_span("t", attributes={cv.TASK_NAME: "x" * 5000, cv.TASK_ID: f"M{i:02d}"})
                )
            control = env.one.pipeline.control

            async def all_open() -> bool:
                return len(await control.open_tasks()) >= MAX_LISTED + 7

            for _ in range(300):
                if await all_open():
                    break
                await asyncio.sleep(0.05)
            body = await _ask(env, "status")  # the fake refuses what Slack would (50 blocks, 3000 chars)
            assert len(body["blocks"]) <= 50
            assert "7 more not shown" in json.dumps(body["blocks"])
            assert all(len(b.get("text", {}).get("text", "")) <= 3000 for b in body["blocks"])

    run(go(), 60)


class NotInMemory:
    """A state store that is not one process's own (it stands for the
    PostgreSQL one that replicas share)."""

    async def get(self, namespace: str, key: str) -> Mapping[str, Any] | None:
        return None


def test_under_replicas_the_list_says_it_may_be_partial() -> None:
    async def go() -> None:
        async with live() as env:
            env.ask("T4", "a1")
            await env.awaiting("T4", "a1")
            answers = SlashAnswers(env.one.pipeline.control, NotInMemory(), "slack", None)  # type: ignore[arg-type]
            _, blocks = await answers.status(None)
            text = json.dumps(blocks)
            assert "`T4`" in text and "this spanvisor replica only" in text

    run(go(), 60)


def test_approvals_lists_every_open_request_escaped_with_its_command() -> None:
    async def go() -> None:
        async with live(replicas=2) as env:
            env.ask("T8", "a1", question="Ship <!channel> now?")
            await env.awaiting("T8", "a1")
            # Asked on the replica that does not track the task: the list is the shared one.
            body = await _ask(env, "approvals", replica=1)
            text = json.dumps(body["blocks"])
            assert "1 open approval request" in text and "`T8`" in text and "approval `a1`" in text
            assert "Ship &lt;!channel&gt; now?" in text and "<!channel>" not in text
            assert "spanvisor approve T8 a1 --run " in text
            none = json.dumps((await _ask(env, "approvals nobody*"))["blocks"])
            assert "0 open approval requests of `nobody*`" in none

    run(go(), 60)


def _ask_as(env: Live, task_id: str, agent: str, question: str) -> None:
    root = env.tracer.start_span("deploy", attributes={cv.TASK_NAME: "deploy", cv.TASK_ID: task_id, cv.AGENT_ID: agent})
    root.add_event(cv.EVENT_APPROVAL_REQUEST, {cv.APPROVAL_ID: "a1", cv.APPROVAL_QUESTION: question})
    env.roots.append(root)


def test_only_approvers_are_answered_and_only_about_their_channels_tasks() -> None:
    """The ops team's channel (its own route and approvers) and the default
    one: a member who may not decide is told so and shown nothing; each
    channel lists its own tasks and requests; a direct message lists what
    the person may decide where it is posted."""

    async def go() -> None:
        async with live(
            slack_approvers="U0ALICE",
            slack_routes="agent:ops-*=#ops",
            slack_channel_approvers="#ops=U0BOB",
        ) as env:
            _ask_as(env, "T20", "lint-bot", "Merge the lint fixes?")
            _ask_as(env, "T21", "ops-bot", "Rotate the prod database password?")
            await env.awaiting("T20", "a1")
            await env.awaiting("T21", "a1")
            for verb in ("approvals", "status", "task T20", "task T21"):
                refused = json.dumps((await _ask(env, verb, user_id="U0EVE"))["blocks"])
                assert "Only approvers" in refused and "T2" not in refused and "Rotate" not in refused, verb
                # Bob decides in #ops only: in #agents he is not an approver.
                refused = json.dumps((await _ask(env, verb, user_id="U0BOB"))["blocks"])
                assert "Only approvers" in refused and "T2" not in refused, verb

            here = json.dumps((await _ask(env, "approvals"))["blocks"])
            assert "1 open approval request" in here and "`T20`" in here and "Rotate" not in here
            running = json.dumps((await _ask(env, "status"))["blocks"])
            assert "`T20`" in running and "`T21`" not in running
            other = json.dumps((await _ask(env, "task T21"))["blocks"])
            assert "knows no task `T21`" in other and "Rotate" not in other and "ops-bot" not in other

            ops = json.dumps((await _ask(env, "approvals", user_id="U0BOB", channel="#ops"))["blocks"])
            assert "`T21`" in ops and "Rotate the prod database password?" in ops and "`T20`" not in ops
            ops_status = json.dumps((await _ask(env, "status", user_id="U0BOB", channel="#ops"))["blocks"])
            assert "`T21`" in ops_status and "`T20`" not in ops_status
            assert "`T21`" in json.dumps((await _ask(env, "task T21", user_id="U0BOB", channel="#ops"))["blocks"])

            # Alice's direct message: what she may decide (#ops has its own approvers).
            dm = json.dumps((await _ask(env, "approvals", channel="D0ALICE01"))["blocks"])
            assert "`T20`" in dm and "`T21`" not in dm
            # Bob, in a direct message, is not an approver everywhere: refused.
            assert "Only approvers" in json.dumps(
                (await _ask(env, "status", user_id="U0BOB", channel="D0BOB0001"))["blocks"]
            )

    run(go(), 60)
