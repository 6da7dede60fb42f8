"""Approvals from Telegram, with a real pipeline and its control log: the
question with its buttons, a press by a person the deciders file names,
the decision in place; an account the file does not name, a forged button,
a replayed press; two people needed, counted as people across channels."""

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

from aiohttp import ClientSession, web
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import Span, Tracer

from spanvisor.events import Decision, HumanIntervention
from spanvisor.otel.processor import SpanvisorSpanProcessor
from spanvisor.pipeline.pipeline import Pipeline
from spanvisor.receiver.admin import make_app
from spanvisor.spans import conventions as cv
from spanvisor.statestores.memory import InMemoryStateStore
from spanvisor.testing import InMemorySink
from spanvisor_telegram import TelegramSink
from tests.fakes.telegram_api import FakeTelegram
from tests.telegram.telegram_support import FAST, GROUP, telegram_config

T = TypeVar("T")
SECRET = "s3cret-token_for-the-webhook"
ALICE, BOB, MALLORY = 1001, 1002, 6666
DECIDERS = f"""
[people.alice]
telegram_user = {ALICE}
groups = ["sre"]

[people.bob]
telegram_user = {BOB}
"""
ACTION = json.dumps(
    {"tool": "Bash", "arguments": {"command": "kubectl apply -f prod.yaml", "token": "sk-live-abcdef0123456789abcdef"}}
)


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(asyncio.wait_for(coro, 90))


async def until(condition: Any, timeout: float = 20.0, what: str = "") -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not condition():
        assert loop.time() < end, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


@dataclass
class Live:
    fake: FakeTelegram
    pipeline: Pipeline
    memory: InMemorySink
    tracer: Tracer

    def ask(self, task_id: str, approval_id: str, **attrs: Any) -> Span:
        root = self.tracer.start_span("deploy", attributes={cv.TASK_NAME: f"Deploy {task_id}", cv.TASK_ID: task_id})
        root.add_event(
            cv.EVENT_APPROVAL_REQUEST, {cv.APPROVAL_ID: approval_id, cv.APPROVAL_QUESTION: "Deploy to prod?", **attrs}
        )
        return root

    def message(self, task_id: str) -> dict[str, Any] | None:
        for m in self.fake.chats[GROUP].messages.values():
            if "reply_to_message" not in m and f"Deploy {task_id}" in m["text"]:
                return m
        return None

    async def buttons(self, task_id: str) -> dict[str, str]:
        await until(lambda: (m := self.message(task_id)) is not None and m.get("reply_markup"), what="the buttons")
        m = self.message(task_id)
        assert m is not None
        return {b["text"]: b["callback_data"] for row in m["reply_markup"]["inline_keyboard"] for b in row}

    def answers(self) -> list[str]:
        return [str(c.args.get("text")) for c in self.fake.calls_to("answerCallbackQuery", ok=True)]

    def interventions(self) -> list[HumanIntervention]:
        return [e for e in self.memory.events if isinstance(e, HumanIntervention)]


@asynccontextmanager
async def live(tmp_path: Path, *, webhook: bool = False, **overrides: Any) -> AsyncIterator[Live]:
    """A pipeline with the Telegram sink taking presses by long polling, or
    with ``webhook`` by serve's admin app (on a socket bound first, so the
    address Telegram is told exists before the pipeline starts)."""
    fake = FakeTelegram(chat_per_second=100.0, chat_burst=100, group_per_minute=6000)
    await fake.start()
    fake.chat(GROUP, "supergroup")
    deciders = tmp_path / "deciders.toml"
    deciders.write_text(DECIDERS)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    if webhook:
        url = f"http://127.0.0.1:{sock.getsockname()[1]}/telegram/updates"
        overrides = {
            "telegram_updates": "webhook",
            "telegram_webhook_url": url,
            "telegram_webhook_secret": SECRET,
            **overrides,
        }
    config = telegram_config(fake.base_url, **{**FAST, **overrides}).with_values(
        deciders_file=str(deciders), shutdown_timeout_s=3.0
    )
    memory = InMemorySink()
    pipeline = Pipeline(config, sinks=[TelegramSink(), memory], state_store=InMemoryStateStore()).start()
    provider = TracerProvider(shutdown_on_exit=False)
    runner = web.AppRunner(make_app(SimpleNamespace(pipeline=pipeline), lambda: (True, "ok")), access_log=None)  # type: ignore[arg-type]
    try:
        assert await asyncio.to_thread(pipeline.wait_ready, 10)
        await runner.setup()
        await web.SockSite(runner, sock).start()
        provider.add_span_processor(SpanvisorSpanProcessor(pipeline=pipeline))
        yield Live(fake, pipeline, memory, provider.get_tracer("agent"))
        # One reader of the bot's updates, the way it was told: never a poll that conflicts.
        assert not [c for c in fake.calls if c.method == "getUpdates" and c.status != 200]
        assert not webhook or not fake.calls_to("getUpdates")
    finally:
        await runner.cleanup()
        sock.close()
        await asyncio.to_thread(pipeline.shutdown, 5)
        await fake.stop()


