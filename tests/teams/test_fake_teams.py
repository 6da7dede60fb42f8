"""The fake Bot Connector keeps Teams' documented rules, so a client that
passes against it does not fail against Teams: the bot's token, a thread
made, replied in and updated, the connector's errors and their envelope,
the size limit, the per-thread and per-app limits answered 429 with
Retry-After, and presses signed as the Bot Connector signs them."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar
from urllib.parse import quote

import aiohttp
import jwt
from aiohttp import web

from tests.fakes.teams_api import ISSUER, FakeTeams, new_key

T = TypeVar("T")
CHANNEL = "19:agents@thread.tacv2"


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(asyncio.wait_for(coro, 60))


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


async def _token(
    http: aiohttp.ClientSession, fake: FakeTeams, password: str | None = None
) -> tuple[int, dict[str, Any]]:
    form = {
        "grant_type": "client_credentials",
        "client_id": fake.app_id,
        "client_secret": password or fake.app_password,
        "scope": "https://api.botframework.com/.default",
    }
    async with http.post(fake.token_url, data=form) as resp:
        return resp.status, await resp.json()


async def _call(
    http: aiohttp.ClientSession, fake: FakeTeams, method: str, path: str, body: Any, token: str
) -> tuple[int, Any, Any]:
    async with http.request(
        method, fake.service_url + path, json=body, headers={"Authorization": f"Bearer {token}"}
    ) as resp:
        return resp.status, await resp.json(), resp.headers.get("Retry-After")


def _message(text: str = "hello") -> dict[str, Any]:
    card = {"type": "AdaptiveCard", "version": "1.5", "body": [{"type": "TextBlock", "text": text}]}
    return {
        "type": "message",
        "attachments": [{"contentType": "application/vnd.microsoft.card.adaptive", "content": card}],
    }


def _thread(body: dict[str, Any]) -> dict[str, Any]:
    return {"isGroup": True, "channelData": {"channel": {"id": CHANNEL}}, "activity": body}


def test_a_thread_is_made_replied_in_and_updated_with_the_bots_token_only() -> None:
    async def main() -> None:
        fake = FakeTeams(max_activity=28 * 1024)
        await fake.start()
        fake.channel(CHANNEL)
        try:
            async with aiohttp.ClientSession() as http:
                status, doc = await _token(http, fake, "wrong")
                assert status == 401 and doc["error"] == "invalid_client"
                status, doc = await _token(http, fake)
                assert status == 200 and doc["token_type"] == "Bearer" and doc["expires_in"] > 0
                token = doc["access_token"]
                status, err, _ = await _call(http, fake, "POST", "v3/conversations", _thread(_message()), "forged")
                assert status == 401 and err == {"message": "Authorization has been denied for this request."}
                status, made, _ = await _call(http, fake, "POST", "v3/conversations", _thread(_message("root")), token)
                assert status == 201 and made["id"] == f"{CHANNEL};messageid={made['activityId']}"
                root = made["activityId"]
                status, _, _ = await _call(
                    http, fake, "POST", f"v3/conversations/{made['id']}/activities", _message("r1"), token
                )
                assert status == 201
                status, _, _ = await _call(
                    http, fake, "POST", f"v3/conversations/{CHANNEL}/activities/{root}", _message("r2"), token
                )
                assert status == 201
                status, _, _ = await _call(
                    http, fake, "PUT", f"v3/conversations/{made['id']}/activities/{root}", _message("edited"), token
                )
                assert status == 200
                texts = [a["attachments"][0]["content"]["body"][0]["text"] for a in fake.thread(CHANNEL, root)]
                assert texts == ["edited", "r1", "r2"]
                assert fake.thread(CHANNEL, root)[1]["replyToId"] == root
                # The connector's errors, in its envelope.
                status, err, _ = await _call(
                    http,
                    fake,
                    "POST",
                    "v3/conversations",
                    {**_thread(_message()), "channelData": {"channel": {"id": "19:gone"}}},
                    token,
                )
                assert status == 404 and err["error"]["code"] == "ConversationNotFound"
                big = _message("x" * 28 * 1024)
                status, err, _ = await _call(
                    http, fake, "POST", f"v3/conversations/{made['id']}/activities", big, token
                )
                assert status == 413 and err["error"]["code"] == "MessageSizeTooBig"
                fake.fail_next = [503, 412]
                path = f"v3/conversations/{made['id']}/activities"
                assert (await _call(http, fake, "POST", path, _message(), token))[0] == 503
                status, err, _ = await _call(http, fake, "POST", path, _message(), token)
                assert status == 412 and err["error"]["code"] == "PreconditionFailed"
                # The conversation id percent-encoded in the path, as one SDK sends it.
                quoted = quote(made["id"], safe="")
                assert (await _call(http, fake, "POST", f"v3/conversations/{quoted}/activities", _message(), token))[
                    0
                ] == 201
                fake.channels[CHANNEL].bot_member = False
                status, err, _ = await _call(
                    http, fake, "POST", f"v3/conversations/{made['id']}/activities", _message(), token
                )
                assert status == 403 and err["error"]["code"] == "BotNotInConversationRoster"
        finally:
            await fake.stop()

    run(main())


def test_the_per_thread_limits_answer_429_with_retry_after_and_spare_other_threads() -> None:
    async def main() -> None:
        clock = Clock()
        fake = FakeTeams(now=clock)
        await fake.start()
        fake.channel(CHANNEL)
        try:
            async with aiohttp.ClientSession() as http:
                token = (await _token(http, fake))[1]["access_token"]
                made = (await _call(http, fake, "POST", "v3/conversations", _thread(_message()), token))[1]
                other = (await _call(http, fake, "POST", "v3/conversations", _thread(_message()), token))[1]
                path = f"v3/conversations/{made['id']}/activities"
                results = [await _call(http, fake, "POST", path, _message(), token) for _ in range(8)]
                assert [s for s, _, _ in results] == [201] * 7 + [429]  # 7 a second in one thread
                assert results[-1][1]["error"]["code"] == "Throttled" and results[-1][2] == "1"
                assert (
                    await _call(http, fake, "POST", f"v3/conversations/{other['id']}/activities", _message(), token)
                )[0] == 201
                clock.t += 1.0
                # 8 in any 2 s: one more this second, then the next waits.
                assert (await _call(http, fake, "POST", path, _message(), token))[0] == 201
                assert (await _call(http, fake, "POST", path, _message(), token))[0] == 429
                clock.t += 1.0
                assert (await _call(http, fake, "POST", path, _message(), token))[0] == 201
        finally:
            await fake.stop()

    run(main())


def test_a_press_is_signed_as_the_bot_connector_signs_and_verifies_against_its_published_keys() -> None:
    async def main() -> None:
        fake = FakeTeams()
        await fake.start()
        fake.channel(CHANNEL)
        got: list[tuple[str, dict[str, Any]]] = []

        async def bot(request: web.Request) -> web.Response:
            got.append((request.headers["Authorization"], await request.json()))
            return web.json_response(
                {"statusCode": 200, "type": "application/vnd.microsoft.activity.message", "value": "ok"}
            )

        app = web.Application()
        app.router.add_post("/api/messages", bot)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        endpoint = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}/api/messages"  # type: ignore[union-attr]
        try:
            activity = fake.invoke(CHANNEL, "1", "1", "approve", {"t": "x"}, user="29:alice", aad="aad-alice")
            status, body = await fake.press(endpoint, activity)
            assert status == 200 and body["value"] == "ok"
            bearer, sent = got[0]
            assert sent["name"] == "adaptiveCard/action" and sent["value"]["action"]["verb"] == "approve"
            async with aiohttp.ClientSession() as http:
                async with http.get(fake.openid_url) as resp:
                    meta = await resp.json()
                async with http.get(meta["jwks_uri"]) as resp:
                    keys = (await resp.json())["keys"]
            assert meta["issuer"] == ISSUER and all("msteams" in k["endorsements"] for k in keys)
            token = bearer.removeprefix("Bearer ")
            key = jwt.PyJWK(keys[0]).key
            claims = jwt.decode(token, key, algorithms=["RS256"], audience=fake.app_id, issuer=ISSUER)
            assert claims["serviceurl"] == sent["serviceUrl"] == fake.service_url
            # A token of a key not published does not verify.
            forged = fake.sign(fake.claims(), key=new_key("other"))
            try:
                jwt.decode(forged, key, algorithms=["RS256"], audience=fake.app_id, issuer=ISSUER)
            except jwt.InvalidSignatureError:
                pass
            else:
                raise AssertionError("a token signed by another key verified")
        finally:
            await runner.cleanup()
            await fake.stop()

    run(main())
