"""Who may approve, how many must, and what an edit changes: a property over
requests with actions (one or two approvers, with or without a requester),
decisions from verified people and a shared-token operator through Slack,
the CLI and the API on two replicas (one restarted now and then), edits of
the arguments (and of the tool), standing grants (live, expired, revoked,
for this run or another, made by the requester), replayed clicks and
checks where the action runs.

Whatever the order, an action runs only when a set of applied approvals
from distinct people, none of them the requester (and every one verified
when more than one is needed), reached the request's count, or a grant
live when it decided covered it (one approver needed, its maker not the
requester, its tool glob and run matching); it runs the arguments the last
approval set (the asked ones without an edit, always with a grant); at
most once per request; and the agent never reads a vote as the answer.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spanvisor.canonical import canonical_json
from spanvisor.control import grants, runs
from spanvisor.control.runs import Permit
from spanvisor.events import Decision, HumanIntervention, run_id_of
from spanvisor.spans import conventions as cv

from .test_decisions_properties import TASK, TRACE, World

APPROVALS = ("a1", "a2")
PEOPLE = ("alice", "bob", "carol", "anon")


def action(target: str) -> dict[str, Any]:
    return {"tool": "migrate", "arguments": {"target": target}}


EDITS = {"none": None, "dev": action("dev"), "tool": {"tool": "drop_table", "arguments": {"target": "dev"}}}

request = st.tuples(
    st.just("request"),
    st.sampled_from(APPROVALS),
    st.sampled_from(["staging", "prod"]),
    st.sampled_from([1, 2]),
    st.sampled_from([None, "alice"]),
)
person = st.tuples(
    st.just("person"),
    st.sampled_from(["approve", "approve", "reject"]),
    st.sampled_from(APPROVALS),
    st.sampled_from(PEOPLE),
    st.sampled_from(["slack", "slack_known", "cli", "api"]),
    st.sampled_from("ab"),
    st.sampled_from(list(EDITS)),
)
check = st.tuples(
    st.just("check"), st.sampled_from(APPROVALS), st.sampled_from(["staging", "prod", "dev"]), st.sampled_from("ab")
)
grant = st.tuples(
    st.just("grant"),
    st.sampled_from(["alice", "bob"]),
    st.sampled_from(["migrate", "migr*", "deploy"]),
    st.sampled_from(["any", "this_run", "other_run"]),
    st.sampled_from(["live", "expired"]),
)
revoke = st.tuples(st.just("revoke"))
tick = st.tuples(st.just("tick"))
replay = st.tuples(st.just("replay"))
restart = st.tuples(st.just("restart"))
# Weighted toward what makes a story: people deciding, grants, agents
# checking (one_of would count a strategy listed twice once).
op = st.sampled_from(
    [request, person, person, person, check, check, check, grant, grant, revoke, tick, tick, replay, restart]
).flatmap(lambda s: s)


def true_person(who: str, channel: str) -> str:
    """Who decided, as the test knows it: a Slack user the deciders file
    does not name is only a Slack id (another namespace than a name)."""
    if channel == "slack" or (channel == "slack_known" and who == "anon"):
        return f"slack:U-{who}"
    return who


def decision(i: int, verb: str, aid: str, who: str, channel: str, edit: str) -> Decision:
    """A person's decision as the channel delivers it: Slack's user is
    proven by the signature (and is a person of the deciders file when the
    file names their Slack id), a CLI or API person by their own token; the
    shared token's operator is anonymous and unproven."""
    edited = EDITS[edit]
    verified = who != "anon"
    slack = channel.startswith("slack")
    actor = f"U-{who}" if slack else ("anonymous" if who == "anon" else who)
    person = None if true_person(who, channel).startswith("slack:") or who == "anon" else who
    return Decision(
        f"d{i}",
        TASK,
        verb,  # type: ignore[arg-type]
        actor,
        time.time_ns(),
        approval_id=aid,
        actor_name=None if slack else actor,
        source="slack" if slack else channel,
        verified=verified,
        person=person,
        edited=canonical_json(edited) if edited is not None and verb == "approve" else None,
    )


Story = tuple[World, list[tuple[Any, ...]], dict[str, grants.Grant], dict[str, str]]


