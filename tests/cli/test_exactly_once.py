"""Decided once, recorded once, over HTTP: many calls at once against one
``serve`` and against two replicas, on every state store (memory, the local
SQLite file, PostgreSQL), give exact counts.

* twelve permits of one approval: one permitted, the rest ``consumed``;
* ten people deciding one request: one ``applied`` answer, the others
  refused as already decided, and the record holds that one decision;
  every output says the same: Slack's thread shows the one applied
  decision once and each refusal once as a refusal, the webhook delivers
  the applied one alone, once, and the event stream carries each decision
  once with its outcome;
* twenty requests of one run approved at once: twenty applied, twenty
  recorded;
* 150 grants made at once: 150 listed; revoked at once: every one revoked.

(The cause they pin down: two coroutines of one process that read a
record's version n both "won" n + 1.)
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from spanvisor.cli.main import main
from spanvisor.events import HumanIntervention
from tests.stream._sse import Frame, read
from tests.waiting import wait_until

from .exactly_once_support import (
    ACTION,
    PEOPLE,
    TOKEN,
    Node,
    Outputs,
    ask,
    at_once,
    call,
    cluster,
    granted,
    key_of,
    record,
    start_run,
)

KINDS = [("memory", 1), ("local", 1), ("local", 2), ("postgres", 1), ("postgres", 2)]


@pytest.fixture(scope="module")
def outputs() -> Iterator[Outputs]:
    got = Outputs()
    yield got
    got.close()


@pytest.fixture(scope="module", params=KINDS, ids=[f"{k}-x{n}" for k, n in KINDS])
def nodes(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, outputs: Outputs
) -> Iterator[list[Node]]:
    kind, n = request.param
    db_url = None
    if kind == "postgres":
        db_url = request.getfixturevalue("pg_server").database()
    tmp = tmp_path_factory.mktemp(f"{kind}{n}")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SPANVISOR_DATA_DIR", str(tmp / "agent"))  # the shell agent's emit state and permit secrets
        got, stop = cluster(tmp, kind, n, db_url, outputs=outputs)
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


def test_one_request_gets_one_outcome(nodes: list[Node], outputs: Outputs) -> None:
    task = _task()
    start_run(nodes[0], task, ["a1"])
    # The task's Slack message first: a replica's lines go to its thread.
    wait_until(lambda: _parent(outputs, task), what="the task's Slack message", timeout=30)
    stream = _Streams(nodes, task, 10)

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
    first = applied[0]["intervention_id"]
    outcome = {first: "applied"} | {doc["intervention_id"]: "denied" for doc in refused}

    # What the pipeline tells every sink: that one applied, every other refused.
    def told() -> list[HumanIntervention]:
        return [e for n in nodes for e in n.sink.of_type(HumanIntervention) if e.task_id == task]

    wait_until(lambda: len(told()) == 10, what="every decision announced once", timeout=20)
    assert sorted((e.decision.intervention_id, e.outcome) for e in told()) == sorted(outcome.items())

    # The event stream: each decision once, with its outcome and why (a
    # client told of a gap by a reset may lack some, never show one twice).
    clients = stream.streams()
    for reset, frames in clients:
        seen = Counter(f.doc["intervention_id"] for f in frames)
        assert set(seen) <= set(outcome) and set(seen.values()) <= {1}, [f.doc for f in frames]
        assert reset or set(seen) == set(outcome), [f.doc for f in frames]
        for f in frames:
            doc = f.doc
            assert doc["outcome"] == outcome[doc["intervention_id"]], doc
            assert doc["code"] == (None if doc["outcome"] == "applied" else "already_decided"), doc
    assert {f.doc["intervention_id"] for _reset, frames in clients for f in frames} == set(outcome)

    # The webhook: the applied decision alone, once (refusals are never sent).
    def hooked() -> list[Any]:
        return [r for r in outputs.webhook.delivered() if r.json.get("task_id") == task]

    wait_until(hooked, what="the webhook delivery", timeout=20)
    for node in nodes:
        assert node.pipeline.force_flush(10)
    assert [(r.intervention_id, r.json["outcome"]) for r in hooked()] == [(first, "applied")]

    # Slack's thread: the applied decision shown once, each refusal once as a refusal.
    who = {doc["intervention_id"]: doc["decided_by"] for _status, doc in got}
    wanted = sorted(("applied" if o == "applied" else "denied", who[iid]) for iid, o in outcome.items())
    wait_until(lambda: len(_decision_lines(outputs, task)) >= 10, what="Slack's decision lines", timeout=30)
    time.sleep(0.5)  # and nothing more
    assert sorted(_decision_lines(outputs, task)) == wanted, _thread(outputs, task)


def _parent(outputs: Outputs, task: str) -> Any:
    for m in outputs.slack.parents():
        if (m.metadata or {}).get("event_payload", {}).get("task_id") == task:
            return m
    return None


def _thread(outputs: Outputs, task: str) -> list[str]:
    parent = _parent(outputs, task)
    return [m.text or "" for m in outputs.slack.on_loop(lambda: outputs.slack.fake.thread(parent))] if parent else []


def _decision_lines(outputs: Outputs, task: str) -> list[tuple[str, str]]:
    """Each decision line of the task's thread: (applied or denied, by whom)."""
    out = []
    for text in _thread(outputs, task):
        if m := re.match(r"(?:✅ Approved|❌ Rejected) by (\S+?)(?::|$)", text):
            out.append(("applied", m.group(1)))
        elif m := re.match(r"🚫 (\S+) tried to (?:approve|reject)\b", text):
            out.append(("denied", m.group(1)))
    return out


