"""An activity POSTed to the bot's endpoint is taken only when the Bot
Connector signed it (spanvisor_teams.auth): against the fake connector's
published keys over loopback, a press it signs verifies; every forgery the
authentication page and the SDKs guard against is refused with a reason,
never an exception; the keys are fetched again for a key not held, but at
most once per 5 minutes, one fetch at a time, and kept when a fetch fails."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import socket
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

import jwt
from aiohttp import web
from cryptography.hazmat.primitives import serialization

from spanvisor_teams.auth import KEYS_TTL_S, REASONS, Keys, Unproven, Verified
from tests.fakes.teams_api import FakeTeams, new_key

T = TypeVar("T")
CHANNEL = "19:agents@thread.tacv2"
AAD = "8a0d7a4f-0c4e-4a5e-9a3c-2b1f0e6d5c4b"


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(asyncio.wait_for(coro, 60))


class Clock:
    """Wall time, as the tokens' dates are, moved only by the test."""

    def __init__(self) -> None:
        self.t = time.time()

    def __call__(self) -> float:
        return self.t


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _forge(header: dict[str, Any], claims: dict[str, Any], sign: Callable[[bytes], bytes]) -> str:
    """A JWT put together by hand, as an attacker would (PyJWT refuses to
    make the ones that matter)."""
    head = _b64(json.dumps(header).encode()) + "." + _b64(json.dumps(claims).encode())
    return head + "." + _b64(sign(head.encode()))


async def _with_fake(body: Callable[[FakeTeams, Keys, Clock], Awaitable[None]]) -> None:
    fake = FakeTeams()
    await fake.start()
    fake.channel(CHANNEL)
    clock = Clock()
    try:
        await body(fake, Keys(fake.openid_url, 10.0, clock), clock)
    finally:
        await fake.stop()


def _press(fake: FakeTeams, **changes: Any) -> dict[str, Any]:
    activity = fake.invoke(CHANNEL, "1700000000001", "1700000000001", "approve", {"t": "x"}, user="29:a", aad=AAD)
    activity.update(changes)
    return activity


def _dated(fake: FakeTeams, clock: Clock) -> dict[str, Any]:
    """The connector's claims, dated by the test's clock (the verifier's)."""
    t = int(clock.t)
    return fake.claims(iat=t, nbf=t - 5, exp=t + 3600)


def test_a_press_the_connector_signs_verifies() -> None:
    async def body(fake: FakeTeams, keys: Keys, clock: Clock) -> None:
        token = fake.sign(fake.claims())
        got = await keys.verify(f"Bearer {token}", _press(fake), fake.app_id, fake.service_url)
        assert isinstance(got, Verified), got
        assert got.kid == "teams-k1" and got.claims["serviceurl"] == fake.service_url
        assert fake.openid_requests == 1 and fake.jwks_requests == 1
        # The audiences the Teams SDK also accepts; our service URL written
        # with another case of scheme and without its trailing slash; the
        # token's serviceurl without it either.
        base = fake.service_url.rstrip("/")
        for aud in (f"api://{fake.app_id}", f"api://botid-{fake.app_id}"):
            again = await keys.verify(f"Bearer {fake.sign(fake.claims(aud=aud))}", _press(fake), fake.app_id, base)
            assert isinstance(again, Verified), (aud, again)
        upper = "HTTP" + base[len("http") :]
        loose = fake.sign(fake.claims(serviceurl=base))
        assert isinstance(await keys.verify(f"bearer {loose}", _press(fake), fake.app_id, upper), Verified)
        assert fake.jwks_requests == 1  # kept, not fetched per press

    run(_with_fake(body))