async def _run(ops: list[tuple[Any, ...]]) -> Story:
    w = World()
    w.span(0, cv.EVENT_CHECKPOINT, {cv.PROGRESS: 1})
    # approval id -> the request as last asked: (target, approvers, requester)
    asked: dict[str, tuple[str, int, str | None]] = {}
    # approval id -> the approvals applied on the request as asked now
    applied: dict[str, list[Decision]] = {}
    truth: dict[str, str] = {}  # intervention id -> who decided, as the test knows it
    checks: list[tuple[Any, ...]] = []
    last: Decision | None = None
    for i, o in enumerate(ops, start=1):
        if o[0] == "request":
            _, aid, target, approvers, requester = o
            attrs: dict[str, Any] = {
                cv.APPROVAL_ID: aid,
                cv.APPROVAL_QUESTION: "Run the migration?",
                cv.APPROVAL_ACTION: json.dumps(action(target)),
                cv.APPROVAL_APPROVERS: approvers,
            }
            if requester:
                attrs[cv.APPROVAL_REQUESTER] = requester
            w.span(i, cv.EVENT_APPROVAL_REQUEST, attrs)
            # The first request of an id stands: asked again with another
            # action, it is not what a person approved, and never permitted.
            asked.setdefault(aid, (target, approvers, requester))
        elif o[0] == "person":
            _, verb, aid, who, channel, where, edit = o
            assert w.a.log is not None
            await w.a.sync.flush(w.a.log)
            d = decision(i, verb, aid, who, channel, edit)
            truth[d.intervention_id] = true_person(who, channel)
            v = await (w.a if where == "a" else w.b).decide(d)
            if v.outcome == "applied" and verb == "approve":
                applied.setdefault(aid, []).append(d)
            last = d
        elif o[0] == "replay" and last is not None:
            v = await w.b.decide(last)
            assert v.outcome != "applied", ("a replayed click counted twice", last)
        elif o[0] == "check":
            _, aid, target, where = o
            target = asked[aid][0] if target == "asked" and aid in asked else target
            assert w.a.log is not None
            await w.a.sync.flush(w.a.log)  # the agent asked before it checks
            got: Permit = await (w.a if where == "a" else w.b).permit(TASK, aid, action(target))
            by_grant = [d for d in runs.decisions_of(await w.a.run(TASK)) if d.grant_id and d.approval_id == aid]
            checks.append((aid, target, got, asked.get(aid), [*applied.get(aid, ()), *by_grant]))
        elif o[0] == "restart":
            w.restart_b()
        elif o[0] == "grant":
            _, who, tool, scope, state = o
            now = time.time_ns()
            run = {"any": None, "this_run": run_id_of(TRACE, w.root), "other_run": "0" * 12}[scope]
            g = grants.Grant(
                grant_id=f"g{i}",
                by=who,
                tool=tool,
                created_ns=now,
                expires_ns=now + (3600 * 10**9 if state == "live" else -1),
                task_id=TASK if run else None,
                run_id=run,
            )
            await (w.a if i % 2 else w.b).add_grant(g)
        elif o[0] == "revoke":
            kept = grants.grants_of(await w.store.get(grants.NAMESPACE, grants.KEY))
            if kept:
                await w.b.revoke_grant(kept[-1].grant_id, "carol")
        elif o[0] == "tick":
            await w.a.catch_up()  # the round that lets grants decide (also every 0.5 s)
    for c in [*w.controls, w.b]:
        await c.close()
    made = {g.grant_id: g for g in grants.grants_of(await w.store.get(grants.NAMESPACE, grants.KEY))}
    truth.update({d.intervention_id: made[str(d.grant_id)].by for c in checks for d in c[4] if d.grant_id})
    return w, checks, made, truth


def _assert_granted(
    w: World, made: dict[str, grants.Grant], approvals: list[Decision], req: tuple[str, int, str | None], target: str
) -> None:
    """A grant decided: it was live then and covered exactly this request."""
    asked_target, needed, requester = req
    (d,) = approvals
    g = made[str(d.grant_id)]
    assert needed == 1, ("a grant decided for several people", g)
    assert g.by.casefold() != (requester or "").casefold(), ("the requester's own grant decided", g)
    assert d.time_ns < g.expires_ns, ("an expired grant decided", g)
    assert g.revoked_ns is None or d.time_ns < g.revoked_ns, ("a revoked grant decided", g)
    assert g.run_id in (None, run_id_of(TRACE, w.root)), ("another run's grant decided", g)
    assert g.tool != "deploy", ("a grant for another tool decided", g)
    assert target == asked_target and d.edited is None, ("a grant ran other arguments", target)


