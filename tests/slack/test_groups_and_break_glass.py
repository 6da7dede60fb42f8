"""Approver groups from Slack's user groups, and break-glass posted loudly.

A request that counts only approvals from ``group:sre`` says so on its
message; a Slack user in the ``sre`` user group (``usergroups.users.list``,
the fake Slack) approves, anyone else is refused (``not_in_group``), and a
group that cannot be read counts nobody. An approve that broke glass is
posted once to ``SPANVISOR_SLACK_BREAK_GLASS_CHANNEL`` (who, what, why),
however often the event is delivered.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time

from interact_support import live
from slack_support import run, until

from spanvisor.events import Decision, HumanIntervention
from spanvisor.spans import conventions as cv
from spanvisor_slack import actions as A


def test_a_slack_user_group_counts_under_from_and_others_are_refused() -> None:
    async def go() -> None:
        async with live() as env:
            env.fake.interactions.groups["S0SRE"] = ("sre", ["U0CAROL"])
            root = env.tracer.start_span("deploy", attributes={cv.TASK_NAME: "deploy", cv.TASK_ID: "T1"})
            env.roots.append(root)
            root.add_event(
                cv.EVENT_APPROVAL_REQUEST,
                {cv.APPROVAL_ID: "a1", cv.APPROVAL_QUESTION: "Apply to prod?", cv.APPROVAL_FROM: ["group:sre"]},
            )
            parent = await env.awaiting("T1", "a1")
            shown = lambda: "Needs an approval from sre" in str((env.parent("T1") or parent).blocks)  # noqa: E731
            await until(shown, 10, "the message naming whose approvals count")
            sender = env.one.sender
            assert sender is not None
            await sender.interaction(env.click(parent, "T1", A.APPROVE, "a1", user_id="U0MALLORY", user_name="m"))
            await until(env.answers, 10, "the refusal")
            assert "only approvals from sre count" in env.answers()[0], env.answers()
            await until(env.one.interventions, 10, "the refused decision audited")
            [denied] = env.one.interventions()
            assert denied.outcome == "denied" and denied.code == "not_in_group"
            assert denied.decision.groups == () and denied.decision.proof == "slack"
            await sender.interaction(env.click(parent, "T1", A.APPROVE, "a1", user_id="U0CAROL", user_name="carol"))
            await until(lambda: len(env.answers()) == 2, 10, "carol's answer")
            assert env.answers()[1].startswith("✅ Approved"), env.answers()
            [d] = await env.one.decisions("T1")
            assert (d.actor_id, d.groups, d.proof, d.verified) == ("U0CAROL", ("sre",), "slack", True)

    run(go(), 60)


def test_a_group_slack_cannot_read_counts_nobody() -> None:
    async def go() -> None:
        async with live(slack_token="xoxb-nogroups") as env:
            env.fake.interactions.groups["S0SRE"] = ("sre", ["U0CAROL"])
            root = env.tracer.start_span("deploy", attributes={cv.TASK_NAME: "deploy", cv.TASK_ID: "T2"})
            env.roots.append(root)
            root.add_event(
                cv.EVENT_APPROVAL_REQUEST,
                {cv.APPROVAL_ID: "a1", cv.APPROVAL_QUESTION: "Apply?", cv.APPROVAL_FROM: ["group:sre"]},
            )
            parent = await env.awaiting("T2", "a1")
            sender = env.one.sender
            assert sender is not None
            await sender.interaction(env.click(parent, "T2", A.APPROVE, "a1", user_id="U0CAROL", user_name="carol"))
            await until(env.answers, 10, "the refusal")
            assert "only approvals from sre count" in env.answers()[0], env.answers()
            assert await env.one.decisions("T2") == []

    run(go(), 60)


def test_break_glass_is_posted_once_to_its_channel() -> None:
    async def go() -> None:
        async with live(http=False, slack_break_glass_channel="#break-glass") as env:
            root = env.tracer.start_span("deploy", attributes={cv.TASK_NAME: "deploy prod", cv.TASK_ID: "T3"})
            env.roots.append(root)
            root.add_event(
                cv.EVENT_APPROVAL_REQUEST,
                {
                    cv.APPROVAL_ID: "a1",
                    cv.APPROVAL_QUESTION: "Apply <!channel> to prod?",
                    cv.APPROVAL_FROM: ["group:sre"],
                    cv.APPROVAL_APPROVERS: 2,
                },
            )
            await env.awaiting("T3", "a1")
            d = Decision(
                "bg-1",
                "T3",
                "approve",
                "carol@example.com",
                time.time_ns(),
                approval_id="a1",
                actor_name="carol",
                comment="prod is down *now*",
                source="cli",
                verified=True,
                person="carol",
                groups=("breakglass",),
                proof="oidc",
                break_glass=True,
            )
            v = await env.one.pipeline.control.decide(d)
            assert v.outcome == "applied" and v.votes_needed == 0, v
            again = await env.one.pipeline.control.decide(dataclasses.replace(d))
            assert again.outcome == "duplicate"
            # The same event delivered twice to the sink (a replay): still one post.
            await until(env.one.interventions, 10, "the decision delivered to the sinks")
            [ev] = [e for e in env.one.interventions() if isinstance(e, HumanIntervention)]
            await env.one.sink.export([ev])

            def posts() -> list[str]:
                return [m.text or "" for m in env.fake.parents("#break-glass")]

            await until(posts, 10, "the break-glass post")
            await asyncio.sleep(0.5)
            [text] = posts()
            [msg] = env.fake.parents("#break-glass")
            shown = str(msg.blocks)
            assert "Break-glass" in text and "carol" in shown and "prod is down" in shown and "breakglass" in shown
            assert "It needed:* 2 approvals from sre" in shown and "<!channel>" not in shown
            assert [x.decision.break_glass for x in env.one.interventions()] == [True]

    run(go(), 60)
