"""Decided once, recorded once, over HTTP: many calls at once against one
``serve`` and against two replicas, on every state store (memory, the local
SQLite file, PostgreSQL), give exact counts.

* twelve permits of one approval: one permitted, the rest ``consumed``;
* ten people deciding one request: one ``applied`` answer, the others
  refused as already decided, and the record holds that one decision;
* twenty requests of one run approved at once: twenty applied, twenty
  recorded;
* 150 grants made at once: 150 listed; revoked at once: every one revoked.

(The cause they pin down: two coroutines of one process that read a
record's version n both "won" n + 1.)
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from spanvisor.events import HumanIntervention
from tests.waiting import wait_until

from .exactly_once_support import ACTION, PEOPLE, Node, ask, at_once, call, cluster, granted, key_of, record, start_run

KINDS = [("memory", 1), ("local", 1), ("local", 2), ("postgres", 1), ("postgres", 2)]


@pytest.fixture(scope="module", params=KINDS, ids=[f"{k}-x{n}" for k, n in KINDS])
def nodes(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Node]]:
    kind, n = request.param
    db_url = None
    if kind == "postgres":
        db_url = request.getfixturevalue("pg_server").database()
    tmp = tmp_path_factory.mktemp(f"{kind}{n}")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SPANVISOR_DATA_DIR", str(tmp / "agent"))  # the shell agent's emit state and permit secrets
        got, stop = cluster(tmp, kind, n, db_url)
        yield got
        stop()


def _task() -> str:
    return f"T-{uuid.uuid4().hex[:8]}"


def _by(nodes: list[Node], i: int) -> Node:
    return nodes[i % len(nodes)]


def test_an_approval_permits_once(nodes: list[Node]) -> None:
    task = _task()
    start_run(nodes[0], task, ["a1"])
    status, doc = call(
        nodes[0],
        "POST",
        f"/tasks/{task}/decisions",
        {"action": "approve", "approval_id": "a1", "actor": "p0"},
        "p0-own-t0ken",
    )
    assert status == 200 and doc["outcome"] == "applied", doc

    body = {"action": ACTION, "key": key_of(task, "a1")}

    def permit(i: int) -> Callable[[], tuple[int, dict[str, Any]]]:
        return lambda: call(_by(nodes, i), "POST", f"/tasks/{task}/approvals/a1/permit", body)

    got = at_once([permit(i) for i in range(12)])
    assert all(status == 200 for status, _ in got), got
    assert sum(doc["permitted"] for _, doc in got) == 1, got
    assert sorted(doc["code"] for _, doc in got if not doc["permitted"]) == ["consumed"] * 11


def test_one_request_gets_one_outcome(nodes: list[Node]) -> None:
    task = _task()
    start_run(nodes[0], task, ["a1"])

    def decide(i: int) -> Callable[[], tuple[int, dict[str, Any]]]:
        body = {
            "action": "approve" if i % 2 else "reject",
            "approval_id": "a1",
            "intervention_id": f"click-{i}",
            "actor": "x",
        }
        return lambda: call(_by(nodes, i), "POST", f"/tasks/{task}/decisions", body, PEOPLE[f"p{i}"])

    got = at_once([decide(i) for i in range(10)])
    applied = [doc for status, doc in got if status == 200 and doc["outcome"] == "applied"]
    assert len(applied) == 1, got
    refused = [doc for status, doc in got if doc is not applied[0]]
    assert all(doc["code"] == "already_decided" for doc in refused), refused
    decisions = [d for d in record(nodes[-1], task)["decisions"] if d.get("approval_id") == "a1"]
    assert [d["intervention_id"] for d in decisions] == [applied[0]["intervention_id"]]

    # What every sink is told (Slack, the webhook, the stream, the audit
    # trail are such sinks): that one applied, every other refused.
    def told() -> list[HumanIntervention]:
        return [e for n in nodes for e in n.sink.of_type(HumanIntervention) if e.task_id == task]

    wait_until(lambda: len(told()) == 10, what="every decision announced once", timeout=20)
    outcomes = sorted((e.outcome, e.decision.intervention_id) for e in told())
    assert outcomes == sorted(
        [("applied", applied[0]["intervention_id"])] + [("denied", doc["intervention_id"]) for doc in refused]
    ), outcomes


def test_every_request_of_a_run_is_decided_and_recorded(nodes: list[Node]) -> None:
    task = _task()
    asks = [f"a{i}" for i in range(20)]
    start_run(nodes[0], task, asks)

    def approve(i: int) -> Callable[[], tuple[int, dict[str, Any]]]:
        body = {"action": "approve", "approval_id": asks[i], "actor": "x"}
        return lambda: call(_by(nodes, i), "POST", f"/tasks/{task}/decisions", body, PEOPLE[f"p{i % len(PEOPLE)}"])

    got = at_once([approve(i) for i in range(20)])
    assert [(status, doc["outcome"]) for status, doc in got] == [(200, "applied")] * 20, got
    decided = sorted(d["approval_id"] for d in record(nodes[-1], task)["decisions"])
    assert decided == sorted(asks)


def test_grants_are_made_and_revoked_exactly_as_answered(nodes: list[Node]) -> None:
    def make(i: int) -> Callable[[], tuple[int, dict[str, Any]]]:
        body = {"tool": f"tool-{i}", "for_s": 3600}
        return lambda: call(_by(nodes, i), "POST", "/grants", body, PEOPLE[f"p{i % len(PEOPLE)}"])

    made = at_once([make(i) for i in range(150)])
    assert [status for status, _ in made] == [201] * 150, [d for s, d in made if s != 201][:3]
    ids = {doc["grant_id"] for _, doc in made}
    for node in nodes:
        _status, doc = call(node, "GET", "/grants")
        assert ids <= {g["grant_id"] for g in doc["grants"] if g["state"] == "live"}

    def revoke(i: int, gid: str) -> Callable[[], tuple[int, dict[str, Any]]]:
        return lambda: call(_by(nodes, i), "DELETE", f"/grants/{gid}", None, PEOPLE["p0"])

    gone = at_once([revoke(i, gid) for i, gid in enumerate(sorted(ids))])
    assert [status for status, _ in gone] == [200] * 150
    for node in nodes:
        _status, doc = call(node, "GET", "/grants")
        states = {g["grant_id"]: g["state"] for g in doc["grants"]}
        assert {states[gid] for gid in ids} == {"revoked"}


def test_a_revoked_grant_approves_nothing_after_the_revoke_is_answered(nodes: list[Node]) -> None:
    """The agent keeps asking (on the first node, which holds the run and
    applies grants); the grant is revoked through the last: what the grant
    had approved when the revoke was answered is all it ever approves."""
    task = _task()
    start_run(nodes[0], task, ["a0"])
    status, g = call(nodes[-1], "POST", "/grants", {"tool": "migrate", "for_s": 600}, PEOPLE["p1"])
    assert status == 201, g
    wait_until(lambda: "a0" in granted(nodes[-1], task, g["grant_id"]), what="the grant approving", timeout=20)
    stop = threading.Event()

    def keep_asking() -> None:
        i = 1
        while not stop.is_set():
            ask(nodes[0], task, f"a{i}")
            i += 1

    asker = threading.Thread(target=keep_asking, daemon=True)
    asker.start()
    try:
        time.sleep(1.5)
        status, doc = call(nodes[-1], "DELETE", f"/grants/{g['grant_id']}", None, PEOPLE["p0"])
        assert status == 200 and doc["state"] == "revoked", doc
        before = granted(nodes[-1], task, g["grant_id"])
        time.sleep(0.5)
    finally:
        stop.set()
        asker.join(30)
    time.sleep(2.0)  # four rounds of every node's grant sweep
    assert granted(nodes[0], task, g["grant_id"]) == before
    assert record(nodes[0], task)["approvals"], "the requests asked after the revoke stay open"
