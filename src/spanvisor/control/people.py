"""Who a bearer token proves: one question, two ways to answer it.

* a person of the deciders file (``SPANVISOR_DECIDERS``), by the SHA-256 of
  their own token;
* a person the company's identity provider signed a token for
  (``SPANVISOR_OIDC_ISSUER``: :mod:`.oidc`), named by a claim, with the
  groups another claim gives; the deciders file may map that identity to
  one of its people (``oidc = "…"``), whose groups then count too.

Both may be on at once. A token that is neither (the shared decide token,
the OTLP token) proves nobody. A provider's token that fails verification
is refused with the reason (:class:`~.oidc.TokenRefused`): the caller meant
to be someone, and silently deciding as the anonymous operator would hide it.
"""

from __future__ import annotations

import dataclasses
from typing import Any
from urllib.parse import urlsplit

from spanvisor.config import ConfigError
from spanvisor.control import oidc
from spanvisor.control.deciders import Deciders, Person
from spanvisor.control.deciders import from_config as deciders_of


class People:
    def __init__(self, deciders: Deciders | None, verifier: oidc.Verifier | None) -> None:
        self.deciders = deciders
        self.verifier = verifier

    @property
    def on(self) -> bool:
        """Whether people are proven here at all (else a decision keeps the name it gives)."""
        return self.deciders is not None or self.verifier is not None

    @property
    def agents(self) -> dict[str, str]:
        return self.deciders.agents if self.deciders is not None else {}

    def agent(self, token: str | None) -> str | None:
        return self.deciders.agent(token) if self.deciders is not None else None

    def by_token(self, token: str | None) -> Person | None:
        """The deciders file's person whose token this is (no I/O)."""
        return self.deciders.who(token) if self.deciders is not None else None

    def wants_provider(self, token: str | None) -> bool:
        """Whether ``token`` is for the provider to verify: a JWT, with a provider configured."""
        return self.verifier is not None and oidc.looks_like_jwt(token)

    async def who(self, token: str | None) -> Person | None:
        """The person ``token`` proves, or None; :class:`~.oidc.TokenRefused`
        for a provider's token that proves nobody."""
        found = self.by_token(token)
        if found is not None or token is None or not self.wants_provider(token):
            return found
        assert self.verifier is not None
        proven = await self.verifier.verify(token)
        return self.of_provider(proven)

    def of_provider(self, proven: oidc.Proven) -> Person:
        mapped = self.deciders.on_oidc(proven.name) if self.deciders is not None else None
        if mapped is None:
            return Person(proven.name, proven.groups, None, proven.name, "oidc")
        groups = tuple(dict.fromkeys((*mapped.groups, *proven.groups)))
        return dataclasses.replace(mapped, groups=groups, oidc=proven.name, proof="oidc")


def from_config(config: Any) -> People:
    """The people ``SPANVISOR_DECIDERS`` and ``SPANVISOR_OIDC_*`` prove;
    :class:`ConfigError` (one line) for settings that cannot work."""
    s = oidc.settings_from(config)
    for name, url in (
        ("SPANVISOR_OIDC_ISSUER", s.issuer if s else None),
        ("SPANVISOR_OIDC_JWKS_URL", s and s.jwks_url),
    ):
        if url and not _trusted(url):
            raise ConfigError(
                f"{name}: an https:// URL ({url[:80]}): the provider's keys must not be read over plain HTTP "
                "(http:// only on loopback)"
            )
    return People(deciders_of(config), oidc.Verifier(s) if s is not None else None)


def _trusted(url: str) -> bool:
    parts = urlsplit(url)
    loopback = parts.hostname in ("127.0.0.1", "localhost", "::1")
    return parts.scheme == "https" or (parts.scheme == "http" and loopback)


def in_group(person_groups: tuple[str, ...], group: str) -> bool:
    """Group names compare ignoring case, whatever said them (the file, the provider, Slack)."""
    g = group.casefold()
    return any(x.casefold() == g for x in person_groups)


__all__ = ["People", "from_config", "in_group"]
