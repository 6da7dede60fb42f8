"""``spanvisor check`` for Slack: is the token valid, can the bot post where
config sends it?

Posting rights are checked by scheduling a message a day ahead with
``chat.scheduleMessage`` and deleting it at once with
``chat.deleteScheduledMessage``: it needs only ``chat:write`` (the scope the
sink needs anyway), accepts channel names as well as IDs, answers exactly
the errors a real post would (not_in_channel, channel_not_found,
is_archived) and leaves nothing visible behind. ``conversations.info`` would
need the extra ``channels:read``/``groups:read`` scopes and channel IDs.
"""

from __future__ import annotations

import time

from spanvisor.config import Config

from .retry import fix_for
from .transport import CallError, SlackClient


async def run_check(config: Config) -> list[tuple[str, bool, str]]:
    token = config.get("slack_token")
    if not token:
        if config.get("slack_dry_run"):
            return [("slack", True, "dry-run: payloads are built, validated and logged, not sent")]
        return [("slack", False, "SLACK_BOT_TOKEN is not set; the console shows the messages instead")]
    client = SlackClient(token, config.get("slack_base_url"), config.get("slack_timeout_s", 10.0))
    out: list[tuple[str, bool, str]] = []
    try:
        try:
            who = await client.call("auth.test", {})
        except CallError as exc:
            return [("slack auth.test", False, f"{exc.error}: {fix_for(exc.error)}")]
        out.append(("slack auth.test", True, f"team {who.get('team')!s}, bot user {who.get('user')!s}"))
        channels = [config.get("slack_channel")] + [r.channel for r in config.get("slack_routes", ())]
        for channel in dict.fromkeys(c for c in channels if c):
            out.append(await _can_post(client, channel))
        if not config.get("slack_channel"):
            out.append(
                (
                    "slack channel",
                    False,
                    "SPANVISOR_SLACK_CHANNEL is not set: tasks no routing rule matches are not posted",
                )
            )
    finally:
        await client.close()
    return out


async def _can_post(client: SlackClient, channel: str) -> tuple[str, bool, str]:
    what = f"slack post to {channel}"
    try:
        sched = await client.call(
            "chat.scheduleMessage",
            {
                "channel": channel,
                "post_at": int(time.time()) + 86_400,
                "text": "spanvisor check (deleted at once)",
            },
        )
    except CallError as exc:
        return (what, False, f"{exc.error}: {fix_for(exc.error)}")
    try:
        await client.call(
            "chat.deleteScheduledMessage",
            {
                "channel": str(sched.get("channel") or channel),
                "scheduled_message_id": str(sched.get("scheduled_message_id")),
            },
        )
    except CallError as exc:
        return (
            what,
            True,
            f"can post, but deleting the test message failed ({exc.error}): remove it in Slack's scheduled messages",
        )
    return (what, True, "the bot can post here")
