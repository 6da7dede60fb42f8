"""A property over requests with actions, decisions from two replicas (and
a restarted one), and checks where the action runs: an action is permitted
only on an applied approve of the request whose digest is exactly that
action's, at most once per request, whatever replica or restarted process
checks it, and a changed action under the same id is a new request."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spanvisor.canonical import approval_digest
from spanvisor.control.runs import Permit
from spanvisor.events import Decision, run_id_of
from spanvisor.spans import conventions as cv

from .test_decisions_properties import TASK, TRACE, World

APPROVALS = ("a1", "a2")
TARGETS = ("staging", "prod")


def action(target: str) -> dict[str, Any]:
    return {"tool": "migrate", "arguments": {"target": target, "version": 7}}


op = st.one_of(
    st.tuples(st.just("request"), st.sampled_from(APPROVALS), st.sampled_from(TARGETS)),
    st.tuples(
        st.just("person"),
        st.sampled_from(["approve", "reject"]),
        st.sampled_from(APPROVALS),
        st.sampled_from(TARGETS),  # the screen the person looked at
        st.sampled_from("ab"),
    ),
    st.tuples(st.just("check"), st.sampled_from(APPROVALS), st.sampled_from(TARGETS), st.sampled_from("ab")),
    st.tuples(st.just("restart")),
)


def digest(w: World, aid: str, target: str) -> str:
    return approval_digest(
        agent="",
        task=TASK,
        run=run_id_of(TRACE, w.root),
        approval_id=aid,
        question="Run the migration?",
        options=("approve", "reject"),
        details=None,
        action=action(target),
    )


async def _run(ops: list[tuple[Any, ...]]) -> list[tuple[str, str, Permit, set[str]]]:
    w = World()
    w.span(0, cv.EVENT_CHECKPOINT, {cv.PROGRESS: 1})
    # approval id -> the digests a person approved (applied) for it
    approved: dict[str, set[str]] = {}
    out: list[tuple[str, str, Permit, set[str]]] = []
    for i, o in enumerate(ops, start=1):
        if o[0] == "request":
            _, aid, target = o
            attrs = {
                cv.APPROVAL_ID: aid,
                cv.APPROVAL_QUESTION: "Run the migration?",
                cv.APPROVAL_ACTION: json.dumps(action(target)),
            }
            w.span(i, cv.EVENT_APPROVAL_REQUEST, attrs)
        elif o[0] == "person":
            _, verb, aid, target, where = o
            control = w.a if where == "a" else w.b
            assert w.a.log is not None
            await w.a.sync.flush(w.a.log)
            d = Decision(
                f"click-{i}", TASK, verb, f"U{i}", time.time_ns(), approval_id=aid, digest=digest(w, aid, target)
            )  # type: ignore[arg-type]
            v = await control.decide(d)
            if v.outcome == "applied" and verb == "approve":
                approved.setdefault(aid, set()).add(d.digest or "")
        elif o[0] == "check":
            _, aid, target, where = o
            control = w.a if where == "a" else w.b
            got = await control.permit(TASK, aid, action(target))
            out.append((aid, digest(w, aid, target), got, set(approved.get(aid, ()))))
        elif o[0] == "restart":
            w.restart_b()
    for c in [*w.controls, w.b]:
        await c.close()
    return out


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=st.lists(op, max_size=14))
def test_an_action_runs_only_on_its_own_approval_and_at_most_once(ops: list[tuple[Any, ...]]) -> None:
    checks = asyncio.run(_run(ops))
    used: set[str] = set()
    for aid, want, got, approved in checks:
        if got.permitted:
            assert want in approved, ("permitted an action nobody approved", aid, want, approved)
            assert aid not in used, ("an approval was used twice", aid)
            used.add(aid)
        else:
            assert got.code in ("digest_mismatch", "not_approved", "consumed", "unknown_request"), got


def test_the_example_staging_then_prod_under_one_id() -> None:
    ops = [
        ("request", "a1", "staging"),
        ("person", "approve", "a1", "staging", "a"),
        ("check", "a1", "prod", "b"),
        ("check", "a1", "staging", "b"),
        ("restart",),
        ("check", "a1", "staging", "b"),
    ]
    checks = asyncio.run(_run(ops))
    assert [c[2].permitted for c in checks] == [False, True, False]
    assert [c[2].code for c in checks] == ["digest_mismatch", None, "consumed"]
