"""How long an allow waits for the look at the session's cancel: the
default, a setting, and anything else read without raising, within bounds."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from spanvisor.gate.cancel import BUDGET_S, ENV_BUDGET, MAX_BUDGET_S, budget


def test_the_default_and_a_setting() -> None:
    assert budget({}) == BUDGET_S
    assert budget({ENV_BUDGET: "250ms"}) == 0.25
    assert budget({ENV_BUDGET: "2s"}) == 2.0
    assert budget({ENV_BUDGET: "1.5"}) == 1.5
    assert budget({ENV_BUDGET: "1h"}) == BUDGET_S, "not a duration the hook reads: the default"
    assert budget({ENV_BUDGET: "60"}) == MAX_BUDGET_S
    assert budget({ENV_BUDGET: "nan"}) == BUDGET_S


@given(st.text(max_size=20))
def test_any_value_is_read_without_raising_and_within_bounds(raw: str) -> None:
    assert 0.0 <= budget({ENV_BUDGET: raw}) <= MAX_BUDGET_S
