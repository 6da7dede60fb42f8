"""Proof, not claims, at the permit endpoint.

* A request asked with a permit key (the Python helper and ``spanvisor emit
  approval`` send the SHA-256 of a secret only they hold) is consumed only
  with that secret, whatever token the caller holds: another process with
  the shared OTLP token gets ``wrong_key`` and consumes nothing.
* Once the deciders file names agents' own tokens, an approval is consumed
  only with the token of the agent that asked it: the shared OTLP token
  only reads (403 at the permit endpoint), another agent's token is refused
  (``wrong_agent``) and leaves the approval unconsumed, and an agent's token
  never decides."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from .exactly_once_support import ACTION, PEOPLE, TOKEN, Node, call, cluster, key_of, start_run

AGENTS = {"sh": "sh-own-t0ken", "mallory": "mallory-own-t0ken"}


@pytest.fixture
def node(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Node]:
    monkeypatch.setenv("SPANVISOR_DATA_DIR", str(tmp_path / "agent"))
    nodes, stop = cluster(tmp_path, "local", 1, agents=AGENTS)
    yield nodes[0]
    stop()


@pytest.fixture
def plain(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Node]:
    monkeypatch.setenv("SPANVISOR_DATA_DIR", str(tmp_path / "agent"))
    nodes, stop = cluster(tmp_path, "memory", 1)
    yield nodes[0]
    stop()


def test_a_request_with_a_permit_key_is_consumed_only_with_its_secret(plain: Node) -> None:
    task = f"T-{uuid.uuid4().hex[:8]}"
    start_run(plain, task, ["a1"])
    decided = {"action": "approve", "approval_id": "a1", "actor": "p0"}
    assert call(plain, "POST", f"/tasks/{task}/decisions", decided, PEOPLE["p0"])[0] == 200
    path = f"/tasks/{task}/approvals/a1/permit"
    for body in ({"action": ACTION}, {"action": ACTION, "key": "guessed"}):
        status, doc = call(plain, "POST", path, body, TOKEN)
        assert status == 200 and not doc["permitted"] and doc["code"] == "wrong_key", doc
    status, doc = call(plain, "POST", path, {"action": ACTION, "key": key_of(task, "a1")}, TOKEN)
    assert status == 200 and doc["permitted"], doc


def test_only_the_asking_agent_consumes_its_approval(node: Node) -> None:
    task = f"T-{uuid.uuid4().hex[:8]}"
    start_run(node, task, ["a1"])  # the run's agent is "sh"
    status, doc = call(
        node,
        "POST",
        f"/tasks/{task}/decisions",
        {"action": "approve", "approval_id": "a1", "actor": "p0"},
        PEOPLE["p0"],
    )
    assert status == 200 and doc["outcome"] == "applied", doc
    path, body = f"/tasks/{task}/approvals/a1/permit", {"action": ACTION, "key": key_of(task, "a1")}

    status, doc = call(node, "POST", path, body, TOKEN)
    assert status == 403 and "only reads" in doc["error"], doc
    status, doc = call(node, "POST", path, body, AGENTS["mallory"])
    assert status == 200 and not doc["permitted"] and doc["code"] == "wrong_agent", doc
    status, doc = call(node, "POST", path, body, AGENTS["sh"])
    assert status == 200 and doc["permitted"], doc  # mallory's try consumed nothing
    status, doc = call(node, "POST", path, body, AGENTS["sh"])
    assert status == 200 and doc["code"] == "consumed", doc

    # The agent's token reads its task; it never decides.
    assert call(node, "GET", f"/tasks/{task}", None, AGENTS["sh"])[0] == 200
    decide = {"action": "cancel", "actor": "sh"}
    assert call(node, "POST", f"/tasks/{task}/decisions", decide, AGENTS["sh"])[0] == 401
    # The shared token still reads.
    assert call(node, "GET", f"/tasks/{task}", None, TOKEN)[0] == 200
