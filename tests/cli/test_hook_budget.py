"""A person's time under a CLI that gives its hook a limit: Gemini CLI runs
the tool call when its hook times out (60 s unless its settings say
otherwise), so ``spanvisor hook`` answers by the policy's ``on_timeout`` a
few seconds before that limit rather than let the call through unasked."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from spanvisor.cli.hook import CLI_TIMEOUT_DEFAULT, MIN_MARGIN_S, wait_budget
from spanvisor.cli.hook_policy import Policy
from tests.cli.coding_harness import CLAUDE_PRE, GEMINI_BEFORE, clean_env, hook


@given(
    st.floats(min_value=0.5, max_value=86_400),
    st.one_of(st.none(), st.floats(min_value=0.0, max_value=100_000)),
    st.floats(min_value=0.0, max_value=1_000),
)
def test_the_wait_ends_before_the_clis_limit_and_never_outlasts_the_policy(
    policy_s: float, limit: float | None, elapsed: float
) -> None:
    got = wait_budget(Policy(timeout_s=policy_s), limit, elapsed)
    assert 0 <= got <= policy_s
    if limit is None:
        assert got == policy_s
    elif got > 0:
        assert elapsed + got + MIN_MARGIN_S <= limit


def test_gemini_gets_its_own_default_and_the_others_none() -> None:
    assert CLI_TIMEOUT_DEFAULT == {"claude-code": None, "codex": None, "gemini": 60.0}
    policy = Policy(timeout_s=300)
    assert wait_budget(policy, 60.0, 0.0) == 51.0  # 15 % kept back
    assert wait_budget(Policy(timeout_s=1_000), 900.0, 3.2) == 886.0  # at most 10 s kept back
    assert wait_budget(Policy(timeout_s=30), 900.0, 0.0) == 30.0


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
