"""A person's time under a CLI that gives its hook a limit: Gemini CLI runs
the tool call when its hook times out (60 s unless its settings say
otherwise), so ``spanvisor hook`` answers by the policy's ``on_timeout`` a
few seconds before that limit rather than let the call through unasked."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from spanvisor.clis import registry
from spanvisor.gate.deadline import MIN_MARGIN_S, Deadline, wait_budget
from tests.cli.coding_harness import CLAUDE_PRE, GEMINI_BEFORE, clean_env, hook


@given(
    st.floats(min_value=0.5, max_value=86_400),
    st.one_of(st.none(), st.floats(min_value=0.0, max_value=100_000)),
    st.floats(min_value=0.0, max_value=1_000),
)
def test_the_wait_ends_before_the_clis_limit_and_never_outlasts_the_policy(
    policy_s: float, limit: float | None, elapsed: float
) -> None:
    deadline = Deadline.for_cli("gemini", limit, started=time.monotonic() - elapsed)
    got = wait_budget(policy_s, deadline)
    assert 0 <= got <= policy_s
    if got > 0:
        assert elapsed + got + MIN_MARGIN_S <= deadline.cli_timeout + 0.1


def test_every_cli_has_a_limit_and_the_answer_keeps_a_margin_before_it() -> None:
    # Claude Code's command hooks are killed after 600 s by default, Gemini
    # CLI's after 60 s (and it then runs the call); Codex documents none.
    # Qwen Code's default is Gemini CLI's, Copilot CLI's 30 s, Cline's a fixed
    # 120 s; OpenCode's, Kilo's and pi's are spanvisor's plugin's and
    # extension's own (600 s); Factory Droid's 60 s (its 0.225 binary).
    assert {cli: registry.need(cli).hook_timeout_s for cli in registry.NAMES} == {
        "claude-code": 600.0,
        "codex": 600.0,
        "gemini": 60.0,
        "qwen": 60.0,
        "copilot": 30.0,
        "opencode": 600.0,
        "cline": 120.0,
        "pi": 600.0,
        "kilo": 600.0,
        "droid": 60.0,
    }
    now = time.monotonic()
    assert wait_budget(300, Deadline.for_cli("gemini", None, now)) == 50.0  # 15 % kept back, whole seconds
    assert wait_budget(1_000, Deadline.for_cli("gemini", 900.0, now - 3.2)) == 886.0  # at most 10 s kept back
    assert wait_budget(30, Deadline.for_cli("claude-code", None, now)) == 30.0
    assert wait_budget(900, Deadline.for_cli("claude-code", None, now)) == 589.0


@pytest.mark.parametrize(("on_timeout", "answer"), [("deny", "deny"), ("allow", "allow")])
def test_a_limit_too_short_to_ask_anyone_is_answered_at_once_by_on_timeout(
    on_timeout: str, answer: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clean_env(monkeypatch, tmp_path)
    policy = tmp_path / "policy.toml"
    policy.write_text(f'on_timeout = "{on_timeout}"\n')
    payload = GEMINI_BEFORE | {"tool_input": {"command": "make deploy"}}
    # Nothing listens at the endpoint: the answer comes before any request.
    args = (
        "--policy",
        str(policy),
        "--cli-timeout",
        "1",
        "--endpoint",
        "http://127.0.0.1:9",
        "--url",
        "http://127.0.0.1:9",
    )
    code, out, _ = hook("gemini", payload, *args)
    assert (code, out["decision"]) == (0, answer)
    assert "hook timeout (1 s) leaves no time to ask a person" in out["reason"]
    assert "by policy:on_timeout" in out["reason"]
    # Claude Code asks as before when its settings give no limit.
    code, out, _ = hook(
        "claude-code",
        CLAUDE_PRE,
        "--policy",
        str(policy),
        "--endpoint",
        "http://127.0.0.1:9",
        "--url",
        "http://127.0.0.1:9",
    )
    assert "cannot be reached" in out["hookSpecificOutput"]["permissionDecisionReason"]
