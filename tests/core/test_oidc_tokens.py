"""Tokens of the company's identity provider, verified: a provider the test
owns (tests/fakes/oidc_provider.py, real HTTP on loopback: discovery, a JWKS
with keys the test rotates) and tokens signed here.

Every bad token is refused with a reason a person can act on; a good one
names the person and their groups; a rotated key is found by reading the
key set again, at most once per interval whatever kids are made up; the
key set's read never blocks the event loop.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from spanvisor.config import Config, ConfigError
from spanvisor.control import oidc
from spanvisor.control.deciders import load
from spanvisor.control.people import People
from spanvisor.control.people import from_config as people_of
from tests.fakes.oidc_provider import API_AUDIENCE, CLIENT_ID, FakeIdP, new_key


@pytest.fixture(scope="module")
def idp() -> Iterator[FakeIdP]:
    p = FakeIdP()
    p.start()
    yield p
    p.stop()


def settings(idp: FakeIdP, **kw: Any) -> oidc.OidcSettings:
    base: dict[str, Any] = {
        "issuer": idp.issuer,
        "audiences": (CLIENT_ID, API_AUDIENCE),
        "jwks_url": None,
        "jwks_file": None,
        "person_claim": "email",
        "groups_claim": "groups",
        "algorithms": ("RS256",),
        "leeway_s": 5.0,
        "min_refetch_s": 0.0,
    }
    return oidc.OidcSettings(**{**base, **kw})


def verify(s: oidc.OidcSettings, token: str) -> oidc.Proven:
    return asyncio.run(oidc.Verifier(s).verify(token))


def refusal(s: oidc.OidcSettings, token: str) -> oidc.TokenRefused:
    with pytest.raises(oidc.TokenRefused) as got:
        verify(s, token)
    return got.value


def test_a_valid_token_names_the_person_and_their_groups(idp: FakeIdP) -> None:
    got = verify(settings(idp), idp.sign(idp.claims("alice@example.com", ["sre", "oncall"])))
    assert (got.name, got.groups, got.issuer) == ("alice@example.com", ("sre", "oncall"), idp.issuer)
    # An access token for the API (another audience the server accepts); a nested claim path.
    s = settings(idp, person_claim="preferred_username", groups_claim="realm_access.roles")
    token = idp.sign(
        idp.claims("x@example.com", None, aud=API_AUDIENCE, preferred_username="bob", realm_access={"roles": ["dba"]})
    )
    got = verify(s, token)
    assert (got.name, got.groups) == ("bob", ("dba",))


@pytest.mark.parametrize(
    ("case", "status", "words"),
    [
        ("expired", 401, "has expired"),
        ("not_yet_valid", 401, "not valid yet"),
        ("issued_in_the_future", 401, "not valid yet"),
        ("wrong_audience", 401, "another audience"),
        ("wrong_issuer", 401, "another issuer"),
        ("alg_none", 401, "unsigned (alg none)"),
        ("hs256_with_the_public_key", 401, "shared secret"),
        ("unknown_kid", 401, "not one of the provider's keys"),
        ("other_key_same_kid", 401, "signature does not verify"),
        ("no_exp", 401, "no exp claim"),
        ("no_groups_claim", 403, "no 'groups' claim"),
        ("no_person_claim", 403, "no usable 'email' claim"),
        ("groups_not_a_list", 403, "not a list"),
        ("garbage", 401, "not a JWT"),
    ],
)
def test_each_bad_token_is_refused_with_its_reason(idp: FakeIdP, case: str, status: int, words: str) -> None:
    now = int(time.time())
    c = idp.claims("alice@example.com", ["sre"])
    token = {
        "expired": lambda: idp.sign({**c, "exp": now - 600, "iat": now - 4000}),
        "not_yet_valid": lambda: idp.sign({**c, "nbf": now + 600}),
        "issued_in_the_future": lambda: idp.sign({**c, "iat": now + 600}),
        "wrong_audience": lambda: idp.sign({**c, "aud": "some-other-app"}),
        "wrong_issuer": lambda: idp.sign({**c, "iss": "https://evil.example.com"}),
        "alg_none": lambda: idp.sign(c, alg="none"),
        "hs256_with_the_public_key": lambda: idp.sign(c, alg="HS256"),
        "unknown_kid": lambda: idp.sign(c, key=new_key("k-stranger")),
        "other_key_same_kid": lambda: idp.sign(c, key=new_key("x"), kid=idp.keys[0].kid),
        "no_exp": lambda: idp.sign({k: v for k, v in c.items() if k != "exp"}),
        "no_groups_claim": lambda: idp.sign({k: v for k, v in c.items() if k != "groups"}),
        "no_person_claim": lambda: idp.sign({k: v for k, v in c.items() if k != "email"}),
        "groups_not_a_list": lambda: idp.sign({**c, "groups": {"sre": True}}),
        "garbage": lambda: "abc.def.ghi",
    }[case]()
    got = refusal(settings(idp), token)
    assert got.status == status and words in got.reason, got.reason


def test_a_rotated_key_is_found_by_reading_the_set_again(idp: FakeIdP) -> None:
    v = oidc.Verifier(settings(idp, min_refetch_s=0.0))

    async def go() -> None:
        assert (await v.verify(idp.sign(idp.claims(groups=["sre"])))).name == "alice@example.com"
        reads = idp.jwks_reads
        old = idp.keys[0]
        new = idp.rotate()  # the provider signs with a new key and drops the old one
        assert (await v.verify(idp.sign(idp.claims(groups=["sre"]), key=new))).groups == ("sre",)
        assert idp.jwks_reads == reads + 1
        with pytest.raises(oidc.TokenRefused, match="not one of the provider's keys"):
            await v.verify(idp.sign(idp.claims(groups=["sre"]), key=old))

    asyncio.run(go())


def test_made_up_kids_read_the_key_set_at_most_once_per_interval(idp: FakeIdP) -> None:
    v = oidc.Verifier(settings(idp, min_refetch_s=3600.0))

    async def go() -> None:
        await v.verify(idp.sign(idp.claims(groups=[])))
        reads = idp.jwks_reads
        for i in range(20):
            with pytest.raises(oidc.TokenRefused):
                await v.verify(idp.sign(idp.claims(groups=[]), key=new_key(f"forged-{i}")))
        assert idp.jwks_reads == reads, "a made-up kid made the server read the provider's keys again"

    asyncio.run(go())


def test_the_key_set_read_does_not_block_the_loop(idp: FakeIdP) -> None:
    """While the provider is slow to answer, the loop keeps serving others."""
    idp.jwks_delay_s = 0.5
    try:
        v = oidc.Verifier(settings(idp))

        async def go() -> int:
            ticks = 0

            async def ticker() -> None:
                nonlocal ticks
                while True:
                    await asyncio.sleep(0.01)
                    ticks += 1

            t = asyncio.create_task(ticker())
            await v.verify(idp.sign(idp.claims(groups=[])))
            t.cancel()
            return ticks

        assert asyncio.run(go()) >= 20
    finally:
        idp.jwks_delay_s = 0.0


def test_keys_from_a_file_and_read_again_when_it_changes(idp: FakeIdP, tmp_path: Path) -> None:
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(idp.jwks()))
    v = oidc.Verifier(settings(idp, jwks_file=str(path)))
    reads = idp.jwks_reads

    async def go() -> None:
        assert (await v.verify(idp.sign(idp.claims(groups=["a"])))).groups == ("a",)
        key = new_key("k-file-2")
        with pytest.raises(oidc.TokenRefused):
            await v.verify(idp.sign(idp.claims(groups=["a"]), key=key))
        path.write_text(json.dumps({"keys": [*idp.jwks()["keys"], {**key.jwk()}]}))
        assert (await v.verify(idp.sign(idp.claims(groups=["b"]), key=key))).groups == ("b",)

    asyncio.run(go())
    assert idp.jwks_reads == reads, "a key file must not send the server to the provider"


def test_settings_that_cannot_work_stop_at_start(idp: FakeIdP) -> None:
    with pytest.raises(ValueError, match="never none or HS"):
        oidc.p_algorithms("RS256,HS256")
    with pytest.raises(ValueError):
        oidc.p_algorithms("none")
    base = {"SPANVISOR_OIDC_ISSUER": idp.issuer}
    with pytest.raises(ConfigError, match="SPANVISOR_OIDC_AUDIENCE"):
        people_of(Config.load(env=base, extra=None))
    with pytest.raises(ConfigError, match="https"):
        env = {"SPANVISOR_OIDC_ISSUER": "http://idp.example.com", "SPANVISOR_OIDC_AUDIENCE": CLIENT_ID}
        people_of(Config.load(env=env, extra=None))
    with pytest.raises(ConfigError):
        Config.load(env={**base, "SPANVISOR_OIDC_ALGORITHMS": "HS256"}, extra=None)
    people = people_of(Config.load(env={**base, "SPANVISOR_OIDC_AUDIENCE": CLIENT_ID}, extra=None))
    assert people.on and people.verifier is not None and people.verifier.s.groups_claim == "groups"


def test_the_deciders_file_maps_a_provider_identity_to_its_person(idp: FakeIdP, tmp_path: Path) -> None:
    path = tmp_path / "deciders.toml"
    path.write_text(
        '[people.alice]\noidc = "Alice@Example.com"\ngroups = ["oncall"]\nslack_user = "U0ALICE"\n\n'
        '[people.bob]\ntoken_sha256 = "' + "0" * 64 + '"\n'
    )
    people = People(load(path), oidc.Verifier(settings(idp)))
    got = asyncio.run(people.who(idp.sign(idp.claims("alice@example.com", ["sre"]))))
    assert got is not None
    assert (got.name, got.groups, got.oidc, got.proof, got.slack_user) == (
        "alice",
        ("oncall", "sre"),
        "alice@example.com",
        "oidc",
        "U0ALICE",
    )
    stranger = asyncio.run(people.who(idp.sign(idp.claims("carol@example.com", []))))
    assert stranger is not None and (stranger.name, stranger.proof) == ("carol@example.com", "oidc")
    assert asyncio.run(people.who("not-a-jwt-token")) is None
