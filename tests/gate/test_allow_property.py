"""When the gate allows: only when every simple command of the call matched
an allow rule (or, tested in test_faults, a person allowed exactly that
call). Commands are built from known parts in bash's compound forms, so
the truth is known: the call is allowed exactly when no part is forbidden.
In process for many examples, and through the real ``spanvisor hook``
process (each CLI's contract) for a sample: what the CLI reads is what the
policy said."""

from __future__ import annotations

from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spanvisor.clis import registry
from tests.gate.test_attack import decision, run_hook
from tests.gate.test_shell_rules import FORBIDDEN, POLICY, SAFE, call, wrap

POLICY_TOML = """default = "deny"
[[rule]]
name = "safe"
tool = "Bash"
command = ["ls", "ls *", "git status", "cat *", "pwd", "echo *"]
decision = "allow"
[[rule]]
name = "no-rm"
command = ["rm *", "*rm -rf*"]
decision = "deny"
reason = "no deletes"
"""


def compose(parts: list[str], forms: list[int]) -> str:
    """``parts`` joined by compound forms that run nothing but the parts."""
    command = parts[0]
    for part, form in zip(parts[1:], forms, strict=False):
        command = [
            f"{command} && {part}",
            f"{command}; {part}",
            f"{command} || {part}",
            f"{command} | {part}",
            f"{command}\n{part}",
            f"x=$( {command} ); {part}",
            f"( {command} ); {part}",
            f"{{ {command}; }} && {part}",
            f"if {command}; then {part}; fi",
            f"{command} & {part}",
            f"for x in 1; do {command}; done; {part}",
        ][form % 11]
    return command


PARTS = st.lists(st.sampled_from(SAFE + FORBIDDEN), min_size=1, max_size=5)
FORMS = st.lists(st.integers(0, 100), min_size=4, max_size=4)


@settings(max_examples=500)
@given(PARTS, FORMS)
def test_allowed_exactly_when_every_part_is(parts: list[str], forms: list[int]) -> None:
    command = compose(parts, forms)
    allowed = POLICY.decide(call(command)).verdict == "allow"
    assert allowed == all(p in SAFE for p in parts), command


def _stdin(cli: str, command: str) -> bytes:
    import json

    tool = "run_shell_command" if cli == "gemini" else "Bash"
    return json.dumps({"session_id": "s", "tool_name": tool, "tool_input": {"command": command}}).encode()


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.sampled_from(registry.NAMES), PARTS, FORMS)
def test_the_real_hook_allows_exactly_when_every_part_is(
    tmp_path: Path, cli: str, parts: list[str], forms: list[int]
) -> None:
    command = compose(parts, forms)
    policy = POLICY_TOML.replace('tool = "Bash"', 'tool = ["Bash", "run_shell_command"]')
    code, out, err = run_hook(tmp_path, cli, _stdin(cli, command), policy)
    said = decision(cli, out)
    if all(p in SAFE for p in parts):
        assert (code, said) == (0, "allow"), (command, out, err)
    else:
        assert said == "deny" and code in (0, 2), (command, out, err)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.sampled_from(registry.NAMES),
    st.sampled_from(FORBIDDEN),
    st.integers(0, 200),
    st.sampled_from(SAFE),
    st.integers(0, 3),
)
def test_a_forbidden_command_hidden_in_any_compound_form_is_never_allowed_by_the_real_hook(
    tmp_path: Path, cli: str, inner: str, form: int, other: str, depth: int
) -> None:
    command = inner
    for level in range(depth + 1):
        command = wrap(command, form + level * 7, other)
    policy = POLICY_TOML.replace('tool = "Bash"', 'tool = ["Bash", "run_shell_command"]')
    code, out, err = run_hook(tmp_path, cli, _stdin(cli, command), policy)
    assert code in (0, 2) and decision(cli, out) in ("deny", None), (command, out, err)
    assert "Traceback" not in err
