"""The session-end hooks as docs/reference/coding-agents.md shows them, run by the
matrix: each CLI's block read from the doc (``spanvisor hook`` becoming
this interpreter's), a CLI stopped by a signal while its model holds its
answer, and the task a session without the launcher ended as."""

from __future__ import annotations

import json
import os
import re
import signal
import threading
import time
from pathlib import Path
from typing import Any

from spanvisor.launcher.stop import tree
from tests.codingagents.agents import Ran, Running, hook_command
from tests.codingagents.fake_http import FakeModelAPI
from tests.codingagents.script import Script, Turn
from tests.codingagents.served import Matrix
from tests.waiting import wait_until

DOC = Path(__file__).resolve().parents[2] / "docs" / "reference" / "coding-agents.md"
HOOKS_DOC = DOC.with_name("coding-agents-hooks.md")
WAIT_S = 120.0


def _blocks(lang: str, doc: Path = DOC) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", doc.read_text(), re.S)


def _ours(text: str, cli: str) -> str:
    return text.replace(f"spanvisor hook {cli}", hook_command(cli).replace("\\", "\\\\").replace('"', '\\"'))


def claude_hooks() -> dict[str, Any]:
    """Claude Code's ``hooks`` from the doc's settings block."""
    block = next(b for b in _blocks("json") if '"StopFailure"' in b)
    hooks: dict[str, Any] = json.loads(_ours(block, "claude-code"))["hooks"]
    return hooks


def gemini_hooks() -> dict[str, Any]:
    block = next(b for b in _blocks("json") if '"AfterAgent"' in b)
    hooks: dict[str, Any] = json.loads(_ours(block, "gemini"))["hooks"]
    return hooks


def codex_hooks() -> str:
    """Codex's ``config.toml`` lines from the doc's block."""
    block = next(b for b in _blocks("toml") if "[[hooks.SessionEnd]]" in b)
    return _ours(block, "codex")


def qwen_hooks() -> dict[str, Any]:
    """Qwen Code's end hooks from the hooks page's block."""
    block = next(b for b in _blocks("json", HOOKS_DOC) if "spanvisor hook qwen" in b and '"Stop"' in b)
    hooks: dict[str, Any] = json.loads(_ours(block, "qwen"))["hooks"]
    return hooks


def copilot_hooks() -> dict[str, Any]:
    """Copilot CLI's end hooks file from the hooks page's block."""
    block = next(b for b in _blocks("json", HOOKS_DOC) if '"sessionEnd"' in b)
    doc: dict[str, Any] = json.loads(_ours(block, "copilot"))
    return doc


def add_qwen_hooks(home: Path) -> None:
    path = home / ".qwen" / "settings.json"
    settings = json.loads(path.read_text())
    settings["hooks"] = {**settings.get("hooks", {}), **qwen_hooks()}
    path.write_text(json.dumps(settings))


def add_copilot_hooks(home: Path) -> None:
    folder = home / ".copilot" / "hooks"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "spanvisor-ends.json").write_text(json.dumps(copilot_hooks()))


CLINE_ENDS = ("TaskStart", "TaskComplete", "TaskError", "TaskCancel", "SessionShutdown")


def add_cline_hooks(home: Path) -> None:
    """The start and end scripts spanvisor ships, copied as the hooks page says."""
    import shutil

    import spanvisor

    folder = home / ".cline" / "hooks"
    folder.mkdir(parents=True, exist_ok=True)
    for name in CLINE_ENDS:
        path = folder / name
        shutil.copyfile(Path(spanvisor.__file__).parent / "_assets" / "cline" / name, path)
        path.chmod(0o755)


def claude_settings(path: Path, gate: bool = False) -> Path:
    """A ``--settings`` file with the doc's end hooks (and the gate's PreToolUse)."""
    hooks = dict(claude_hooks())
    if gate:
        hooks["PreToolUse"] = [
            {"matcher": "*", "hooks": [{"type": "command", "command": hook_command("claude-code"), "timeout": 200}]}
        ]
    path.write_text(json.dumps({"hooks": hooks}))
    return path


