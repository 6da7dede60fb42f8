"""Each CLI's hook settings as ``spanvisor assets export`` writes them: in
the CLI's own format, the gate's command before every tool call with the
timeout the operator's policy needs, and the same command for the CLI's
turn and session events, so a session ends without the launcher. What is
exported is what the gate's own reader of that CLI's settings finds
(:meth:`Adapter.hook_timeouts`: the deadline is taken from it), and
Claude Code's entry has none of the weaknesses ``spanvisor check`` names."""

from __future__ import annotations

import json
import tomllib
from typing import Any

import pytest

from spanvisor.cli import hook_entries
from spanvisor.cli.assets import hook_setups
from spanvisor.clis import checks, registry


def _doc(name: str, text: str) -> Any:
    return tomllib.loads(text) if name.endswith(".toml") else json.loads(text)


@pytest.mark.parametrize("cli", [c for c in registry.NAMES if registry.need(c).hook_setup("x", 1) is not None])
def test_the_exported_setup_is_what_the_gates_reader_finds(cli: str) -> None:
    adapter = registry.need(cli)
    command = hook_entries.gate_command(cli, "/opt/spanvisor/bin/spanvisor")
    setup = adapter.hook_setup(command, 900)
    assert setup is not None
    doc = _doc(setup.name, setup.text)
    found = list(adapter.hook_timeouts(doc))
    assert (command, 900.0) in found, found
    text = json.dumps(doc)
    for event in adapter.session_events:  # its ends reach the hook too
        assert f'"{event}"' in text, event


def test_claude_codes_entry_would_pass_spanvisor_check() -> None:
    adapter = registry.need("claude-code")
    command = hook_entries.gate_command("claude-code")  # this installation's spanvisor: absolute, there
    setup = adapter.hook_setup(command, 900)
    assert setup is not None
    doc = json.loads(setup.text)
    gates = [c for c, _ in adapter.hook_timeouts(doc) if checks.is_gate(c)]
    assert gates and all(checks.command_weaknesses(c) + adapter.entry_weaknesses(doc, c) == [] for c in gates)
    # Without onFailure, its entry is weak: a hook that fails lets the call run.
    doc["hooks"]["PreToolUse"][0]["hooks"][0].pop("onFailure")
    assert adapter.entry_weaknesses(doc, command) != []


def test_every_cli_with_a_hook_of_its_own_is_exported() -> None:
    exported = {rel.split("/")[1] for rel, _, _ in hook_setups()}
    shipped = {a.name for a in registry.builtin() if a.gate_assets is not None}  # their gate is a file of spanvisor's
    assert exported | shipped == set(registry.NAMES)


def test_a_gate_command_holding_a_token_is_weak() -> None:
    for given in (" --token s3cret", " --otlp-token=s3cret", " --tok s3cret", " --otlp-tok=s3cret"):
        command = hook_entries.gate_command("codex") + given
        assert any("holds a token" in w for w in checks.command_weaknesses(command)), given
    assert not any("holds a token" in w for w in checks.command_weaknesses(hook_entries.gate_command("codex")))


def test_claude_codes_session_end_is_given_time_to_answer_on_a_loaded_machine() -> None:
    # Without a timeout Claude Code kills its SessionEnd hooks after 1.5 s in all:
    # a hook slow to start would never end the session's task.
    setup = registry.need("claude-code").hook_setup(hook_entries.gate_command("claude-code"), 900)
    assert setup is not None
    (entry,) = json.loads(setup.text)["hooks"]["SessionEnd"][0]["hooks"]
    assert entry["timeout"] >= 5, entry
    assert "onFailure" not in entry  # a session's end blocks nothing


def test_spanvisor_check_names_a_session_end_entry_without_time_to_answer() -> None:
    adapter = registry.need("claude-code")
    command = hook_entries.gate_command("claude-code")
    setup = adapter.hook_setup(command, 900)
    assert setup is not None
    doc = json.loads(setup.text)
    assert adapter.entry_weaknesses(doc, command) == []
    doc["hooks"]["SessionEnd"][0]["hooks"][0].pop("timeout")  # as settings written before
    [weak] = adapter.entry_weaknesses(doc, command)
    assert "SessionEnd" in weak and "1.5 s" in weak
