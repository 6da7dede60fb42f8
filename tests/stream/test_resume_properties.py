"""Disconnects anywhere, resumes with Last-Event-ID: the union of what a
client saw is the pipeline's event list, in order, with no gap and no
duplicate (hypothesis over the points where the connection drops, even
inside a frame, while spans keep arriving)."""

from __future__ import annotations

import asyncio
import itertools
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spanvisor.events import TaskFinished
from tests.core._invariants import check_stream
from tests.stream._sse import Frame, read, run
from tests.stream.conftest import AUTH, Served, serve_stream, tasks
from tests.waiting import wait_until

_seeds = itertools.count(100)


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    s = serve_stream(Path(tmp_path_factory.mktemp("resume")))
    yield s
    s.receiver.close()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cuts=st.lists(st.integers(min_value=1, max_value=6000), min_size=1, max_size=6), pieces=st.integers(1, 4))
def test_the_union_of_what_a_client_saw_is_the_pipeline_s_events(shared: Served, cuts: list[int], pieces: int) -> None:
    s = shared
    seed = next(_seeds)
    spans = tasks(3, seed, checkpoints=2, plain_per_step=1)
    ids = {f"T{seed}-{i}" for i in range(3)}
    resume = s.head()

    def send() -> None:
        # Spans arrive in a few requests while the client comes and goes.
        step = max(1, len(spans) // pieces)
        for i in range(0, len(spans), step):
            s.post(spans[i : i + step])

    sender = threading.Thread(target=send)
    saw: list[Frame] = []

    def done(frames: list[Frame]) -> bool:
        return {f.doc["task_id"] for f in saw + frames if f.event == "task_finished"} >= ids

    async def follow() -> None:
        nonlocal resume
        for cut in [*cuts, None]:
            headers = {**AUTH, "Last-Event-ID": resume}
            frames, _ = await read(s.events_url, headers=headers, until=done, max_bytes=cut)
            saw.extend(frames)
            if frames:
                resume = frames[-1].id or resume
            if done([]):
                return

    sender.start()
    try:
        run(asyncio.wait_for(follow(), 30))
    finally:
        sender.join(30)
    # The stream has no batch delay: the in-memory sink may still be waiting for its batch.
    wait_until(lambda: sum(isinstance(e, TaskFinished) and e.task_id in ids for e in s.sink.events) == 3, what="sink")
    mine = [e for e in s.sink.events if e.task_id in ids]
    got = [f.event_id for f in saw if f.doc["task_id"] in ids]
    assert len(got) == len(set(got)), "a duplicate after a resume"
    assert got == [e.event_id for e in mine], "a gap or another order after a resume"
    by_id = {e.event_id: e for e in mine}
    check_stream([by_id[i] for i in got], all_finished=True)
