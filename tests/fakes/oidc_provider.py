"""An OpenID Connect provider on loopback that the tests own.

It speaks the parts spanvisor uses, over real HTTP (aiohttp, on a thread of
its own so synchronous CLIs and async tests can both reach it):

* ``GET /.well-known/openid-configuration``: discovery (issuer, jwks_uri,
  device_authorization_endpoint, token_endpoint, revocation_endpoint);
* ``GET /jwks``: the public keys, which the test may rotate (and counts the
  reads of);
* ``POST /device``: the device authorization grant (RFC 8628): a device
  code, a user code, the verification URI, an interval;
* ``POST /token``: the device code grant (``authorization_pending``,
  ``slow_down`` when polled faster than the interval, ``access_denied``,
  ``expired_token``) and the refresh token grant;
* ``POST /revoke``: token revocation (RFC 7009).

The test plays the person: :meth:`FakeIdP.approve` with the user code the
CLI printed. Tokens are signed here with RSA keys made for the test;
:meth:`sign` also makes the bad ones (``alg: none``, HS256 keyed with the
public key, a key not in the set).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import jwt
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

CLIENT_ID = "spanvisor-cli"
API_AUDIENCE = "api://spanvisor"


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


@dataclass
class Key:
    kid: str
    private: rsa.RSAPrivateKey

    def jwk(self) -> dict[str, Any]:
        doc: dict[str, Any] = RSAAlgorithm.to_jwk(self.private.public_key(), as_dict=True)
        return {**doc, "kid": self.kid, "use": "sig", "alg": "RS256"}

    def public_pem(self) -> bytes:
        return self.private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )


def new_key(kid: str) -> Key:
    return Key(kid, rsa.generate_private_key(public_exponent=65537, key_size=2048))


@dataclass
class Device:
    device_code: str
    user_code: str
    scope: str
    expires: float
    interval: float
    state: str = "pending"  # pending, approved, denied
    claims: dict[str, Any] = field(default_factory=dict)
    last_poll: float = 0.0
    polls: int = 0


class FakeIdP:
    def __init__(self, interval: float = 0.2, device_ttl_s: float = 600.0, token_ttl_s: float = 3600.0) -> None:
        self.keys = [new_key("k1")]
        self.interval = interval
        self.device_ttl_s = device_ttl_s
        self.token_ttl_s = token_ttl_s
        self.jwks_reads = 0
        self.jwks_delay_s = 0.0
        self.devices: dict[str, Device] = {}
        self.refresh_tokens: dict[str, dict[str, Any]] = {}
        self.revoked: list[str] = []
        self.slow_down_once = False
        self.issuer = ""
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="fake-idp", daemon=True)
        self._runner: web.AppRunner | None = None

    # --- lifecycle --------------------------------------------------------

    def start(self) -> str:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self.issuer

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_get("/.well-known/openid-configuration", self._discovery)
        app.router.add_get("/jwks", self._jwks)
        app.router.add_post("/device", self._device)
        app.router.add_post("/token", self._token)
        app.router.add_post("/revoke", self._revoke)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.issuer = f"http://127.0.0.1:{port}"

    def stop(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    # --- keys and tokens ----------------------------------------------------

    def rotate(self, keep_old: bool = False) -> Key:
        """A new signing key, published first; the old ones dropped unless kept."""
        key = new_key(f"k{int(self.keys[0].kid[1:]) + 1}")
        self.keys = [key, *self.keys] if keep_old else [key]
        return key

    def claims(self, person: str = "alice@example.com", groups: list[str] | None = None, **more: Any) -> dict[str, Any]:
        now = int(time.time())
        doc: dict[str, Any] = {
            "iss": self.issuer,
            "aud": CLIENT_ID,
            "sub": f"sub-{hashlib.sha256(person.encode()).hexdigest()[:12]}",
            "email": person,
            "iat": now,
            "exp": now + int(self.token_ttl_s),
            "jti": secrets.token_hex(8),
        }
        if groups is not None:
            doc["groups"] = groups
        doc.update(more)
        return {k: v for k, v in doc.items() if v is not None}

    def sign(self, claims: dict[str, Any], *, key: Key | None = None, alg: str = "RS256", kid: str | None = "") -> str:
        """A token signed with ``key`` (the current one by default); ``alg``
        "none" or "HS256" make the forged kinds (HS256 keyed with the public key)."""
        k = key or self.keys[0]
        header: dict[str, Any] = {"alg": alg, "typ": "JWT"}
        if kid is not None:
            header["kid"] = kid or k.kid
        if alg == "RS256":
            return jwt.encode(claims, k.private, algorithm="RS256", headers=header)
        signing = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
        if alg == "none":
            return signing + "."
        if alg == "HS256":
            mac = hmac.new(k.public_pem(), signing.encode(), hashlib.sha256).digest()
            return f"{signing}.{_b64(mac)}"
        raise ValueError(alg)

    def jwks(self) -> dict[str, Any]:
        return {"keys": [k.jwk() for k in self.keys]}

    # --- the person at the verification page --------------------------------

    def approve(self, user_code: str, person: str = "alice@example.com", groups: list[str] | None = None) -> None:
        dev = self._by_user_code(user_code)
        dev.state, dev.claims = "approved", {"person": person, "groups": groups if groups is not None else ["sre"]}

    def deny(self, user_code: str) -> None:
        self._by_user_code(user_code).state = "denied"

    def _by_user_code(self, user_code: str) -> Device:
        return next(d for d in self.devices.values() if d.user_code == user_code)

    # --- HTTP -----------------------------------------------------------------

    async def _discovery(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "issuer": self.issuer,
                "jwks_uri": f"{self.issuer}/jwks",
                "device_authorization_endpoint": f"{self.issuer}/device",
                "token_endpoint": f"{self.issuer}/token",
                "revocation_endpoint": f"{self.issuer}/revoke",
                "id_token_signing_alg_values_supported": ["RS256"],
            }
        )

    async def _jwks(self, request: web.Request) -> web.Response:
        self.jwks_reads += 1
        if self.jwks_delay_s:
            await asyncio.sleep(self.jwks_delay_s)
        return web.json_response(self.jwks())

    async def _device(self, request: web.Request) -> web.Response:
        form = await request.post()
        if form.get("client_id") != CLIENT_ID:
            return web.json_response({"error": "invalid_client"}, status=401)
        code = secrets.token_urlsafe(24)
        user_code = f"{secrets.token_hex(2).upper()}-{secrets.token_hex(2).upper()}"
        self.devices[code] = Device(
            code, user_code, str(form.get("scope", "")), time.monotonic() + self.device_ttl_s, self.interval
        )
        return web.json_response(
            {
                "device_code": code,
                "user_code": user_code,
                "verification_uri": f"{self.issuer}/activate",
                "verification_uri_complete": f"{self.issuer}/activate?user_code={user_code}",
                "expires_in": int(self.device_ttl_s),
                "interval": self.interval,
            }
        )

    def _tokens(self, person: str, groups: list[str], scope: str) -> dict[str, Any]:
        refresh = secrets.token_urlsafe(24)
        self.refresh_tokens[refresh] = {"person": person, "groups": groups, "scope": scope}
        out = {
            "token_type": "Bearer",
            "expires_in": int(self.token_ttl_s),
            "id_token": self.sign(self.claims(person, groups)),
            "access_token": self.sign(self.claims(person, groups, aud=API_AUDIENCE)),
        }
        if "offline_access" in scope.split():
            out["refresh_token"] = refresh
        return out

    async def _token(self, request: web.Request) -> web.Response:
        form = await request.post()
        grant = form.get("grant_type")
        if grant == "refresh_token":
            got = self.refresh_tokens.pop(str(form.get("refresh_token")), None)
            if got is None:
                return web.json_response({"error": "invalid_grant"}, status=400)
            return web.json_response(self._tokens(got["person"], got["groups"], got["scope"]))
        if grant != "urn:ietf:params:oauth:grant-type:device_code":
            return web.json_response({"error": "unsupported_grant_type"}, status=400)
        dev = self.devices.get(str(form.get("device_code")))
        if dev is None or form.get("client_id") != CLIENT_ID:
            return web.json_response({"error": "invalid_grant"}, status=400)
        now = time.monotonic()
        dev.polls += 1
        if now > dev.expires:
            return web.json_response({"error": "expired_token"}, status=400)
        if self.slow_down_once or (dev.last_poll and now - dev.last_poll < dev.interval * 0.8):
            self.slow_down_once = False
            dev.interval += 5
            dev.last_poll = now
            return web.json_response({"error": "slow_down"}, status=400)
        dev.last_poll = now
        if dev.state == "denied":
            return web.json_response({"error": "access_denied"}, status=400)
        if dev.state == "pending":
            return web.json_response({"error": "authorization_pending"}, status=400)
        del self.devices[dev.device_code]
        return web.json_response(self._tokens(dev.claims["person"], dev.claims["groups"], dev.scope))

    async def _revoke(self, request: web.Request) -> web.Response:
        form = await request.post()
        self.revoked.append(str(form.get("token")))
        self.refresh_tokens.pop(str(form.get("token")), None)
        return web.Response(status=200)


__all__ = ["API_AUDIENCE", "CLIENT_ID", "FakeIdP", "Key", "new_key"]
