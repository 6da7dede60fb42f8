"""Proof, not claims, at the permit endpoint: once the deciders file names
agents' own tokens, an approval is consumed only with the token of the
agent that asked it. The shared OTLP token only reads (403 at the permit
endpoint), another agent's token is refused (``wrong_agent``) and leaves
the approval unconsumed, and an agent's token never decides."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from .exactly_once_support import ACTION, PEOPLE, TOKEN, Node, call, cluster, start_run

AGENTS = {"sh": "sh-own-t0ken", "mallory": "mallory-own-t0ken"}


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    nodes, stop = cluster(tmp_path, "local", 1, agents=AGENTS)
    yield nodes[0]
    stop()


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
    path, body = f"/tasks/{task}/approvals/a1/permit", {"action": ACTION}

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
