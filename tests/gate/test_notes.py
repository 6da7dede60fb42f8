"""The gate's audit notes: sent before the hook exits when the receiver
answers at once, else spooled and delivered once it is back, exactly once."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from spanvisor.gate import notes, otlp
from spanvisor.gate.contracts import Call
from spanvisor.spans import conventions as cv
from spanvisor.spans import live
from tests.cli.coding_harness import TOKEN, Serve, clean_env
from tests.waiting import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout_s(600)]


def test_the_gates_names_are_the_conventions_names() -> None:
    for name in (
        "EVENT_CHECKPOINT",
        "EVENT_APPROVAL_DECISION",
        "LIVE_TASK_START",
        "TASK_ID",
        "AGENT_ID",
        "MESSAGE",
        "APPROVAL_ID",
        "APPROVAL_OUTCOME",
        "APPROVAL_DECIDED_BY",
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
    (notes.spool_dir() / notes.BACKOFF_FILE).unlink()
    # The receiver comes back (here: the note names the one that runs).
    [path] = notes.pending()
    path.write_text(path.read_text().replace(away, serve.base))
    assert notes.deliver(token=TOKEN) == 1 and notes.pending() == []
    cps = wait_until(lambda: serve.checkpoints(TASK), 240, "the policy decision on the task")
    assert cps[-1].attributes["agent.approval.decided_by"] == "policy:ls"
    # Delivered again (a lost 2xx, a second deliverer): the same record, once.
    assert item is not None
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
