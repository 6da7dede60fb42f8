"""What the hook tests of the CLIs added to the matrix share: the policy
(deleting denied, everything else asked), finding the hook's approval
request by a marker in its question, and approving it from the terminal
(``spanvisor approve`` as bob) or by alice's signed Slack click."""

from __future__ import annotations

import json
import os
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.codingagents.agents import Ran, Running
from tests.codingagents.script import Script, text, tool
from tests.codingagents.served import APPROVER, Matrix
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
        approval = str(req["approval_id"])
        parent, button = wait_until(
            lambda: matrix.approve_button(task_id, approval), WAIT_S, "the Approve button of this request in Slack"
        )
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


@dataclass
class GateSession:
    """One real session that meets the gate three times: ``rm -rf build``
    denied by the policy, ``echo approved-<run>`` asked and approved by bob
    from the terminal, then ``touch ran.txt`` when the hook's policy file has
    turned to junk while the person was deciding (an error of the hook),
    blocked. What the CLI sent back of each call, in order."""

    run_id: str
    work: Path
    policy: Path

    @property
    def approved(self) -> str:
        return f"echo approved-{self.run_id}"

    def script(self, shell: str, **extra: Any) -> Script:
        return Script(
            [
                tool(shell, command="rm -rf build", **extra),
                tool(shell, command=self.approved, **extra),
                tool(shell, command="touch ran.txt", **extra),
                text("Done."),
            ]
        )

    def prepare(self, shell: str) -> None:
        self.policy.write_text(POLICY.format(shell=shell))
        (self.work / "build").mkdir(parents=True)
        (self.work / "build" / "keep.txt").write_text("still here")

    def drive(self, matrix: Matrix, running: Running) -> tuple[Ran, dict[str, Any]]:
        """Approve the second call once its request is open (the policy
        broken first); the run and the request."""
        try:
            req = wait_until(
                lambda: pending_with(matrix, self.run_id, running), WAIT_S, "the approval request", every=0.2
            )[0]
            self.policy.write_text("default = [this is not TOML\n")
            approve_from("cli", matrix, req)
            ran = running.wait()
        finally:
            running.stop()
        return ran, req

    def check(
        self, matrix: Matrix, ran: Ran, results: list[str], task_id: str, shell_step: str | None, clicked: bool = False
    ) -> None:
        """``shell_step``: the shell tool's name in the task's steps (None:
        the session alone has no steps, as OpenCode's); ``clicked``: a second
        approval came from alice's Slack click (:func:`drive_twice`)."""
        assert ran.code == 0, ran.said()
        assert (self.work / "build" / "keep.txt").read_text() == "still here", "the denied command did not run"
        assert not (self.work / "ran.txt").exists(), "a call ran past a hook that failed"
        denied, approved, failed = results
        assert "spanvisor: deleting is not allowed here" in denied, denied
        assert f"approved-{self.run_id}" in approved and "spanvisor" not in approved, approved
        assert "spanvisor" in failed and "ran.txt" not in os.listdir(self.work), failed
        want = [("approve", "applied", "cli", "bob")] + ([("approve", "applied", "slack", APPROVER)] if clicked else [])
        rows = wait_until(
            lambda: (r := matrix.interventions(task_id)) and len(r) >= len(want) and r, WAIT_S, "the interventions"
        )
        assert sorted((r["action"], r["outcome"], r["source"], r["actor"]) for r in rows) == want
        if shell_step is not None:
            want_step = f"{shell_step}({self.approved})"
            # The steps arrive with the CLI's telemetry, one export after
            # another: wait for the approved one, not for the first.
            wait_until(lambda: want_step in steps(matrix, task_id), WAIT_S, f"the approved step {want_step}")


def ruling(matrix: Matrix, task_id: str) -> str:
    """The hook's policy ruling on the task (its event row's message)."""

    def got() -> str | None:
        rows = [str(c["message"]) for c in matrix.timeline(task_id) if c["source"] == "event"]
        return next((m for m in rows if "denied by policy" in m), None)

    return str(wait_until(got, WAIT_S, "the hook's ruling on the task"))


def drive_twice(matrix: Matrix, gate: GateSession, running: Running, clicked: str) -> tuple[Ran, list[dict[str, Any]]]:
    """As :meth:`GateSession.drive`, with one more approval: the call whose
    command is ``gate.approved`` from the terminal, then the one naming
    ``clicked`` by alice's signed Slack click (the policy broken while she
    decides); the run and the two requests."""
    asked = []
    try:
        for marker, how in ((gate.approved, "cli"), (clicked, "slack")):
            [req] = wait_until(lambda m=marker: pending_with(matrix, m, running), WAIT_S, "the request", every=0.2)
            if how == "slack":
                gate.policy.write_text("default = [this is not TOML\n")
            approve_from(how, matrix, req)
            asked.append(req)
        ran = running.wait()
    finally:
        running.stop()
    return ran, asked
