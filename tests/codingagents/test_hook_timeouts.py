"""What each real CLI does when its permission hook gives no answer in
time, and when it exits with a status other than 0 and 2: the facts the
gate's design rests on (docs/design/gate.md#what-the-gate-guarantees).

A hook that outlives the CLI's hook timeout, or that exits 1 (a Python
traceback's status), is not a block to every CLI: the call may run. So the
gate answers before the CLI's deadline and exits 0 or 2 on every path.
Each case runs ``touch ran.txt`` through the CLI's shell tool behind such a
hook (no spanvisor in it) and records whether the file appeared."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.codingagents import claude_code as cc
from tests.codingagents import codex_cli as cx
from tests.codingagents import gemini_cli as gm
from tests.codingagents.agents import hook_command
from tests.codingagents.fake_gemini import fake_gemini
from tests.codingagents.fake_http import FakeModelAPI
from tests.codingagents.fake_openai import fake_openai
from tests.codingagents.script import Script, text, tool
from tests.codingagents.served import Matrix
from tests.gate.blackhole import Blackhole

pytestmark = [pytest.mark.slow, pytest.mark.timeout_s(600)]

# The hooks: one that sleeps past a 2 s hook timeout, one that exits 1.
HOOKS = {"times out": "sleep 30", "exits 1": "echo failed >&2; exit 1"}
# What each CLI did in the checks this file makes (pinned versions,
# tests/codingagents/npm; Claude Code with Bash allowed by its settings, as
# with its permission prompts answered "always"): every one ran the call.
RAN = {(cli, case): True for cli in ("claude-code", "codex", "gemini") for case in HOOKS}


@pytest.fixture(scope="module")
def gemini_api() -> Iterator[FakeModelAPI]:
    fake = fake_gemini()
    try:
        yield fake
    finally:
        fake.close()


@pytest.fixture(scope="module")
def openai_api() -> Iterator[FakeModelAPI]:
    fake = fake_openai()
    try:
        yield fake
    finally:
        fake.close()


class Clis:
    """Each CLI run once behind a given hook, in a folder of its own: where
    the command would have written."""

    def __init__(
        self, cli_bin: Path, matrix: Matrix, anthropic: FakeModelAPI, gemini: FakeModelAPI, openai: FakeModelAPI
    ) -> None:
        self.cli_bin, self.matrix, self.anthropic, self.gemini, self.openai = cli_bin, matrix, anthropic, gemini, openai

    def run(self, cli: str, tmp: Path, hook: str, timeout_s: int = 2, command: str = "touch ran.txt") -> Path:
        if cli == "claude-code":
            return _claude(self.cli_bin, self.matrix, self.anthropic, tmp, hook, timeout_s, command)
        if cli == "gemini":
            return _gemini(self.cli_bin, self.matrix, self.gemini, tmp, hook, timeout_s, command)
        return _codex(self.cli_bin, self.openai, tmp, hook, timeout_s, command)


@pytest.fixture
def clis(
    cli_bin: Path, matrix: Matrix, anthropic: FakeModelAPI, gemini_api: FakeModelAPI, openai_api: FakeModelAPI
) -> Clis:
    return Clis(cli_bin, matrix, anthropic, gemini_api, openai_api)


def _claude(
    cli_bin: Path,
    matrix: Matrix,
    api: FakeModelAPI,
    tmp: Path,
    hook: str,
    timeout_s: int = 2,
    command: str = "touch ran.txt",
    on_failure: str | None = None,
) -> Path:
    run_id = api.script(uuid.uuid4().hex[:12], Script([tool("Bash", command=command), text("done")]))
    settings = tmp / "settings.json"
    entry: dict[str, object] = {"type": "command", "command": hook, "timeout": timeout_s}
    if on_failure is not None:
        entry["onFailure"] = on_failure
    # Shell calls allowed by the settings, so only the hook stands between:
    # in -p mode Claude Code would otherwise refuse a shell call by itself.
    doc = {
        "permissions": {"allow": ["Bash"]},
        "hooks": {"PreToolUse": [{"matcher": "*", "hooks": [entry]}]},
    }
    settings.write_text(json.dumps(doc))
    work = tmp / "work"
    work.mkdir()
    cc.claude(cli_bin, work, cc.env(tmp / "home", matrix, api, run_id), f"touch it ({run_id})", settings=settings)
    return work


def _gemini(
    cli_bin: Path,
    matrix: Matrix,
    api: FakeModelAPI,
    tmp: Path,
    hook: str,
    timeout_s: int = 2,
    command: str = "touch ran.txt",
) -> Path:
    run_id = api.script(uuid.uuid4().hex[:12], Script([tool("run_shell_command", command=command), text("done")]))
    env = gm.env(tmp / "home", matrix, api, run_id)
    path = tmp / "home" / ".gemini" / "settings.json"
    settings = json.loads(path.read_text())
    settings["hooks"] = {
        "BeforeTool": [{"matcher": "*", "hooks": [{"type": "command", "command": hook, "timeout": timeout_s * 1000}]}]
    }
    path.write_text(json.dumps(settings))
    work = tmp / "work"
    work.mkdir()
    gm.gemini(cli_bin, work, env, f"touch it ({run_id})")
    return work


def _codex(
    cli_bin: Path, api: FakeModelAPI, tmp: Path, hook: str, timeout_s: int = 2, command: str = "touch ran.txt"
) -> Path:
    run_id = api.script(uuid.uuid4().hex[:12], Script([tool("exec_command", cmd=command), text("done")]))
    env = cx.env(tmp / "home", api, run_id, None, hook=True)
    config = Path(env["CODEX_HOME"]) / "config.toml"
    lines = config.read_text().splitlines()
    lines = [f"command = {json.dumps(hook)}" if ln.startswith("command = ") else ln for ln in lines]
    lines = [f"timeout = {timeout_s}" if ln == "timeout = 200" else ln for ln in lines]
    config.write_text("\n".join(lines) + "\n")
    work = tmp / "work"
    work.mkdir()
    cx.codex(cli_bin, work, env, f"touch it ({run_id})", hook=True)
    return work


@pytest.mark.parametrize("case", list(HOOKS))
@pytest.mark.parametrize("cli", ["claude-code", "codex", "gemini"])
def test_what_the_cli_does_with_a_hook_that_gives_no_answer(cli: str, case: str, clis: Clis, tmp_path: Path) -> None:
    hook = HOOKS[case]
    work = clis.run(cli, tmp_path, hook)
    ran = (work / "ran.txt").exists()
    assert ran == RAN[(cli, case)], f"{cli} with a hook that {case}: the call {'ran' if ran else 'did not run'}"


@pytest.mark.parametrize("cli", ["claude-code", "codex", "gemini"])
def test_the_gate_answers_before_the_clis_hook_timeout(cli: str, clis: Clis, tmp_path: Path) -> None:
    """A person is asked through a control API that never answers, under a
    4 s hook timeout: spanvisor's block comes first, so the call never runs."""
    hole = Blackhole()
    policy = tmp_path / "policy.toml"
    policy.write_text('default = "ask"\n')
    gate = f"{hook_command(cli)} --policy {policy} --cli-timeout 4 --url {hole.url} --endpoint {hole.url}"
    try:
        work = clis.run(cli, tmp_path, gate, timeout_s=4)
    finally:
        hole.close()
    assert hole.accepted.is_set(), "the gate asked"
    assert not (work / "ran.txt").exists(), f"{cli} ran the call: the gate answered after the CLI gave up on it"


