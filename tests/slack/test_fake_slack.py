"""The fake Slack follows Slack's documented rules, so a client that passes
against it does not fail against Slack: conversation IDs where Slack wants
them, paged history and channel lists, chat.update's keep/clear rules, and
Block Kit checked per block type."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest
from slack_support import run
from tests.fakes.slack_api import FakeSlack, channel_id

AGENTS = channel_id("agents")


class Api:
    def __init__(self, fake: FakeSlack, session: aiohttp.ClientSession, token: str) -> None:
        self.fake, self.session, self.token = fake, session, token

    async def __call__(self, method: str, **args: Any) -> dict[str, Any]:
        """One call as slack_sdk makes it: JSON for writes, GET for reads."""
        url, auth = self.fake.base_url + method, {"Authorization": f"Bearer {self.token}"}
        if method.startswith("conversations."):
            params = {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in args.items()}
            async with self.session.get(url, params=params, headers=auth) as resp:
                assert resp.status == 200
                body: dict[str, Any] = await resp.json()
                return body
        async with self.session.post(url, json=args, headers=auth) as resp:
            assert resp.status == 200  # errors are HTTP 200 with ok: false, like Slack's
            body = await resp.json()
            return body


@asynccontextmanager
async def api(token: str = "xoxb-test", **kw: Any) -> AsyncIterator[Api]:
    fake = FakeSlack(channel_rate=1000, channel_burst=1000, **kw)
    await fake.start()
    try:
        async with aiohttp.ClientSession() as session:
            yield Api(fake, session, token)
    finally:
        await fake.stop()


def section(text: str, **kw: Any) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}, **kw}


def test_history_wants_a_conversation_id_and_pages_newest_first() -> None:
    async def main() -> None:
        async with api() as call:
            posted = [(await call("chat.postMessage", channel="#agents", text=f"m{i}"))["ts"] for i in range(5)]
            assert (await call("conversations.history", channel="#agents"))["error"] == "channel_not_found"
            assert (await call("conversations.history", channel="agents"))["error"] == "channel_not_found"
            pages, cursor = [], ""
            while True:
                args: dict[str, Any] = {"channel": AGENTS, "limit": 2, **({"cursor": cursor} if cursor else {})}
                body = await call("conversations.history", **args)
                assert body["ok"], body
                pages.append([m["ts"] for m in body["messages"]])
                cursor = body.get("response_metadata", {}).get("next_cursor", "")
                assert body["has_more"] == bool(cursor)
                if not body["has_more"]:
                    break
            assert pages == [posted[4:2:-1], posted[2:0:-1], posted[:1]]
            bad = await call("conversations.history", channel=AGENTS, cursor="not-a-cursor")
            assert bad["error"] == "invalid_cursor"
            # oldest bounds the pages; thread replies stay out of the channel's history.
            await call("chat.postMessage", channel=AGENTS, thread_ts=posted[0], text="reply")
            recent = await call("conversations.history", channel=AGENTS, oldest=posted[2], inclusive=True)
            assert [m["ts"] for m in recent["messages"]] == posted[:1:-1]

    run(main())


def test_history_shows_metadata_only_when_asked() -> None:
    async def main() -> None:
        async with api() as call:
            meta = {"event_type": "spanvisor_task", "event_payload": {"task_id": "t1"}}
            assert (await call("chat.postMessage", channel=AGENTS, text="x", metadata=meta))["ok"]
            plain = await call("conversations.history", channel=AGENTS)
            assert "metadata" not in plain["messages"][0]
            full = await call("conversations.history", channel=AGENTS, include_all_metadata=True)
            assert full["messages"][0]["metadata"] == meta

    run(main())


def test_conversations_list_pages_and_leaves_out_archived_channels() -> None:
    async def main() -> None:
        async with api(filler_channels=5) as call:
            await call("chat.postMessage", channel="#ops", text="x")  # names become channels
            names, cursor, pages = [], "", 0
            while True:
                body = await call(
                    "conversations.list", limit=3, exclude_archived=True, **({"cursor": cursor} if cursor else {})
                )
                assert body["ok"], body
                pages += 1
                names += [c["name"] for c in body["channels"]]
                cursor = body["response_metadata"]["next_cursor"]
                if not cursor:
                    break
            assert pages == 3 and "archived" not in names
            assert {"agents", "general", "ops"} <= set(names) and len(names) == len(set(names)) == 8
            every = await call("conversations.list", limit=1000)
            assert "archived" in [c["name"] for c in every["channels"]]

    run(main())


def test_methods_on_a_message_want_the_channel_id() -> None:
    async def main() -> None:
        async with api() as call:
            ts = (await call("chat.postMessage", channel="#agents", text="x"))["ts"]
            for method, args in (
                ("chat.update", {"ts": ts, "text": "y"}),
                ("chat.getPermalink", {"message_ts": ts}),
                ("chat.delete", {"ts": ts}),
            ):
                assert (await call(method, channel="#agents", **args))["error"] == "channel_not_found"
                assert (await call(method, channel=AGENTS, **args))["ok"]
            assert (await call("chat.postMessage", channel="C0NOSUCHID", text="x"))["error"] == "channel_not_found"

    run(main())


def test_update_keeps_what_it_leaves_out_except_blocks_when_text_is_sent() -> None:
    async def main() -> None:
        async with api() as call:
            blocks = [section("one", block_id="b1")]
            attachments = [{"color": "#2e7d32", "blocks": [section("att", block_id="a1")]}]
            meta = {"event_type": "spanvisor_task", "event_payload": {"task_id": "t"}}
            ts = (
                await call(
                    "chat.postMessage", channel=AGENTS, text="t0", blocks=blocks, attachments=attachments, metadata=meta
                )
            )["ts"]
            (msg,) = call.fake.parents()

            assert (await call("chat.update", channel=AGENTS, ts=ts, text="t1", blocks=[section("two")]))["ok"]
            assert msg.attachments == attachments and msg.metadata == meta  # left out: kept
            assert msg.blocks[0]["text"]["text"] == "two"

            assert (await call("chat.update", channel=AGENTS, ts=ts, blocks=[section("three")]))["ok"]
            assert msg.text == "t1"  # text left out: kept

            assert (await call("chat.update", channel=AGENTS, ts=ts, text="t2"))["ok"]
            assert msg.blocks == [] and msg.attachments == attachments  # text without blocks: blocks go

            assert (await call("chat.update", channel=AGENTS, ts=ts, text="t3", attachments=[]))["ok"]
            assert msg.attachments == []  # only an empty list clears attachments

    run(main())


BUTTON = {"type": "button", "text": {"type": "plain_text", "text": "Go"}, "url": "https://x.example"}
IMAGE_EL = {"type": "image", "image_url": "https://x.example/i.png", "alt_text": "i"}
TEXT = {"type": "mrkdwn", "text": "t"}
RICH_OK = {
    "type": "rich_text",
    "elements": [
        {"type": "rich_text_section", "elements": [{"type": "text", "text": "hi"}, {"type": "emoji", "name": "wave"}]},
        {"type": "rich_text_list", "style": "bullet", "elements": [{"type": "rich_text_section", "elements": []}]},
        {"type": "rich_text_preformatted", "elements": [{"type": "text", "text": "code"}]},
    ],
}
TASK_CARD = {"type": "task_card", "task_id": "t1", "title": "Fetch", "status": "in_progress"}


@pytest.mark.parametrize(
    ("blocks", "error"),
    [
        ([{"type": "context", "elements": [BUTTON]}], "invalid_blocks"),
        ([{"type": "context", "elements": [TEXT] * 11}], "invalid_blocks"),
        ([{"type": "actions", "elements": [TEXT]}], "invalid_blocks"),
        ([{"type": "actions", "elements": [BUTTON] * 26}], "invalid_blocks"),
        (
            [{"type": "actions", "elements": [{**BUTTON, "action_id": "a"}, {**BUTTON, "action_id": "a"}]}],
            "invalid_blocks",
        ),
        ([{"type": "section", "fields": [TEXT] * 11}], "invalid_blocks"),
        ([{"type": "section", "fields": [{"type": "mrkdwn", "text": "x" * 2001}]}], "invalid_blocks"),
        ([{"type": "section", "text": {"type": "mrkdwn", "text": "x" * 3001}}], "invalid_blocks"),
        ([{"type": "section", "text": TEXT, "accessory": TEXT}], "invalid_blocks"),
        ([{"type": "header", "text": {"type": "mrkdwn", "text": "h"}}], "invalid_blocks"),
        ([{"type": "header", "text": {"type": "plain_text", "text": "h" * 151}}], "invalid_blocks"),
        ([section("a", block_id="x" * 256)], "invalid_blocks"),
        ([section("a", block_id="same"), section("b", block_id="same")], "invalid_blocks"),
        ([section(str(i)) for i in range(51)], "invalid_blocks"),
        ([{"type": "image", "image_url": "https://x.example/i.png"}], "invalid_blocks"),
        ([{"type": "image", "alt_text": "a", "image_url": "https://x", "slack_file": {"id": "F1"}}], "invalid_blocks"),
        ([{"type": "image", "alt_text": "a"}], "invalid_blocks"),
        ([{"type": "rich_text", "elements": []}], "invalid_blocks"),
        ([{"type": "rich_text", "elements": [{"type": "rich_text_list", "elements": []}]}], "invalid_blocks"),
        (
            [{"type": "rich_text", "elements": [{"type": "rich_text_section", "elements": [{"type": "text"}]}]}],
            "invalid_blocks",
        ),
        ([{"type": "rich_text", "elements": [{"type": "text", "text": "bare"}]}], "invalid_blocks"),
        ([{"type": "plan", "title": "p", "tasks": [TASK_CARD]}, TASK_CARD], "invalid_blocks"),
        ([{**TASK_CARD, "status": "completed"}], "invalid_blocks"),
        ([{"type": "carousel"}], "invalid_blocks"),
        ([section("x" * 2900, block_id=f"b{i}") for i in range(5)], "msg_blocks_too_long"),
        ("not a list", "invalid_blocks_format"),
    ],
)
def test_blocks_slack_rejects_are_rejected_with_http_200_ok_false(blocks: Any, error: str) -> None:
    async def main() -> None:
        async with api() as call:
            body = await call("chat.postMessage", channel=AGENTS, text="fallback", blocks=blocks)
            assert body == {"ok": False, "error": error}
            # Inside an attachment the same rules hold.
            if isinstance(blocks, list):
                att = await call("chat.postMessage", channel=AGENTS, text="f", attachments=[{"blocks": blocks}])
                assert att == {"ok": False, "error": error}
            assert call.fake.parents() == []

    run(main())


@pytest.mark.parametrize(
    "blocks",
    [
        [{"type": "context", "elements": [TEXT, IMAGE_EL, {"type": "plain_text", "text": "p"}]}],
        [{"type": "actions", "elements": [BUTTON, {"type": "static_select", "action_id": "s"}]}],
        [{"type": "section", "text": TEXT, "accessory": IMAGE_EL}, {"type": "divider"}],
        [
            {
                "type": "image",
                "image_url": "https://x.example/i.png",
                "alt_text": "i",
                "title": {"type": "plain_text", "text": "t"},
            }
        ],
        [RICH_OK],
        [{"type": "plan", "title": "Plan", "tasks": [TASK_CARD, {**TASK_CARD, "task_id": "t2", "output": RICH_OK}]}],
        [{"type": "markdown", "text": "**bold**"}],
    ],
)
def test_blocks_slack_accepts_are_accepted(blocks: list[dict[str, Any]]) -> None:
    async def main() -> None:
        async with api() as call:
            body = await call("chat.postMessage", channel=AGENTS, text="fallback", blocks=blocks)
            assert body["ok"], body

    run(main())


@pytest.mark.parametrize(
    "metadata",
    [
        {"event_payload": {"task_id": "t"}},
        {"event_type": "", "event_payload": {}},
        {"event_type": "spanvisor_task"},
        {"event_type": "spanvisor_task", "event_payload": ["t"]},
        "spanvisor_task",
    ],
)
def test_message_metadata_needs_an_event_type_and_a_payload_object(metadata: Any) -> None:
    async def main() -> None:
        async with api() as call:
            body = await call("chat.postMessage", channel=AGENTS, text="x", metadata=metadata)
            assert body == {"ok": False, "error": "invalid_metadata_format"}
            ts = (await call("chat.postMessage", channel=AGENTS, text="x"))["ts"]
            edit = await call("chat.update", channel=AGENTS, ts=ts, text="y", metadata=metadata)
            assert edit == {"ok": False, "error": "invalid_metadata_format"}

    run(main())
