"""What to do after a failed call to a chat service: small strategy objects
in the spirit of slack_sdk's ``http_retry`` handlers, but deciding instead of
sleeping, so a rate-limited bucket is paused for every task at once and the
exporter never waits. A channel brings its own error codes (Slack's
``ratelimited``, Telegram's descriptions) and strategies for them.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

Kind = Literal["ok", "rate_limited", "retry", "ambiguous", "permanent"]
# Worth trying again whatever the channel: the network, the service's 5xx.
TRANSIENT = frozenset({"connection", "http_5xx"})

# Jitter from a generator of our own: drawing from the global one would move
# the sequence of an agent that seeds ``random`` to replay its own runs.
_JITTER = random.Random()


@dataclass(frozen=True, slots=True)
class Failure:
    method: str
    error: str  # the service's error code, or connection / timeout / http_5xx
    status: int = 200
    retry_after_s: float | None = None
    attempt: int = 1


@dataclass(frozen=True, slots=True)
class RetryVerdict:
    kind: Kind
    delay_s: float = 0.0
    # The whole bucket waits this long (HTTP 429), not only this call.
    pause_method: bool = False


class RetryStrategy:
    def decide(self, failure: Failure) -> RetryVerdict | None:
        raise NotImplementedError


class RateLimitStrategy(RetryStrategy):
    """HTTP 429 (or a channel's own rate-limit ``codes``): wait what the
    service says, for every caller of that bucket, plus a little jitter."""

    def __init__(self, default_s: float = 1.0, jitter_s: float = 0.25, codes: frozenset[str] = frozenset()) -> None:
        self.default_s, self.jitter_s, self.codes = default_s, jitter_s, codes

    def decide(self, failure: Failure) -> RetryVerdict | None:
        if failure.status != 429 and failure.error not in self.codes:
            return None
        wait = failure.retry_after_s if failure.retry_after_s is not None else self.default_s
        return RetryVerdict("rate_limited", wait + _JITTER.uniform(0, self.jitter_s), pause_method=True)


class ServerErrorStrategy(RetryStrategy):
    """Connection errors, HTTP 5xx and the channel's ``retryable`` codes:
    exponential backoff with full jitter, capped. Never gives up while the
    sink runs."""

    def __init__(self, base_s: float = 0.5, cap_s: float = 30.0, retryable: frozenset[str] = TRANSIENT) -> None:
        self.base_s, self.cap_s, self.retryable = base_s, cap_s, retryable

    def decide(self, failure: Failure) -> RetryVerdict | None:
        if failure.error not in self.retryable and not 500 <= failure.status < 600:
            return None
        ceiling = min(self.cap_s, self.base_s * 2 ** min(failure.attempt - 1, 16))
        return RetryVerdict("retry", _JITTER.uniform(ceiling / 2, ceiling))


def decide(failure: Failure, strategies: Sequence[RetryStrategy]) -> RetryVerdict:
    for s in strategies:
        d = s.decide(failure)
        if d is not None:
            return d
    return RetryVerdict("permanent")
