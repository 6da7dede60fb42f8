"""The fake Telegram Bot API keeps Telegram's documented rules, so a client
that passes against it does not fail against Telegram: the envelope and
status of every error, text limits counted as Telegram counts them, HTML
that must be escaped, buttons' data limits, edits, callback answers once,
updates by long polling (offsets, one poller) or by a webhook carrying its
secret token, and the rate limits answered 429 with ``retry_after``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import aiohttp
from aiohttp import web

from tests.fakes.telegram_api import MAX_TEXT, FakeTelegram

TOKEN = "700000001:fake-secret"
GROUP, DM = -1001, 42
T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(asyncio.wait_for(coro, 60))


async def until(condition: Any, timeout: float = 30.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not condition():
        assert loop.time() < end, "timed out"
        await asyncio.sleep(0.01)


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


class Bot:
    def __init__(self, fake: FakeTelegram, http: aiohttp.ClientSession, token: str) -> None:
        self.fake, self.http, self.token = fake, http, token

    async def __call__(self, method: str, **args: Any) -> tuple[int, dict[str, Any]]:
        async with self.http.post(self.fake.url(self.token, method), json=args) as resp:
            return resp.status, await resp.json()


@asynccontextmanager
async def bot(token: str = TOKEN, **kw: Any) -> AsyncIterator[Bot]:
    fake = FakeTelegram(**kw)
    await fake.start()
    fake.chat(GROUP, "supergroup", forum=True)
    fake.chat(DM, "private")
    try:
        async with aiohttp.ClientSession() as http:
            yield Bot(fake, http, token)
    finally:
        await fake.stop()


def keyboard(*data: str) -> dict[str, Any]:
    return {"inline_keyboard": [[{"text": d.title(), "callback_data": d} for d in data]]}


def test_errors_have_telegrams_envelope_and_status() -> None:
    async def go() -> None:
        async with bot() as call:
            status, doc = await call("getMe")
            assert status == 200 and doc["ok"] and doc["result"]["is_bot"]
            assert await call("sendMessage", chat_id=99, text="x") == (
                400,
                {"ok": False, "error_code": 400, "description": "Bad Request: chat not found"},
            )
            call.fake.blocked.add(DM)
            status, doc = await call("sendMessage", chat_id=DM, text="x")
            assert (status, doc["description"]) == (403, "Forbidden: bot was blocked by the user")
            assert (await call("noSuchMethod"))[0] == 404
        async with bot("700000001:bad") as call:
            assert (await call("getMe"))[1]["error_code"] == 401

    run(go())


def test_text_is_limited_as_telegram_counts_it_and_html_must_be_escaped() -> None:
    async def go() -> None:
        async with bot() as call:
            assert (await call("sendMessage", chat_id=DM, text="x" * MAX_TEXT))[0] == 200
            status, doc = await call("sendMessage", chat_id=DM, text="x" * (MAX_TEXT + 1))
            assert (status, doc["description"]) == (400, "Bad Request: message is too long")
            # An emoji outside the BMP is two of Telegram's characters (UTF-16).
            assert (await call("sendMessage", chat_id=DM, text="😀" * (MAX_TEXT // 2 + 1)))[0] == 400
            assert (await call("sendMessage", chat_id=DM, text="  "))[1]["description"].endswith("text is empty")
            ok = "<b>rm</b> -rf &lt;dir&gt; &amp; <code>x</code>"
            assert (await call("sendMessage", chat_id=DM, text=ok, parse_mode="HTML"))[0] == 200
            for bad in ("a < b", "Tom & Jerry", "<b>open", "<script>x</script>", "<b><i>x</b></i>"):
                status, doc = await call("sendMessage", chat_id=DM, text=bad, parse_mode="HTML")
                assert status == 400 and "can't parse entities" in doc["description"], bad
            # Without a parse mode the same text is plain.
            assert (await call("sendMessage", chat_id=DM, text="a < b & <script>"))[0] == 200

    run(go())


def test_buttons_edits_and_replies() -> None:
    async def go() -> None:
        async with bot() as call:
            status, doc = await call(
                "sendMessage",
                chat_id=DM,
                text="a",
                reply_markup={"inline_keyboard": [[{"text": "x", "callback_data": "d" * 65}]]},
            )
            assert (status, doc["description"]) == (400, "Bad Request: BUTTON_DATA_INVALID")
            status, doc = await call(
                "sendMessage", chat_id=DM, text="deploy?", reply_markup=keyboard("approve", "reject")
            )
            assert status == 200
            mid = doc["result"]["message_id"]
            status, doc = await call(
                "editMessageText",
                chat_id=DM,
                message_id=mid,
                text="deploy?",
                reply_markup=keyboard("approve", "reject"),
            )
            assert status == 400 and doc["description"].startswith("Bad Request: message is not modified")
            status, doc = await call("editMessageText", chat_id=DM, message_id=mid, text="deploy? approved by Ada")
            assert status == 200 and "reply_markup" not in doc["result"]  # the buttons go with an edit without them
            assert (await call("editMessageText", chat_id=DM, message_id=9999, text="x"))[1]["description"].endswith(
                "not found"
            )
            status, doc = await call("sendMessage", chat_id=DM, text="step 1", reply_parameters={"message_id": mid})
            assert doc["result"]["reply_to_message"] == {"message_id": mid}
            assert (await call("sendMessage", chat_id=DM, text="x", reply_to_message_id=12345))[0] == 400
            assert [m["text"] for m in call.fake.sent(DM)] == ["deploy? approved by Ada", "step 1"]

    run(go())


def test_forum_topics_per_task() -> None:
    async def go() -> None:
        async with bot() as call:
            status, doc = await call("createForumTopic", chat_id=GROUP, name="Answer ticket 7")
            topic = doc["result"]["message_thread_id"]
            status, doc = await call("sendMessage", chat_id=GROUP, text="started", message_thread_id=topic)
            assert status == 200 and doc["result"]["message_thread_id"] == topic
            assert (await call("sendMessage", chat_id=GROUP, text="x", message_thread_id=topic + 100))[0] == 400
            assert (await call("createForumTopic", chat_id=DM, name="t"))[1]["description"].endswith("not a forum")

    run(go())


def test_a_click_is_an_update_polled_with_offsets_and_answered_once() -> None:
    async def go() -> None:
        async with bot() as call:
            _, doc = await call("sendMessage", chat_id=DM, text="deploy?", reply_markup=keyboard("approve"))
            mid = doc["result"]["message_id"]
            qid = await call.fake.press(DM, mid, "approve", user_id=5001)
            _, doc = await call("getUpdates", timeout=0)
            [update] = doc["result"]
            query = update["callback_query"]
            assert (query["id"], query["data"], query["from"]["id"]) == (qid, "approve", 5001)
            assert query["message"]["message_id"] == mid
            # Not confirmed yet: polled again, it comes again; confirmed by the offset, it goes.
            assert (await call("getUpdates"))[1]["result"] == [update]
            assert (await call("getUpdates", offset=update["update_id"] + 1))[1]["result"] == []
            assert (await call("answerCallbackQuery", callback_query_id=qid, text="Approved"))[0] == 200
            status, doc = await call("answerCallbackQuery", callback_query_id=qid)
            assert status == 400 and "query ID is invalid" in doc["description"]
            assert (await call("answerCallbackQuery", callback_query_id="forged"))[0] == 400

    run(go())


def test_a_long_poll_waits_for_an_update_and_a_second_poller_ends_the_first() -> None:
    async def go() -> None:
        async with bot() as call:
            waiting = asyncio.ensure_future(call("getUpdates", timeout=20))
            await until(lambda: call.fake.polling)
            assert not waiting.done()
            await call.fake.say(DM, "status?", user_id=5001)
            status, doc = await asyncio.wait_for(waiting, 10)
            assert status == 200 and doc["result"][0]["message"]["text"] == "status?"
            first = asyncio.ensure_future(call("getUpdates", offset=doc["result"][0]["update_id"] + 1, timeout=20))
            await until(lambda: call.fake.polling)
            second = asyncio.ensure_future(call("getUpdates", timeout=1))
            status, doc = await asyncio.wait_for(first, 10)
            assert status == 409 and doc["description"].startswith("Conflict: terminated by other getUpdates")
            assert (await second)[1]["result"] == []

    run(go())


def test_a_webhook_carries_its_secret_token_and_excludes_polling() -> None:
    async def go() -> None:
        got: list[tuple[str | None, dict[str, Any]]] = []

        async def receive(request: web.Request) -> web.Response:
            got.append((request.headers.get("X-Telegram-Bot-Api-Secret-Token"), await request.json()))
            return web.Response()

        app = web.Application()
        app.router.add_post("/telegram", receive)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        try:
            async with bot() as call:
                url = f"http://127.0.0.1:{port}/telegram"
                assert (await call("setWebhook", url=url, secret_token="has space"))[0] == 400
                assert (await call("setWebhook", url="http://example.com/x"))[0] == 400
                assert (await call("setWebhook", url=url, secret_token="s3cret_-x"))[0] == 200
                status, doc = await call("getUpdates")
                assert status == 409 and "webhook is active" in doc["description"]
                await call.fake.say(DM, "hi", user_id=5001)
                assert got == [("s3cret_-x", got[0][1])] and got[0][1]["message"]["text"] == "hi"
                assert (await call("getWebhookInfo"))[1]["result"]["url"] == url
                assert (await call("deleteWebhook"))[0] == 200
                assert (await call("getUpdates"))[0] == 200
        finally:
            await runner.cleanup()

    run(go())


def test_rate_limits_answer_429_with_retry_after_and_take_nothing() -> None:
    async def go() -> None:
        clock = Clock()
        async with bot(now=clock, chat_burst=1, group_per_minute=20, global_per_second=30) as call:
            assert (await call("sendMessage", chat_id=DM, text="1"))[0] == 200
            status, doc = await call("sendMessage", chat_id=DM, text="2")
            assert (status, doc["parameters"]) == (429, {"retry_after": 1})
            assert doc["description"] == "Too Many Requests: retry after 1"
            clock.t += 1.0
            assert (await call("sendMessage", chat_id=DM, text="2"))[0] == 200
            # A group: one a second, and at most 20 in any minute.
            codes = []
            for _ in range(25):
                clock.t += 1.0
                status, doc = await call("sendMessage", chat_id=GROUP, text="x")
                codes.append(status)
            assert codes == [200] * 20 + [429] * 5
            assert doc["parameters"] == {"retry_after": 60 - 25 + 1}  # until the first of the 20 is a minute old
            clock.t += doc["parameters"]["retry_after"]
            assert (await call("sendMessage", chat_id=GROUP, text="x"))[0] == 200
            assert len(call.fake.sent(GROUP)) == 21  # a refused message was never kept
            # 30 a second in all, across chats.
            for n in range(40):
                call.fake.chat(5000 + n, "private")
            clock.t += 60
            codes = [(await call("sendMessage", chat_id=5000 + n, text="x"))[0] for n in range(40)]
            assert codes == [200] * 30 + [429] * 10

    run(go())
