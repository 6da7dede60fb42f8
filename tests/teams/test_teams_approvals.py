"""Approvals from Microsoft Teams, with a real pipeline and its control log,
serve's real admin app and presses signed as the Bot Connector signs them:
the question with its buttons, a press by a person the deciders file names
(by Entra object id), the decision on the card; an account the file does
not name, forged tokens, a press naming another service, a replay, a
button from another channel or not in the store; two people needed,
counted as people across channels; 'Show all' once; malformed bodies."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any, TypeVar

import jwt
from aiohttp import ClientSession, ClientTimeout, web
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import Span, Tracer

from spanvisor.events import Decision, HumanIntervention
from spanvisor.otel.processor import SpanvisorSpanProcessor
from spanvisor.pipeline.pipeline import Pipeline
from spanvisor.receiver.admin import make_app
from spanvisor.spans import conventions as cv
from spanvisor.statestores.memory import InMemoryStateStore
from spanvisor.testing import InMemorySink
from spanvisor_teams import TeamsSink
from tests.fakes.teams_api import FakeTeams, new_key
from tests.teams.teams_support import CHANNEL, FAST, card_of, fast_fake, shown, teams_config

T = TypeVar("T")
ALICE = "8a0d7a4f-0c4e-4a5e-9a3c-2b1f0e6d5c4b"
BOB = "0b1c2d3e-4f50-4617-8293-a4b5c6d7e8f9"
MALLORY = "66666666-6666-4666-8666-666666666666"
OTHER_CHANNEL = "19:elsewhere@thread.tacv2"
# Alice is known on Slack and Telegram too, and written here in upper case (GUIDs compare ignoring it).
DECIDERS = f"""
[people.alice]
teams_user = "{ALICE.upper()}"
slack_user = "U024BE7LH"
telegram_user = 1001
groups = ["sre"]

[people.bob]
teams_user = "{BOB}"
"""
SECRET = "sk-live-abcdef0123456789abcdef"
ACTION = json.dumps({"tool": "Bash", "arguments": {"command": "kubectl apply -f prod.yaml", "token": SECRET}})
MESSAGE = "application/vnd.microsoft.activity.message"
# What a press is told when its decision outlasts Teams' patience (a busy machine): the card tells the rest.
STILL = "⏳ Still deciding: the card shows the outcome."


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(asyncio.wait_for(coro, 120))


async def until(condition: Any, timeout: float = 30.0, what: str = "") -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not condition():
        assert loop.time() < end, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


def notice(answer: tuple[int, Any]) -> str:
    """The notice an invoke's answer shows the person, once its shape is checked."""
    status, body = answer
    assert status == 200, answer
    assert isinstance(body, dict) and set(body) == {"statusCode", "type", "value"}, body
    assert body["statusCode"] == 200 and body["type"] == MESSAGE and isinstance(body["value"], str), body
    return str(body["value"])


def actions(card: Any) -> list[dict[str, Any]]:
    """Every Action.Execute on a card, in order."""
    out: list[dict[str, Any]] = []
    if isinstance(card, dict):
        if card.get("type") == "Action.Execute":
            out.append(card)
        for v in card.values():
            out += actions(v)
    elif isinstance(card, list):
        for v in card:
            out += actions(v)
    return out


def inputs(card: Any) -> list[dict[str, Any]]:
    """Every input box on a card, in order."""
    if isinstance(card, dict):
        here = [card] if card.get("type") == "Input.Text" else []
        return here + [box for v in card.values() for box in inputs(v)]
    if isinstance(card, list):
        return [box for v in card for box in inputs(v)]
    return []


