"""Slack's per-method rate limits: the numbers :mod:`spanvisor.chat.pacing` keeps.

Slack limits most Web API methods per workspace (per token) and method, in
tiers: Tier 2 about 20 calls a minute, Tier 3 about 50 (``chat.update``,
``chat.delete``, ``conversations.history``), Tier 4 about 100, each with
short bursts. Each limited method is a bucket of the shared pacer, at its
tier's rate with a burst a little below Slack's.

``chat.postMessage`` is not here: Slack limits it per channel (about one a
second), which :mod:`.turns` keeps.
"""

from __future__ import annotations

from spanvisor.chat.pacing import Limit

TIER_PER_MINUTE = {1: 1.0, 2: 20.0, 3: 50.0, 4: 100.0}
# Slack's documented tier of each method the sink calls (chat.postMessage is
# per channel, .turns; the interactivity client has its own, .webapi).
METHOD_TIERS = {
    "chat.update": 3,
    "chat.delete": 3,
    "conversations.history": 3,
    "conversations.list": 2,
    "chat.getPermalink": 4,
    "agents.sessions.setStatus": 3,
    # UNCONFIRMED: the page gives no tier; setStatus's, its sibling's.
    "agents.sessions.rename": 3,
    # Code channels (.codechannels): their tiers are UNCONFIRMED (the pages'
    # rate-limit line was not readable). Making and archiving a channel are
    # paced as Slack's generic conversations.create and conversations.archive
    # (Tier 2), the context bar as setStatus (Tier 3).
    "agents.conversations.create": 2,
    "agents.conversations.archive": 2,
    "agents.conversations.setProperties": 3,
    "agents.conversations.setView": 3,  # UNCONFIRMED as setProperties
}


def tier(n: int) -> Limit:
    per_minute = TIER_PER_MINUTE[n]
    # A burst a little below what Slack tolerates: one call of slack for jitter.
    return Limit(per_minute, max(1, int(per_minute) // 12))


def default_limits() -> dict[str, Limit]:
    return {m: tier(t) for m, t in METHOD_TIERS.items()}


def limits_with(overrides: tuple[tuple[str, float, int], ...]) -> dict[str, Limit]:
    out = default_limits()
    for method, per_minute, burst in overrides:
        if per_minute <= 0:
            out.pop(method, None)
        else:
            out[method] = Limit(per_minute, burst)
    return out