class _Streams:
    """A client of every node's ``GET /v1/events`` (the task's interventions),
    connected before the decisions. A node streams what it decided (node i
    of k decides every k-th), or, with a feed the replicas share
    (PostgreSQL), every replica's decisions."""

    def __init__(self, nodes: list[Node], task: str, n: int) -> None:
        assert all(node.stream.ring is not None for node in nodes)
        self.shared = len(nodes) > 1 and len({node.stream.ring.epoch for node in nodes if node.stream.ring}) == 1
        self.n = n
        self.got: list[list[Frame]] = [[] for _ in nodes]
        k = len(nodes)
        self.threads = [
            threading.Thread(
                target=self._read, args=(node, task, i, n if self.shared else len(range(i, n, k))), daemon=True
            )
            for i, node in enumerate(nodes)
        ]
        for th in self.threads:
            th.start()
        wait_until(
            lambda: all(node.stream.clients is not None and node.stream.clients.count() for node in nodes),
            what="the stream clients connected",
            timeout=20,
        )

    def _decided(self) -> set[str]:
        return {f.doc["intervention_id"] for x in self.got for f in x if f.event == "intervention"}

    def _read(self, node: Node, task: str, i: int, n: int) -> None:
        url = f"{node.base}/v1/events?task={task}&kind=intervention"
        auth = {"Authorization": f"Bearer {TOKEN}"}

        def enough(frames: list[Frame]) -> bool:
            self.got[i] = frames
            if sum(f.event == "intervention" for f in frames) >= n:
                return True
            # A reset (docs/reference/events.md) says events were not sent: no waiting
            # for them once the other clients have read every decision.
            return any(f.event == "reset" for f in frames) and len(self._decided()) >= self.n

        got, _rest = asyncio.run(read(url, headers=auth, until=enough, timeout=40))
        self.got[i] = got

    def streams(self) -> list[tuple[bool, list[Frame]]]:
        """What each client of the whole stream read, and whether it was
        told of a gap (a reset): every node's when the feed is shared, else
        all nodes' together."""
        for th in self.threads:
            th.join(45)
        reads = self.got if self.shared else [[f for x in self.got for f in x]]
        return [(any(f.event == "reset" for f in x), [f for f in x if f.event == "intervention"]) for x in reads]


def test_a_decision_sent_again_is_told_it_was_applied(nodes: list[Node]) -> None:
    """A caller that got no answer (a dropped connection, a killed replica)
    sends the same ``intervention_id`` again, to any replica: told it was
    applied (``duplicate``, with what it answered), never a second decision;
    a vote sent again after its request was decided is that vote, counted."""
    task = _task()
    start_run(nodes[0], task, ["a1"])
    endpoint = ["--endpoint", nodes[0].base, "--token", TOKEN]
    main(
        [
            "emit",
            "approval",
            "--task",
            task,
            "--id",
            "a2",
            "--question",
            "Two?",
            "--approvers",
            "2",
            "--wait",
            "0",
            *endpoint,
        ]
    )
    wait_until(lambda: len(record(nodes[0], task)["approvals"]) == 2, what="both requests open", timeout=20)

    def send(i: int, aid: str, iid: str, person: str) -> tuple[int, dict[str, Any]]:
        body = {"action": "approve", "approval_id": aid, "intervention_id": iid, "actor": "x"}
        return call(_by(nodes, i), "POST", f"/tasks/{task}/decisions", body, PEOPLE[person])

    status, first = send(0, "a1", "once-1", "p1")
    assert status == 200 and first["outcome"] == "applied", first
    status, again = send(1, "a1", "once-1", "p1")
    assert status == 200 and again["outcome"] == "duplicate", again
    assert again["reason"] == "already applied: once-1 was recorded before (approved by p1); nothing changed", again
    assert (again["question"], again["digest"], again["run_id"]) == (
        first["question"],
        first["digest"],
        first["run_id"],
    )

    assert send(0, "a2", "vote-1", "p1")[1]["votes"] == 1
    status, last = send(1, "a2", "vote-2", "p2")
    assert status == 200 and (last["outcome"], last["votes"], last["votes_needed"]) == ("applied", 2, 2), last
    status, vote = send(1, "a2", "vote-1", "p1")
    assert status == 200 and (vote["outcome"], vote["votes"], vote["votes_needed"]) == ("duplicate", 1, 2), vote
    assert vote["reason"].startswith("already applied: vote-1 "), vote

    assert sorted(d["intervention_id"] for d in record(nodes[-1], task)["decisions"]) == ["once-1", "vote-2"]
    for node in nodes:
        assert node.pipeline.force_flush(10)
    told = sorted(
        e.decision.intervention_id for n in nodes for e in n.sink.of_type(HumanIntervention) if e.task_id == task
    )
    assert told == ["once-1", "vote-1", "vote-2"]  # the ones sent again announced nothing


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
