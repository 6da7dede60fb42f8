"""People proven by the company's identity provider (OIDC).

A person sends an OIDC ID token or a JWT access token their provider signed
(``spanvisor login`` gets one; any tool may). The token is verified here
with PyJWT: its signature against the provider's published keys (a JWKS,
from ``SPANVISOR_OIDC_JWKS_URL``, the issuer's discovery document, or a
file), its issuer, audience, expiry and not-before (with a leeway for
clock skew), and its algorithm against an allow-list of public-key
algorithms: ``none`` and the shared-secret ``HS*`` are never accepted, so a
token "signed" with the provider's public key as an HMAC secret proves
nothing. The person is one claim (``email``, ``preferred_username``,
``sub`` …), their groups another (``groups``).

The key set is cached; a token naming a key (``kid``) not in it fetches the
set again (the provider rotated its keys), at most once per
``SPANVISOR_OIDC_JWKS_MIN_INTERVAL``, so a stream of made-up ``kid``\\ s
cannot make the server hammer the provider. Fetches are aiohttp, on the
caller's loop: the control API never blocks on the provider.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spanvisor.config import ConfigError

log = logging.getLogger("spanvisor.control")
# Public-key algorithms a provider signs with; nothing else is ever accepted.
PUBLIC_KEY_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)
MAX_NAME = 128
MAX_GROUPS = 100
MAX_GROUP = 128
MAX_TOKEN = 16 * 1024
MAX_JWKS_BYTES = 256 * 1024
FETCH_TIMEOUT_S = 10.0


class TokenRefused(Exception):
    """A token that proves nobody: ``reason`` in one line, and the HTTP
    status it earns (401 not valid, 403 valid but not enough)."""

    def __init__(self, reason: str, status: int = 401) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


@dataclass(frozen=True, slots=True)
class Proven:
    """Who a verified token names: the person claim, the groups claim."""

    name: str
    groups: tuple[str, ...]
    issuer: str


@dataclass(frozen=True, slots=True)
class OidcSettings:
    issuer: str
    audiences: tuple[str, ...]
    jwks_url: str | None
    jwks_file: str | None
    person_claim: str
    groups_claim: str | None
    algorithms: tuple[str, ...]
    leeway_s: float = 60.0
    jwks_ttl_s: float = 3600.0
    min_refetch_s: float = 30.0


def p_algorithms(v: Any) -> tuple[str, ...]:
    """``RS256,ES256``: only public-key algorithms (never none, never HS*)."""
    items = v if isinstance(v, list | tuple) else str(v).split(",")
    out = tuple(dict.fromkeys(str(x).strip() for x in items if str(x).strip()))
    bad = [a for a in out if a not in PUBLIC_KEY_ALGORITHMS]
    if not out or bad:
        raise ValueError(
            f"{', '.join(bad) or 'nothing'}: only public-key algorithms ({', '.join(sorted(PUBLIC_KEY_ALGORITHMS))}); "
            "never none or HS* (a shared secret anyone holding the provider's public key could use)"
        )
    return out


def settings_from(config: Any) -> OidcSettings | None:
    """The provider ``SPANVISOR_OIDC_ISSUER`` names, or None when unset;
    :class:`ConfigError` (one line) for settings that cannot work."""
    get = config.get if config is not None else (lambda _k, _d=None: None)
    issuer = get("oidc_issuer")
    if not isinstance(issuer, str) or not issuer:
        return None
    audiences = tuple(get("oidc_audience") or ())
    if not audiences:
        raise ConfigError(
            "SPANVISOR_OIDC_AUDIENCE: required with SPANVISOR_OIDC_ISSUER (the client id of an ID token, "
            "or the API's audience of an access token): a token for another application must not prove anyone"
        )
    groups = get("oidc_groups_claim", "groups")
    return OidcSettings(
        issuer=issuer,
        audiences=audiences,
        jwks_url=get("oidc_jwks_url") or None,
        jwks_file=get("oidc_jwks_file") or None,
        person_claim=get("oidc_person_claim", "email") or "email",
        groups_claim=None if not groups or str(groups).lower() == "none" else str(groups),
        algorithms=tuple(get("oidc_algorithms") or ("RS256",)),
        leeway_s=float(get("oidc_leeway", 60.0) or 0.0),
        jwks_ttl_s=float(get("oidc_jwks_refresh", 3600.0) or 3600.0),
        min_refetch_s=float(get("oidc_jwks_min_interval", 30.0) or 0.0),
    )


def looks_like_jwt(token: str | None) -> bool:
    """Three base64url parts: a JWS in compact form (a deciders-file token,
    ``token_urlsafe``, has no dots)."""
    return token is not None and token.count(".") == 2 and len(token) <= MAX_TOKEN


def claim(claims: Mapping[str, Any], path: str) -> Any:
    """A claim by name, or by a dotted path into nested objects
    (``realm_access.roles``) when no claim has the whole name."""
    if path in claims:
        return claims[path]
    node: Any = claims
    for part in path.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def _printable(value: Any, limit: int) -> str | None:
    if not isinstance(value, str) or not value.strip() or len(value) > limit or not value.isprintable():
        return None
    return value.strip()


class KeySet:
    """The provider's signing keys by ``kid``, fetched and cached."""

    def __init__(self, s: OidcSettings, clock: Callable[[], float] = time.monotonic) -> None:
        self.s = s
        self.clock = clock
        self._keys: dict[str, tuple[Any, str | None]] = {}  # kid -> (jwt.PyJWK, the alg its JWK declares)
        self._fetched = -1e18  # when the keys were last read
        self._tried = -1e18  # when a read was last attempted (the rate limit)
        self._lock = asyncio.Lock()
        self._jwks_url: str | None = s.jwks_url
        self.fetches = 0

    async def key(self, kid: str | None) -> tuple[Any, str | None]:
        """The key a token names, and the algorithm its JWK declares (if
        any); :class:`TokenRefused` when there is none."""
        if self.clock() - self._fetched > self.s.jwks_ttl_s:  # never read, or read too long ago
            await self._refresh()
        found = self._pick(kid)
        if found is None:
            await self._refresh()  # a key not seen yet: the provider rotated them (rate-limited)
            found = self._pick(kid)
        if found is not None:
            return found
        if not self._keys:
            raise TokenRefused("the provider's keys (JWKS) could not be read: no token can be verified now")
        if kid is None:
            raise TokenRefused(f"the token names no key (kid) and the provider has {len(self._keys)} keys")
        raise TokenRefused(f"the token's key (kid {kid[:64]!r}) is not one of the provider's keys")

    def _pick(self, kid: str | None) -> tuple[Any, str | None] | None:
        if kid is not None:
            return self._keys.get(kid)
        return next(iter(self._keys.values())) if len(self._keys) == 1 else None

    async def _refresh(self) -> None:
        async with self._lock:
            # At most one read per interval, whoever asks and whatever kid they name.
            if self.clock() - self._tried < self.s.min_refetch_s:
                return
            self._tried = self.clock()
            try:
                keys = parse_jwks(await self._read())
            except (TimeoutError, OSError, ValueError) as exc:
                log.warning("OIDC: the provider's keys could not be read (%s); keeping %d known", exc, len(self._keys))
                return
            self.fetches += 1
            self._keys, self._fetched = keys, self.clock()

    async def _read(self) -> Any:
        if self.s.jwks_file:
            path = Path(self.s.jwks_file)
            raw = await asyncio.to_thread(path.read_bytes)
            return json.loads(raw[: MAX_JWKS_BYTES + 1])
        if self._jwks_url is None:
            discovery = await fetch_json(self.s.issuer.rstrip("/") + "/.well-known/openid-configuration")
            url = discovery.get("jwks_uri") if isinstance(discovery, Mapping) else None
            if not isinstance(url, str) or not url:
                raise ValueError("the issuer's discovery document names no jwks_uri")
            self._jwks_url = url
        return await fetch_json(self._jwks_url)