def test_a_named_person_approves_with_a_press_and_the_message_shows_it(tmp_path: Path) -> None:
    async def main() -> None:
        async with live(tmp_path) as env:
            root = env.ask("t-ok", "a1", **{cv.APPROVAL_ACTION: ACTION})
            buttons = await env.buttons("t-ok")
            assert set(buttons) == {"✅ Approve", "❌ Reject"}
            shown = env.message("t-ok")
            assert shown is not None and "Deploy to prod?" in shown["text"] and "kubectl apply" in shown["text"]
            assert "sk-live-abcdef0123456789abcdef" not in json.dumps(shown)  # the secret is masked
            await env.fake.press(GROUP, shown["message_id"], buttons["✅ Approve"], ALICE, name="bob")
            await until(lambda: any("Approved" in a for a in env.answers()), what="the answer")
            decisions = await env.pipeline.control.decisions("t-ok")
            assert [(d.action, d.person, d.proof, d.verified) for d in decisions] == [
                ("approve", "alice", "telegram", True)
            ]
            # The name Telegram gave ("bob") is the presser's own choosing: the file's name is shown.
            assert decisions[0].actor_name == "alice"
            await until(lambda: not (env.message("t-ok") or {}).get("reply_markup"), what="the buttons to go")
            root.end()
            await until(
                lambda: any(
                    "Approved" in r["text"] for r in env.fake.chats[GROUP].messages.values() if "reply_to_message" in r
                ),
                what="the reply",
            )

    run(main())


def test_an_unnamed_account_a_forged_button_and_a_replay_decide_nothing(tmp_path: Path) -> None:
    async def main() -> None:
        async with live(tmp_path) as env:
            root = env.ask("t-no", "a1")
            buttons = await env.buttons("t-no")
            shown = env.message("t-no")
            assert shown is not None
            await env.fake.press(GROUP, shown["message_id"], buttons["✅ Approve"], MALLORY, name="alice")
            await until(lambda: any("Not allowed" in a for a in env.answers()), what="the refusal")
            await until(lambda: any(e.outcome == "denied" for e in env.interventions()), what="the audit")
            denied = [e for e in env.interventions() if e.outcome == "denied"]
            assert denied and denied[0].decision.actor_id == f"telegram:{MALLORY}" and denied[0].decision.person is None
            await env.fake.press(GROUP, shown["message_id"], "sv1:" + "A" * 22, ALICE)
            await env.fake.press(GROUP, shown["message_id"], json.dumps({"approve": "t-no"})[:60], ALICE)
            await until(lambda: sum("not one spanvisor knows" in a for a in env.answers()) == 2, what="two unknowns")
            assert await env.pipeline.control.decisions("t-no") == []
            # The same press delivered twice (a poller that died before confirming): applied once.
            qid = await env.fake.press(GROUP, shown["message_id"], buttons["❌ Reject"], BOB)
            await until(lambda: any("Rejected" in a for a in env.answers()), what="the reject")
            await env.pipeline.control.decide(
                Decision(f"telegram-{qid}", "t-no", "reject", f"telegram:{BOB}", 1, approval_id="a1", source="telegram")
            )
            assert [d.action for d in await env.pipeline.control.decisions("t-no")] == ["reject"]
            root.end()

    run(main())


def test_two_people_needed_count_as_people_whatever_the_channel(tmp_path: Path) -> None:
    async def main() -> None:
        async with live(tmp_path) as env:
            root = env.ask("t-two", "a1", **{cv.APPROVAL_APPROVERS: 2})
            buttons = await env.buttons("t-two")
            shown = env.message("t-two")
            assert shown is not None and "needs 2 people" in shown["text"]
            # Alice by token (the control API), then alice again in Telegram: one person.
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
            await env.fake.press(GROUP, shown["message_id"], buttons["✅ Approve"], ALICE)
            await until(lambda: any("you already approved" in a for a in env.answers()), what="alice's vote refused")
            await env.fake.press(GROUP, shown["message_id"], buttons["✅ Approve"], BOB)
            await until(lambda: any(a.startswith("✅") for a in env.answers()), what="bob's vote")
            assert [d.person for d in await env.pipeline.control.decisions("t-two")] == ["bob"]  # the one that decided
            await until(lambda: len([e for e in env.interventions() if e.outcome == "applied"]) == 2, what="the votes")
            votes = [(e.decision.person, e.decision.proof) for e in env.interventions() if e.outcome == "applied"]
            assert votes == [("alice", "token"), ("bob", "telegram")]
            root.end()

    run(main())


