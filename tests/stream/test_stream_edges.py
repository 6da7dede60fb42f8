"""The stream's edges on a real receiver: a resume position past the newest
event gets the ``reset`` a too-old one gets (never silence), with the memory
feed and with the PostgreSQL feed; malformed filters get a 400 naming the
parameter; a decision's intervention event says whether it was applied or
refused, and why."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import aiohttp

from spanvisor.events import HumanIntervention, TaskFinished
from tests.receiver.agent_traces import task_spans
from tests.stream._sse import read, run
from tests.stream.conftest import AUTH, TOKEN, Served, kw, serve_stream
from tests.waiting import wait_until


def _settled(s: Served, n: int) -> None:
    wait_until(lambda: len(s.sink.of_type(TaskFinished)) == n, what=f"{n} tasks")
    wait_until(lambda: s.stream.ring is not None and s.stream.ring.head >= len(s.sink.events), what="the ring")


def _future_resets(s: Served) -> None:
    """A position past the head, as ``after`` and as ``Last-Event-ID``: a
    reset whose id resumes from now, and the stream goes on from there."""
    epoch, head = s.head().split(":")
    # Just ahead, and a position no feed can hold (30 digits: past a bigint).
    for ahead in (f"{epoch}:{int(head) + 1000}:x", f"{epoch}:{'9' * 30}:x"):
        for how in ({"url": f"{s.events_url}?after={ahead}"}, {"url": s.events_url, "id": ahead}):
            headers = {**AUTH, "Last-Event-ID": how["id"]} if "id" in how else dict(AUTH)
            frames, _ = run(read(how["url"], until=lambda f: len(f) >= 1, headers=headers))
            assert frames and frames[0].event == "reset", frames
            assert "newer" in frames[0].doc["reason"] and frames[0].id == s.head() + ":"
    # Resuming from the reset's id reads what comes next, nothing skipped.
    start = s.head()
    before = len(s.sink.events)
    s.post(task_spans(1, seed=72))
    _settled(s, 3)
    frames, _ = run(read(f"{s.events_url}?after={start}", until=finished, **kw()))
    assert [f.event_id for f in frames] == [e.event_id for e in s.sink.events[before:]]


def finished(frames: list[Any]) -> bool:
    return any(f.event == "task_finished" for f in frames)


def test_a_position_past_the_newest_event_gets_a_reset(served: Served) -> None:
    served.head()  # a client's position: the stream is read, so it is recorded
    served.post(task_spans(2, seed=71))
    _settled(served, 2)
    # The newest position itself is no edge: it resumes quietly.
    frames, _ = run(read(f"{served.events_url}?after={served.head()}", idle=0.5, **kw()))
    assert frames == []
    _future_resets(served)


def test_a_position_past_the_newest_event_gets_a_reset_with_the_postgres_feed(pg_server: Any, tmp_path: Path) -> None:
    s = serve_stream(tmp_path, SPANVISOR_DATABASE_URL=pg_server.database(), SPANVISOR_STREAM_FEED="postgres")
    try:
        s.head()  # a client's position: the stream is read, so it is recorded
        s.post(task_spans(2, seed=73))
        _settled(s, 2)
        frames, _ = run(read(f"{s.events_url}?after={s.head()}", idle=0.5, **kw()))
        assert frames == []
        _future_resets(s)
    finally:
        s.receiver.close()


MALFORMED = [
    ("kind=,", {}, "kind"),
    ("kind=", {}, "kind"),
    ("kind=checkpoint,", {}, "kind"),
    ("kind=checkpoint,nonsense", {}, "kind"),
    ("kind=checkpoint&kind=", {}, "kind"),
    ("task=", {}, "task"),
    ("task=a,,b", {}, "task"),
    ("task=" + "t" * 300, {}, "task"),
    ("task=a%01b", {}, "task"),
    ("agent=,", {}, "agent"),
    ("status=", {}, "status"),
    ("status=odd", {}, "status"),
    ("after=garbage", {}, "after"),
    ("after=p1:x", {}, "after"),
    ("", {"Last-Event-ID": "garbage"}, "Last-Event-ID"),
]


def test_malformed_filters_are_a_400_naming_the_parameter(served: Served) -> None:
    async def get(query: str, headers: dict[str, str]) -> tuple[int, str, str]:
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"{served.events_url}?{query}", headers={**AUTH, **headers}) as r,
        ):
            return r.status, r.headers["Content-Type"], await r.text()

    for query, headers, parameter in MALFORMED:
        status, ctype, text = run(get(query, headers))
        assert status == 400 and ctype.startswith("application/json"), (query, status, text)
        doc = json.loads(text)
        assert doc["parameter"] == parameter and parameter in doc["error"], (query, doc)


def test_a_parameter_given_twice_takes_both_values(served: Served) -> None:
    start = served.head()
    served.post(task_spans(2, seed=74))
    _settled(served, 2)

    def fetch(query: str) -> list[str]:
        frames, _ = run(read(f"{served.events_url}?after={start}&{query}", idle=0.5, **kw()))
        return [f.event_id for f in frames]

    both = fetch("kind=task_started,task_finished")
    assert len(both) == 4 and fetch("kind=task_started&kind=task_finished") == both


def _emit_start(base: str, task: str) -> None:
    from spanvisor.cli.main import main

    argv = ["emit", "start", "--task", task, "--agent", "sh", "--name", "n", "--endpoint", base, "--token", TOKEN]
    assert main(argv) == 0


def _decide(base: str, task: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    req = urllib.request.Request(
        f"{base}/v1/control/tasks/{task}/decisions",
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Content-Type": "application/json", **AUTH},
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_an_intervention_event_says_whether_it_was_applied_or_refused(served: Served) -> None:
    start = served.head()
    base = served.base
    _emit_start(base, "T-iv")
    wait_until(lambda: served.sink.events, what="the task's start")
    # Acknowledging a running task is refused; cancelling it is applied.
    status, doc = _decide(base, "T-iv", {"action": "acknowledge", "actor": "alice", "intervention_id": "iv-no"})
    assert status == 409 and doc["outcome"] == "denied" and doc["code"], doc
    code = doc["code"]
    status, doc = _decide(base, "T-iv", {"action": "cancel", "actor": "bob", "intervention_id": "iv-yes"})
    assert status == 200 and doc["outcome"] == "applied", doc

    async def go() -> list[Any]:
        frames, _ = await read(
            f"{served.events_url}?after={start}&kind=intervention", until=lambda f: len(f) >= 2, **kw()
        )
        return frames

    frames = run(go())
    by_id = {f.event_id: f.doc for f in frames}
    refused, applied = by_id["iv-no"], by_id["iv-yes"]
    assert refused["outcome"] == "denied" and refused["code"] == code and refused["reason"], refused
    assert applied["outcome"] == "applied" and applied["code"] is None, applied
    # The fields consumers had before are all still there.
    for doc in (refused, applied):
        assert {"type", "v", "intervention_id", "task_id", "action", "actor", "time", "source", "task"} <= set(doc)
    deadline = time.monotonic() + 30  # the memory sink is a sink of its own: it may follow the stream
    while True:
        events = {e.event_id: e for e in served.sink.of_type(HumanIntervention)}
        if {"iv-no", "iv-yes"} <= events.keys() or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert events["iv-no"].outcome == "denied" and events["iv-yes"].outcome == "applied"