async def fetch_json(url: str) -> Any:
    """GET ``url`` as JSON (aiohttp, bounded in time and size)."""
    import aiohttp

    timeout = aiohttp.ClientTimeout(total=FETCH_TIMEOUT_S)
    async with aiohttp.ClientSession(timeout=timeout) as session, session.get(url) as resp:
        if resp.status != 200:
            raise ValueError(f"{url} answered HTTP {resp.status}")
        raw = await resp.content.read(MAX_JWKS_BYTES + 1)
    if len(raw) > MAX_JWKS_BYTES:
        raise ValueError(f"{url} answered more than {MAX_JWKS_BYTES} bytes")
    return json.loads(raw)


def parse_jwks(doc: Any) -> dict[str, tuple[Any, str | None]]:
    """Signing keys by kid (a key without one under ""): public keys only."""
    import jwt

    items = doc.get("keys") if isinstance(doc, Mapping) else None
    if not isinstance(items, list):
        raise ValueError("not a JWKS (no keys list)")
    out: dict[str, tuple[Any, str | None]] = {}
    for raw in items:
        if not isinstance(raw, Mapping) or raw.get("use", "sig") != "sig" or raw.get("kty") == "oct":
            continue  # encryption keys, and shared secrets, never verify a person
        try:
            key = jwt.PyJWK(dict(raw))
        except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError, TypeError):
            continue
        alg = raw.get("alg")
        out[str(raw.get("kid") or "")] = (key, alg if isinstance(alg, str) else None)
    return out