@dataclass
class Live:
    fake: FakeTeams
    pipeline: Pipeline
    memory: InMemorySink
    tracer: Tracer
    endpoint: str

    def ask(self, task_id: str, approval_id: str, **attrs: Any) -> Span:
        root = self.tracer.start_span("deploy", attributes={cv.TASK_NAME: f"Deploy {task_id}", cv.TASK_ID: task_id})
        root.add_event(
            cv.EVENT_APPROVAL_REQUEST, {cv.APPROVAL_ID: approval_id, cv.APPROVAL_QUESTION: "Deploy to prod?", **attrs}
        )
        return root

    def card(self, task_id: str) -> dict[str, Any] | None:
        """The task's card: the root of its thread."""
        return next((r for r in self.fake.roots(CHANNEL) if f"Deploy {task_id}" in shown(r)), None)

    def replies(self, task_id: str) -> list[dict[str, Any]]:
        root = self.card(task_id)
        return self.fake.thread(CHANNEL, root["id"])[1:] if root is not None else []

    def buttons_now(self, task_id: str) -> dict[str, dict[str, Any]]:
        root = self.card(task_id)
        return {a["title"]: a for a in actions(card_of(root))} if root is not None else {}

    async def buttons(self, task_id: str) -> dict[str, dict[str, Any]]:
        await until(lambda: self.buttons_now(task_id), what="the buttons")
        return self.buttons_now(task_id)

    def invoke(
        self, task_id: str, button: dict[str, Any], aad: str, channel: str = CHANNEL, **data: Any
    ) -> dict[str, Any]:
        """The activity a press on ``button`` (an Action.Execute of the task's card) makes."""
        root = self.card(task_id)
        assert root is not None
        return self.fake.invoke(
            channel, root["id"], root["id"], button["verb"], {**button["data"], **data}, user="29:someone", aad=aad
        )

    async def press(self, task_id: str, title: str, aad: str) -> tuple[int, Any]:
        button = (await self.buttons(task_id))[title]
        return await self.fake.press(self.endpoint, self.invoke(task_id, button, aad))

    async def post(self, body: Any, token: str | None = None, **headers: str) -> tuple[int, Any]:
        """POST raw ``body`` (bytes, or JSON) to the messaging endpoint with the
        connector's token (or ``token``; "" sends no Authorization header)."""
        bearer = self.fake.sign(self.fake.claims()) if token is None else token
        sent = {**({"Authorization": f"Bearer {bearer}"} if bearer else {}), **headers}
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        sent.setdefault("Content-Type", "application/json")
        async with ClientSession(timeout=ClientTimeout(total=30)) as http:
            async with http.post(self.endpoint, data=data, headers=sent) as resp:
                text = await resp.text()
                try:
                    return resp.status, json.loads(text) if text else None
                except ValueError:
                    return resp.status, text

    def interventions(self) -> list[HumanIntervention]:
        return [e for e in self.memory.events if isinstance(e, HumanIntervention)]

    def presses(self, outcome: str) -> float:
        return self.pipeline.stats.value("teams_presses_total", outcome=outcome)


@asynccontextmanager
async def live(tmp_path: Path, fake: FakeTeams | None = None, **overrides: Any) -> AsyncIterator[Live]:
    """A pipeline with the Teams sink, and serve's admin app (its real one,
    its Host policy the default) taking presses at ``/teams/messages``."""
    fake = fake or fast_fake()
    await fake.start()
    fake.channel(CHANNEL)
    fake.channel(OTHER_CHANNEL)
    deciders = tmp_path / "deciders.toml"
    deciders.write_text(DECIDERS)
    config = teams_config(fake, **{**FAST, **overrides}).with_values(
        deciders_file=str(deciders), shutdown_timeout_s=3.0
    )
    memory = InMemorySink()
    pipeline = Pipeline(config, sinks=[TeamsSink(), memory], state_store=InMemoryStateStore()).start()
    provider = TracerProvider(shutdown_on_exit=False)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    endpoint = f"http://127.0.0.1:{sock.getsockname()[1]}/teams/messages"
    runner = web.AppRunner(make_app(SimpleNamespace(pipeline=pipeline), lambda: (True, "ok")), access_log=None)  # type: ignore[arg-type]
    try:
        assert await asyncio.to_thread(pipeline.wait_ready, 10)
        await runner.setup()
        await web.SockSite(runner, sock).start()
        provider.add_span_processor(SpanvisorSpanProcessor(pipeline=pipeline))
        yield Live(fake, pipeline, memory, provider.get_tracer("agent"), endpoint)
        # The bot called nothing but the fake connector, and never with a refusal.
        assert all(c.status < 400 for c in fake.calls), [c for c in fake.calls if c.status >= 400]
    finally:
        await runner.cleanup()
        sock.close()
        await asyncio.to_thread(pipeline.shutdown, 5)
        await fake.stop()


