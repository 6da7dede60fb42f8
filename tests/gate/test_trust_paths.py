"""Paths one CLI names are paths: under the documented ``secrets`` rule,
each pinned CLI's read of a denied file is denied, whatever key its tool
names the path by (OpenCode's ``filePath`` was read by no path rule, so
``read /etc/shadow`` was allowed under OpenCode while Claude Code's
``Read`` of it was denied). Each input is read through the CLI's own hook
contract (:func:`spanvisor.gate.contracts.parse`)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from spanvisor.clis import registry
from spanvisor.gate import contracts as gc
from spanvisor.gate.paths import named
from spanvisor.gate.policy import parse

# The documented example's two file rules: reads allowed, secrets denied first.
READ_TOOLS = [
    "Read",
    "read_file",
    "read_files",
    "read",
    "view",
    "read_many_files",
    "apply_patch",
    "LS",
    "list_directory",
]
READ_TOOLS += ["editor"]
POLICY = parse(
    {
        "default": "ask",
        "rule": [
            {"name": "secrets", "path": ["/etc/*", "*.pem", "**/.env"], "decision": "deny"},
            {"name": "reads", "tool": READ_TOOLS, "decision": "allow"},
        ],
    }
)
PATCH = "*** Begin Patch\n*** Update File: /etc/shadow\n@@\n-root\n+x\n*** End Patch"


def stdin(cli: gc.Cli, tool: str, tool_input: dict[str, Any]) -> bytes:
    """The hook's stdin as ``cli`` sends it."""
    if cli == "copilot":
        doc: dict[str, Any] = {"sessionId": "s", "toolName": tool, "toolArgs": tool_input, "cwd": "/work/repo"}
    elif cli == "cline":
        doc = {"taskId": "s", "hookName": "PreToolUse", "tool_call": {"id": "c", "name": tool, "input": tool_input}}
    else:
        doc = {"session_id": "s", "tool_name": tool, "tool_input": tool_input, "cwd": "/work/repo"}
    return json.dumps(doc).encode()


# (CLI, its read tool, the input it sends): one row per pinned CLI and path key.
READS: list[tuple[gc.Cli, str, dict[str, Any]]] = [
    ("claude-code", "Read", {"file_path": "/etc/shadow"}),
    ("claude-code", "LS", {"path": "/etc/ssh"}),
    ("claude-code", "Read", {"notebook_path": "/etc/shadow"}),
    ("gemini", "read_file", {"absolute_path": "/etc/shadow"}),
    ("gemini", "read_file", {"file_path": "/etc/shadow"}),
    ("gemini", "list_directory", {"dir_path": "/etc/ssh"}),
    ("gemini", "read_many_files", {"paths": ["src/a.py", "/etc/shadow"]}),
    ("qwen", "read_file", {"absolute_path": "/etc/shadow"}),
    ("qwen", "list_directory", {"path": "/etc/ssh"}),
    ("codex", "apply_patch", {"input": PATCH}),
    ("codex", "apply_patch", {"command": ["apply_patch", PATCH]}),
    ("copilot", "view", {"path": "/etc/shadow"}),
    ("opencode", "read", {"filePath": "/etc/shadow"}),
    ("opencode", "apply_patch", {"patchText": PATCH}),
    ("cline", "read_file", {"path": "/etc/shadow"}),
    ("cline", "read_files", {"file_paths": ["src/a.py", "/etc/shadow"]}),
    ("cline", "read_files", {"files": [{"path": "/etc/shadow", "start_line": 1}]}),
    ("cline", "editor", {"path": "/etc/shadow", "old_text": "a", "new_text": "b"}),
    ("cline", "apply_patch", {"input": PATCH}),
    ("pi", "read", {"path": "/etc/shadow"}),
    ("pi", "read", {"path": "@/etc/shadow"}),  # its file tools drop one leading "@"
    ("droid", "Read", {"file_path": "/etc/shadow"}),
    ("droid", "LS", {"directory_path": "/etc/ssh"}),
    ("droid", "ApplyPatch", {"input": PATCH}),
    ("opencode", "read", {"filePath": "/work/repo/.env"}),
    ("copilot", "view", {"path": "/work/repo/certs/server.pem"}),
]


@pytest.mark.parametrize(("cli", "tool", "tool_input"), READS)
def test_a_path_rule_denies_each_clis_read_of_a_denied_file(cli: gc.Cli, tool: str, tool_input: dict[str, Any]) -> None:
    call = gc.parse(cli, stdin(cli, tool, tool_input))
    ruling = POLICY.decide(call, resolve=False)
    assert (ruling.verdict, ruling.by) == ("deny", "policy:secrets"), (cli, tool_input, ruling)


@pytest.mark.parametrize("cli", registry.NAMES)
def test_each_clis_read_of_an_allowed_file_is_still_allowed(cli: gc.Cli) -> None:
    for key in sorted(
        registry.need(cli).path_keys - {"input", "patch", "patchText", "paths", "include", "file_paths", "files"}
    ):
        call = gc.parse(cli, stdin(cli, "read", {key: "/work/repo/src/a.py"}))
        assert POLICY.decide(call, resolve=False).verdict == "allow", (cli, key)


@pytest.mark.parametrize("cli", registry.NAMES)
def test_every_key_a_pinned_cli_names_a_path_by_is_read(cli: gc.Cli) -> None:
    for key in registry.need(cli).path_keys:
        value: Any = PATCH if key in ("input", "patch", "patchText") else "/etc/shadow"
        listed = key in ("paths", "include", "file_paths", "files")
        assert named({key: [value] if listed else value}) == ("/etc/shadow",), key


def test_every_pinned_cli_has_its_keys() -> None:
    assert all(registry.need(cli).path_keys for cli in registry.NAMES)


def test_a_key_only_an_adapter_names_is_read_for_its_cli() -> None:
    """A CLI added by a package names its path keys in its adapter; the
    gate reads them for that CLI's calls, a patch key never as a path."""
    assert named({"targetThing": "/etc/shadow"}) == ()
    assert named({"targetThing": "/etc/shadow"}, frozenset({"targetThing"})) == ("/etc/shadow",)
    assert named({"input": PATCH}, frozenset({"input"})) == ("/etc/shadow",)


@pytest.mark.parametrize("key", ["filePath", "FilePath", "file-path", "FILE_PATH", "dirPath", "absolutePath"])
def test_a_key_is_read_in_any_spelling(key: str) -> None:
    assert named({key: "/etc/shadow"}) == ("/etc/shadow",)
