"""Each launcher run of a task has a root of its own (issue 64): the
launcher's run (``spanvisor.task.run`` in the CLI's resource; joined by the
launcher for the hooks its local gate answers) goes into the derivation of
the task's trace and root ids, read alike by the hooks (gate/session.py),
what a spooled note keeps of its session, the hook's asks
(receiver/codingagents/ids.py, as codingtask.SessionTask derives) and
serve's reader of the CLI's records (receiver/codingagents/batch.py).
Without a run, every id is the task id's alone, as before runs."""

from __future__ import annotations

from typing import Any

import pytest

from spanvisor.clis.claude_code import records as claude
from spanvisor.gate import contracts as gc
from spanvisor.gate import notes, taskids
from spanvisor.gate import session as gs
from spanvisor.hook import task as ct
from spanvisor.receiver.codingagents import ids as receiver_ids
from spanvisor.receiver.codingagents.batch import Batch

RUN = "0123456789abcdef0123456789abcdef"
OTHER = "fedcba9876543210fedcba9876543210"


@pytest.fixture(autouse=True)
def no_joined_run(monkeypatch: pytest.MonkeyPatch) -> None:
    """No run joined by an earlier launcher in this process, nor named by the environment."""
    monkeypatch.setattr(gs, "_JOINED", {})
    for name in (gs.ENV_TASK_ID, "OTEL_RESOURCE_ATTRIBUTES"):
        monkeypatch.delenv(name, raising=False)


def test_a_run_gives_the_task_another_root_and_no_run_the_task_ids_own() -> None:
    old = taskids.launcher_task_ids("T-1")
    assert old == taskids.task_ids("", "T-1"), "without a run: the derivation of launchers before runs"
    first, second = taskids.launcher_task_ids("T-1", RUN), taskids.launcher_task_ids("T-1", OTHER)
    assert len({old, first, second}) == 3
    assert first[0] != old[0] and first[1] != old[1], "a new trace and a new root"
    assert taskids.launcher_task_ids("T-1", RUN) == first, "derived, never drawn: every process agrees"
    assert taskids.launcher_task_ids("T-2", RUN) != first
    # What is not a run's nonce is no run.
    for bogus in ("", "x" * 32, RUN.upper(), RUN[:-1], RUN + "0"):
        assert not taskids.is_run(bogus)
        assert taskids.launcher_task_ids("T-1", bogus) == old
    assert taskids.session_task("claude-code", "s", "T-1", RUN) == ("T-1", *first)
    assert taskids.session_task("claude-code", "s", "T-1") == ("T-1", *old)


def _resource(**attrs: str) -> str:
    return gs.encode_resource({f"spanvisor.task.{k}": v for k, v in attrs.items()})


def test_the_hook_names_the_launchers_run_from_its_environment() -> None:
    """A CLI that passes its resource on to its hooks (Codex, Gemini CLI…)."""
    env = {gs.ENV_TASK_ID: "T-1", "OTEL_RESOURCE_ATTRIBUTES": _resource(id="T-1", run=RUN)}
    key = gs.session_of("codex", "sess-1", env)
    assert key is not None and key.launched
    assert (key.task_id, key.run, key.ids) == ("T-1", RUN, taskids.launcher_task_ids("T-1", RUN))
    # Without SPANVISOR_TASK_ID (Claude Code drops OTEL_*, others may drop SPANVISOR_*): the resource alone.
    read = gs.session_of("codex", "s", {"OTEL_RESOURCE_ATTRIBUTES": _resource(id="T-1", run=RUN)})
    assert read is not None and (read.task_id, read.run) == ("T-1", RUN)
    # A launcher before runs: the task id alone, its key as before.
    old = gs.session_of("claude-code", "sess-1", {gs.ENV_TASK_ID: "T-1"})
    assert old == gs.TaskKey("T-1", "claude-code", True)
    assert old is not None and (old.task_id, old.run, old.ids) == ("T-1", None, taskids.launcher_task_ids("T-1"))
    # The run of another task (an outer launcher's resource) is none of this one's.
    other = {gs.ENV_TASK_ID: "T-2", "OTEL_RESOURCE_ATTRIBUTES": _resource(id="T-1", run=RUN)}
    mixed = gs.session_of("codex", "s", other)
    assert mixed is not None and (mixed.task_id, mixed.run) == ("T-2", None)
    # Not a run, or a run without a launcher's task: none.
    bogus = gs.session_of(
        "codex", "s", {gs.ENV_TASK_ID: "T-1", "OTEL_RESOURCE_ATTRIBUTES": _resource(id="T-1", run="x")}
    )
    assert bogus is not None and bogus.run is None and bogus.ids == taskids.launcher_task_ids("T-1")
    alone = gs.session_of("codex", "sess-1", {"OTEL_RESOURCE_ATTRIBUTES": _resource(run=RUN)})
    assert alone is not None and not alone.launched and alone.ids == taskids.task_ids("codex_exec", "sess-1")


