"""The Teams plugin's client of the Bot Connector, against the fake
connector over loopback: a thread made, replied in and updated; the bot's
token fetched once for many calls, before it expires and after the
connector refuses it; a wrong password named without its value; the
connector's answers (202 with no body, 413, 5xx, 412, 429) each handled as
Teams says; ids percent-encoded in paths; the bearer sent to the service
URL only; and a busy thread paced under Teams' limits without a 429."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from aiohttp import web

from spanvisor.chat.pacing import URGENT, Interrupt
from spanvisor.stats import PipelineStats
from spanvisor_teams.api import Connector, Reply, error_of, parse_retry_after
from spanvisor_teams.limits import CREATE, DEFERRED, SEND, UPDATE, Poster, Rates
from tests.fakes.teams_api import FakeTeams
from tests.taskscript import ManualClock, ScaledClock

T = TypeVar("T")
CHANNEL = "19:agents@thread.tacv2"
PASSWORD = "app-password-s3cret"


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(asyncio.wait_for(coro, 30))


def _message(text: str = "hello") -> dict[str, Any]:
    card = {"type": "AdaptiveCard", "version": "1.5", "body": [{"type": "TextBlock", "text": text}]}
    return {
        "type": "message",
        "attachments": [{"contentType": "application/vnd.microsoft.card.adaptive", "content": card}],
    }


def _text(activity: dict[str, Any]) -> str:
    return str(activity["attachments"][0]["content"]["body"][0]["text"])


async def _started(fake: FakeTeams, channel: str = CHANNEL) -> None:
    await fake.start()
    fake.channel(channel)


def _connector(fake: FakeTeams, password: str = PASSWORD, service_url: str = "") -> Connector:
    return Connector(fake.app_id, password, fake.tenant, fake.base_url, service_url or fake.service_url, 5.0)


async def _until(check: Callable[[], bool], what: str, seconds: float = 10.0) -> None:
    """A failure bound, not a timing: waits in real time for ``check``."""
    for _ in range(int(seconds / 0.005)):
        if check():
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"timed out waiting for {what}")


async def _drive(clock: ManualClock, task: Awaitable[T], step: float = 0.1) -> T:
    """Runs ``task`` while moving a manual clock on, a step per real moment."""
    job = asyncio.ensure_future(task)
    for _ in range(2000):
        if job.done():
            return job.result()
        clock.advance(step)
        await asyncio.sleep(0.005)
    job.cancel()
    raise AssertionError("the call did not finish")


def test_a_thread_is_created_replied_in_and_updated() -> None:
    async def main() -> None:
        fake = FakeTeams(app_password=PASSWORD)
        await _started(fake)
        api = _connector(fake)
        try:
            made = await api.create_thread(CHANNEL, _message("root"))
            assert made.ok and made.status == 201 and not made.code
            root = made.body["activityId"]
            thread = made.body["id"]
            assert thread == f"{CHANNEL};messageid={root}"
            reply = await api.send(thread, _message("first line"))
            assert reply.ok and reply.body["id"] != root
            edited = await api.update(thread, root, _message("root, edited"))
            assert edited.ok and edited.status == 200
            activities = fake.thread(CHANNEL, root)
            assert [_text(a) for a in activities] == ["root, edited", "first line"]
            assert activities[1]["replyToId"] == root
            assert [c.path for c in fake.calls_to("POST", "create")] == ["/v3/conversations"]
            assert fake.calls_to("POST", "create")[0].body["isGroup"] is True
            # The connector's own errors, in its envelope: code and message.
            gone = await api.send(f"19:gone@thread.tacv2;messageid={root}", _message())
            assert (gone.ok, gone.status, gone.code) == (False, 404, "ConversationNotFound")
            assert gone.error and not gone.sent_maybe
            missing = await api.update(thread, "999", _message())
            assert (missing.status, missing.code) == (404, "ActivityNotFoundInConversation")
        finally:
            await api.close()
            await fake.stop()

    run(main())


def test_the_token_is_fetched_once_for_many_concurrent_calls() -> None:
    async def main() -> None:
        fake = FakeTeams(app_password=PASSWORD, scale=10)  # 70 a second in a thread: the token is the subject
        await _started(fake)
        api = _connector(fake)
        try:
            made = await api.create_thread(CHANNEL, _message("root"))
            replies = await asyncio.gather(*(api.send(made.body["id"], _message(f"r{i}")) for i in range(50)))
            assert all(r.ok for r in replies), {r.code for r in replies}
            assert len(fake.tokens) == 1
            assert all(c.status != 401 for c in fake.calls)
        finally:
            await api.close()
            await fake.stop()

    run(main())


def test_the_token_is_refreshed_before_it_expires_and_once_when_refused() -> None:
    async def main() -> None:
        fake = FakeTeams(app_password=PASSWORD, token_ttl_s=1)
        await _started(fake)
        api = _connector(fake)
        try:
            made = await api.create_thread(CHANNEL, _message("root"))
            thread = made.body["id"]
            first = set(fake.tokens)
            assert made.ok and len(first) == 1
            # Kept until a tenth of its life before expiry (0.9 s of 1 s): then a new one.
            await asyncio.sleep(1.05)
            assert (await api.send(thread, _message("after expiry"))).ok
            assert len(fake.tokens) == 2 and all(c.status != 401 for c in fake.calls)
            # The connector refuses the token (revoked): one new token, one more try.
            fake.tokens.clear()
            again = await api.send(thread, _message("after revocation"))
            assert again.ok and len(fake.tokens) == 1 and not set(fake.tokens) & first
            assert [c.status for c in fake.calls[-2:]] == [401, 201]
        finally:
            await api.close()
            await fake.stop()

    run(main())


def test_a_wrong_password_is_a_token_reply_naming_the_setting_not_the_value() -> None:
    async def main() -> None:
        fake = FakeTeams(app_password=PASSWORD)
        await _started(fake)
        wrong = "wr0ng-passw0rd-value"
        api = _connector(fake, password=wrong)
        stats = PipelineStats()
        poster = Poster(api, ScaledClock(20), stats)
        try:
            reply = await api.create_thread(CHANNEL, _message())
            assert (reply.ok, reply.status, reply.code) == (False, 401, "token")
            assert "SPANVISOR_TEAMS_APP_ID" in reply.error and "SPANVISOR_TEAMS_APP_PASSWORD" in reply.error
            assert "invalid_client" in reply.error
            assert wrong not in repr(reply) and PASSWORD not in repr(reply)
            assert not reply.sent_maybe and fake.calls == []  # the connector was never called
            # Through the poster: returned, not retried.
            again = await poster.send(
                CREATE, CHANNEL, lambda: api.create_thread(CHANNEL, _message()), rank=URGENT, end=lambda: None
            )
            assert again is not None and again.code == "token"
            assert stats.value("teams_calls_total", op=CREATE) == 1
        finally:
            await poster.close()
            await fake.stop()

    run(main())


def test_202_with_no_body_is_ok_with_an_empty_body() -> None:
    async def main() -> None:
        fake = FakeTeams(app_password=PASSWORD, accepted_empty=True)
        await _started(fake)
        api = _connector(fake)
        try:
            made = await api.create_thread(CHANNEL, _message("root"))
            reply = await api.send(made.body["id"], _message("line"))
            assert (reply.ok, reply.status, reply.body) == (True, 202, {})
            assert [_text(a) for a in fake.thread(CHANNEL, made.body["activityId"])] == ["root", "line"]
        finally:
            await api.close()
            await fake.stop()

    run(main())


def test_too_big_and_server_errors_are_returned_and_412_5xx_retried_to_success() -> None:
    async def main() -> None:
        fake = FakeTeams(app_password=PASSWORD, max_activity=28 * 1024)
        await _started(fake)
        api = _connector(fake)
        stats = PipelineStats()
        poster = Poster(api, ScaledClock(20), stats)  # backoff of 0.25-2 s takes a twentieth
        try:
            made = await api.create_thread(CHANNEL, _message("root"))
            thread = made.body["id"]

            async def post(activity: dict[str, Any]) -> Reply | None:
                return await poster.send(
                    SEND, thread, lambda: api.send(thread, activity), rank=URGENT, end=lambda: None
                )

            big = await post(_message("x" * 28 * 1024))
            assert big is not None and (big.status, big.code) == (413, "MessageSizeTooBig")
            assert stats.value("teams_calls_total", op=SEND) == 1  # not retried
            fake.fail_next = [500]
            failed = await post(_message())
            assert failed is not None and (failed.status, failed.code) == (500, "ServiceError")
            assert stats.value("teams_calls_total", op=SEND) == 2  # a 500 is not retried either
            fake.fail_next = [503, 412, 502]
            done = await post(_message("through"))
            assert done is not None and done.ok
            assert [c.status for c in fake.calls[-4:]] == [503, 412, 502, 201]
            assert stats.value("teams_calls_total", op=SEND) == 6
            # Only the 502 may have been done before its answer was lost: one resend counted.
            assert stats.value("teams_resent_total") == 1
            assert stats.value("teams_rate_limited_total") == 0
            # An update sent again only sets the same content: not counted as a resend.
            fake.fail_next = [502]
            root = made.body["activityId"]
            edited = await poster.send(
                UPDATE, thread, lambda: api.update(thread, root, _message("edit")), rank=URGENT, end=lambda: None
            )
            assert edited is not None and edited.ok and stats.value("teams_resent_total") == 1
        finally:
            await poster.close()
            await fake.stop()

    run(main())


def test_a_429_pauses_the_thread_for_retry_after_then_goes_through() -> None:
    async def main() -> None:
        clock = ManualClock()
        fake = FakeTeams(app_password=PASSWORD, now=clock.now)
        await _started(fake)
        api = _connector(fake)
        stats = PipelineStats()
        poster = Poster(api, clock, stats)
        try:
            made = await api.create_thread(CHANNEL, _message("root"))
            thread = made.body["id"]
            # Another process of the same app used the thread's second: 7 calls at t=0.
            for i in range(7):
                assert (await api.send(thread, _message(f"other {i}"))).ok
            job = asyncio.ensure_future(
                poster.send(SEND, thread, lambda: api.send(thread, _message("ours")), rank=URGENT, end=lambda: None)
            )
            await _until(lambda: any(c.status == 429 for c in fake.calls), "the 429")
            refused = next(c for c in fake.calls if c.status == 429)
            assert refused.response["error"]["code"] == "Throttled"
            assert not job.done()  # waiting on the clock, not on the connector
            reply = await _drive(clock, job)
            assert reply is not None and reply.ok
            assert fake.calls[-1].status == 201 and fake.calls[-1].at >= 1.0  # Retry-After: 1
            assert stats.value("teams_rate_limited_total") == 1
            assert stats.value("teams_calls_total", op=SEND) == 2
        finally:
            await poster.close()
            await fake.stop()

    run(main())


def test_a_call_waiting_for_its_turn_gives_up_at_its_end_or_steps_out_when_interrupted() -> None:
    async def main() -> None:
        clock = ManualClock()
        fake = FakeTeams(app_password=PASSWORD, now=clock.now)
        await _started(fake)
        api = _connector(fake)
        stats = PipelineStats()
        poster = Poster(api, clock, stats)
        try:
            made = await api.create_thread(CHANNEL, _message("root"))
            thread = made.body["id"]

            def call() -> Awaitable[Reply]:
                return api.send(thread, _message())

            for _ in range(5):  # the thread's burst (the app's bucket lets 4 at once, then 45 a second)
                reply = await _drive(clock, poster.send(SEND, thread, call, rank=URGENT, end=lambda: None), 0.01)
                assert reply is not None and reply.ok
            # The next turn is 2 s away: a call that must be done in 1 s is not sent.
            assert await poster.send(SEND, thread, call, rank=URGENT, end=lambda: clock.now() + 1.0) is None
            # Its caller has something better to send: it steps out.
            now = Interrupt(asyncio.Event(), clock.now)
            stepped = await poster.send(SEND, thread, call, rank=URGENT, key="m1", end=lambda: None, interrupt=now)
            assert stepped is DEFERRED
            assert stats.value("teams_calls_total", op=SEND) == 5
        finally:
            await poster.close()
            await fake.stop()

    run(main())


def test_a_call_waiting_on_the_apps_limit_steps_out_for_a_question_and_keeps_its_turn() -> None:
    """The app's bucket binds (every thread at once): a call past its own
    thread's turn but waiting for the app's still steps out when its caller
    has a question to show, and gives its thread's turn back."""

    async def main() -> None:
        clock = ManualClock()
        fake = FakeTeams(app_password=PASSWORD, now=clock.now)
        await _started(fake)
        api = _connector(fake)
        stats = PipelineStats()
        # The thread's five calls never refill (a call a day): a turn not given back is gone.
        poster = Poster(api, clock, stats, Rates(thread_per_minute=1 / 1440, app_per_second=1.0))
        try:
            made = await api.create_thread(CHANNEL, _message("root"))
            thread = made.body["id"]

            def call() -> Awaitable[Reply]:
                return api.send(thread, _message())

            first = await poster.send(SEND, "elsewhere", call, rank=URGENT, end=lambda: None)
            assert first is not None and first.ok  # the app's one call of the moment
            now = Interrupt(asyncio.Event(), clock.now)
            for _ in range(6):  # more than the thread's five: each step out gives its turn back
                stepped = await poster.send(SEND, thread, call, rank=URGENT, key="m1", end=lambda: None, interrupt=now)
                assert stepped is DEFERRED
            assert stats.value("teams_calls_total", op=SEND) == 1
            later = await _drive(clock, poster.send(SEND, thread, call, rank=URGENT, key="m1", end=lambda: None))
            assert later is not None and later.ok
        finally:
            await poster.close()
            await fake.stop()

    run(main())