def test_a_named_person_approves_with_a_press_and_the_card_shows_it(tmp_path: Path) -> None:
    async def main() -> None:
        async with live(tmp_path) as env:
            root = env.ask("t-ok", "a1", **{cv.APPROVAL_ACTION: ACTION})
            buttons = await env.buttons("t-ok")
            assert set(buttons) == {"✅ Approve", "❌ Reject"}
            assert buttons["✅ Approve"]["verb"] == "spanvisor.approve"
            assert set(buttons["✅ Approve"]["data"]) == {"sv"}  # the token only: what it decides is stored
            card = env.card("t-ok")
            assert card is not None and "Deploy to prod?" in shown(card) and "kubectl apply" in shown(card)
            assert SECRET not in json.dumps(card)  # the secret is masked
            said = notice(await env.press("t-ok", "✅ Approve", ALICE))
            assert said in ("✅ Approved", STILL), said
            await until(lambda: env.presses("applied") == 1, what="the decision")
            decisions = await env.pipeline.control.decisions("t-ok")
            assert [(d.action, d.person, d.proof, d.verified, d.source) for d in decisions] == [
                ("approve", "alice", "teams", True, "teams")
            ]
            assert decisions[0].actor_id == f"teams:{ALICE}" and decisions[0].actor_name == "alice"
            # The card shows it: the question answered, its buttons gone.
            await until(lambda: not env.buttons_now("t-ok"), what="the buttons to go")
            card = env.card("t-ok")
            assert card is not None and "Deploy to prod?" not in shown(card)
            root.end()
            await until(
                lambda: any("Approved" in shown(r) for r in env.replies("t-ok")), what="the decision in the thread"
            )

    run(main())


def test_an_unnamed_account_is_refused_and_audited_and_nothing_else_decides(tmp_path: Path) -> None:
    """Mallory (not in the file) may see, never decide; a token the store
    does not hold, a button's token under another verb, a button pressed in
    another channel and a press naming nobody decide nothing; the same
    press delivered twice decides once."""

    async def main() -> None:
        async with live(tmp_path) as env:
            root = env.ask("t-no", "a1")
            buttons = await env.buttons("t-no")
            approve, reject = buttons["✅ Approve"], buttons["❌ Reject"]
            said = notice(await env.press("t-no", "✅ Approve", MALLORY))
            assert said.startswith("🚫 Not allowed") and "teams_user" in said, said
            await until(lambda: any(e.outcome == "denied" for e in env.interventions()), what="the audit")
            (denied,) = [e for e in env.interventions() if e.outcome == "denied"]
            assert denied.code == "not_approver" and denied.decision.actor_id == f"teams:{MALLORY}"
            assert denied.decision.person is None and denied.decision.actor_name is None
            unknown = [
                env.invoke("t-no", approve, ALICE, sv="A" * 22),  # a token the store does not hold
                env.invoke("t-no", {**approve, "verb": "spanvisor.reject"}, ALICE),  # approve's token, reject's verb
            ]
            for activity in unknown:
                assert "not one spanvisor knows" in notice(await env.fake.press(env.endpoint, activity))
            elsewhere = env.invoke("t-no", approve, ALICE, channel=OTHER_CHANNEL)
            assert "another channel" in notice(await env.fake.press(env.endpoint, elsewhere))
            nobody = env.invoke("t-no", approve, ALICE)
            nobody["from"] = {"id": "29:x", "aadObjectId": "alice", "name": "alice"}
            assert "did not say who pressed" in notice(await env.fake.press(env.endpoint, nobody))
            assert await env.pipeline.control.decisions("t-no") == []
            # The same press delivered twice (the same activity id): decided once.
            press = env.invoke("t-no", reject, BOB)
            first = notice(await env.fake.press(env.endpoint, press))
            again = notice(await env.fake.press(env.endpoint, press))
            assert {first, again} <= {"❌ Rejected", STILL}, (first, again)
            await until(lambda: env.presses("applied") + env.presses("duplicate") == 2, what="both presses")
            decisions = await env.pipeline.control.decisions("t-no")
            assert [(d.action, d.person) for d in decisions] == [("reject", "bob")]
            assert env.presses("applied") == 1
            root.end()

    run(main())


