"""A person's press on a chat message's button, as a decision the control
API applies, and what the person is told back; for any chat channel.

Who pressed is what the channel's own servers say (Telegram's update on
the bot's token, Teams' activity signed by the Bot Connector), looked up
in the deciders file: an account the file does not name may see, never
decide (its press is audited as refused). What is decided is the button's
stored entry (:mod:`spanvisor.chat.buttons`), never the press's data.
"""

from __future__ import annotations

import time

from spanvisor.control.deciders import Person
from spanvisor.control.hub import Control, Verdict
from spanvisor.display.readable import DECISION_STYLE, decided, from_text
from spanvisor.events import Decision

from .buttons import Button


async def decide(
    control: Control,
    button: Button,
    *,
    press_id: str,
    actor_id: str,
    person: Person | None,
    source: str,
    key: str,
    comment: str | None = None,
) -> tuple[str, str]:
    """Apply ``button``'s decision as ``person`` (None: not in the deciders
    file, ``key`` names the file's key for this channel, e.g.
    ``telegram_user``), with the person's ``comment`` if the channel takes
    one: the outcome (for a counter) and what to tell the person (plain text)."""
    d = Decision(
        intervention_id=f"{source}-{press_id}",
        task_id=button.task_id,
        action="approve" if button.action == "approve" else "reject",
        actor_id=actor_id,
        time_ns=time.time_ns(),
        approval_id=button.approval_id,
        # A chat's display names are the person's own choosing: only a name the file proves is shown.
        actor_name=person.name if person is not None else None,
        source=source,
        run_id=button.run_id,
        digest=button.digest or None,
        verified=True,
        person=person.name if person is not None else None,
        groups=person.groups if person is not None else (),
        proof=source if person is not None else None,
        comment=comment or None,
    )
    if person is None:
        reason = f"this {source.capitalize()} account is not in the deciders file ({key} in SPANVISOR_DECIDERS)"
        await control.decide(d, denied=reason, code="not_approver")
        return "not_allowed", f"🚫 Not allowed: {reason}."
    verdict = await control.decide(d)
    return verdict.outcome, verdict_text(verdict, d)


def verdict_text(verdict: Verdict, d: Decision) -> str:
    """What the person who pressed is told (plain text: a notice shows no markup)."""
    if verdict.outcome == "applied" and verdict.votes_needed > 1 and verdict.votes < verdict.votes_needed:
        more = verdict.votes_needed - verdict.votes
        return f"🗳️ {verdict.votes} of {verdict.votes_needed}: {more} more must approve{from_text(verdict.request)}."
    if verdict.outcome in ("applied", "duplicate"):
        emoji, done = DECISION_STYLE[d.action][:2]
        return f"{emoji} {done}"
    if verdict.outcome == "already_decided" and verdict.prior is not None:
        p = verdict.prior
        return f"☑️ Not changed: already {decided(p.action)} by {p.actor_name or p.actor_id}."
    return f"⛔ Not done: {verdict.reason or verdict.outcome}."