def test_ids_are_percent_encoded_and_the_bearer_goes_to_the_service_url_only() -> None:
    async def main() -> None:
        fake = FakeTeams(app_password=PASSWORD)
        await fake.start()
        seen: list[tuple[str, bool]] = []  # (raw path, had a bearer) at the service
        elsewhere: list[str] = []  # what reached another host

        async def service(request: web.Request) -> web.Response:
            seen.append((request.raw_path, "Authorization" in request.headers))
            if "redirect" in request.raw_path:
                raise web.HTTPTemporaryRedirect(f"{other_url}/stolen")
            return web.json_response({"id": "7"}, status=201)

        async def other(request: web.Request) -> web.Response:
            elsewhere.append(request.headers.get("Authorization", ""))
            return web.json_response({"id": "8"}, status=201)

        runners = []
        urls = []
        for handler in (service, other):
            app = web.Application()
            app.router.add_route("*", "/{tail:.*}", handler)
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            runners.append(runner)
            urls.append(f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}")  # type: ignore[union-attr]
        other_url = urls[1]
        api = _connector(fake, service_url=f"{urls[0]}/teams/")
        try:
            conversation = "19:a@thread.tacv2;messageid=42"
            assert (await api.send(conversation, _message())).ok
            assert (await api.update(conversation, "42", _message())).ok
            assert seen == [
                ("/teams/v3/conversations/19%3Aa%40thread.tacv2%3Bmessageid%3D42/activities", True),
                ("/teams/v3/conversations/19%3Aa%40thread.tacv2%3Bmessageid%3D42/activities/42", True),
            ]
            moved = await api.send("redirect", _message())
            assert (moved.ok, moved.status) == (False, 307) and elsewhere == []
        finally:
            await api.close()
            for runner in runners:
                await runner.cleanup()
            await fake.stop()

    run(main())