def test_forged_tokens_and_a_foreign_service_url_are_refused_and_decide_nothing(tmp_path: Path) -> None:
    async def main() -> None:
        async with live(tmp_path) as env:
            root = env.ask("t-forged", "a1")
            approve = (await env.buttons("t-forged"))["✅ Approve"]
            fake = env.fake
            press = env.invoke("t-forged", approve, ALICE)
            now = fake.claims()
            forged = {
                "another key, its own kid": fake.sign(now, key=new_key("not-published")),
                "another key, the published kid": fake.sign(now, key=new_key(fake.keys[0].kid)),
                "another app's audience": fake.sign(fake.claims(aud="00000000-0000-0000-0000-0000000000ff")),
                "another issuer": fake.sign(fake.claims(iss="https://evil.example")),
                "expired": fake.sign(fake.claims(exp=int(now["iat"]) - 3600, nbf=int(now["iat"]) - 7200)),
                "alg none": jwt.encode(now, None, algorithm="none"),
                "HS256 with the public key's text": jwt.encode(now, "s" * 64, algorithm="HS256", headers={"kid": "k"}),
                "not a JWT": "garbage",
            }
            for what, token in forged.items():
                assert await fake.press(env.endpoint, press, token=token) == (401, None), what
            assert (await env.post(press, token=""))[0] == 401  # no Authorization header
            assert (await env.post(press, token="", Authorization="Basic YWxpY2U6cHc="))[0] == 401
            # A token that is the connector's, but the activity names another service: never followed.
            foreign = {**press, "serviceUrl": "https://evil.example/teams/"}
            assert await fake.press(env.endpoint, foreign) == (401, None)
            claimed = fake.sign(fake.claims(serviceurl="https://evil.example/teams/"))
            assert await fake.press(env.endpoint, foreign, token=claimed) == (401, None)
            assert await env.pipeline.control.decisions("t-forged") == []
            assert not [e for e in env.interventions() if e.task.task_id == "t-forged"]
            assert env.presses("unproven") == len(forged) + 4
            # And the connector's own press still decides.
            assert notice(await fake.press(env.endpoint, press)) in ("✅ Approved", STILL)
            await until(lambda: env.presses("applied") == 1, what="the real press")
            root.end()

    run(main())


def test_two_people_needed_count_as_people_whatever_the_channel(tmp_path: Path) -> None:
    async def main() -> None:
        async with live(tmp_path) as env:
            root = env.ask("t-two", "a1", **{cv.APPROVAL_APPROVERS: 2})
            await env.buttons("t-two")
            card = env.card("t-two")
            assert card is not None and "needs 2 people" in shown(card)
            # Alice by token (the control API), then alice again in Teams: one person.
            first = await env.pipeline.control.decide(
                Decision(
                    "tok-1",
                    "t-two",
                    "approve",
                    "alice",
                    1,
                    approval_id="a1",
                    person="alice",
                    verified=True,
                    proof="token",
                )
            )
            assert first.outcome == "applied" and first.votes == 1
            said = notice(await env.press("t-two", "✅ Approve", ALICE))
            assert "you already approved" in said or said == STILL, said
            assert await env.pipeline.control.decisions("t-two") == []
            said = notice(await env.press("t-two", "✅ Approve", BOB))
            assert said.startswith("✅") or said == STILL, said
            await until(lambda: len([e for e in env.interventions() if e.outcome == "applied"]) == 2, what="the votes")
            assert [d.person for d in await env.pipeline.control.decisions("t-two")] == ["bob"]  # the one that decided
            votes = [(e.decision.person, e.decision.proof) for e in env.interventions() if e.outcome == "applied"]
            assert votes == [("alice", "token"), ("bob", "teams")]
            root.end()

    run(main())


