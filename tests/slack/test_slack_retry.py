"""The Web API retry verdicts: what each failure class waits, and that the
jitter never draws from the process's global ``random``."""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from spanvisor.chat.retry import Failure, decide
from spanvisor_slack.retry import default_strategies


@given(
    error=st.sampled_from(["ratelimited", "service_unavailable", "internal_error", "fatal_error", "connection"]),
    status=st.sampled_from([200, 429, 500, 503]),
    attempt=st.integers(1, 40),
    retry_after=st.none() | st.floats(0, 120),
    method=st.sampled_from(["chat.postMessage", "chat.update"]),
)
def test_verdicts_wait_within_their_bounds(
    error: str, status: int, attempt: int, retry_after: float | None, method: str
) -> None:
    verdict = decide(Failure(method, error, status, retry_after, attempt), default_strategies())
    if status == 429 or error == "ratelimited":
        assert verdict.kind == "rate_limited" and verdict.pause_method
        wait = retry_after if retry_after is not None else 1.0
        assert wait <= verdict.delay_s <= wait + 0.25
    elif error == "fatal_error" or error == "internal_error":
        assert verdict.kind == ("ambiguous" if method == "chat.postMessage" else "retry")
    else:
        assert verdict.kind == "retry" and 0.25 <= verdict.delay_s <= 30.0


def test_jitter_leaves_the_global_random_sequence_alone() -> None:
    # An agent that seeds random to replay its runs must get the same
    # sequence whether or not Slack rate-limited spanvisor meanwhile.
    random.seed(1234)
    expected = [random.random() for _ in range(3)]
    random.seed(1234)
    for attempt in range(1, 20):
        decide(Failure("chat.update", "ratelimited", 429, 2.0, attempt), default_strategies())
        decide(Failure("chat.update", "http_5xx", 502, None, attempt), default_strategies())
    assert [random.random() for _ in range(3)] == expected