def _assert_story(
    w: World, checks: list[tuple[Any, ...]], made: dict[str, grants.Grant], truth: dict[str, str]
) -> None:
    used: set[str] = set()
    for aid, target, got, req, approvals in checks:
        if not got.permitted:
            continue
        assert req is not None
        asked_target, needed, requester = req
        if any(d.grant_id for d in approvals):
            _assert_granted(w, made, approvals, req, target)
            assert aid not in used, ("an approval was used twice", aid)
            used.add(aid)
            continue
        people = {truth[d.intervention_id] for d in approvals}
        assert len(people) >= needed, ("ran on fewer people than the request needs", approvals)
        assert requester not in people, ("the requester approved", approvals)
        if needed > 1:
            assert all(d.verified for d in approvals), ("an unproven person counted", approvals)
            assert all(d.person for d in approvals), ("a Slack user the deciders file does not name counted", approvals)
        edits = {d.edited for d in approvals}
        assert len(edits) == 1, ("approvals of different arguments were combined", edits)
        (edited,) = edits
        want = json.loads(edited)["arguments"]["target"] if edited else asked_target
        assert target == want, ("ran other arguments than approved", target, want)
        assert edited is None or json.loads(edited)["tool"] == "migrate", "an edit changed the tool"
        assert aid not in used, ("an approval was used twice", aid)
        used.add(aid)
    # The agent reads only decided requests: a vote never reaches it as the answer.
    for ev in w.events:
        if isinstance(ev, HumanIntervention) and ev.votes < ev.votes_needed:
            assert ev.decision not in ev.task.decisions


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    asked=st.tuples(request, request).map(lambda r: (("request", "a1", *r[0][2:]), ("request", "a2", *r[1][2:]))),
    ops=st.lists(op, max_size=24),
)
def test_an_action_runs_only_on_enough_distinct_people_never_the_requester(
    asked: tuple[Any, ...], ops: list[tuple[Any, ...]]
) -> None:
    _assert_story(*asyncio.run(_run([*asked, *ops])))


# Grants against requests, revocations and checks, in any order: the rounds
# that let grants decide happen often enough for their stories to be told.
check_asked = st.tuples(st.just("check"), st.sampled_from(APPROVALS), st.just("asked"), st.sampled_from("ab"))
grant_story = st.sampled_from([grant, grant, revoke, tick, tick, check_asked, check_asked, check, person]).flatmap(
    lambda s: s
)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    asked=st.tuples(request, request).map(lambda r: (("request", "a1", *r[0][2:]), ("request", "a2", *r[1][2:]))),
    ops=st.lists(grant_story, min_size=4, max_size=20),
)
def test_a_grant_decides_only_while_live_and_only_what_it_covers(
    asked: tuple[Any, ...], ops: list[tuple[Any, ...]]
) -> None:
    _assert_story(*asyncio.run(_run([*asked, *ops])))


def _verdicts(ops: list[tuple[Any, ...]]) -> list[bool]:
    _, checks, _, _ = asyncio.run(_run(ops))
    return [c[2].permitted for c in checks]


def test_two_people_are_needed_and_the_first_vote_alone_permits_nothing() -> None:
    ops = [
        ("request", "a1", "prod", 2, None),
        ("person", "approve", "a1", "alice", "cli", "a", "none"),
        ("check", "a1", "prod", "a"),
        # A Slack user the deciders file does not name: refused as unverified
        # (it may be alice again, by another channel).
        ("person", "approve", "a1", "alice", "slack", "b", "none"),
        ("check", "a1", "prod", "b"),
        ("person", "approve", "a1", "bob", "slack_known", "b", "none"),
        ("check", "a1", "prod", "b"),
        ("check", "a1", "prod", "a"),
    ]
    assert _verdicts(ops) == [False, False, True, False]


