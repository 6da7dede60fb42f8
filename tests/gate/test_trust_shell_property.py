"""Hidden effects are never allowed: commands from a small grammar
(arithmetic, expansions, assignments and per-program options) each hide a
forbidden effect (``touch pwned``), under a policy that allows everything
else (``git *``, ``echo *``, ``ls *``, ``find *``, …); the verdict is never
allow. Where bash can show it without a network or a pager, the command
is run by real bash in a temporary directory first, so the test is
honest: the forbidden file really appears."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spanvisor.clis import registry
from spanvisor.gate.contracts import Call
from spanvisor.gate.policy import parse
from tests.gate.test_attack import decision, run_hook

PROGRAMS = ["git", "echo", "ls", "find", "sed", "awk", "tar", "env", "xargs", "cat", "printf", "test", "true"]
PROGRAMS += ["declare", "hash", "shopt", "alias", "trap", "let", ":", "rsync", "ssh", "less", "bash"]
POLICY = parse(
    {
        "default": "deny",
        "rule": [
            {"name": "else", "tool": "Bash", "command": [f"{p} *" for p in PROGRAMS] + PROGRAMS, "decision": "allow"},
        ],
    }
)
EFFECT = "touch pwned"
# The hidden command, as bash reads it inside an array subscript.
HIDE = "x='a[$(touch pwned)]'; "
BASH = shutil.which("bash")

# Each form: (the command hiding EFFECT, whether real bash shows the effect
# here: no network, repository or pager needed).
FORMS: list[tuple[str, bool]] = [
    (HIDE + "echo $((x))", True),
    (HIDE + "echo $[x]", True),
    (HIDE + "((x)); true", True),
    (HIDE + "[[ $x -eq 1 ]]; true", True),
    (HIDE + "[[ x -ne 1 ]]; true", True),
    (HIDE + "[[ 1 -eq 1 && x -gt 1 ]]; true", True),
    (HIDE + "cat <<EOF\n$((x))\nEOF", True),
    ("echo 'a[$(touch pwned)]' > n; echo $(( $(cat n) ))", True),
    (HIDE + "a[$x]=1", True),
    (HIDE + "a=(1); echo ${a[$x]}", True),
    (HIDE + "for ((i=x; i<1; i++)); do echo; done", True),
    (HIDE + "let y=x; true", True),
    (HIDE + "echo ${x:$x}", True),
    (HIDE + 'printf -v "$x" 1', True),
    (HIDE + 'test -v "$x"; true', True),
    (HIDE + "echo ${!x}", True),
    ("y='$(touch pwned)'; echo ${y@P}", True),
    (HIDE + "declare -n r=$x; echo $r", True),
    (HIDE + "a=([$x]=1)", True),
    ("hash -p /usr/bin/touch ls; ls pwned", os.path.exists("/usr/bin/touch")),
    ("shopt -s expand_aliases\nalias ls='touch pwned'\nls", True),
    ("trap 'touch pwned' EXIT", True),
    ("BASH_ENV=<(echo touch pwned) bash -c true", False),  # a substitution: read as its own command
    ("env BASH_ENV=./rc bash -c true", False),
    ("sed -n '1e touch pwned' /etc/hostname", True),
    ("echo x | sed 's/x/touch pwned/e'", True),
    ("awk 'BEGIN { system(\"touch pwned\") }'", True),
    ('echo | awk \'{ print "x" > "pwned" }\'', True),
    ('awk \'BEGIN { print "" | "touch pwned" }\'', True),
    ("find /etc/hostname -fprint pwned", True),
    ("find . -maxdepth 0 -exec touch pwned \\;", True),
    ("env -S 'touch pwned'", True),
    ("echo pwned | xargs touch", True),
    ("tar -cf /dev/null --checkpoint=1 --checkpoint-action=exec='touch pwned' /etc/hostname", True),
    ("tar -cf archive.tar --to-command='touch pwned' /etc/hostname", False),
    ("git diff --no-index --output=pwned /etc/hostname /etc/hostname; true", True),
    ("git -c core.pager='touch pwned' -p log", False),
    ("GIT_PAGER='touch pwned' git -p log", False),
    ("GIT_CONFIG_COUNT=1 GIT_CONFIG_KEY_0=core.pager GIT_CONFIG_VALUE_0='touch pwned' git -p log", False),
    ("GIT_SSH_COMMAND='touch pwned' git ls-remote ssh://h/r", False),
    ("LD_PRELOAD=./evil.so ls", False),
    ("rsync -e 'touch pwned' a h:b", False),
    ("ssh -o ProxyCommand='touch pwned' h", False),
    ("export PROMPT_COMMAND='touch pwned'", False),
    ("less /etc/hostname", False),
]
# Honest context the form is hidden in.
PREFIX = st.sampled_from(["", "ls; ", "echo hi && ", "git status; ", "false || "])
SUFFIX = st.sampled_from(["", "; ls", " && echo done", " | cat", "; git status"])
WRAP = st.sampled_from(["{}", "( {} )", "{{ {}; }}", "if true; then {}; fi", "for f in 1; do {}; done"])


def call(command: str) -> Call:
    return Call("claude-code", "PreToolUse", "s", "Bash", {"command": command}, None, "/work/repo")


def runs_effect(command: str, where: Path) -> bool:
    """Whether real bash, run on ``command`` in ``where``, makes ``pwned``."""
    target = where / "pwned"
    if target.exists():
        target.unlink()
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(where), "GIT_CONFIG_NOSYSTEM": "1"}
    subprocess.run(
        [BASH or "bash", "-c", command],
        cwd=where,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        timeout=10,
        check=False,
    )
    return target.exists()


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(FORMS), PREFIX, SUFFIX, WRAP)
def test_a_hidden_effect_is_never_allowed(form: tuple[str, bool], prefix: str, suffix: str, wrap: str) -> None:
    command = wrap.format(prefix + form[0] + suffix)
    ruling = POLICY.decide(call(command))
    assert ruling.verdict != "allow", (command, ruling)


ALLOW_EVERY_COMMAND = parse({"rule": [{"name": "all", "command": "*", "decision": "allow"}]})


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(FORMS), PREFIX, SUFFIX, WRAP)
def test_not_even_an_allow_of_every_command_allows_a_hidden_effect(
    form: tuple[str, bool], prefix: str, suffix: str, wrap: str
) -> None:
    command = wrap.format(prefix + form[0] + suffix)
    ruling = ALLOW_EVERY_COMMAND.decide(call(command))
    assert ruling.verdict == "ask", (command, ruling)


@pytest.mark.skipif(BASH is None, reason="needs bash")
@pytest.mark.parametrize("form", [f for f, shown in FORMS if shown])
def test_real_bash_runs_the_hidden_effect(form: str, tmp_path: Path) -> None:
    """The grammar is honest: each form bash can show here really runs it."""
    if "sed" in form and subprocess.run(["sed", "--version"], capture_output=True, check=False).returncode:
        pytest.skip("GNU sed's e command")
    if "git " in form and shutil.which("git") is None:
        pytest.skip("needs git")
    if "-S" in form and subprocess.run(["env", "-S", "true"], capture_output=True, check=False).returncode:
        pytest.skip("env -S")
    assert runs_effect(form, tmp_path), form
    assert POLICY.decide(call(form)).verdict != "allow"


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.sampled_from([f for f, shown in FORMS if shown]), PREFIX, SUFFIX, WRAP)
def test_wrapped_in_honest_context_bash_still_runs_it_and_the_gate_never_allows(
    tmp_path: Path, form: str, prefix: str, suffix: str, wrap: str
) -> None:
    if BASH is None:
        pytest.skip("needs bash")
    command = wrap.format(prefix + form + suffix)
    if POLICY.decide(call(command)).verdict == "allow":
        pytest.fail(f"allowed: {command!r}")
    if "sed" in form or "git " in form or "-S" in form:
        return  # shown alone above, where the tools are checked
    if "alias" in form:
        return  # bash reads a compound command whole, before the alias is defined: shown alone above
    if "<<EOF" in form:
        return  # text after the delimiter's line ends no here-document: shown alone above
    assert runs_effect(command, tmp_path), command


@pytest.mark.parametrize(
    "command", ["echo $((1 + 2))", "ls -la", "git status", "find . -name '*.py'", "echo ${a[0]} ${#x}"]
)
def test_the_allow_everything_else_policy_still_allows_honest_commands(command: str) -> None:
    assert POLICY.decide(call(command)).verdict == "allow"


POLICY_TOML = 'default = "deny"\n[[rule]]\nname = "else"\ntool = ["Bash", "run_shell_command"]\ncommand = [{}]\ndecision = "allow"\n'.format(
    ", ".join(f'"{p} *", "{p}"' for p in PROGRAMS)
)


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.sampled_from(registry.NAMES), st.sampled_from(FORMS), PREFIX)
def test_the_real_hook_never_allows_a_hidden_effect(
    tmp_path: Path, cli: str, form: tuple[str, bool], prefix: str
) -> None:
    """Through the real ``spanvisor hook`` process, in each CLI's contract."""
    import json

    tool = "run_shell_command" if cli == "gemini" else "Bash"
    stdin = json.dumps({"session_id": "s", "tool_name": tool, "tool_input": {"command": prefix + form[0]}}).encode()
    code, out, err = run_hook(tmp_path, cli, stdin, POLICY_TOML)
    assert code in (0, 2) and decision(cli, out) in ("deny", None), (form, out, err)
    assert "Traceback" not in err
