"""``spanvisor gate install`` proven with the real Gemini CLI: the gate's
hook written into its system-wide settings (``GEMINI_CLI_SYSTEM_SETTINGS_PATH``
points the pinned CLI at a test-owned file, as ``/etc/gemini-cli/settings.json``
would be) runs for a session whose own settings name no hook, and whose
settings try to name an empty ``BeforeTool`` list of their own: the
policy's denial holds, the command does not run, the model is told why.

The installed hook is locked to an absolute policy (``--locked --policy``),
so nothing the session's environment or its repository says decides.
Gemini CLI skips a system settings file in a folder others may write (as
``/tmp`` is): the file is put under a folder only its owner writes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.codingagents import gemini_cli as gc
from tests.codingagents.agents import base_env
from tests.codingagents.fake_gemini import fake_gemini, function_responses
from tests.codingagents.fake_http import FakeModelAPI
from tests.codingagents.script import Script, text, tool

pytestmark = [pytest.mark.slow, pytest.mark.timeout_s(600)]

SPANVISOR = str(Path(sys.executable).with_name("spanvisor"))
POLICY = """
default = "allow"

[[rule]]
name = "no-deleting"
tool = ["run_shell_command"]
command = ["rm -rf*"]
decision = "deny"
reason = "deleting is not allowed here"
"""


def _owned_folder() -> Path:
    """A folder no one but its owner may write, up to ``/`` (not under /tmp)."""
    for base in (Path.home() / ".cache", Path("/run")):
        if (
            base.is_dir()
            and os.access(base, os.W_OK)
            and not any(p.stat().st_mode & 0o022 for p in (base, *base.parents))
        ):
            return base
    pytest.skip("no folder here that only its owner may write (Gemini CLI skips system settings elsewhere)")


@pytest.fixture
def system_dir() -> Iterator[Path]:
    folder = _owned_folder() / f"spanvisor-gate-install-{uuid.uuid4().hex[:12]}"
    folder.mkdir(mode=0o755)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def api() -> Iterator[FakeModelAPI]:
    fake = fake_gemini()
    try:
        yield fake
    finally:
        fake.close()


@pytest.mark.parametrize("user_hooks", [False, True])
def test_the_installed_system_hook_denies_whatever_the_users_settings_say(
    cli_bin: Path, api: FakeModelAPI, tmp_path: Path, system_dir: Path, user_hooks: bool
) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text(POLICY)
    system = system_dir / "gemini-cli" / "settings.json"
    installer_env = {**os.environ, "GEMINI_CLI_SYSTEM_SETTINGS_PATH": str(system)}
    done = subprocess.run(
        [SPANVISOR, "gate", "install", "--cli", "gemini", "--policy", str(policy)],
        env=installer_env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0 and system.exists(), done.stdout + done.stderr
    assert "⚠" not in done.stdout, done.stdout

    run_id = api.script(uuid.uuid4().hex[:12], Script([tool("run_shell_command", command="rm -rf build"), text("ok")]))
    home = tmp_path / "home"
    settings: dict[str, object] = {
        "security": {"auth": {"selectedType": "gemini-api-key"}},
        "general": {"maxAttempts": 1},
    }
    if user_hooks:  # the user's (or a repository's) try to have no gate
        settings["hooks"] = {"BeforeTool": []}
    (home / ".gemini").mkdir(parents=True)
    (home / ".gemini" / "settings.json").write_text(json.dumps(settings))
    env = base_env(home)
    env.update(
        GOOGLE_GEMINI_BASE_URL=api.base_url(run_id),
        GEMINI_API_KEY="matrix-dummy-key",
        GEMINI_CLI_TRUST_WORKSPACE="true",
        GEMINI_CLI_SYSTEM_SETTINGS_PATH=str(system),
        SPANVISOR_HOOK_DELIVERY="off",
    )
    work = tmp_path / "work"
    (work / "build").mkdir(parents=True)
    (work / "build" / "keep.txt").write_text("still here")
    ran = gc.gemini(cli_bin, work, env, f"clean the build folder ({run_id})")
    assert ran.code == 0, ran.said()
    assert (work / "build" / "keep.txt").read_text() == "still here", "the denied command did not run"
    [denied] = function_responses(api.requests(run_id)[-1].body)
    assert denied["response"] == {"error": "Tool execution blocked: spanvisor: deleting is not allowed here"}