@pytest.mark.parametrize("cli", ["claude-code", "codex", "gemini"])
def test_a_chained_command_is_blocked_by_the_gate_under_each_cli(cli: str, clis: Clis, tmp_path: Path) -> None:
    """A policy that allows ``ls`` (and ``touch ok.txt``) and denies the rest:
    the real CLI's ``ls && touch ran.txt`` (the reproducer that walked past a
    glob) never runs, while ``touch ok.txt && ls``, every part allowed, does."""
    policy = tmp_path / "policy.toml"
    policy.write_text(
        'default = "deny"\n[[rule]]\nname = "ls"\ncommand = ["ls", "ls *", "touch ok.txt"]\ndecision = "allow"\n'
    )
    gate = f"{hook_command(cli)} --policy {policy}"
    for command, file, runs in (("ls && touch ran.txt", "ran.txt", False), ("touch ok.txt && ls", "ok.txt", True)):
        where = tmp_path / file.split(".")[0]
        where.mkdir()
        work = clis.run(cli, where, gate, timeout_s=60, command=command)
        assert (work / file).exists() == runs, f"{cli}: {command!r} {'did not run' if runs else 'ran'}"


@pytest.mark.parametrize("case", list(HOOKS))
def test_claude_codes_on_failure_block_makes_a_hook_without_an_answer_a_block(
    case: str, cli_bin: Path, matrix: Matrix, anthropic: FakeModelAPI, tmp_path: Path
) -> None:
    """Claude Code (2.1.330) reads a hook entry's ``"onFailure": "block"``:
    a hook that times out or exits 1 then blocks the call instead of
    letting it run. The docs' settings set it on the gate's hook."""
    work = _claude(cli_bin, matrix, anthropic, tmp_path, HOOKS[case], on_failure="block")
    assert not (work / "ran.txt").exists(), f"claude-code with onFailure block and a hook that {case} ran the call"