def test_every_forgery_is_refused_with_its_reason_and_never_the_token() -> None:
    async def body(fake: FakeTeams, keys: Keys, clock: Clock) -> None:
        other_channel = new_key("webchat-only", ("webchat",))
        fake.keys.append(other_channel)  # published before the first fetch
        press = _press(fake)
        claims = fake.claims()
        k1 = fake.keys[0]
        pem = k1.private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        no_serviceurl = {k: v for k, v in claims.items() if k != "serviceurl"}
        no_exp = {k: v for k, v in claims.items() if k != "exp"}
        foreign = "https://smba.evil.example/teams/"
        now = int(clock.t)
        cases: dict[str, tuple[str | None, dict[str, Any]]] = {
            "none": (None, press),
            "empty": ("", press),
            "basic": ("Basic " + base64.b64encode(b"a:b").decode(), press),
            "bare token": (fake.sign(claims), press),
            "garbage": ("Bearer garbage", press),
            "three dots of garbage": ("Bearer a.b.c", press),
            "alg none": (
                "Bearer " + _forge({"alg": "none", "typ": "JWT", "kid": k1.kid}, claims, lambda _m: b""),
                press,
            ),
            "HS256 over the public key": (
                "Bearer "
                + _forge(
                    {"alg": "HS256", "typ": "JWT", "kid": k1.kid},
                    claims,
                    lambda m: hmac.new(pem, m, hashlib.sha256).digest(),
                ),
                press,
            ),
            "RS512": ("Bearer " + fake.sign(claims, alg="RS512"), press),
            "no kid": ("Bearer " + jwt.encode(claims, k1.private, algorithm="RS256"), press),
            "a key not published": ("Bearer " + fake.sign(claims, key=new_key("not-published")), press),
            "another key under k1's kid": ("Bearer " + fake.sign(claims, key=new_key(k1.kid)), press),
            "wrong iss": ("Bearer " + fake.sign(fake.claims(iss="https://sts.windows.net/x/")), press),
            "wrong aud": ("Bearer " + fake.sign(fake.claims(aud="00000000-0000-0000-0000-0000000000b2")), press),
            "aud api:// of another": ("Bearer " + fake.sign(fake.claims(aud="api://botid-someone")), press),
            "expired beyond the leeway": ("Bearer " + fake.sign(fake.claims(exp=now - 302, nbf=now - 900)), press),
            "not valid for 400 s": ("Bearer " + fake.sign(fake.claims(nbf=now + 400)), press),
            "no exp": ("Bearer " + fake.sign(no_exp), press),
            "exp NaN": ("Bearer " + fake.sign(fake.claims(exp=float("nan"))), press),
            "exp true": ("Bearer " + fake.sign(fake.claims(exp=True)), press),
            "nbf a string": ("Bearer " + fake.sign(fake.claims(nbf="yesterday")), press),
            "no serviceurl": ("Bearer " + fake.sign(no_serviceurl), press),
            "serviceurl not the activity's": ("Bearer " + fake.sign(fake.claims(serviceurl=foreign)), press),
            "activity's serviceUrl not ours": (
                "Bearer " + fake.sign(fake.claims(serviceurl=foreign)),
                _press(fake, serviceUrl=foreign),
            ),
            "no serviceUrl in the activity": ("Bearer " + fake.sign(claims), _press(fake, serviceUrl=None)),
            "a key endorsed for another channel": ("Bearer " + fake.sign(claims, key=other_channel), press),
            "no channelId": ("Bearer " + fake.sign(claims), _press(fake, channelId=None)),
        }
        got: dict[str, str] = {}
        for name, (authorization, activity) in cases.items():
            result = await keys.verify(authorization, activity, fake.app_id, fake.service_url)
            assert isinstance(result, Unproven), (name, result)
            assert result.reason in REASONS
            token = (authorization or "").partition(" ")[2] or (authorization or "")
            assert not token or token not in repr(result)
            got[name] = result.reason
        assert got == {
            "none": "no_header",
            "empty": "no_header",
            "basic": "not_bearer",
            "bare token": "not_bearer",
            "garbage": "not_jwt",
            "three dots of garbage": "not_jwt",
            "alg none": "bad_algorithm",
            "HS256 over the public key": "bad_algorithm",
            "RS512": "bad_algorithm",
            "no kid": "no_kid",
            "a key not published": "unknown_key",
            "another key under k1's kid": "bad_signature",
            "wrong iss": "bad_issuer",
            "wrong aud": "bad_audience",
            "aud api:// of another": "bad_audience",
            "expired beyond the leeway": "expired",
            "not valid for 400 s": "not_yet_valid",
            "no exp": "bad_token",
            "exp NaN": "bad_token",
            "exp true": "bad_token",
            "nbf a string": "bad_token",
            "no serviceurl": "no_serviceurl",
            "serviceurl not the activity's": "serviceurl_mismatch",
            "activity's serviceUrl not ours": "foreign_service_url",
            "no serviceUrl in the activity": "foreign_service_url",
            "a key endorsed for another channel": "not_endorsed",
            "no channelId": "not_endorsed",
        }
        # Within the 5 minutes' leeway either side, a token is taken.
        for late in (fake.claims(exp=now - 200, nbf=now - 900), fake.claims(nbf=now + 200)):
            result = await keys.verify(f"Bearer {fake.sign(late)}", press, fake.app_id, fake.service_url)
            assert isinstance(result, Verified), (late, result)
        # Nothing to check against: nothing is taken.
        token = "Bearer " + fake.sign(claims)
        assert await keys.verify(token, press, "", fake.service_url) == Unproven("not_configured")
        assert await keys.verify(token, press, fake.app_id, "file:///etc/x") == Unproven("not_configured")

    run(_with_fake(body))


