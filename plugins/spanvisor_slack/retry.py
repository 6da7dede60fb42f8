"""Slack's error codes and the strategies for them (the strategies' shape is
:mod:`spanvisor.chat.retry`'s): what a person must fix, what Slack may have
done already, what is worth sending again."""

from __future__ import annotations

from spanvisor.chat.retry import TRANSIENT, Failure, RateLimitStrategy, RetryStrategy, RetryVerdict, ServerErrorStrategy

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
RATE_LIMITED = frozenset({"ratelimited", "rate_limited"})  # chat.postMessage says so in a 200
RETRYABLE = TRANSIENT | RATE_LIMITED | {"service_unavailable", "request_timeout"}


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
    backoff = ServerErrorStrategy(retryable=RETRYABLE)
    return (RateLimitStrategy(codes=RATE_LIMITED), AmbiguousStrategy(backoff), backoff)


def fix_for(error: str) -> str:
    return PERMANENT.get(error, "see docs/reference/slack.md#errors")
