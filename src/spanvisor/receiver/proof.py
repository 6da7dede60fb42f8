"""Who a control API request comes from, and what that lets a decision be.

The bearer token names the caller: a person of the deciders file (their
own token), a person the identity provider signed a token for (verified
here without blocking the loop: :mod:`spanvisor.control.people`), an agent
(its own token), or nobody in particular (the shared tokens). A decision
then is the proven person's, whatever its body says, with their groups;
with people configured, the shared token's is the anonymous operator's.

Breaking glass (``"break_glass": true`` with a ``comment``: the reason) is
checked here, against ``SPANVISOR_BREAK_GLASS_GROUP``: only a proven member
of that group may, and never without a reason. A refused attempt is
audited like any refused decision.
"""

from __future__ import annotations

import json
from dataclasses import replace

from aiohttp import web

from spanvisor.control.deciders import ANONYMOUS_ID, ANONYMOUS_NAME, Person
from spanvisor.control.oidc import TokenRefused
from spanvisor.control.people import People, in_group
from spanvisor.events import Decision


def refused(exc: TokenRefused) -> web.Response:
    """401 (or 403) with the reason, as RFC 6750 says a bearer token is refused."""
    reason = exc.reason.replace('"', "'")
    challenge = f'Bearer error="{"insufficient_scope" if exc.status == 403 else "invalid_token"}"'
    return web.Response(
        status=exc.status,
        text=json.dumps({"error": f"identity token refused: {exc.reason}", "code": "invalid_token"}),
        content_type="application/json",
        headers={"WWW-Authenticate": f'{challenge}, error_description="{reason[:200]}"'},
    )


async def prove(people: People, token: str | None, shared: bool) -> Person | None:
    """The person ``token`` proves; None when it proves nobody (``shared``:
    it is one of the shared tokens, never sent to the provider).
    :class:`TokenRefused` for a provider's token that does not verify."""
    found = people.by_token(token)
    if found is not None or shared or not people.wants_provider(token):
        return found
    return await people.who(token)


def as_decided(d: Decision, person: Person | None, people: People) -> Decision:
    """The decision as the token proves it: the person's, with their groups;
    with people configured, an unproven one is the anonymous operator's."""
    if not people.on:
        return d
    if person is None:
        return replace(d, actor_id=ANONYMOUS_ID, actor_name=ANONYMOUS_NAME, verified=False, person=None, groups=())
    return replace(
        d,
        actor_id=person.oidc if person.proof == "oidc" and person.oidc else person.name,
        actor_name=person.name,
        verified=True,
        person=person.name,
        groups=person.groups,
        proof=person.proof,
    )


def break_glass_refusal(d: Decision, group: str | None) -> tuple[str, str] | None:
    """(code, reason) when ``d`` may not break glass here; None when it may."""
    if not d.break_glass:
        return None
    if not group:
        return "break_glass_off", "breaking glass is off on this server (no SPANVISOR_BREAK_GLASS_GROUP)"
    if not d.verified or not d.person:
        return "unverified", "breaking glass needs your own proven identity (your token, or spanvisor login)"
    if not in_group(d.groups, group):
        mine = ", ".join(d.groups) or "none proven"
        return "not_in_group", f"breaking glass is for members of {group}: {d.person} is not one (groups: {mine})"
    if not (d.comment or "").strip():
        return "reason_required", "breaking glass needs a reason (--reason): it is posted and kept in the audit"
    return None


__all__ = ["as_decided", "break_glass_refusal", "prove", "refused"]