def test_a_long_action_is_whole_one_press_away_masked_and_shown_once(tmp_path: Path) -> None:
    async def main() -> None:
        async with live(tmp_path) as env:
            script = "echo <step> && " * 400 + "rm -rf /tmp/the-end"
            action = json.dumps(
                {"tool": "Bash", "arguments": {"command": script, "api_key": "sk-live-abcdef0123456789abcdef"}}
            )
            root = env.ask("t-long", "a1", **{cv.APPROVAL_ACTION: action})
            buttons = await env.buttons("t-long")
            assert set(buttons) == {"✅ Approve", "❌ Reject", "📄 Show all"}
            shown = env.message("t-long")
            assert shown is not None and "rm -rf /tmp/the-end" in shown["text"] and "characters …" in shown["text"]
            for _ in range(2):
                await env.fake.press(GROUP, shown["message_id"], buttons["📄 Show all"], MALLORY)
            await until(lambda: sum("whole request" in a for a in env.answers()) == 2, what="both presses answered")
            pieces = [m["text"] for m in env.fake.chats[GROUP].messages.values() if m["text"].startswith("📄 Request")]
            assert 1 < len(pieces) <= 4 and pieces[0].startswith("📄 Request 1 of")
            whole = "".join(p.split("\n", 1)[1] for p in pieces)
            assert "&lt;" not in whole and "echo <step>" in whole and "rm -rf /tmp/the-end" in whole
            assert "sk-live-abcdef0123456789abcdef" not in whole
            assert await env.pipeline.control.decisions("t-long") == []  # reading decides nothing
            root.end()

    run(main())


def test_presses_by_webhook_need_the_secret_token_and_decide_once(tmp_path: Path) -> None:
    """Telegram POSTs presses to serve's admin port with the secret token:
    a POST without it or with another is refused before anything is read;
    a press that comes with it decides as the file's person; the same
    update POSTed again (Telegram's retry, or a replay) decides nothing more."""

    async def main() -> None:
        async with live(tmp_path, webhook=True) as env:
            assert env.fake.webhook is not None and env.fake.webhook["secret_token"] == SECRET
            root = env.ask("t-hook", "a1")
            buttons = await env.buttons("t-hook")
            shown = env.message("t-hook")
            assert shown is not None
            url = env.fake.webhook["url"]
            forged = {
                "update_id": 1,
                "callback_query": {"id": "f1", "from": {"id": ALICE}, "message": shown, "data": buttons["✅ Approve"]},
            }
            async with ClientSession() as http:
                for headers in ({}, {"X-Telegram-Bot-Api-Secret-Token": "guess"}):
                    async with http.post(url, json=forged, headers=headers) as resp:
                        assert resp.status == 401
                async with http.post(
                    url, data=b"not json", headers={"X-Telegram-Bot-Api-Secret-Token": SECRET}
                ) as resp:
                    assert resp.status == 400
            assert await env.pipeline.control.decisions("t-hook") == []
            await env.fake.press(GROUP, shown["message_id"], buttons["✅ Approve"], ALICE)
            await until(lambda: any("Approved" in a for a in env.answers()), what="the approval")
            headers, update = env.fake.webhook_posts[-1]
            async with ClientSession() as http, http.post(url, json=update, headers=headers) as resp:
                assert resp.status == 200  # taken, and dropped as a replay
            stats = env.pipeline.stats
            await until(lambda: stats.value("telegram_presses_total", outcome="replay") == 1, what="the replay")
            decisions = await env.pipeline.control.decisions("t-hook")
            assert [(d.person, d.proof) for d in decisions] == [("alice", "telegram")]
            assert env.pipeline.stats.value("telegram_presses_total", outcome="bad_secret") == 2
            root.end()

    run(main())


def test_a_press_counts_when_the_chat_is_configured_in_another_spelling(tmp_path: Path) -> None:
    """A press names its chat by Telegram's id; a chat configured otherwise
    (here ``-0001001`` for ``-1001``; a ``@channel`` likewise) is asked once
    for its id, and the buttons are bound to that."""

    async def main() -> None:
        async with live(tmp_path, telegram_chat="-0001001") as env:
            root = env.ask("t-spelt", "a1")
            buttons = await env.buttons("t-spelt")
            shown = env.message("t-spelt")
            assert shown is not None
            await env.fake.press(GROUP, shown["message_id"], buttons["✅ Approve"], ALICE)
            await until(lambda: any("Approved" in a for a in env.answers()), what="the approval")
            root.end()

    run(main())