def add_codex_hooks(home: Path) -> None:
    config = home / ".codex" / "config.toml"
    config.write_text(config.read_text() + "\n" + codex_hooks())


def add_gemini_hooks(home: Path) -> None:
    path = home / ".gemini" / "settings.json"
    settings = json.loads(path.read_text())
    settings["hooks"] = {**settings.get("hooks", {}), **gemini_hooks()}
    path.write_text(json.dumps(settings))


class Gated(Script):
    """A script whose turn ``at`` waits (in the fake's handler thread) until
    :meth:`go`: the session stays busy on its model until the test says."""

    def __init__(self, turns: list[Turn], at: int) -> None:
        super().__init__(turns)
        self.at = at
        self.open = threading.Event()
        self.reached = threading.Event()

    def go(self) -> None:
        self.open.set()

    def turn(self, done: int) -> Turn:
        if done == self.at:
            self.reached.set()
            self.open.wait(WAIT_S * 2)
        return super().turn(done)


def asked(api: FakeModelAPI, run_id: str) -> bool:
    return any(s.method == "POST" and "count" not in s.path and "analytics" not in s.path for s in api.requests(run_id))


def signal_cli(running: Running, api: FakeModelAPI, run_id: str, signum: int) -> None:
    """Once the CLI asked its model, ``signum`` to it and every process under
    it (as ``kill`` or a process manager would; Gemini CLI's parent ignores
    both signals, its worker does not)."""
    wait_until(lambda: asked(api, run_id), WAIT_S, "the CLI to ask its model")
    for pid in tree(running.proc.pid):
        try:
            os.kill(pid, signum)
        except OSError:
            pass


def task_named(matrix: Matrix, agent: str, marker: str) -> dict[str, Any]:
    """The one task of ``agent`` whose name holds ``marker`` (its prompt's)."""

    def found() -> dict[str, Any] | None:
        rows = [r for r in matrix.tasks_of(agent) if marker in (r["task_name"] or "")]
        assert len(rows) <= 1, rows
        return rows[0] if rows else None

    return dict(wait_until(found, WAIT_S, f"the {agent} task named {marker}"))


# How soon after its CLI exited a session's end hook has ended its task (the
# hook waits a few seconds at most for the CLI's exit): a strict xfail of an
# end no hook reports waits this long, not for liveness.
HOOK_END_S = 8.0


def left_to_liveness(matrix: Matrix, task_id: str, ran: Ran) -> dict[str, Any]:
    """The task of a session whose CLI sent no end, read ``HOOK_END_S`` after
    the CLI exited (waited for only if its file's tests took less): still
    open, for liveness to end (``SPANVISOR_LOST_AFTER``), or already lost.
    That liveness then ends it as lost is serve's, the same for every CLI:
    test_claude_code.py waits for it, the others stop here (each such
    wait was about 25 s of the suite)."""
    time.sleep(max(0.0, ran.exited_at + HOOK_END_S - time.monotonic()))
    row = matrix.task(task_id)
    assert row is not None and (row["ended_at"] is None or row["status"] == "lost"), row
    return dict(row)


def ended(matrix: Matrix, task_id: str, within: float = WAIT_S) -> dict[str, Any]:
    def row() -> dict[str, Any] | None:
        r = matrix.task(task_id)
        return r if r is not None and r["ended_at"] is not None else None

    return dict(wait_until(row, within, f"task {task_id} to end"))


def ends_of(matrix: Matrix, tasks: dict[str, str], within: float) -> dict[str, str | None]:
    """Each task's status once all ended, or after ``within`` seconds (None
    for one still open): one wait for a group, not one per task."""

    def statuses() -> dict[str, str | None]:
        rows = {key: matrix.task(task) for key, task in tasks.items()}
        return {key: r["status"] if r is not None and r["ended_at"] is not None else None for key, r in rows.items()}

    def all_ended() -> dict[str, str | None] | None:
        now = statuses()
        return now if None not in now.values() else None

    try:
        return dict(wait_until(all_ended, within, "the tasks to end"))
    except AssertionError:
        return statuses()


SIGNALS = {"SIGINT": signal.SIGINT, "SIGTERM": signal.SIGTERM}
