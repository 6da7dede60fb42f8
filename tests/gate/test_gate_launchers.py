"""The system gate's record of the launchers that told it their session
(``spanvisor.cli.gate_serve.Launchers``): a call gets the session of its
nearest ancestor that told one, never its own, and never that of a later
process given the same pid (its start time differs)."""

from __future__ import annotations

import os
import subprocess
import sys

from spanvisor.cli.gate_serve import Launchers, launcher_session, process, session_context

SESSION = {"SPANVISOR_TASK_ID": "launched-1", "SPANVISOR_TASK_AGENT": "claude-code"}


def test_a_call_gets_its_nearest_launchers_session_and_not_a_reused_pids() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        launchers = Launchers()
        assert launchers.above(child.pid) is None
        assert launchers.hold(os.getpid(), SESSION)
        assert launchers.above(child.pid) == SESSION  # this process is the child's parent
        assert launchers.above(os.getpid()) is None  # never its own
        me = process(os.getpid())
        assert me is not None
        # The same pid, another start: as a process given the pid of one that exited.
        launchers._by_pid[os.getpid()] = (me[1] + 1, SESSION)
        assert launchers.above(child.pid) is None
        launchers.drop(os.getpid())
        assert launchers.above(child.pid) is None
    finally:
        child.kill()
        child.wait(10)


def test_only_a_well_formed_session_is_kept_and_the_environments_word_is_dropped() -> None:
    assert launcher_session({"task_id": "t-1", "agent": "codex", "run": "r9", "owner": "alice"}) == {
        "SPANVISOR_TASK_ID": "t-1",
        "SPANVISOR_TASK_AGENT": "codex",
        "run": "r9",
        "SPANVISOR_TASK_OWNER": "alice",
    }
    for bad in (None, [], {}, {"task_id": ""}, {"task_id": "x" * 257}, {"task_id": "a\nb"}, {"task_id": 3}):
        assert launcher_session(bad) is None, bad
    hostile = {
        "SPANVISOR_TASK_ID": "victim",
        "SPANVISOR_TASK_AGENT": "trusted",
        "SPANVISOR_TASK_OWNER": "bob",
        "OTEL_RESOURCE_ATTRIBUTES": (
            "spanvisor.task.id=victim,spanvisor.task.run=r1,agent.owner=bob,agent.repo=acme/sandbox,"
            "spanvisor.task.name=trusted,agent.name=trusted,service.name=claude-code"
        ),
    }
    # The owner, the task's name and repository too: only a launcher may say them.
    alone = session_context(hostile, None)
    assert alone == {"OTEL_RESOURCE_ATTRIBUTES": "service.name=claude-code"}
    launched = session_context(hostile, {**SESSION, "run": "r2"})
    assert launched["SPANVISOR_TASK_ID"] == "launched-1" and launched["SPANVISOR_TASK_AGENT"] == "claude-code"
    assert "spanvisor.task.id=launched-1" in launched["OTEL_RESOURCE_ATTRIBUTES"]
    assert "spanvisor.task.run=r2" in launched["OTEL_RESOURCE_ATTRIBUTES"]
