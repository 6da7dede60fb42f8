"""GET /v1/events on a real receiver, read by aiohttp's client: every event
of the pipeline, in order, as its public body; filters, tokens, limits."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import aiohttp

from spanvisor.events import Event, TaskFinished
from spanvisor.stream.body import body, kind_of
from tests.receiver.agent_traces import task_spans
from tests.stream._sse import Frame, read, run
from tests.stream.conftest import AUTH, TOKEN, Served, kw, serve_stream
from tests.waiting import wait_until


def finished(frames: list[Frame], n: int) -> bool:
    return sum(f.event == "task_finished" for f in frames) >= n


def expected(events: list[Event]) -> list[tuple[str, str, dict[str, object]]]:
    return [(e.event_id, kind_of(e), body(e)) for e in events]


def seen(frames: list[Frame]) -> list[tuple[str, str, dict[str, object]]]:
    return [(f.event_id, f.event, f.doc) for f in frames]


def test_a_client_sees_every_event_in_order_as_its_public_body(served: Served) -> None:
    url = f"{served.events_url}?after={served.head()}"

    async def go() -> list[Frame]:
        reader = asyncio.ensure_future(read(url, until=lambda f: finished(f, 3), **kw()))
        await asyncio.sleep(0.2)
        await asyncio.to_thread(served.post, task_spans(3, seed=7))
        frames, _ = await reader
        return frames

    frames = run(go())
    wait_until(lambda: len(served.sink.of_type(TaskFinished)) == 3, what="the in-memory sink")
    assert seen(frames) == expected(served.sink.events)
    assert all(f.id is not None and f.id.startswith(served.head().split(":")[0] + ":") for f in frames)
    # The admin port serves the same stream, from the same positions.
    again, _ = run(read(f"{served.admin_events_url}?after={frames[0].id}", until=lambda f: finished(f, 3), **kw()))
    assert seen(again) == seen(frames)[1:]


def test_filters_pick_tasks_agents_kinds_and_statuses(served: Served) -> None:
    start = served.head()
    served.post(task_spans(2, seed=8))
    wait_until(lambda: len(served.sink.of_type(TaskFinished)) == 2, what="two tasks")
    wait_until(
        lambda: served.stream.ring is not None and served.stream.ring.head >= len(served.sink.events), what="ring"
    )
    every = served.sink.events

    def fetch(query: str) -> list[str]:
        # The stream stays open: everything up to now is what came before it went quiet.
        frames, _ = run(read(f"{served.events_url}?after={start}&{query}", idle=0.5, **kw()))
        return [f.event_id for f in frames]

    one = every[0].task_id
    assert fetch(f"task={one}") == [e.event_id for e in every if e.task_id == one]
    assert fetch("kind=task_started,task_finished") == [
        e.event_id for e in every if kind_of(e) in ("task_started", "task_finished")
    ]
    assert fetch("agent=nobody") == []
    assert fetch("agent=rivet&kind=checkpoint") == [e.event_id for e in every if kind_of(e) == "checkpoint"]
    assert fetch("status=complete") == [e.event_id for e in every if e.task.status == "complete"]


def test_bad_requests_are_refused_clearly(served: Served) -> None:
    async def status(url: str, headers: dict[str, str] | None = None) -> tuple[int, str]:
        async with aiohttp.ClientSession() as s, s.get(url, headers=headers or {}) as r:
            return r.status, await r.text()

    assert run(status(served.events_url))[0] == 401
    assert run(status(served.admin_events_url, {"Authorization": "Bearer wrong"}))[0] == 401
    code, text = run(status(served.events_url + "?kind=nonsense", AUTH))
    assert code == 400 and "task_started" in json.loads(text)["error"]
    assert run(status(served.events_url + "?status=odd", AUTH))[0] == 400
    assert run(status(served.events_url, {**AUTH, "Last-Event-ID": "garbage"}))[0] == 400


def test_a_position_the_stream_no_longer_holds_gets_a_reset(tmp_path: Path) -> None:
    s = serve_stream(tmp_path, SPANVISOR_STREAM_BUFFER="5")
    try:
        start = s.head()
        s.post(task_spans(2, seed=9))
        wait_until(lambda: len(s.sink.of_type(TaskFinished)) == 2, what="two tasks")
        frames, _ = run(read(f"{s.events_url}?after={start}", until=lambda f: len(f) >= 1, **kw()))
        assert frames[0].event == "reset" and frames[0].doc["type"] == "spanvisor.reset"
        # The reset's id resumes from now: nothing is replayed twice after it.
        assert frames[0].id == s.head() + ":"
        other, _ = run(
            read(s.events_url, until=lambda f: len(f) >= 1, **kw(headers={**AUTH, "Last-Event-ID": "mdead:3:x"}))
        )
        assert other[0].event == "reset"
    finally:
        s.receiver.close()


def test_the_connection_cap_per_token(tmp_path: Path) -> None:
    s = serve_stream(tmp_path, SPANVISOR_STREAM_MAX_CLIENTS="2")
    try:

        async def go() -> int:
            async with aiohttp.ClientSession() as session:
                a = await session.get(s.events_url, headers=AUTH)
                b = await session.get(s.events_url, headers=AUTH)
                # The same token written otherwise is the same token's slot.
                c = await session.get(s.events_url, headers={"Authorization": f"bearer   {TOKEN}"})
                codes = (a.status, b.status, c.status)
                for r in (a, b, c):
                    r.close()
                assert codes[:2] == (200, 200)
                return codes[2]

        assert run(go()) == 429
    finally:
        s.receiver.close()


def test_an_idle_stream_gets_heartbeat_comments(tmp_path: Path) -> None:
    s = serve_stream(tmp_path, SPANVISOR_STREAM_HEARTBEAT="0.2")
    try:

        async def go() -> bytes:
            got = b""
            async with aiohttp.ClientSession() as session, session.get(s.events_url, headers=AUTH) as r:
                while got.count(b": heartbeat\n\n") < 2:
                    got += await asyncio.wait_for(r.content.read(4096), 5)
            return got

        raw = run(go())
        assert raw.startswith(b"retry: 2000\n") and b"event:" not in raw
    finally:
        s.receiver.close()


def test_a_frame_carries_an_event_id_in_any_script() -> None:
    """A person's decision id is any printable text: its frame is UTF-8, as
    SSE is, so one such id cannot stop the stream."""
    from spanvisor.stream.ring import Item, frame

    item = Item(
        event_id="approve-José-✓", kind="human_intervention", task_id="t", agent_id=None, status=None, data=b"{}"
    )
    assert frame("p1", 7, item) == "id: p1:7:approve-José-✓\nevent: human_intervention\ndata: {}\n\n".encode()
