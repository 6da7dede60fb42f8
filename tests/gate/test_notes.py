"""The gate's audit notes: spooled and sent once the answer is out (never
holding it), delivered once the receiver is back, exactly once; notes given
up on are said on a task, once."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from spanvisor.gate import notes, otlp
from spanvisor.gate.contracts import Call
from spanvisor.spans import conventions as cv
from spanvisor.spans import live
from tests.cli.coding_harness import TOKEN, Serve, clean_env, task_of
from tests.gate.blackhole import Switch
from tests.gate.test_attack import SPANVISOR, decision
from tests.waiting import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout_s(600)]


def test_the_gates_names_are_the_conventions_names() -> None:
    for name in (
        "EVENT_CHECKPOINT",
        "EVENT_APPROVAL_DECISION",
        "LIVE_TASK_START",
        "TASK_ID",
        "TASK_NAME",
        "AGENT_ID",
        "MESSAGE",
        "APPROVAL_ID",
        "APPROVAL_OUTCOME",
        "APPROVAL_DECIDED_BY",
        "SESSION_KEY",
    ):
        assert getattr(otlp, name) == getattr(cv, name), name
    assert otlp.RECORD_ID == live.RECORD_ID


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def serve(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Serve]:
    clean_env(monkeypatch, tmp_path)
    s = Serve(tmp_path / "serve")
    yield s
    s.close()


# The session's task: its id in Claude Code's namespace (the note names the bare
# session id; serve maps it, the record's ids proving whose task it is).
TASK = "claude-code:sess-notes-1"


def test_a_note_spooled_while_the_receiver_is_away_arrives_once_when_it_is_back(
    serve: Serve, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SPANVISOR_HOOK_DELIVERY", "off")  # this test delivers by hand
    call = Call("claude-code", "PreToolUse", "sess-notes-1", "Bash", {"command": "ls -la"}, "toolu_1")
    away = f"http://127.0.0.1:{_closed_port()}"
    item = notes.note(
        "policy", call, "toolu_1", away, 1_700_000_000_000_000_000, os.environ, verdict="allow", by="policy:ls"
    )
    notes.keep(item, TOKEN)
    assert len(notes.pending()) == 1, "the receiver is away: the note waits in the spool"
    assert notes.deliver(token=TOKEN) == 0 and len(notes.pending()) == 1, "still away: kept, not lost"
    assert item is not None
    notes.backoff_file(item["endpoint"]).unlink()  # as the backoff's end would
    # The receiver comes back (here: the note names the one that runs).
    [path] = notes.pending()
    path.write_text(path.read_text().replace(away, serve.base))
    assert notes.deliver(token=TOKEN) == 1 and notes.pending() == []
    cps = wait_until(lambda: serve.checkpoints(TASK), 240, "the policy decision on the task")
    assert cps[-1].attributes["agent.approval.decided_by"] == "policy:ls"
    # Delivered again (a lost 2xx, a second deliverer): the same record, once.
    item["endpoint"] = serve.base
    assert notes.send(item, TOKEN, 10.0)
    # A later note is the barrier: once it is in, the repeat was read too.
    later = notes.note(
        "policy", call, "toolu_2", serve.base, 1_700_000_001_000_000_000, os.environ, verdict="deny", by="policy:x"
    )
    assert later is not None and notes.send(later, TOKEN, 10.0)
    both = wait_until(
        lambda: (
            [c for c in serve.checkpoints(TASK) if c.attributes.get("agent.approval.decided_by")] or None
            if len([c for c in serve.checkpoints(TASK) if c.attributes.get("agent.approval.decided_by")]) >= 2
            else None
        ),
        240,
        "the later note",
    )
    assert [c.attributes["agent.approval.decided_by"] for c in both] == ["policy:ls", "policy:x"]


def test_with_the_receiver_blackholed_the_answer_comes_at_once_and_the_note_arrives_once_when_it_is_back(
    serve: Serve, tmp_path: Path
) -> None:
    """The real hook, its receiver accepting and never answering: the
    policy's answer is out before the note's send could even time out; once
    the receiver is back, the request held all along reaches it late and
    the spool delivers the note again: one checkpoint."""
    switch = Switch(("127.0.0.1", int(serve.base.rsplit(":", 1)[1])))
    session = f"sess-hole-{os.getpid()}"
    (tmp_path / "policy.toml").write_text(
        'default = "deny"\n[[rule]]\nname = "ls"\ncommand = "ls *"\ndecision = "allow"\n'
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SPANVISOR_", "OTEL_"))}
    env |= {"SPANVISOR_DATA_DIR": str(tmp_path / "data"), "SPANVISOR_OTLP_ENDPOINT": switch.url}
    env |= {"SPANVISOR_OTLP_TOKEN": TOKEN}
    stdin = json.dumps({"session_id": session, "tool_name": "Bash", "tool_input": {"command": "ls -la"}})
    try:
        t0 = time.monotonic()
        proc = subprocess.run(
            [SPANVISOR, "hook", "claude-code", "--policy", str(tmp_path / "policy.toml")],
            input=stdin.encode(),
            capture_output=True,
            env=env,
            timeout=120,
            check=False,
        )
        took = time.monotonic() - t0
        assert (proc.returncode, decision("claude-code", proc.stdout.decode())) == (0, "allow"), proc.stderr
        assert proc.stderr == b"", "the hook says nothing more"
        assert took < notes.REQUEST_TIMEOUT_S, f"the answer took {took:.2f} s: it waited on the note"
        assert switch.accepted.wait(60), "the released hook sent the note"
        spool = tmp_path / "data" / "hook-spool"
        backoff = notes.backoff_file(switch.url, spool)  # the hook's destination backs off on its own
        wait_until(lambda: backoff.exists() or None, 60, "the send given up on")
        assert len(notes.pending(spool)) == 1, "the note waits in the spool"
        switch.through()  # the receiver is back: the held request arrives late
        backoff.unlink()  # as the backoff's end would
        assert notes.deliver(spool, TOKEN) == 1 and notes.pending(spool) == []
        later = notes.note(
            "policy",
            Call("claude-code", "PreToolUse", session, "Bash", {"command": "pwd"}, "barrier"),
            "barrier",
            serve.base,
            time.time_ns(),
            {},
            verdict="deny",
            by="policy:barrier",
        )
        assert later is not None and notes.send(later, TOKEN, 10.0)

        def decided() -> list[str] | None:
            by = [
                str(c.attributes.get("agent.approval.decided_by"))
                for c in serve.checkpoints(task_of("claude-code", session))
            ]
            by = [b for b in by if b != "None"]
            return by if "policy:barrier" in by else None

        assert wait_until(decided, 240, "the notes") == ["policy:ls", "policy:barrier"], "the note once"
    finally:
        switch.close()


def test_notes_given_up_on_are_said_once_on_the_next_delivered_notes_task(serve: Serve, tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    call = Call("claude-code", "PreToolUse", "sess-lost", "Bash", {"command": "ls"}, "t1")
    old = notes.note("policy", call, "t0", serve.base, 1_700_000_000_000_000_000, {}, verdict="allow", by="policy:x")
    assert old is not None
    path = notes.write(old, spool)
    week = time.time() - notes.GIVE_UP_S - 60
    os.utime(path, (week, week))
    fresh = notes.note("policy", call, "t1", serve.base, time.time_ns(), {}, verdict="allow", by="policy:y")
    assert fresh is not None
    notes.write(fresh, spool)
    assert notes.deliver(spool, TOKEN) == 1 and notes.undelivered(spool) == 1 and notes.unreported(spool) == 0

    def lost() -> list[Any] | None:
        found = [
            c for c in serve.checkpoints(task_of("claude-code", "sess-lost")) if c.attributes.get(notes.NOTES_LOST)
        ]
        return found or None

    [warning] = wait_until(lost, 240, "the warning on the task")
    assert warning.attributes[notes.NOTES_LOST] == 1
    assert "1 of the gate's audit notes could not be delivered" in str(warning.task.message)
    again = notes.note("policy", call, "t2", serve.base, time.time_ns(), {}, verdict="allow", by="policy:z")
    assert again is not None
    notes.write(again, spool)
    assert notes.deliver(spool, TOKEN) == 1
    wait_until(
        lambda: (
            any(
                c.attributes.get("agent.approval.decided_by") == "policy:z"
                for c in serve.checkpoints(task_of("claude-code", "sess-lost"))
            )
            or None
        ),
        240,
        "the next note",
    )
    assert len(lost() or []) == 1, "said once"


def test_a_dead_destination_holds_back_none_of_the_25_notes_behind_it(serve: Serve, tmp_path: Path) -> None:
    """Issue 64: one note for a dead endpoint, oldest in the spool, then 25
    for a live serve: one delivery takes all 25 to their task, and only the
    dead destination backs off (tests/gate/test_notes_destinations.py has
    the rest: order per destination, junk, any interleaving)."""
    spool = tmp_path / "spool"
    dead = f"http://127.0.0.1:{_closed_port()}"
    stuck = notes.note(
        "policy",
        Call("claude-code", "PreToolUse", "sess-dead", "Bash", {"command": "ls"}, "d0"),
        "d0",
        dead,
        time.time_ns(),
        {},
        verdict="allow",
        by="policy:dead",
    )
    assert stuck is not None
    first = notes.write(stuck, spool)
    for n in range(25):
        call = Call("claude-code", "PreToolUse", "sess-flow", "Bash", {"command": f"ls {n}"}, f"f{n}")
        item = notes.note("policy", call, f"f{n}", serve.base, time.time_ns(), {}, verdict="allow", by=f"policy:{n}")
        assert item is not None
        notes.write(item, spool)
    assert notes.deliver(spool, TOKEN) == 25, "the dead destination held the live one's notes back"
    assert notes.pending(spool) == [first], "the dead destination's note waits"
    assert notes.backoff_file(dead, spool).exists() and not notes.backoff_file(serve.base, spool).exists()

    def decided() -> list[str] | None:
        by = [
            str(c.attributes.get("agent.approval.decided_by"))
            for c in serve.checkpoints(task_of("claude-code", "sess-flow"))
        ]
        by = [b for b in by if b.startswith("policy:")]
        return by if len(by) >= 25 else None

    got = wait_until(decided, 240, "the 25 notes on their task")
    assert sorted(got) == sorted(f"policy:{n}" for n in range(25)), "each note once"
