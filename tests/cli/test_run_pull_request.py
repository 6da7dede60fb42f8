"""The pull request a launched session made (``spanvisor.clis.pullrequest``,
``agent.pull_request``): read from what the CLI prints, said on the task.

* A command that makes one (``gh pr create``, ``glab mr create`` …) and
  the address it printed last; any other command, or output without an
  address, makes none (a property over the text around it).
* Claude Code's ``stream-json``: a ``Bash`` call's ``tool_use`` paired with
  its ``tool_result`` by id; a failed call, an unpaired result or another
  tool says nothing, and a failed call's command is let go of (what is held
  is bounded). Codex's ``exec --json``: a ``command_execution`` item;
  Gemini CLI's and OpenCode's lines likewise (each real CLI's own test is
  in tests/codingagents).
* ``spanvisor run`` in front of a CLI whose output shows one says it on the
  task (a live ``agent.task.update`` record), as the task shows at its end,
  and the latest one wins.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from spanvisor.clis import pullrequest
from spanvisor.launcher.results import ResultReader
from tests.cli.coding_harness import Serve, launch_claude
from tests.waiting import wait_until

PR = "https://github.com/acme/api/pull/12"


def test_the_commands_that_make_one_and_the_address_they_print() -> None:
    printed = f"Creating pull request for fix/login into main in acme/api\n\n{PR}\n"
    assert pullrequest.made_by("gh pr create --fill", printed) == PR
    assert pullrequest.made_by("cd api && gh pr create -t 'Fix login' -b x", printed) == PR
    mr = "https://gitlab.example/g/api/-/merge_requests/7"
    assert pullrequest.made_by("glab mr create --fill --yes", f"!7 Fix login\n {mr}\n") == mr
    for other in ("gh pr list", "gh pr view 12", "echo gh pr created", "ghx pr create", "git push"):
        assert pullrequest.made_by(other, printed) is None, other
    assert pullrequest.made_by("gh pr create --fill", "a pull request already exists") is None
    assert pullrequest.made_by(None, printed) is None and pullrequest.made_by("gh pr create", None) is None
    # Two addresses (an existing one named, then the new one): the last.
    assert pullrequest.made_by("gh pr create", f"see {PR}\nhttps://github.com/acme/api/pull/13") == PR[:-2] + "13"


@given(before=st.text(max_size=300), after=st.text(alphabet=" \n\t", max_size=5))
def test_the_address_is_found_whatever_comes_before_it(before: str, after: str) -> None:
    made = pullrequest.made_by("gh pr create --fill", f"{before}\n{PR}{after}")
    assert made is not None and made.endswith("/pull/12") and " " not in made and "\n" not in made


def _claude(*docs: dict[str, Any]) -> str | None:
    reading = ResultReader("claude-code-text")
    for doc in docs:
        reading.line(json.dumps(doc) + "\n")
    return reading.pull_request


def _use(call: str, command: str, tool: str = "Bash") -> dict[str, Any]:
    part = {"type": "tool_use", "id": call, "name": tool, "input": {"command": command}}
    return {"type": "assistant", "message": {"role": "assistant", "content": [part]}}


def _result(call: str, text: str, error: bool = False) -> dict[str, Any]:
    part = {"type": "tool_result", "tool_use_id": call, "content": [{"type": "text", "text": text}], "is_error": error}
    return {"type": "user", "message": {"role": "user", "content": [part]}}


def test_claude_codes_stream_pairs_the_command_with_its_result() -> None:
    assert _claude(_use("t1", "gh pr create --fill"), _result("t1", f"{PR}\n")) == PR
    assert _claude(_use("t1", "gh pr create --fill"), _result("t2", f"{PR}\n")) is None  # not its result
    assert _claude(_use("t1", "gh pr list"), _result("t1", f"{PR}\n")) is None  # lists, makes none
    assert _claude(_use("t1", "gh pr create", tool="Read"), _result("t1", PR)) is None
    assert _claude(_use("t1", "gh pr create"), _result("t1", PR, error=True)) is None  # it failed
    assert _claude(_result("t1", PR)) is None
    # A failed call is let go of: 64 of them do not stop the next from being read.
    failed = [d for i in range(70) for d in (_use(f"f{i}", "gh pr create"), _result(f"f{i}", "HTTP 422", error=True))]
    assert _claude(*failed, _use("t1", "gh pr create"), _result("t1", PR)) == PR


def test_what_is_held_is_bounded() -> None:
    """A command held for its result is kept to what is read of it, and at
    most 64 at once (results that never come cost nothing more)."""
    notes: dict[str, Any] = {}
    for i in range(100):
        pullrequest.hold(notes, f"c{i}", "gh pr create " + "x" * 100_000)
    held = pullrequest.waiting(notes)
    assert len(held) == pullrequest.MAX_WAITING
    assert all(len(c) <= pullrequest.TAIL for c in held.values())


def test_codexs_json_says_a_command_that_made_one() -> None:
    reading = ResultReader("codex-json")
    item = {"id": "item_3", "type": "command_execution", "command": "bash -lc 'gh pr create --fill'"}
    done = {"type": "item.completed", "item": {**item, "aggregated_output": f"{PR}\n", "exit_code": 0}}
    failed = {"type": "item.completed", "item": {**item, "aggregated_output": f"{PR}\n", "exit_code": 1}}
    reading.line(json.dumps(failed) + "\n")
    assert reading.pull_request is None
    reading.line(json.dumps(done) + "\n")
    assert reading.pull_request == PR


def test_a_reader_tells_each_new_one_once() -> None:
    told: list[str] = []
    reading = ResultReader("claude-code-text", on_pull_request=told.append)
    second = PR[:-2] + "13"
    for doc in (
        _use("t1", "gh pr create"),
        _result("t1", PR),
        _use("t2", "gh pr create"),
        _result("t2", PR),  # the same again: not told twice
        _use("t3", "gh pr create"),
        _result("t3", second),
    ):
        reading.line(json.dumps(doc) + "\n")
    assert told == [PR, second]
    assert reading.pull_request == second


def test_spanvisor_run_says_the_pull_request_the_session_made(tmp_path: Path) -> None:
    serve = Serve(tmp_path / "serve")
    try:
        task = f"claude-code-{uuid.uuid4().hex[:8]}"
        printed = tmp_path / "printed.jsonl"
        second = PR[:-2] + "13"
        docs = [_use("t1", "gh pr create --fill"), _result("t1", f"Creating pull request\n{PR}\n")]
        docs += [_use("t2", "gh pr create --fill"), _result("t2", f"{second}\n")]
        printed.write_text("".join(json.dumps(d) + "\n" for d in docs))
        work = tmp_path / "work"
        work.mkdir()
        launch_claude(serve, work, tmp_path, task, f"cat {printed}")
        finished = wait_until(lambda: serve.finished(task), 120, "the launched task's end")
        assert finished.task.pull_request == second  # the latest word
        said = [e.task.pull_request for e in serve.sink.for_task(task) if e.task.pull_request]
        assert said[-1] == second and set(said) <= {PR, second}
    finally:
        serve.close()


def test_gemini_clis_and_opencodes_lines_say_a_command_that_made_one() -> None:
    """The shapes their real CLIs print (tests/codingagents: each CLI's
    pull request test): Gemini CLI's tool_use and tool_result by tool_id,
    OpenCode's finished bash call."""
    gemini = ResultReader("gemini-text")
    use = {
        "type": "tool_use",
        "tool_name": "run_shell_command",
        "tool_id": "g1",
        "parameters": {"command": "gh pr create"},
    }
    for doc in (use, {"type": "tool_result", "tool_id": "g1", "status": "error", "output": PR}):
        gemini.line(json.dumps(doc) + "\n")
    assert gemini.pull_request is None and pullrequest.waiting(gemini.notes) == {}  # failed, and let go of
    for doc in ({**use, "tool_id": "g2"}, {"type": "tool_result", "tool_id": "g2", "status": "success", "output": PR}):
        gemini.line(json.dumps(doc) + "\n")
    assert gemini.pull_request == PR
    opencode = ResultReader("opencode-text")
    state = {"status": "completed", "input": {"command": "gh pr create --fill"}, "output": f"{PR}\n"}
    opencode.line(
        json.dumps({"type": "tool_use", "part": {"tool": "bash", "state": {**state, "status": "error"}}}) + "\n"
    )
    assert opencode.pull_request is None
    opencode.line(json.dumps({"type": "tool_use", "part": {"tool": "bash", "state": state}}) + "\n")
    assert opencode.pull_request == PR