def test_the_launchers_local_gate_names_its_run_for_hooks_without_a_resource() -> None:
    """Claude Code's hooks have no OTEL_* variable: the launcher that joined
    its run answers them in its own process (the local gate)."""
    env = {gs.ENV_TASK_ID: "T-1"}
    assert gs.session_of("claude-code", "sess-1", env) == gs.TaskKey("T-1", "claude-code", True)
    gs.join_run("T-1", RUN)
    key = gs.session_of("claude-code", "sess-1", env)
    assert key is not None and (key.task_id, key.run) == ("T-1", RUN)
    assert key.ids == taskids.launcher_task_ids("T-1", RUN)
    # Another task's hooks (a launcher inside the session: its own gate) are not of this run.
    other = gs.session_of("claude-code", "sess-1", {gs.ENV_TASK_ID: "T-2"})
    assert other is not None and other.run is None


def test_a_spooled_note_still_names_the_run_when_it_is_sent() -> None:
    """A note keeps [key, service, launched] of its session; notes.send
    rebuilds the TaskKey from it: the key carries the run."""
    call = gc.Call("claude-code", "PreToolUse", "sess-1", "Bash", {"command": "ls"}, "call-1")
    env = {gs.ENV_TASK_ID: "T-1"}
    gs.join_run("T-1", RUN)
    item = notes.note("policy", call, "call-1", "http://127.0.0.1:9", 1, env, verdict="allow", by="policy:x")
    assert item is not None
    key, service, launched = item["session"]
    rebuilt = gs.TaskKey(str(key), str(service), bool(launched))
    assert rebuilt.ids == taskids.launcher_task_ids("T-1", RUN)
    assert all(attrs["agent.task.id"] == "T-1" for _, attrs, _ in item["records"]), item["records"]
    # Another run of the task: another note (its id names the run too).
    gs.join_run("T-1", OTHER)
    again = notes.note("policy", call, "call-1", "http://127.0.0.1:9", 1, env, verdict="allow", by="policy:x")
    assert again is not None and again["id"] != item["id"]


def test_the_hooks_asks_and_the_launchers_end_derive_the_run_of_their_process(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """codingtask.SessionTask names a launched task by its id alone: its ids
    are those of the run the process is part of (a hook's environment, or
    the launcher's join_run for the hooks its local gate answers)."""
    target: Any = None
    assert ct.SessionTask("T-1", "claude-code", True, target).trace_id == int(taskids.launcher_task_ids("T-1")[0], 16)
    monkeypatch.setenv(gs.ENV_TASK_ID, "T-1")
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", _resource(id="T-1", run=RUN))
    trace, root = taskids.launcher_task_ids("T-1", RUN)
    task = ct.SessionTask("T-1", "claude-code", True, target)
    assert (task.task_id, task.trace_id, task.root_id) == ("T-1", int(trace, 16), int(root, 16))
    # Another task's ids are never this process's run.
    assert receiver_ids.launcher_task_ids("T-2") == taskids.launcher_task_ids("T-2")
    # The launcher: its own environment names no run; it joins its session's.
    monkeypatch.delenv(gs.ENV_TASK_ID)
    monkeypatch.delenv("OTEL_RESOURCE_ATTRIBUTES")
    assert receiver_ids.launcher_task_ids("T-1") == taskids.launcher_task_ids("T-1")
    gs.join_run("T-1", OTHER)
    assert receiver_ids.launcher_task_ids("T-1") == taskids.launcher_task_ids("T-1", OTHER)
    assert gs.own_run("T-1") == OTHER and gs.own_run("T-2") is None
    # A run said explicitly wins.
    assert receiver_ids.launcher_task_ids("T-1", RUN) == (trace, root)


def _heard(resource: dict[str, Any]) -> tuple[str, str, str]:
    batch = Batch()
    batch.add(claude, "claude_code.user_prompt", {"session.id": "sess-1"}, resource, 1, "1")
    [heard] = batch.heard.values()
    return heard.task_id, heard.trace_id, heard.root_id


def test_serve_reads_the_run_from_the_clis_resource() -> None:
    base = {"service.name": "claude-code", "spanvisor.task.id": "T-1"}
    assert _heard({**base, "spanvisor.task.run": RUN}) == ("T-1", *taskids.launcher_task_ids("T-1", RUN))
    assert _heard(base) == ("T-1", *taskids.launcher_task_ids("T-1")), "a launcher before runs"
    assert _heard({**base, "spanvisor.task.run": "junk"}) == ("T-1", *taskids.launcher_task_ids("T-1"))
    assert _heard({**base, "spanvisor.task.run": 7}) == ("T-1", *taskids.launcher_task_ids("T-1"))
    # A run without a launcher's task id is nothing: the session's own task.
    alone = _heard({"service.name": "claude-code", "spanvisor.task.run": RUN})
    assert alone == taskids.session_task("claude-code", "sess-1")
    # And resource_of keeps it from an OTLP resource.
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
    from opentelemetry.proto.resource.v1.resource_pb2 import Resource

    from spanvisor.receiver.codingagents.batch import resource_of

    res = Resource(attributes=[KeyValue(key="spanvisor.task.run", value=AnyValue(string_value=RUN))])
    assert resource_of(res) == {"spanvisor.task.run": RUN}