def test_one_person_on_slack_and_with_a_token_is_one_person() -> None:
    ops = [
        ("request", "a1", "prod", 2, "carol"),
        ("person", "approve", "a1", "alice", "cli", "a", "none"),
        ("person", "approve", "a1", "alice", "slack_known", "b", "none"),  # the file names her Slack id
        ("check", "a1", "prod", "a"),
        ("person", "approve", "a1", "carol", "slack_known", "a", "none"),  # the requester, on Slack
        ("check", "a1", "prod", "a"),
        ("person", "approve", "a1", "bob", "slack_known", "b", "none"),
        ("check", "a1", "prod", "b"),
    ]
    assert _verdicts(ops) == [False, False, True]


def test_a_request_that_names_its_requester_takes_only_proven_approvals() -> None:
    ops = [
        ("request", "a1", "prod", 1, "alice"),
        ("person", "approve", "a1", "anon", "cli", "a", "none"),  # could be alice: refused
        ("check", "a1", "prod", "a"),
        ("person", "approve", "a1", "bob", "cli", "b", "none"),
        ("check", "a1", "prod", "a"),
    ]
    assert _verdicts(ops) == [False, True]


def test_the_requester_an_unproven_operator_and_a_repeat_vote_do_not_count() -> None:
    ops = [
        ("request", "a1", "prod", 2, "alice"),
        ("person", "approve", "a1", "alice", "cli", "a", "none"),
        ("person", "approve", "a1", "anon", "api", "a", "none"),
        ("person", "approve", "a1", "bob", "cli", "b", "none"),
        ("person", "approve", "a1", "bob", "cli", "a", "none"),
        ("check", "a1", "prod", "a"),
        ("person", "approve", "a1", "carol", "slack", "b", "none"),  # a Slack user the file does not name
        ("check", "a1", "prod", "a"),
        ("person", "approve", "a1", "carol", "slack_known", "b", "none"),
        ("check", "a1", "prod", "a"),
    ]
    assert _verdicts(ops) == [False, False, True]


def test_an_edit_runs_the_edited_arguments_and_never_another_tool() -> None:
    ops = [
        ("request", "a1", "prod", 1, None),
        ("person", "approve", "a1", "bob", "cli", "a", "tool"),  # refused: bad_edit
        ("check", "a1", "prod", "a"),
        ("person", "approve", "a1", "bob", "cli", "a", "dev"),
        ("check", "a1", "prod", "b"),
        ("check", "a1", "dev", "b"),
        ("check", "a1", "dev", "a"),
    ]
    assert _verdicts(ops) == [False, False, True, False]


def test_a_reject_by_anyone_ends_a_request_several_must_approve() -> None:
    ops = [
        ("request", "a1", "prod", 2, "alice"),
        ("person", "approve", "a1", "bob", "cli", "a", "none"),
        ("person", "reject", "a1", "alice", "api", "b", "none"),
        ("person", "approve", "a1", "carol", "slack", "a", "none"),
        ("check", "a1", "prod", "a"),
    ]
    assert _verdicts(ops) == [False]


def test_expired_revoked_and_uncovering_grants_decide_nothing() -> None:
    ops = [
        ("request", "a1", "prod", 1, "alice"),
        ("request", "a2", "prod", 2, None),
        ("grant", "alice", "migrate", "any", "live"),  # alice asked a1: her grant is not for it
        ("grant", "bob", "migr*", "other_run", "live"),
        ("grant", "bob", "deploy", "any", "live"),
        ("grant", "bob", "migrate", "any", "expired"),
        ("tick",),
        ("check", "a1", "prod", "a"),
        ("check", "a2", "prod", "a"),  # two people: never a grant
        ("grant", "carol", "migr*", "this_run", "live"),
        ("revoke",),
        ("tick",),
        ("check", "a1", "prod", "b"),
        ("grant", "carol", "migr*", "this_run", "live"),
        ("tick",),
        ("check", "a1", "staging", "a"),  # not the action asked
        ("check", "a1", "prod", "b"),
        ("check", "a1", "prod", "a"),  # used once
        ("check", "a2", "prod", "b"),
    ]
    assert _verdicts(ops) == [False, False, False, False, True, False, False]
