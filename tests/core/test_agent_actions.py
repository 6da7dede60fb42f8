"""Approvals bound to an action, in-process with the real OTel SDK: the
request carries the action, the decision names its digest, and
``decision.permits(action)`` is true once, for exactly that action."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from typing import Any

from spanvisor.agent import ApprovalDecision, task
from spanvisor.control import hub
from spanvisor.events import Decision, HumanIntervention
from spanvisor.testing import InMemorySink
from tests.waiting import wait_until

from ._sdk import Agent

STAGING = {"tool": "migrate", "arguments": {"target": "staging", "version": 7}}
PROD = {"tool": "migrate", "arguments": {"target": "prod", "version": 7}}


def control_call(make: Any) -> Any:
    control = hub.current()
    assert control is not None
    return asyncio.run(make(control))


def decide(task_id: str, approval_id: str, digest: str | None, action: str = "approve", actor: str = "alice") -> Any:
    d = Decision(
        uuid.uuid4().hex,
        task_id,
        action,
        actor,
        time.time_ns(),
        approval_id=approval_id,
        actor_name=actor,
        digest=digest,
    )  # type: ignore[arg-type]
    return control_call(lambda c: c.decide(d))


def open_request(task_id: str, approval_id: str) -> Any:
    rec = control_call(lambda c: c.run(task_id))
    reqs = (rec or {}).get("requests") or {}
    r = reqs.get(approval_id)
    return r if r and r.get("state") == "open" else None


class Asking:
    def __init__(
        self, agent: Agent, task_id: str, action: dict[str, Any], approval_id: str = "migrate", timeout: float = 60
    ) -> None:
        self.result: ApprovalDecision | None = None
        self.checks: list[bool] = []
        self.go = threading.Event()

        def run() -> None:
            with task("migrate", agent_id="rivet", task_id=task_id, tracer=agent.tracer) as t:
                self.result = t.request_approval(
                    "Run the migration?", approval_id=approval_id, action=action, details="version 7", timeout=timeout
                )
                self.go.wait(30)
                for a in self.try_actions:
                    self.checks.append(self.result.permits(a))

        self.try_actions: list[dict[str, Any]] = []
        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()

    def check(self, *actions: dict[str, Any]) -> list[bool]:
        self.try_actions = list(actions)
        self.go.set()
        self.thread.join(60)
        assert not self.thread.is_alive()
        return self.checks


def test_the_staging_decision_does_not_fit_the_prod_request(live: tuple[Agent, InMemorySink]) -> None:
    agent, memory = live
    staging_task, prod_task = f"stg-{uuid.uuid4().hex[:6]}", f"prd-{uuid.uuid4().hex[:6]}"
    staging = Asking(agent, staging_task, STAGING)
    prod = Asking(agent, prod_task, PROD)
    wait_until(lambda: agent.flush() and open_request(staging_task, "migrate") is not None, what="staging asked")
    wait_until(lambda: agent.flush() and open_request(prod_task, "migrate") is not None, what="prod asked")
    s_req, p_req = open_request(staging_task, "migrate"), open_request(prod_task, "migrate")
    assert s_req["digest"] != p_req["digest"]
    assert '"target":"staging"' in s_req["action"] and s_req["details"] == "version 7"
    # The digest seen on the staging screen, sent for prod: refused.
    wrong = decide(prod_task, "migrate", s_req["digest"])
    assert wrong.outcome == "denied" and wrong.code == "digest_mismatch"
    assert decide(staging_task, "migrate", s_req["digest"]).outcome == "applied"
    assert decide(prod_task, "migrate", p_req["digest"], action="reject").outcome == "applied"
    # Staging: its own action once; prod's action never; a second check never.
    assert staging.check(PROD, STAGING, STAGING) == [False, True, False]
    assert prod.check(PROD) == [False]
    wait_until(
        lambda: any(isinstance(e, HumanIntervention) and e.outcome == "denied" for e in memory.for_task(prod_task)),
        what="the refused decision audited",
    )


def test_a_consumed_approval_stays_consumed_for_another_reader(live: tuple[Agent, InMemorySink]) -> None:
    agent, _ = live
    task_id = f"t-{uuid.uuid4().hex[:6]}"
    asking = Asking(agent, task_id, STAGING)
    wait_until(lambda: agent.flush() and open_request(task_id, "migrate") is not None, what="asked")
    assert decide(task_id, "migrate", open_request(task_id, "migrate")["digest"]).outcome == "applied"
    assert asking.check(STAGING) == [True]
    # The agent restarted (a new handle, nothing remembered): the control
    # log refuses the second use, with the reason.
    again = control_call(lambda c: c.permit(task_id, "migrate", STAGING))
    assert not again.permitted and again.code == "consumed"
    other = control_call(lambda c: c.permit(task_id, "migrate", PROD))
    assert not other.permitted and other.code == "digest_mismatch"


def test_a_changed_action_under_the_same_id_is_a_new_request(live: tuple[Agent, InMemorySink]) -> None:
    agent, _ = live
    task_id = f"t-{uuid.uuid4().hex[:6]}"
    # Nobody decides either request: each ends when its wait does.
    first = Asking(agent, task_id, STAGING, timeout=10)
    wait_until(lambda: agent.flush() and open_request(task_id, "migrate") is not None, what="asked")
    shown = open_request(task_id, "migrate")["digest"]
    second = Asking(agent, task_id, PROD, timeout=10)  # the same task id and approval id, another action
    wait_until(
        lambda: agent.flush() and (open_request(task_id, "migrate") or {}).get("digest") not in (None, shown),
        what="the changed request",
    )
    got = decide(task_id, "migrate", shown)
    assert got.outcome == "denied" and got.code == "digest_mismatch"
    first.check()
    second.check()
