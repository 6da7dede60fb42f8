"""Is this activity really from the Bot Connector? (Microsoft's "Connector
to Bot" authentication.)

Anyone who finds the bot's messaging endpoint can POST an activity to it,
press included, naming any person. What proves a press is Teams' is the
JWT in its ``Authorization`` header: signed by a key the Bot Connector
publishes (its OpenID metadata names a JWKS; each key lists the channels
it is ``endorsements`` for), issued by ``https://api.botframework.com`` for
our app id, in date, and naming in its ``serviceurl`` claim the service URL
the activity itself names.

Checks, each failing closed (an :class:`Unproven`, never an exception, so a
handler answers 401 and counts the reason):

- the scheme is ``Bearer`` and the token a JWT signed with **RS256 only**:
  ``none`` proves nothing and ``HS256`` would take the public key (which
  anyone can read) as a shared secret, the classic algorithm confusion;
- the key is the one its ``kid`` names in the published set, and the
  signature verifies with it;
- ``iss``, ``aud`` (the app id, or ``api://<id>`` / ``api://botid-<id>``,
  which the Teams SDK also accepts), ``exp`` and ``nbf`` with Microsoft's
  5 minutes of clock skew;
- ``serviceurl`` is present and equals the activity's ``serviceUrl``
  (trailing ``/`` aside), and the activity's ``channelId`` is one the key is
  endorsed for when it lists any (``msteams``);
- and the activity's ``serviceUrl`` is the one we are configured with: we
  never follow a service URL a request names, because our own bearer token
  goes to it and must never reach a host a request chose.

The keys are fetched with aiohttp on the caller's loop (PyJWT's
``PyJWKClient`` reads with urllib and would block it), kept a day, and
fetched again sooner only when a token names a key we do not hold (Microsoft
rotates them), at most once per 5 minutes however many made-up ``kid``\\ s
arrive, one fetch at a time; a failed fetch keeps the keys we had.

A :class:`Unproven` reason is one of :data:`REASONS`, fixed words for a
debug line and a counter's label: never the token nor anything read from it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import jwt

log = logging.getLogger("spanvisor.teams")

ISSUER = "https://api.botframework.com"
ALGORITHM = "RS256"
LEEWAY_S = 300.0  # the "industry-standard clock skew" Microsoft's page names
KEYS_TTL_S = 24 * 3600.0  # Microsoft: refresh the cached keys at least daily
MIN_REFETCH_S = 300.0  # a key not held fetches again at most this often
RETRY_EMPTY_S = 30.0  # with no keys at all yet, a failed fetch is tried again after this
MAX_TOKEN = 16 * 1024
MAX_DOC_BYTES = 256 * 1024

# Every reason an Unproven may carry: a counter's label stays bounded.
REASONS = (
    "not_configured",  # no app id or service URL to check against
    "no_header",
    "not_bearer",
    "not_jwt",
    "bad_algorithm",  # anything but RS256 (none, HS256 …)
    "no_kid",
    "foreign_service_url",  # the activity names a service URL we are not configured with
    "keys_unavailable",  # the published keys could not be read, and none are held
    "unknown_key",
    "bad_signature",
    "bad_issuer",
    "bad_audience",
    "expired",
    "not_yet_valid",
    "bad_token",  # a claim missing or malformed
    "no_serviceurl",
    "serviceurl_mismatch",  # the token's serviceurl is not the activity's
    "not_endorsed",  # the key is not endorsed for the activity's channel
)


@dataclass(frozen=True, slots=True)
class Verified:
    """The activity is the Bot Connector's: the token's claims, its key."""

    claims: Mapping[str, Any]
    kid: str


@dataclass(frozen=True, slots=True)
class Unproven:
    """Not proven: ``reason`` is one of :data:`REASONS`."""

    reason: str


@dataclass(frozen=True, slots=True)
class Key:
    """A published signing key; ``endorsements`` the channel ids it may
    sign for (empty: the key lists none, so any)."""

    kid: str
    key: Any  # the cryptography public key PyJWT verifies with
    endorsements: frozenset[str]


class Keys:
    """The Bot Connector's signing keys (from ``openid_url``), and the
    verification of incoming activities against them."""

    def __init__(self, openid_url: str, timeout_s: float, clock: Callable[[], float] = time.time) -> None:
        if not _http(openid_url):
            raise ValueError("the OpenID metadata URL must be http(s)")
        self.openid_url, self.timeout_s, self.clock = openid_url, timeout_s, clock
        self._keys: dict[str, Key] = {}
        self._fetched: float | None = None  # when the keys were last read
        self._next_try = float("-inf")  # no fetch before this (the rate limit)
        self._lock = asyncio.Lock()
        self.fetches = 0  # key sets read (successful fetches)

    def __repr__(self) -> str:
        return f"Keys({self.openid_url!r}, {len(self._keys)} keys)"

    async def key(self, kid: str) -> Key | Unproven:
        """The key ``kid`` names; fetched again if stale or not held."""
        if self._fetched is None or self.clock() - self._fetched >= KEYS_TTL_S:
            await self._refresh()
        found = self._keys.get(kid)
        if found is None:
            await self._refresh()  # rotated, perhaps (rate-limited: the kid may be made up)
            found = self._keys.get(kid)
        if found is not None:
            return found
        return Unproven("keys_unavailable" if not self._keys else "unknown_key")

    async def verify(
        self, authorization: str | None, activity: Mapping[str, Any], app_id: str, service_url: str
    ) -> Verified | Unproven:
        """Whether ``activity``, POSTed with this ``Authorization`` header,
        comes from the Bot Connector for the bot ``app_id`` of the service
        at ``service_url`` (our configured one)."""
        if not app_id:
            return Unproven("not_configured")
        if not authorization:
            return Unproven("no_header")
        scheme, _, token = authorization.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return Unproven("not_bearer")
        if len(token) > MAX_TOKEN or token.count(".") != 2:
            return Unproven("not_jwt")
        try:
            header = jwt.get_unverified_header(token)
        except (jwt.InvalidTokenError, ValueError, TypeError):
            return Unproven("not_jwt")
        if header.get("alg") != ALGORITHM:
            return Unproven("bad_algorithm")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            return Unproven("no_kid")
        ours = _url_key(service_url)
        if ours is None:
            return Unproven("not_configured")
        named = activity.get("serviceUrl")
        # Before any fetch: a request naming another service is refused at once.
        if not isinstance(named, str) or _url_key(named) != ours:
            return Unproven("foreign_service_url")
        key = await self.key(kid)
        if isinstance(key, Unproven):
            return key
        claims = _decode(token, key, app_id)
        if isinstance(claims, Unproven):
            return claims
        now = self.clock()
        exp, nbf = _seconds(claims.get("exp")), _seconds(claims.get("nbf"))
        if exp is None or (claims.get("nbf") is not None and nbf is None):
            return Unproven("bad_token")
        if now > exp + LEEWAY_S:
            return Unproven("expired")
        if nbf is not None and now < nbf - LEEWAY_S:
            return Unproven("not_yet_valid")
        claimed = claims.get("serviceurl")
        if not isinstance(claimed, str) or not claimed:
            return Unproven("no_serviceurl")
        if claimed.rstrip("/") != named.rstrip("/"):
            return Unproven("serviceurl_mismatch")
        channel = activity.get("channelId")
        if key.endorsements and (not isinstance(channel, str) or channel not in key.endorsements):
            return Unproven("not_endorsed")
        return Verified(claims, kid)

    async def _refresh(self) -> None:
        async with self._lock:  # one fetch at a time; who waited finds it done
            now = self.clock()
            if now < self._next_try:
                return
            try:
                meta = await self._get(self.openid_url)
                uri = meta.get("jwks_uri") if isinstance(meta, Mapping) else None
                if not isinstance(uri, str) or not _http(uri):
                    raise ValueError("the OpenID metadata names no http(s) jwks_uri")
                keys = parse_jwks(await self._get(uri))
            except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as exc:
                self._next_try = now + (MIN_REFETCH_S if self._keys else RETRY_EMPTY_S)
                log.warning(
                    "teams: the Bot Connector's keys could not be read (%s); keeping %d known",
                    _short(exc),
                    len(self._keys),
                )
                return
            self._keys, self._fetched, self._next_try = keys, now, now + MIN_REFETCH_S
            self.fetches += 1

    async def _get(self, url: str) -> Any:
        timeout = aiohttp.ClientTimeout(total=self.timeout_s)
        async with aiohttp.ClientSession(timeout=timeout) as http, http.get(url) as resp:
            if resp.status != 200:
                raise ValueError(f"{url} answered HTTP {resp.status}")
            raw = await resp.content.read(MAX_DOC_BYTES + 1)
        if len(raw) > MAX_DOC_BYTES:
            raise ValueError(f"{url} answered more than {MAX_DOC_BYTES} bytes")
        return json.loads(raw)


def parse_jwks(doc: Any) -> dict[str, Key]:
    """The RSA signing keys of a JWKS by kid, each with its endorsements; a
    key declaring another algorithm, or endorsements that are not a list of
    channel ids, is left out (it could never verify a token here)."""
    items = doc.get("keys") if isinstance(doc, Mapping) else None
    if not isinstance(items, list):
        raise ValueError("not a JWKS (no keys list)")
    out: dict[str, Key] = {}
    for raw in items:
        if not isinstance(raw, Mapping) or raw.get("kty") != "RSA" or raw.get("use", "sig") != "sig":
            continue
        kid, alg, endorsements = raw.get("kid"), raw.get("alg"), raw.get("endorsements", [])
        if not isinstance(kid, str) or not kid or alg not in (None, ALGORITHM):
            continue
        if not isinstance(endorsements, list) or not all(isinstance(e, str) for e in endorsements):
            continue
        try:
            public = jwt.PyJWK(dict(raw), algorithm=ALGORITHM).key
        except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError, TypeError):
            continue
        out[kid] = Key(kid, public, frozenset(endorsements))
    return out


def _decode(token: str, key: Key, app_id: str) -> dict[str, Any] | Unproven:
    """The claims, once the signature, ``iss`` and ``aud`` hold; dates are
    checked by the caller against its clock."""
    try:
        got: dict[str, Any] = jwt.decode(
            token,
            key.key,
            algorithms=[ALGORITHM],
            audience=[app_id, f"api://{app_id}", f"api://botid-{app_id}"],
            issuer=ISSUER,
            options={
                "verify_exp": False,
                "verify_nbf": False,
                "verify_iat": False,
                "require": ["exp", "iss", "aud"],
            },
        )
    except jwt.InvalidSignatureError:
        return Unproven("bad_signature")
    except jwt.InvalidIssuerError:
        return Unproven("bad_issuer")
    except jwt.InvalidAudienceError:
        return Unproven("bad_audience")
    except jwt.InvalidAlgorithmError:
        return Unproven("bad_algorithm")
    except (jwt.InvalidTokenError, jwt.InvalidKeyError, ValueError, TypeError):
        return Unproven("bad_token")
    return got


def _seconds(v: Any) -> float | None:
    """A date claim as a number, or None: not a bool (an int to Python),
    not NaN or infinite (Python's JSON reads them, and NaN compares false
    with every time, so it would never expire)."""
    if isinstance(v, bool) or not isinstance(v, int | float):
        return None
    try:
        return float(v) if math.isfinite(v) else None
    except OverflowError:  # an int past any float
        return None


def _http(url: str) -> bool:
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    return parts.scheme.lower() in ("http", "https") and bool(parts.hostname)


def _url_key(url: str) -> tuple[str, ...] | None:
    """A URL as compared: scheme and host in any case, a trailing ``/``
    aside; None for anything but an http(s) URL without credentials."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname or "@" in parts.netloc:
        return None
    return (
        parts.scheme.lower(),
        parts.hostname.lower(),
        str(port or ""),
        parts.path.rstrip("/"),
        parts.query,
        parts.fragment,
    )


def _short(exc: BaseException) -> str:
    text = str(exc).replace("\n", " ")
    return f"{type(exc).__name__}: {text[:200]}" if text else type(exc).__name__


__all__ = [
    "ALGORITHM",
    "ISSUER",
    "LEEWAY_S",
    "REASONS",
    "Key",
    "Keys",
    "Unproven",
    "Verified",
    "parse_jwks",
]