def test_a_key_not_held_fetches_the_keys_again_at_most_once_per_5_minutes() -> None:
    async def body(fake: FakeTeams, keys: Keys, clock: Clock) -> None:
        async def verify(key_kid: str | None = None) -> Verified | Unproven:
            key = next((k for k in fake.keys if k.kid == key_kid), None) if key_kid else None
            made_up = new_key("made-up") if key_kid == "made-up" else None
            token = fake.sign(_dated(fake, clock), key=key or made_up)
            return await keys.verify(f"Bearer {token}", _press(fake), fake.app_id, fake.service_url)

        assert isinstance(await verify(), Verified) and fake.jwks_requests == 1
        # Microsoft rotates: a new key is published. Within 5 minutes of the
        # last fetch a token naming it does not fetch again …
        fake.keys.append(new_key("teams-k2"))
        assert await verify("teams-k2") == Unproven("unknown_key") and fake.jwks_requests == 1
        # … after them it does, once, and the new key verifies.
        clock.t += 301
        assert isinstance(await verify("teams-k2"), Verified) and fake.jwks_requests == 2
        # Made-up kids within 5 minutes of that fetch fetch nothing.
        assert await verify("made-up") == Unproven("unknown_key")
        clock.t += 200
        assert await verify("made-up") == Unproven("unknown_key")
        assert fake.jwks_requests == 2
        # Past them, a flood of made-up kids at once is one fetch (one at a time).
        clock.t += 101
        results = await asyncio.gather(*(verify("made-up") for _ in range(20)))
        assert all(r == Unproven("unknown_key") for r in results) and fake.jwks_requests == 3
        assert fake.openid_requests == fake.jwks_requests and keys.fetches == 3
        # A day on, a known key's token reads the keys again (kept 24 h).
        clock.t += 3600
        assert isinstance(await verify(), Verified) and fake.jwks_requests == 3
        clock.t += KEYS_TTL_S
        assert isinstance(await verify(), Verified) and fake.jwks_requests == 4

    run(_with_fake(body))


def test_keys_that_cannot_be_read_refuse_and_a_failed_refresh_keeps_the_old_ones() -> None:
    async def main() -> None:
        # Nothing listens: refused, not raised.
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        fake = FakeTeams()
        await fake.start()
        fake.channel(CHANNEL)
        clock = Clock()
        try:
            press, token = _press(fake), "Bearer " + fake.sign(_dated(fake, clock))
            gone = Keys(f"http://127.0.0.1:{port}/v1/.well-known/openidconfiguration", 10.0, clock)
            assert await gone.verify(token, press, fake.app_id, fake.service_url) == Unproven("keys_unavailable")
            # The keys read once, then the connector unreachable a day later:
            # the keys held still verify.
            keys = Keys(fake.openid_url, 10.0, clock)
            assert isinstance(await keys.verify(token, press, fake.app_id, fake.service_url), Verified)
        finally:
            await fake.stop()
        clock.t += KEYS_TTL_S + 1
        token = "Bearer " + fake.sign(_dated(fake, clock))
        assert isinstance(await keys.verify(token, press, fake.app_id, fake.service_url), Verified)
        assert keys.fetches == 1

    run(main())


def test_a_jwks_uri_that_is_not_http_is_never_fetched() -> None:
    async def main() -> None:
        async def metadata(request: web.Request) -> web.Response:
            return web.json_response({"issuer": "https://api.botframework.com", "jwks_uri": "file:///etc/passwd"})

        app = web.Application()
        app.router.add_get("/v1/.well-known/openidconfiguration", metadata)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        fake = FakeTeams()
        await fake.start()
        fake.channel(CHANNEL)
        try:
            keys = Keys(f"http://127.0.0.1:{port}/v1/.well-known/openidconfiguration", 10.0, Clock())
            token = "Bearer " + fake.sign(fake.claims())
            got = await keys.verify(token, _press(fake), fake.app_id, fake.service_url)
            assert got == Unproven("keys_unavailable") and keys.fetches == 0
        finally:
            await fake.stop()
            await runner.cleanup()
        try:
            Keys("file:///v1/.well-known/openidconfiguration", 10.0)
        except ValueError:
            pass
        else:
            raise AssertionError("a metadata URL that is not http(s) was taken")

    run(main())