def test_show_all_posts_the_whole_masked_request_once_in_the_thread(tmp_path: Path) -> None:
    async def main() -> None:
        async with live(tmp_path) as env:
            script = "echo <step> && " * 400 + "rm -rf /tmp/the-end"
            action = json.dumps({"tool": "Bash", "arguments": {"command": script, "api_key": SECRET}})
            root = env.ask("t-long", "a1", **{cv.APPROVAL_ACTION: action})
            buttons = await env.buttons("t-long")
            assert set(buttons) == {"✅ Approve", "❌ Reject", "📄 Show all"}
            card = env.card("t-long")
            assert card is not None and "rm -rf /tmp/the-end" in shown(card)
            show = buttons["📄 Show all"]
            # Anyone may read (Mallory is in no file); pressed again and again, at once and after.
            answers = await asyncio.gather(
                *(env.fake.press(env.endpoint, env.invoke("t-long", show, MALLORY)) for _ in range(3))
            )
            answers.append(await env.fake.press(env.endpoint, env.invoke("t-long", show, BOB)))
            for answer in answers:
                assert notice(answer) in ("📄 The whole request is in the replies.", STILL), answer
            await until(lambda: env.presses("shown") == 4, what="every press's work to end")
            pieces = [shown(r) for r in env.replies("t-long") if shown(r).startswith("📄 Request")]
            total = int(pieces[0].split("\n")[0].rsplit(" ", 1)[1])
            assert 1 <= total <= 4 and len(pieces) == total, pieces  # each piece once
            assert [p.split("\n")[0] for p in pieces] == [f"📄 Request {n} of {total}" for n in range(1, total + 1)]
            whole = "".join(p.split("\n", 1)[1] for p in pieces)
            assert "echo <step>" in whole and "rm -rf /tmp/the-end" in whole and "&lt;" not in whole
            assert SECRET not in whole
            assert await env.pipeline.control.decisions("t-long") == []  # reading decides nothing
            root.end()

    run(main())


def test_malformed_bodies_are_answered_4xx_never_500(tmp_path: Path) -> None:
    async def main() -> None:
        async with live(tmp_path) as env:
            root = env.ask("t-bad", "a1")
            approve = (await env.buttons("t-bad"))["✅ Approve"]
            press = env.invoke("t-bad", approve, ALICE)
            assert (await env.post(b"not json"))[0] == 400
            assert (await env.post(b"\xff\xfe"))[0] == 400
            assert (await env.post([press]))[0] == 400
            assert (await env.post(b"[" * 100_000))[0] == 400  # nesting deep enough to break a parser
            for value in (None, "approve", {"action": "approve"}, {"action": {"verb": "spanvisor.approve"}}):
                body = (
                    {**press, "value": value} if value is not None else {k: v for k, v in press.items() if k != "value"}
                )
                status, answer = await env.post(body)
                assert status == 200 and answer["statusCode"] == 400, (value, answer)
                assert answer["type"] == "application/vnd.microsoft.error"
            # An invoke this bot does not handle, and a message to it: what Microsoft's SDKs answer.
            assert (await env.post({**press, "name": "composeExtension/query"}))[0] == 501
            assert await env.post({**press, "type": "message", "text": "hi"}) == (200, None)
            # Over 256 KB: 413, whether the size is declared or the body streams in chunks.
            big = json.dumps({**press, "pad": "x" * (257 * 1024)}).encode()
            assert (await env.post(big))[0] == 413

            async def chunks() -> AsyncIterator[bytes]:
                for _ in range(40):
                    yield b" " * 8192

            async with ClientSession(timeout=ClientTimeout(total=30)) as http:
                headers = {"Authorization": f"Bearer {env.fake.sign(env.fake.claims())}"}
                async with http.post(env.endpoint, data=chunks(), headers=headers) as resp:
                    assert resp.status == 413
            assert await env.pipeline.control.decisions("t-bad") == []
            assert env.presses("applied") == 0
            root.end()

    run(main())


