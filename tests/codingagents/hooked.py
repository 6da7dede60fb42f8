"""What the hook tests of the CLIs added to the matrix share: the policy
(deleting denied, everything else asked), finding the hook's approval
request by a marker in its question, and approving it from the terminal
(``spanvisor approve`` as bob) or by alice's signed Slack click."""

from __future__ import annotations

import json
import urllib.request
from typing import Any

from tests.codingagents.agents import Running
from tests.codingagents.served import Matrix
from tests.waiting import wait_until

WAIT_S = 120.0
# {shell}: the CLI's shell tool.
POLICY = """
default = "ask"
timeout = 150
on_timeout = "deny"

[[rule]]
name = "no-deleting"
tool = ["{shell}"]
command = ["rm -rf*"]
decision = "deny"
reason = "deleting is not allowed here"
"""


def pending_with(matrix: Matrix, marker: str, running: Running | None = None) -> list[dict[str, Any]]:
    """Open approval requests whose question names ``marker`` (whatever their
    task); ``running``: fail at once when that CLI ended before asking."""
    if running is not None and running.proc.poll() is not None:
        raise AssertionError(f"the CLI ended before asking:\n{running.wait().said()}")
    with urllib.request.urlopen(f"{matrix.endpoint}/v1/control/approvals", timeout=20) as resp:
        doc = json.loads(resp.read())
    return [r for r in doc.get("approvals", []) if marker in str(r.get("question"))]


def approve_from(how: str, matrix: Matrix, req: dict[str, Any]) -> str:
    """Approve ``req`` from the terminal (``cli``) or Slack (``slack``); its task."""
    task_id = str(req["task_id"])
    if how == "slack":
        parent, button = wait_until(lambda: matrix.approve_button(task_id), WAIT_S, "the Approve button in Slack")
        assert matrix.click(parent, button) == 200
    else:
        matrix.spanvisor("approve", task_id, req["approval_id"], "--as", "bob", "--url", matrix.endpoint)
    return task_id


def steps(matrix: Matrix, task_id: str) -> list[str]:
    out = []
    for c in matrix.timeline(task_id):
        if c["source"] == "tool_call":
            a = c["attributes"]
            out.append(str((json.loads(a) if isinstance(a, str) else a)["tool"]))
    return out
