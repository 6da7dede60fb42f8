"""Codex 0.169 in its interactive UI, at a terminal the test holds, its
``PermissionRequest`` hook set as docs/reference/coding-agents.md shows it
(``spanvisor hook codex --at-terminal``): while Codex asks the person at
the terminal ("Would you like to run the following command?"), the
session's task shows as waiting (its row, ``spanvisor tasks``, its Slack
message), naming the command; nothing runs; once the person accepts
there, the command runs, the thread says so and the task works again. The
real CLI, the real serve, the fake Slack and the fake model."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from spanvisor.gate import turns
from tests.codingagents import claude_tty as tty
from tests.codingagents import codex_cli as cx
from tests.codingagents import endhooks as eh
from tests.codingagents.fake_http import FakeModelAPI
from tests.codingagents.fake_openai import fake_openai
from tests.codingagents.script import Script, text, tool
from tests.codingagents.served import Matrix
from tests.codingagents.test_claude_code_waiting import _tasks_table
from tests.receiver.serve_proc import db_rows, message_text
from tests.waiting import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout_s(300)]

WAIT_S = 90.0
POLICY = 'default = "deny"\n[[rule]]\nname = "touch"\ncommand = ["touch *"]\ndecision = "allow"\n'


@pytest.fixture(scope="module")
def api() -> Iterator[FakeModelAPI]:
    a = fake_openai()
    try:
        yield a
    finally:
        a.close()


def permission_request_hooks() -> str:
    """Codex's ``[[hooks.PermissionRequest]]`` entry from the doc's config block."""
    block = next(b for b in eh._blocks("toml") if "hooks.PermissionRequest" in b)
    return eh._ours(block, "codex")


def _waiting(matrix: Matrix) -> dict[str, Any] | None:
    """The task shown waiting (whichever came first names its agent: the
    hook's note or Codex's own records)."""
    sql = "SELECT * FROM agent_tasks WHERE status = 'waiting' AND message LIKE '%Codex asks to use%'"
    rows = db_rows(matrix.db_url, sql)
    return rows[0] if rows else None


def test_codex_asking_at_its_terminal_shows_the_task_waiting_until_the_person_accepts(
    cli_bin: Path, matrix: Matrix, api: FakeModelAPI, tmp_path: Path
) -> None:
    run_id = api.script(
        uuid.uuid4().hex[:12],
        Script(
            [
                tool(
                    "exec_command",
                    cmd="touch made.txt",
                    sandbox_permissions="require_escalated",
                    justification="make the file the task asks for",
                ),
                text("Done."),
            ]
        ),
    )
    home, work = tmp_path / "home", tmp_path / "w"
    work.mkdir(parents=True)
    # The gate still decides first (PreToolUse): its policy lets this command through to Codex's own prompt.
    policy = tmp_path / "policy.toml"
    policy.write_text(POLICY)
    env = cx.env(
        home,
        api,
        run_id,
        matrix,
        hook=True,
        SPANVISOR_HOOK_POLICY=str(policy),
        SPANVISOR_OTLP_ENDPOINT=matrix.endpoint,
        TERM="xterm-256color",
    )
    config = Path(env["CODEX_HOME"]) / "config.toml"
    top = 'approval_policy = "on-request"\nsandbox_mode = "read-only"\n'
    # A person's first run leaves the folder trusted (else the UI asks about it first).
    trusted = f'[projects.{json.dumps(str(work))}]\ntrust_level = "trusted"\n'
    config.write_text(top + config.read_text() + "\n" + trusted + "\n" + permission_request_hooks() + "\n")
    eh.add_codex_hooks(home)  # the session's end, as the doc sets it
    env.pop("NO_COLOR", None)
    name = f"make a file ({run_id})"
    argv = [str(cli_bin / "codex"), "--dangerously-bypass-hook-trust", name]
    term = tty.Terminal(argv, env, work)
    try:
        # Codex runs its PermissionRequest hooks just before it asks: the task shows waiting then.
        waiting = wait_until(lambda: _waiting(matrix), WAIT_S, "a task to show waiting")
        assert waiting["message"] == "⏸ Waiting at the terminal: Codex asks to use Bash(touch made.txt)", waiting
        wait_until(lambda: "Would you like to run" in term.said(), WAIT_S, "Codex's prompt")
        assert not (work / "made.txt").exists(), "nothing ran before the person answered"
        assert "Waiting at the terminal: Codex" in _tasks_table(matrix)  # spanvisor tasks --status waiting lists it
        shown = wait_until(
            lambda: next(
                (
                    t
                    for p in matrix.parents_of(waiting["task_id"])
                    if "Waiting at the terminal" in (t := message_text(p))
                ),
                None,
            ),
            WAIT_S,
            "the Slack message to say it waits",
        )
        assert "waiting" in shown and "touch made.txt" in shown
        assert "approve" not in shown.lower(), "no buttons: the person answers at the terminal, not in Slack"

        term.type(b"y")  # "Yes, proceed" at the terminal
        wait_until((work / "made.txt").exists, WAIT_S, "the command to run")
        moved = wait_until(
            lambda: (r := matrix.task(waiting["task_id"])) is not None and r["status"] != "waiting" and r,
            WAIT_S,
            "the task to work again",
        )
        assert moved["status"] in ("working", "complete", "context_warning"), moved
        lines = [str(c.get("message") or "") for c in matrix.timeline(waiting["task_id"])]
        first = lines.index("⏸ Waiting at the terminal: Codex asks to use Bash(touch made.txt)")
        assert "Bash: touch made.txt: allowed by policy:touch" in lines[:first], "the gate decided first"
        assert lines.index("Allowed at the terminal: exec_command") > first, lines
        wait_until(lambda: "Done." in term.said(), WAIT_S, "the turn to end")
        # Codex draws its answer before its turn has ended (its Stop hook, then
        # more of its own work, under a spinner): a Ctrl-C then interrupts the
        # turn still ending ("Conversation interrupted", and it does not quit:
        # seen loaded, stop 84's CI). A person quits once the spinner is gone,
        # which Codex also says to the terminal (OSC 7501 "state=done"; an
        # interrupted turn says "state=idle").
        noted = lambda: (t := turns.latest(waiting["task_id"], env)) is not None and t.state == "complete"  # noqa: E731
        wait_until(noted, WAIT_S, "Codex's Stop hook to note the turn")
        wait_until(lambda: term.drawn_after(b"Done.", b"state=done"), WAIT_S, "Codex to say its turn is done")
    finally:
        code = term.stop(presses=3)
    try:
        ended = eh.ended(matrix, waiting["task_id"])
    except AssertionError as e:  # what Codex drew last and how it exited, and what its hooks remembered
        left = sorted(p.name for p in turns.state_dir(env).glob("*")) if turns.state_dir(env).exists() else []
        raise AssertionError(
            f"{e}; Codex exited {code}, its hooks left {left}, it drew last: {term.said()[-1500:]!r}"
        ) from e
    assert ended["status"] == "complete", ended  # its turn finished, then Ctrl-C: SessionEnd