def test_an_unproven_press_is_answered_in_time_and_its_work_is_bounded(tmp_path: Path) -> None:
    """The Bot Connector's keys are slow to come (held here until the test
    lets them): a press waits at most the answer's time and is answered 503,
    never decided later; at most 100 are worked on at once (the next is
    answered busy at once), counted until their work ends; then presses
    decide again."""

    async def main() -> None:
        fake = fast_fake()
        gate = asyncio.Event()

        async def slow_openid(request: web.Request) -> web.Response:
            await gate.wait()
            async with ClientSession() as http, http.get(fake.openid_url) as resp:
                return web.json_response(await resp.json())

        app = web.Application()
        app.router.add_get("/openid", slow_openid)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        openid = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}/openid"  # type: ignore[union-attr]
        try:
            async with live(tmp_path, fake, teams_openid_url=openid, teams_timeout_s=120.0) as env:
                root = env.ask("t-slow", "a1")
                approve = (await env.buttons("t-slow"))["✅ Approve"]
                waiting = [env.fake.press(env.endpoint, env.invoke("t-slow", approve, ALICE)) for _ in range(100)]
                answers = await asyncio.gather(*waiting)
                assert {status for status, _ in answers} == {503}, answers[:3]
                assert env.presses("slow") == 100
                # Their work still waits for the keys: the port takes no more.
                assert (await env.fake.press(env.endpoint, env.invoke("t-slow", approve, ALICE)))[0] == 503
                assert env.presses("busy") == 1
                gate.set()
                await until(lambda: fake.jwks_requests >= 1, what="the keys")

                # Proven once the keys came, but answered already: nothing decided.
                async def settled() -> None:
                    while True:
                        status, _ = await env.fake.press(env.endpoint, env.invoke("t-slow", approve, BOB))
                        if status != 503:
                            return
                        await asyncio.sleep(0.05)

                await asyncio.wait_for(settled(), 60)
                await until(lambda: env.presses("applied") == 1, what="bob's press")
                decisions = await env.pipeline.control.decisions("t-slow")
                assert [d.person for d in decisions] == ["bob"]
                root.end()
        finally:
            await runner.cleanup()

    run(main())


def test_a_press_by_the_buttons_fallback_decides_as_the_same_press(tmp_path: Path) -> None:
    """A client without Universal Actions sends the fallback's Action.Submit: a
    message whose value is the button's data. Proven the same way, it decides
    as the stored button says (Teams shows no notice for a message)."""

    async def main() -> None:
        async with live(tmp_path) as env:
            env.ask("t-submit", "a1", **{cv.APPROVAL_ACTION: ACTION})
            button = (await env.buttons("t-submit"))["❌ Reject"]
            activity = env.invoke("t-submit", button, ALICE)
            activity.update(type="message", value=button["fallback"]["data"])
            del activity["name"]
            status, answer = await env.fake.press(env.endpoint, activity)
            assert (status, answer) == (200, None)
            await until(lambda: env.presses("applied") == 1, what="the decision")
            decisions = await env.pipeline.control.decisions("t-submit")
            assert [(d.action, d.person) for d in decisions] == [("reject", "alice")]
            # Unproven, the same message decides nothing.
            activity["id"] = "f:another"
            status, _ = await env.fake.press(env.endpoint, activity, token=env.fake.sign(env.fake.claims(aud="x")))
            assert status == 401
            assert len(await env.pipeline.control.decisions("t-submit")) == 1

    run(main())


def test_a_comment_typed_under_the_question_is_the_decisions(tmp_path: Path) -> None:
    """Each request has a comment box (Slack's comment modal, in Teams'
    idiom); Teams merges every input of the card into a press's data, and
    the decision takes the box of the request pressed for only."""

    async def main() -> None:
        async with live(tmp_path) as env:
            env.ask("t-note", "a1", **{cv.APPROVAL_ACTION: ACTION})
            button = (await env.buttons("t-note"))["❌ Reject"]
            card = env.card("t-note")
            assert card is not None
            boxes = [box["id"] for box in inputs(card_of(card))]
            assert len(boxes) == 1
            others = {"comment-0000000000000000": "not this one"}
            activity = env.invoke("t-note", button, ALICE, **{boxes[0]: "  wrong cluster  "}, **others)
            await env.fake.press(env.endpoint, activity)
            await until(lambda: env.presses("applied") == 1, what="the decision")
            decisions = await env.pipeline.control.decisions("t-note")
            assert [(d.action, d.comment) for d in decisions] == [("reject", "wrong cluster")]

    run(main())
