"""What to do after a failed Web API call: small strategy objects in the
spirit of slack_sdk's ``http_retry`` handlers, but deciding instead of
sleeping, so a rate-limited method is paused for every task at once and the
exporter never waits.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

Kind = Literal["ok", "rate_limited", "retry", "ambiguous", "permanent"]

# The fix a person needs, logged once per error code.
PERMANENT: dict[str, str] = {
    "not_in_channel": "invite the bot to the channel: /invite @<your app>, or add the chat:write.public scope",
    "channel_not_found": "check SPANVISOR_SLACK_CHANNEL / SPANVISOR_SLACK_ROUTES; private channels need the bot invited",
    "is_archived": "the channel is archived: unarchive it or route to another channel",
    "invalid_auth": "SLACK_BOT_TOKEN is not valid: copy the Bot User OAuth Token (xoxb-…) again",
    "not_authed": "SLACK_BOT_TOKEN is missing from the request",
    "token_revoked": "the token was revoked: reinstall the app and update SLACK_BOT_TOKEN",
    "token_expired": "the token expired: rotate it and update SLACK_BOT_TOKEN",
    "account_inactive": "the app's bot user was deactivated: reinstall the app",
    "missing_scope": "add the chat:write scope to the app and reinstall it",
    "restricted_action": "a workspace admin restricts posting in this channel",
    "msg_too_long": "a spanvisor bug: the text exceeded Slack's limit; please report it",
    "msg_blocks_too_long": "a spanvisor bug: the blocks exceeded Slack's size limit; please report it",
    "invalid_blocks": "a spanvisor bug: Slack rejected the blocks; please report it",
    "invalid_attachments": "a spanvisor bug: Slack rejected the attachments; please report it",
    "no_text": "a spanvisor bug: a message without text; please report it",
    "message_not_found": "the parent message was deleted; the task's updates stop",
    "cant_update_message": "the parent message was not posted by this token",
    "edit_window_closed": "the workspace forbids editing messages this old",
}
# Slack may have done it: retrying a post could duplicate it.
AMBIGUOUS = frozenset({"fatal_error", "internal_error", "timeout"})
RETRYABLE = frozenset(
    {"service_unavailable", "request_timeout", "ratelimited", "rate_limited", "connection", "http_5xx"}
)

# Jitter from a generator of our own: drawing from the global one would move
# the sequence of an agent that seeds ``random`` to replay its own runs.
_JITTER = random.Random()


@dataclass(frozen=True, slots=True)
class Failure:
    method: str
    error: str  # Slack's error code, or connection / timeout / http_5xx
    status: int = 200
    retry_after_s: float | None = None
    attempt: int = 1


@dataclass(frozen=True, slots=True)
class RetryVerdict:
    kind: Kind
    delay_s: float = 0.0
    # The whole method waits this long (HTTP 429), not only this call.
    pause_method: bool = False


class RetryStrategy:
    def decide(self, failure: Failure) -> RetryVerdict | None:
        raise NotImplementedError


class RateLimitStrategy(RetryStrategy):
    """HTTP 429 (and chat.postMessage's own ``rate_limited``): wait what Slack
    says, for every caller of that method, plus a little jitter."""

    def __init__(self, default_s: float = 1.0, jitter_s: float = 0.25) -> None:
        self.default_s, self.jitter_s = default_s, jitter_s

    def decide(self, failure: Failure) -> RetryVerdict | None:
        if failure.status != 429 and failure.error not in {"ratelimited", "rate_limited"}:
            return None
        wait = failure.retry_after_s if failure.retry_after_s is not None else self.default_s
        return RetryVerdict("rate_limited", wait + _JITTER.uniform(0, self.jitter_s), pause_method=True)


class ServerErrorStrategy(RetryStrategy):
    """Connection errors, HTTP 5xx and Slack's transient codes: exponential
    backoff with full jitter, capped. Never gives up while the sink runs."""

    def __init__(self, base_s: float = 0.5, cap_s: float = 30.0) -> None:
        self.base_s, self.cap_s = base_s, cap_s

    def decide(self, failure: Failure) -> RetryVerdict | None:
        if failure.error not in RETRYABLE and not 500 <= failure.status < 600:
            return None
        ceiling = min(self.cap_s, self.base_s * 2 ** min(failure.attempt - 1, 16))
        return RetryVerdict("retry", _JITTER.uniform(ceiling / 2, ceiling))


class AmbiguousStrategy(RetryStrategy):
    """Slack may have acted. Edits are idempotent and retried; posts are not
    (the caller recovers or gives up, never reposts blindly)."""

    def __init__(self, backoff: ServerErrorStrategy) -> None:
        self.backoff = backoff

    def decide(self, failure: Failure) -> RetryVerdict | None:
        if failure.error not in AMBIGUOUS:
            return None
        if failure.method == "chat.postMessage":
            return RetryVerdict("ambiguous")
        retry = self.backoff.decide(Failure(failure.method, "http_5xx", 500, None, failure.attempt))
        return retry


def default_strategies() -> tuple[RetryStrategy, ...]:
    backoff = ServerErrorStrategy()
    return (RateLimitStrategy(), AmbiguousStrategy(backoff), backoff)


def decide(failure: Failure, strategies: Sequence[RetryStrategy]) -> RetryVerdict:
    for s in strategies:
        d = s.decide(failure)
        if d is not None:
            return d
    return RetryVerdict("permanent")


def fix_for(error: str) -> str:
    return PERMANENT.get(error, "see docs/reference/slack.md#errors")