def test_an_id_with_characters_a_path_cannot_hold_raw_reaches_its_thread() -> None:
    async def main() -> None:
        odd = "19:odd#id?x=1@thread.tacv2"
        fake = FakeTeams(app_password=PASSWORD)
        await _started(fake, odd)
        api = _connector(fake)
        try:
            made = await api.create_thread(odd, _message("root"))
            assert made.ok and made.body["id"] == f"{odd};messageid={made.body['activityId']}"
            assert (await api.send(made.body["id"], _message("line"))).ok
            assert (await api.update(made.body["id"], made.body["activityId"], _message("edited"))).ok
            assert [_text(a) for a in fake.thread(odd, made.body["activityId"])] == ["edited", "line"]
        finally:
            await api.close()
            await fake.stop()

    run(main())


def test_a_busy_thread_is_paced_under_teams_limits_without_a_429() -> None:
    async def main() -> None:
        clock = ScaledClock(30)  # 40 calls at 27 a minute: about 78 s of Teams time, 2.6 s here
        fake = FakeTeams(app_password=PASSWORD, now=clock.now)
        await _started(fake)
        api = _connector(fake)
        stats = PipelineStats()
        poster = Poster(api, clock, stats)
        try:
            made = await poster.send(
                CREATE, CHANNEL, lambda: api.create_thread(CHANNEL, _message("root")), rank=URGENT, end=lambda: None
            )
            assert made is not None and made.ok
            thread = made.body["id"]

            async def one(i: int) -> Reply | None:
                return await poster.send(
                    SEND, thread, lambda: api.send(thread, _message(f"r{i}")), rank=URGENT, end=lambda: None
                )

            replies = await asyncio.gather(*(one(i) for i in range(40)))
            assert all(r is not None and r.ok for r in replies)
            assert [c.status for c in fake.calls if c.status == 429] == []
            assert stats.value("teams_rate_limited_total") == 0
            assert stats.value("teams_calls_total", op=SEND) == 40
            assert len(fake.thread(CHANNEL, made.body["activityId"])) == 41
        finally:
            await poster.close()
            await fake.stop()

    run(main())


def test_error_bodies_and_retry_after_are_read_whatever_their_shape() -> None:
    assert error_of(403, {"error": {"code": "BotNotInConversationRoster", "message": "no"}}) == (
        "BotNotInConversationRoster",
        "no",
    )
    assert error_of(401, {"message": "Authorization has been denied for this request."}) == (
        "http_401",
        "Authorization has been denied for this request.",
    )
    blocked = {"errorCode": 209, "message": '{"subCode":"MessageWritesBlocked","details":"Thread is blocked."}'}
    assert error_of(403, blocked) == ("MessageWritesBlocked", "Thread is blocked.")
    assert error_of(502, None) == ("http_5xx", "")
    assert error_of(400, ["odd"]) == ("http_400", "")
    assert error_of(400, {"error": "invalid_request", "error_description": "bad"}) == ("invalid_request", "bad")
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # a date passed: now
    later = parse_retry_after("Fri, 01 Jan 2100 00:00:00 GMT")
    assert later is not None and later > 1e9
