"""``spanvisor gate install``: the gate's hook in each CLI's system-wide
settings, through the real command (``--root`` stands for ``/``).

What a file held stays (other keys, other hooks), an earlier spanvisor
entry is replaced, a second run changes nothing, a file that is not
settings is left alone and said, and what is written is what the gate's
own reader of that CLI's settings finds."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import tomllib
from pathlib import Path

from spanvisor.clis import registry

SPANVISOR = str(Path(sys.executable).with_name("spanvisor"))
CLAUDE = "etc/claude-code/managed-settings.json"
CODEX = "etc/codex/requirements.toml"
COPILOT_SETTINGS = "etc/github-copilot/managed-settings.json"
COPILOT_POLICY = "etc/github-copilot/policy.d/spanvisor.json"


def _install(root: Path, *args: str, umask: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.endswith("_SYSTEM_SETTINGS_PATH")}
    command = [SPANVISOR, "gate", "install", "--root", str(root), *args]
    return subprocess.run(
        ["sh", "-c", f'umask {umask} && exec "$@"', "sh", *command] if umask else command,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


def _entries(doc: dict[str, object], event: str) -> list[str]:
    groups = doc["hooks"][event]  # type: ignore[index]
    return [e["command"] for g in groups for e in g["hooks"]]  # type: ignore[index,union-attr]


def test_each_system_wide_settings_gets_the_locked_hook_and_a_second_run_changes_nothing(tmp_path: Path) -> None:
    first = _install(tmp_path, "--policy", "/etc/spanvisor/hook-policy.toml")
    assert first.returncode == 0, first.stderr
    written = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    opencode = ["etc/opencode/node_modules/.spanvisor", "etc/opencode/opencode.json", "etc/opencode/package-lock.json"]
    opencode.append("etc/opencode/spanvisor-gate.js")
    kilo = sorted(p.replace("opencode", "kilo") for p in opencode)  # its fork: a managed folder of its own
    copilot = [COPILOT_SETTINGS, COPILOT_POLICY]
    assert written == [
        CLAUDE,
        CODEX,
        "etc/factory/settings.json",
        "etc/gemini-cli/settings.json",
        *copilot,
        *kilo,
        *opencode,
        "etc/qwen-code/settings.json",
    ]
    for rel, cli in (
        (CLAUDE, "claude-code"),
        ("etc/gemini-cli/settings.json", "gemini"),
        ("etc/factory/settings.json", "droid"),
    ):
        path = tmp_path / rel
        assert stat.S_IMODE(path.stat().st_mode) == 0o644
        adapter = registry.need(cli)
        found = list(adapter.hook_timeouts(json.loads(path.read_text())))
        command, timeout = found[0]
        assert command.endswith(f"spanvisor hook {cli} --locked --policy /etc/spanvisor/hook-policy.toml")
        assert os.path.isabs(command.split()[0]) and timeout == 900.0
    codex = tomllib.loads((tmp_path / CODEX).read_text())
    assert codex["allow_managed_hooks_only"] is True
    [(command, timeout)] = registry.need("codex").hook_timeouts(codex)
    assert command.endswith("spanvisor hook codex --locked --policy /etc/spanvisor/hook-policy.toml")
    assert timeout == 900.0
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    # OpenCode's managed config names the locked plugin where OpenCode will read it (not under --root).
    doc = json.loads((tmp_path / "etc/opencode/opencode.json").read_text())
    assert doc == {"plugin": ["file:///etc/opencode/spanvisor-gate.js"]}
    plugin = (tmp_path / "etc/opencode/spanvisor-gate.js").read_text()
    assert f"const BIN = {json.dumps(SPANVISOR)}" in plugin and "process.env.SPANVISOR_BIN" not in plugin
    assert '"--locked", "--policy", "/etc/spanvisor/hook-policy.toml"]' in plugin
    again = _install(tmp_path, "--policy", "/etc/spanvisor/hook-policy.toml")
    assert again.returncode == 0 and again.stdout.count("already current") == 8, again.stdout
    kilo_plugin = (tmp_path / "etc/kilo/spanvisor-gate.js").read_text()
    assert 'const CLI = "kilo" // locked' in kilo_plugin and '"--locked", "--policy"' in kilo_plugin
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before


def test_what_the_file_held_stays_and_an_earlier_spanvisor_entry_is_replaced(tmp_path: Path) -> None:
    path = tmp_path / CLAUDE
    path.parent.mkdir(parents=True)
    path.write_text(
        json.dumps(
            {
                "permissions": {"deny": ["Read(./.env)"]},
                "hooks": {
                    "PreToolUse": [
                        {"matcher": "Bash", "hooks": [{"type": "command", "command": "/usr/local/bin/audit-bash"}]},
                        {
                            "matcher": "*",
                            "hooks": [{"type": "command", "command": "/old/bin/spanvisor hook claude-code"}],
                        },
                    ]
                },
            }
        )
    )
    got = _install(tmp_path, "--cli", "claude-code", "--socket", "/run/spanvisor/gate.sock")
    assert got.returncode == 0, got.stderr
    doc = json.loads(path.read_text())
    assert doc["permissions"] == {"deny": ["Read(./.env)"]}
    # Only managed hooks run: no user, repository or plugin hook rewrites a call the gate allowed.
    assert doc["allowManagedHooksOnly"] is True
    commands = _entries(doc, "PreToolUse")
    assert commands[0] == "/usr/local/bin/audit-bash"
    assert not any(c.startswith("/old/bin/spanvisor") for c in commands)
    assert commands[-1].endswith("spanvisor hook claude-code --gate /run/spanvisor/gate.sock")
    gate = doc["hooks"]["PreToolUse"][-1]["hooks"][0]
    assert gate["onFailure"] == "block" and gate["timeout"] == 900
    for event in registry.need("claude-code").session_events:  # its ends reach the hook too
        assert _entries(doc, event)


def test_an_event_that_is_not_a_list_of_hooks_is_replaced_by_the_gates(tmp_path: Path) -> None:
    path = tmp_path / "etc/qwen-code/settings.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"hooks": {"PreToolUse": {"matcher": "*"}}, "model": {"name": "qwen"}}))
    got = _install(tmp_path, "--cli", "qwen")
    assert got.returncode == 0, got.stderr
    doc = json.loads(path.read_text())
    assert doc["model"] == {"name": "qwen"}
    assert [c.split()[1:3] for c in _entries(doc, "PreToolUse")] == [["hook", "qwen"]]


def test_a_file_that_is_not_settings_is_left_alone_and_said(tmp_path: Path) -> None:
    path = tmp_path / "etc/gemini-cli/settings.json"
    path.parent.mkdir(parents=True)
    path.write_text("{ not json")
    got = _install(tmp_path, "--cli", "gemini")
    assert got.returncode == 1 and "is not JSON; left as it is" in got.stderr
    assert path.read_text() == "{ not json"


def test_codexs_requirements_keep_what_they_held_byte_for_byte_and_a_new_socket_replaces_the_old(
    tmp_path: Path,
) -> None:
    path = tmp_path / CODEX
    path.parent.mkdir(parents=True)
    held = (
        "# the admin's own requirements\n"
        "allow_managed_hooks_only = true\n"
        'allowed_approval_policies = ["untrusted", "on-request"]\n'
        "\n"
        "[[hooks.PostToolUse]]\n"
        'matcher = "*"\n'
        "[[hooks.PostToolUse.hooks]]\n"
        'type = "command"\n'
        'command = "/usr/local/bin/audit-codex"\n'
    )
    path.write_text(held)
    assert _install(tmp_path, "--cli", "codex", "--socket", "/run/old.sock").returncode == 0
    got = _install(tmp_path, "--cli", "codex", "--socket", "/run/spanvisor/gate.sock")
    assert got.returncode == 0, got.stderr
    text = path.read_text()
    assert held.strip("\n") in text and "/run/old.sock" not in text
    doc = tomllib.loads(text)
    assert doc["allow_managed_hooks_only"] is True
    assert doc["allowed_approval_policies"] == ["untrusted", "on-request"]
    assert next(h["command"] for g in doc["hooks"]["PostToolUse"] for h in g["hooks"]) == "/usr/local/bin/audit-codex"
    [(command, _)] = registry.need("codex").hook_timeouts(doc)
    assert command.endswith("spanvisor hook codex --gate /run/spanvisor/gate.sock")
    for event in registry.need("codex").session_events:  # its ends reach the hook too
        assert doc["hooks"][event]


def test_codexs_requirements_that_set_managed_hooks_otherwise_are_left_alone(tmp_path: Path) -> None:
    path = tmp_path / CODEX
    path.parent.mkdir(parents=True)
    for held in ("allow_managed_hooks_only = false\n", "hooks = 3\n", "[broken\n"):
        path.write_text(held)
        got = _install(tmp_path, "--cli", "codex")
        assert got.returncode == 1 and "left as it is" in got.stderr, (held, got.stderr)
        assert path.read_text() == held


def test_opencodes_other_managed_plugins_stay_and_an_earlier_gate_is_replaced(tmp_path: Path) -> None:
    path = tmp_path / "etc/opencode/opencode.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"plugin": ["@acme/audit", "file:///old/spanvisor-gate.js"], "share": "disabled"}))
    got = _install(tmp_path, "--cli", "opencode", "--socket", "/run/spanvisor/gate.sock")
    assert got.returncode == 0, got.stderr
    doc = json.loads(path.read_text())
    assert doc == {"plugin": ["@acme/audit", "file:///etc/opencode/spanvisor-gate.js"], "share": "disabled"}
    plugin = (path.parent / "spanvisor-gate.js").read_text()
    assert '"--gate", "/run/spanvisor/gate.sock"]' in plugin


def test_copilot_gets_a_policy_hook_by_absolute_program_and_only_managed_hooks(tmp_path: Path) -> None:
    """Copilot CLI 1.0.102 runs root's policy hooks (``/etc/github-copilot/
    policy.d/*.json``) before any other, skips a file naming a relative
    ``exec`` (and then runs the call), and runs a ``bash`` line through the
    user's shell and PATH: so the gate's entry is an absolute program and
    its arguments. The managed settings keep what they held and stop the
    user's and the repository's hooks."""
    settings = tmp_path / COPILOT_SETTINGS
    settings.parent.mkdir(parents=True)
    settings.write_text(json.dumps({"model": "gpt-5", "allowManagedHooksOnly": False}))
    got = _install(tmp_path, "--cli", "copilot", "--socket", "/run/spanvisor/gate.sock")
    assert got.returncode == 0, got.stderr
    assert json.loads(settings.read_text()) == {"model": "gpt-5", "allowManagedHooksOnly": True}
    policy = tmp_path / COPILOT_POLICY
    assert stat.S_IMODE(policy.stat().st_mode) == 0o644
    doc = json.loads(policy.read_text())
    adapter = registry.need("copilot")
    for event in (*adapter.tool_events, *adapter.session_events):
        [entry] = doc["hooks"][event]
        assert entry["exec"] == SPANVISOR and os.path.isabs(entry["exec"]) and "bash" not in entry, entry
        assert entry["args"] == ["hook", "copilot", "--gate", "/run/spanvisor/gate.sock"]
    # Its preToolUse entry and its permissionRequest one (a call whose preToolUse hooks gave no answer).
    command = f"{SPANVISOR} hook copilot --gate /run/spanvisor/gate.sock"
    assert list(adapter.hook_timeouts(doc)) == [(command, 900.0), (command, 900.0)]


def test_a_cli_with_no_system_wide_settings_is_named_not_written(tmp_path: Path) -> None:
    got = _install(tmp_path, "--cli", "cline")
    assert got.returncode == 0
    assert "Cline: no system-wide place spanvisor relies on, nothing written" in got.stdout
    assert "~/.cline/hooks" in got.stdout and ".clinerules/hooks" in got.stdout and "mistakes" in got.stdout
    assert not list(tmp_path.rglob("*"))
    # Said when every CLI is installed too, not only when it is named.
    everything = _install(tmp_path / "all")
    assert everything.returncode == 0 and "Cline: no system-wide place spanvisor relies on" in everything.stdout
    assert "Factory Droid: no system-wide" not in everything.stdout  # its system-managed settings
    unknown = _install(tmp_path, "--cli", "nope")
    assert unknown.returncode == 1 and "nope: no coding-agent CLI" in unknown.stderr


def test_factory_droid_gets_its_system_managed_settings_with_only_their_hooks(tmp_path: Path) -> None:
    """Factory Droid 0.225.2 reads ``/etc/factory/settings.json`` as its
    organisation's level with no login; ``allowManagedHooksOnly`` there
    drops every other level's hooks and their ``hooksDisabled``. What the
    file held stays; its own ``hooksDisabled`` is said false."""
    settings = tmp_path / "etc/factory/settings.json"
    settings.parent.mkdir(parents=True)
    settings.write_text(
        json.dumps({"sessionDefaultSettings": {"autonomyMode": "auto-low"}, "hooks": {"hooksDisabled": True}})
    )
    got = _install(tmp_path, "--cli", "droid", "--socket", "/run/spanvisor/gate.sock")
    assert got.returncode == 0, got.stdout + got.stderr
    doc = json.loads(settings.read_text())
    assert doc["allowManagedHooksOnly"] is True and doc["hooks"]["hooksDisabled"] is False
    assert doc["sessionDefaultSettings"] == {"autonomyMode": "auto-low"}
    adapter = registry.need("droid")
    command = f"{SPANVISOR} hook droid --gate /run/spanvisor/gate.sock"
    assert list(adapter.hook_timeouts(doc)) == [(command, 900.0)]
    assert adapter.entry_weaknesses(doc, command) == []
    assert adapter.entry_weaknesses({"hooks": {"hooksDisabled": True}}, command)


def test_a_policy_hook_file_copilot_would_skip_is_written_again(tmp_path: Path) -> None:
    """Copilot CLI skips a policy file that is a symlink or that others may
    write, and then runs the call: the same text there is not "current"."""
    first = _install(tmp_path, "--cli", "copilot", "--policy", "/etc/spanvisor/hook-policy.toml")
    assert first.returncode == 0, first.stderr
    policy = tmp_path / COPILOT_POLICY
    text = policy.read_text()
    policy.chmod(0o666)
    again = _install(tmp_path, "--cli", "copilot", "--policy", "/etc/spanvisor/hook-policy.toml")
    assert again.returncode == 0 and stat.S_IMODE(policy.stat().st_mode) == 0o644, again.stdout
    elsewhere = tmp_path / "elsewhere.json"
    elsewhere.write_text(text)
    policy.unlink()
    policy.symlink_to(elsewhere)
    third = _install(tmp_path, "--cli", "copilot", "--policy", "/etc/spanvisor/hook-policy.toml")
    assert third.returncode == 0 and not policy.is_symlink() and policy.read_text() == text, third.stdout


def test_the_folders_it_makes_every_user_may_enter_whatever_the_umask(tmp_path: Path) -> None:
    """Under umask 027 a folder made for the settings would keep other users'
    CLIs out (Factory Droid then runs no hook at all): each is 0755."""
    got = _install(tmp_path, "--cli", "droid", umask="027")
    assert got.returncode == 0, got.stdout + got.stderr
    for folder in (tmp_path / "etc", tmp_path / "etc" / "factory"):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o755, folder
    assert stat.S_IMODE((tmp_path / "etc" / "factory" / "settings.json").stat().st_mode) == 0o644
