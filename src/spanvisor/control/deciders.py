"""Who decides: people known by their own tokens.

A decision posted with the shared decide token says who decided in a
free-text field (``spanvisor approve --as NAME``): anyone holding that token
can be anyone. With ``SPANVISOR_DECIDERS`` set to a file of people and the
SHA-256 of each one's token, a decision posted with a person's token is
that person's, whatever it claims, and is recorded as verified; one posted
with the shared token is an **anonymous operator's**, shown as such. Slack
decisions are verified by Slack's signature and name the Slack user. A
person's entry may name their Slack user id (``slack_user``): their Slack
decisions are then theirs too, so one person deciding from Slack and with
a token is one person (a request two people must approve needs two).
Likewise ``telegram_user``, the person's Telegram user id (a number): a
button pressed in Telegram by that account is that person's; an account
the file does not name may read the chat, never decide. And
``teams_user``, the person's Microsoft Entra object id (a GUID, the
``from.aadObjectId`` of a Teams activity): a card's button pressed in
Microsoft Teams by that account is that person's. The object id rather
than the Teams user id (``29:…``): it is what an administrator can look
up in Entra for a person, and Teams sends it with every press.

The file (TOML) holds hashes, never tokens, so reading it gives nobody a
token::

    [people.alice]
    token_sha256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
    groups = ["sre"]
    slack_user = "U024BE7LH"   # optional
    telegram_user = 123456789  # optional
    teams_user = "8a0d7a4f-0c4e-4a5e-9a3c-2b1f0e6d5c4b"  # optional

``spanvisor decider-token alice`` makes a token and prints the lines to add.

With an identity provider (``SPANVISOR_OIDC_ISSUER``), a person's entry may
name the identity their provider's tokens give them (``oidc =
"alice@example.com"``): a decision with such a token is then this
person's, with the file's groups besides the token's. An entry needs a
``token_sha256``, an ``oidc`` identity, a ``slack_user``, a
``telegram_user`` or a ``teams_user`` (a person known only on a chat and by
the provider keeps no token here).

The file may also name agents, by the SHA-256 of a token of their own
(``[agents.sprocket] token_sha256 = "…"``). Once it does, consuming an
approval (the permit endpoint) takes the asking agent's own token: the
shared OTLP token only reads, and an agent's token consumes only the
approvals its own runs asked.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spanvisor.config import ConfigError, read_toml

ANONYMOUS_ID = "anonymous"
ANONYMOUS_NAME = "anonymous operator"
_NAME = re.compile(r"^[A-Za-z0-9._@-]{1,64}$")
_HEX = re.compile(r"^[0-9a-f]{64}$")
_SLACK_USER = re.compile(r"^[UW][A-Z0-9]{2,20}$")
# An Entra object id: a GUID in its usual 8-4-4-4-12 form (any case).
_GUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.IGNORECASE)


class DecidersError(ConfigError):
    """The deciders file cannot be used (its path and why, in one line)."""


@dataclass(frozen=True, slots=True)
class Person:
    """A person, proven: ``groups`` those proven for them (the file's, their
    provider token's); ``oidc`` the provider's name for them; ``proof`` how
    (``token``: their token of the file, ``oidc``: their provider's token)."""

    name: str
    groups: tuple[str, ...] = ()
    slack_user: str | None = None
    oidc: str | None = None
    proof: str = "token"
    telegram_user: int | None = None
    # The Entra object id, lower-case (GUIDs are compared ignoring case).
    teams_user: str | None = None


@dataclass(frozen=True, slots=True)
class Deciders:
    """People by the SHA-256 (hex) of their tokens."""

    by_hash: dict[str, Person]
    # Agents by the SHA-256 of their own tokens ([agents.ID]): the agent id
    # a permit with that token may consume approvals of.
    agents: dict[str, str] = field(default_factory=dict)
    # People with no token of their own here (known by Slack or the provider).
    tokenless: tuple[Person, ...] = ()

    def everyone(self) -> list[Person]:
        return [*self.by_hash.values(), *self.tokenless]

    def agent(self, token: str | None) -> str | None:
        """The agent whose token this is, or None."""
        return self.agents.get(token_hash(token)) if token else None

    def who(self, token: str | None) -> Person | None:
        """The person whose token this is, or None."""
        if not token:
            return None
        return self.by_hash.get(token_hash(token))

    def on_slack(self, user_id: str) -> Person | None:
        """The person whose Slack user id this is, or None."""
        return next((p for p in self.everyone() if p.slack_user == user_id), None)

    def on_telegram(self, user_id: int) -> Person | None:
        """The person whose Telegram user id this is, or None."""
        return next((p for p in self.everyone() if p.telegram_user == user_id), None)

    def on_teams(self, aad_object_id: str) -> Person | None:
        """The person whose Entra object id (a Teams activity's
        ``from.aadObjectId``) this is, ignoring case, or None."""
        key = aad_object_id.lower()
        return next((p for p in self.everyone() if p.teams_user == key), None)

    def on_oidc(self, identity: str) -> Person | None:
        """The person whose provider identity this is (ignoring case), or None."""
        key = identity.casefold()
        return next((p for p in self.everyone() if p.oidc is not None and p.oidc.casefold() == key), None)


def valid_name(name: str) -> bool:
    return bool(_NAME.match(name)) and name != ANONYMOUS_ID


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def load(path: str | Path) -> Deciders:
    """Read a deciders file; :class:`DecidersError` says what is wrong."""
    try:
        doc = read_toml(path, "SPANVISOR_DECIDERS")
    except ConfigError as exc:
        raise DecidersError(str(exc)) from None
    people = doc.get("people")
    if people is None and doc.get("agents"):
        people = {}  # agents' tokens only (checked below)
    elif not isinstance(people, dict) or not people:
        raise DecidersError(f"SPANVISOR_DECIDERS: {path} has no [people.NAME] tables")
    by_hash: dict[str, Person] = {}
    tokenless: list[Person] = []
    for name, entry in people.items():
        where = f"SPANVISOR_DECIDERS: {path}: people.{name}"
        if not valid_name(name):
            raise DecidersError(f"{where}: a name is 1-64 letters, digits and ._@- (and not {ANONYMOUS_ID!r})")
        if not isinstance(entry, dict):
            raise DecidersError(f"{where} must be a table")
        digest = entry.get("token_sha256")
        if digest is not None and (not isinstance(digest, str) or not _HEX.match(digest.lower())):
            raise DecidersError(f"{where}.token_sha256 must be 64 hex digits (the SHA-256 of the person's token)")
        groups = entry.get("groups", [])
        if not isinstance(groups, list) or not all(isinstance(g, str) and g for g in groups):
            raise DecidersError(f"{where}.groups must be a list of names")
        if digest is not None and digest.lower() in by_hash:
            raise DecidersError(f"{where}: the same token as people.{by_hash[digest.lower()].name}")
        known = [*by_hash.values(), *tokenless]
        slack = entry.get("slack_user")
        if slack is not None and (not isinstance(slack, str) or not _SLACK_USER.match(slack)):
            raise DecidersError(f"{where}.slack_user must be a Slack user id such as U024BE7LH")
        if slack is not None and (twin := next((p for p in known if p.slack_user == slack), None)):
            raise DecidersError(f"{where}: the same slack_user as people.{twin.name}")
        oidc = entry.get("oidc")
        if oidc is not None and (not isinstance(oidc, str) or not oidc.strip() or not oidc.isprintable()):
            raise DecidersError(f"{where}.oidc must be the person's identity in the provider's tokens, e.g. an email")
        if oidc is not None and (
            twin := next((p for p in known if (p.oidc or "").casefold() == oidc.casefold()), None)
        ):
            raise DecidersError(f"{where}: the same oidc identity as people.{twin.name}")
        telegram = entry.get("telegram_user")
        # bool is an int to Python; a TOML true is no user id.
        if telegram is not None and (isinstance(telegram, bool) or not isinstance(telegram, int) or telegram <= 0):
            raise DecidersError(f"{where}.telegram_user must be a Telegram user id, a number such as 123456789")
        if telegram is not None and (twin := next((p for p in known if p.telegram_user == telegram), None)):
            raise DecidersError(f"{where}: the same telegram_user as people.{twin.name}")
        teams = entry.get("teams_user")
        if teams is not None and (not isinstance(teams, str) or not _GUID.fullmatch(teams)):
            raise DecidersError(
                f"{where}.teams_user must be a Microsoft Entra object id, a GUID such as "
                "8a0d7a4f-0c4e-4a5e-9a3c-2b1f0e6d5c4b"
            )
        teams = teams.lower() if teams is not None else None
        if teams is not None and (twin := next((p for p in known if p.teams_user == teams), None)):
            raise DecidersError(f"{where}: the same teams_user as people.{twin.name}")
        if digest is None and slack is None and oidc is None and telegram is None and teams is None:
            raise DecidersError(
                f"{where}: needs token_sha256 (the SHA-256 of the person's token), oidc, slack_user, "
                "telegram_user or teams_user"
            )
        person = Person(
            name, tuple(groups), slack, oidc.strip() if oidc else None, telegram_user=telegram, teams_user=teams
        )
        if digest is None:
            tokenless.append(person)
        else:
            by_hash[digest.lower()] = person
    return Deciders(by_hash, _agents(doc.get("agents"), path, by_hash), tuple(tokenless))


def _agents(raw: Any, path: str | Path, people: dict[str, Person]) -> dict[str, str]:
    """``[agents.ID] token_sha256 = "…"``: each agent's own token, for permits."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise DecidersError(f"SPANVISOR_DECIDERS: {path}: agents must be tables [agents.ID]")
    got: dict[str, str] = {}
    for agent, entry in raw.items():
        where = f"SPANVISOR_DECIDERS: {path}: agents.{agent}"
        digest = entry.get("token_sha256") if isinstance(entry, dict) else None
        if not isinstance(digest, str) or not _HEX.match(digest.lower()):
            raise DecidersError(f"{where}.token_sha256 must be 64 hex digits (the SHA-256 of the agent's token)")
        if digest.lower() in people or digest.lower() in got:
            raise DecidersError(f"{where}: a token another person or agent has")
        got[digest.lower()] = str(agent)
    return got


def from_config(config: Any) -> Deciders | None:
    """The people ``SPANVISOR_DECIDERS`` names, or None when it is unset."""
    path = config.get("deciders_file") if config is not None else None
    return load(path) if isinstance(path, str) and path else None


def new_token() -> str:
    return secrets.token_urlsafe(32)


__all__ = [
    "ANONYMOUS_ID",
    "ANONYMOUS_NAME",
    "Deciders",
    "DecidersError",
    "Person",
    "from_config",
    "load",
    "new_token",
    "token_hash",
    "valid_name",
]