class Verifier:
    """Verifies tokens of one provider (:class:`OidcSettings`)."""

    def __init__(self, s: OidcSettings, keys: KeySet | None = None) -> None:
        self.s = s
        self.keys = keys or KeySet(s)

    async def verify(self, token: str) -> Proven:
        """The person a token proves; :class:`TokenRefused` says why not."""
        import jwt

        try:
            header = jwt.get_unverified_header(token)
        except jwt.DecodeError as exc:
            raise TokenRefused(f"not a JWT: {exc}") from None
        alg = header.get("alg")
        if not isinstance(alg, str) or alg.lower() == "none":
            raise TokenRefused("the token is unsigned (alg none): never accepted")
        if alg.upper().startswith("HS"):
            raise TokenRefused(f"the token is signed with {alg}, a shared secret: never accepted (public keys only)")
        if alg not in self.s.algorithms:
            raise TokenRefused(f"the token's algorithm {alg} is not allowed (SPANVISOR_OIDC_ALGORITHMS)")
        kid = header.get("kid")
        key, declared = await self.keys.key(kid if isinstance(kid, str) else None)
        if declared is not None and declared != alg:
            raise TokenRefused(f"the token's algorithm {alg} is not its key's ({declared})")
        claims = self._decode(token, key, alg)
        return self._person(claims)

    def _decode(self, token: str, key: Any, alg: str) -> dict[str, Any]:
        import jwt

        try:
            got: dict[str, Any] = jwt.decode(
                token,
                key.key,
                algorithms=[alg],
                audience=list(self.s.audiences),
                issuer=self.s.issuer,
                leeway=self.s.leeway_s,
                options={"require": ["exp", "iss", "aud"]},
            )
        except jwt.ExpiredSignatureError:
            raise TokenRefused("the token has expired: get a new one (spanvisor login)") from None
        except jwt.ImmatureSignatureError:
            raise TokenRefused("the token is not valid yet (nbf or iat in the future)") from None
        except jwt.InvalidAudienceError:
            raise TokenRefused(
                f"the token is for another audience (this server accepts {', '.join(self.s.audiences)})"
            ) from None
        except jwt.InvalidIssuerError:
            raise TokenRefused(f"the token is from another issuer (this server accepts {self.s.issuer})") from None
        except jwt.MissingRequiredClaimError as exc:
            raise TokenRefused(f"the token has no {exc.claim} claim") from None
        except jwt.InvalidSignatureError:
            raise TokenRefused("the token's signature does not verify with the provider's key") from None
        except (jwt.InvalidTokenError, jwt.InvalidKeyError, ValueError, TypeError) as exc:
            raise TokenRefused(f"the token is not valid: {exc}") from None
        return got

    def _person(self, claims: Mapping[str, Any]) -> Proven:
        name = _printable(claim(claims, self.s.person_claim), MAX_NAME)
        if name is None:
            raise TokenRefused(
                f"the token has no usable {self.s.person_claim!r} claim to name the person "
                "(SPANVISOR_OIDC_PERSON_CLAIM)",
                403,
            )
        groups: tuple[str, ...] = ()
        if self.s.groups_claim is not None:
            raw = claim(claims, self.s.groups_claim)
            if raw is None:
                raise TokenRefused(
                    f"the token has no {self.s.groups_claim!r} claim: the provider sends no groups for this "
                    "person (SPANVISOR_OIDC_GROUPS_CLAIM names it; `none` reads no groups)",
                    403,
                )
            items = [raw] if isinstance(raw, str) else raw if isinstance(raw, list) else None
            if items is None:
                raise TokenRefused(f"the token's {self.s.groups_claim!r} claim is not a list of names", 403)
            kept = [g for g in (_printable(x, MAX_GROUP) for x in items) if g is not None]
            groups = tuple(dict.fromkeys(kept))[:MAX_GROUPS]
        return Proven(name, groups, self.s.issuer)


__all__ = [
    "PUBLIC_KEY_ALGORITHMS",
    "KeySet",
    "OidcSettings",
    "Proven",
    "TokenRefused",
    "Verifier",
    "claim",
    "looks_like_jwt",
    "p_algorithms",
    "parse_jwks",
    "settings_from",
]
