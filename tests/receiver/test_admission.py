"""Admission before work: a refusal parses nothing, and Retry-After says how
soon there will be room (from measured rates), not a constant.

The durable sink here is stalled, so its queue passes the admission mark
(80 %) and stays there; bodies that are not protobuf at all still get 503 /
UNAVAILABLE rather than 400 / INVALID_ARGUMENT: nothing was read or parsed.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import pytest
from agent_traces import request_for, task_spans
from test_grpc import _export_raw
from test_http import post
from tests.waiting import wait_until

from conftest import RunningReceiver, StalledDurableSink, local_settings, make_pipeline, requests
from spanvisor.pipeline.pipeline import Pipeline
from spanvisor.pipeline.rate import Rate
from spanvisor.receiver.decode import Decoded
from spanvisor.receiver.ingest import MAX_RETRY_S, MIN_RETRY_S, Ingest, Refusal
from spanvisor.receiver.journal import SpanJournal
from spanvisor.stats import PipelineStats

SMALL_QUEUE = {"SPANVISOR_QUEUE_SIZE": "200", "SPANVISOR_BATCH_SIZE": "8"}
NOT_PROTOBUF = b"\xff" * 64


def _fill(r: RunningReceiver, pipeline: Pipeline) -> None:
    """Send tasks until the stalled durable sink pushes back."""
    for seed in range(1, 80):
        status, _, _ = post(r.http_url, request_for(task_spans(1, seed=seed)).SerializeToString())
        if status == 503:
            return
        assert status == 200
        # Pumped, or held back by the stalled sink (how many events a batch
        # makes depends on the order its spans are read in): either way the
        # next request finds out.
        wait_until(
            lambda: pipeline.stats.value("inbox_depth") == 0 or not pipeline.accepting(1),
            what="the pipeline to pump its inbox or push back",
        )
    raise AssertionError("a stalled durable sink must push back")


@pytest.mark.slow
def test_a_refusal_reads_and_parses_nothing(tmp_path: Path) -> None:
    sink = StalledDurableSink()
    pipeline = make_pipeline(tmp_path / "data", [sink], **SMALL_QUEUE)
    r = RunningReceiver(pipeline, local_settings(tmp_path, retry_after_s=3.0))
    try:
        _fill(r, pipeline)
        bad_before = requests(pipeline, "http", "bad_request")
        status, headers, _ = post(r.http_url, NOT_PROTOBUF)
        # Garbage, yet 503: room was checked before the body was parsed.
        assert status == 503
        # A stalled sink gives no rate to estimate from: the configured value.
        assert headers["Retry-After"] == "3"
        assert _export_raw(r.grpc_target, NOT_PROTOBUF) is grpc.StatusCode.UNAVAILABLE
        assert requests(pipeline, "http", "bad_request") == bad_before
        assert requests(pipeline, "grpc", "bad_request") == 0
    finally:
        sink.gate.set()
        r.close()


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_rate_is_what_drained_lately_and_none_when_idle() -> None:
    clock = Clock()
    rate = Rate(clock=clock)
    assert rate.per_s() is None and rate.seconds_for(10) is None  # nothing measured yet
    for _ in range(10):
        clock.t += 0.1
        rate.add(50)  # 500 a second
    assert rate.per_s() == pytest.approx(500, rel=0.05)
    assert rate.seconds_for(1000) == pytest.approx(2.0, rel=0.05)
    clock.t += 10  # a consumer that delivered nothing lately may be down
    assert rate.per_s() is None
    never_stale = Rate(stale_s=None, clock=clock)
    for _ in range(5):
        clock.t += 0.1
        never_stale.add(10)
    clock.t += 60
    assert never_stale.per_s() == pytest.approx(100, rel=0.05)


def test_timed_work_counts_from_its_start_after_idling() -> None:
    """A sink's batch says when its export began: the first batches after a
    start (or an idle spell) give a rate at once, so admission has an
    estimate while the sink's queue is first filling, rather than none."""
    clock = Clock()
    untimed, timed = Rate(clock=clock), Rate(clock=clock)
    began = clock.t
    clock.t += 0.3  # one batch of 300 took 0.3 s
    untimed.add(300)
    timed.add(300, began)
    assert untimed.per_s() is None  # how long those took is unknown
    assert timed.per_s() == pytest.approx(1000, rel=0.05)
    # A start time after now (another clock) is not believed.
    odd = Rate(clock=clock)
    odd.add(300, clock.t + 5)
    assert odd.per_s() is None


def test_retry_after_is_whole_seconds_never_early_and_bounded(tmp_path: Path) -> None:
    assert Refusal("x", 0.2).retry_after_header == "1"
    assert Refusal("x", 1.0).retry_after_header == "1"
    assert Refusal("x", 1.2).retry_after_header == "2"
    pipeline = make_pipeline(tmp_path / "data", [])
    try:
        ingest = Ingest(pipeline, None, retry_after_s=7.0)
        assert ingest._refusal("full", None).retry_after_s == 7.0  # no estimate: the setting
        assert ingest._refusal("full", 0.0).retry_after_s == MIN_RETRY_S
        assert ingest._refusal("full", 3.5).retry_after_s == 3.5
        assert ingest._refusal("full", 1e6).retry_after_s == MAX_RETRY_S
        # An empty, running pipeline has room: no wait at all.
        assert pipeline.room_in(100) == 0.0
    finally:
        pipeline.shutdown(5)


class _NoRateYet:
    """A fresh serve's pipeline as the first burst finds it: room at
    admission, then no room for the spans just journaled, and for a while no
    estimate of when (its durable sink has finished no measured batch yet),
    then room. Counts its answers rather than reading a clock."""

    def __init__(self, unknown_polls: int) -> None:
        self.stats = PipelineStats()
        self.shared: dict[str, object] = {}
        self.unknown_polls = unknown_polls
        self.polls = 0
        self.taken: list[object] = []

    def room_in(self, n: int) -> float | None:
        self.polls += 1
        if self.polls == 1:
            return 0.0  # admission: room now
        return None if self.polls <= 1 + self.unknown_polls else 0.0

    def submit_spans(self, spans: list[object]) -> bool:
        if self.polls <= 1 + self.unknown_polls:
            return False
        self.taken.extend(spans)
        return True

    def inbox_free(self) -> int:
        return 0

    def ready(self) -> tuple[bool, str]:
        return True, "ready"

    def force_flush(self, timeout_s: float = 30.0) -> bool:
        return True


def test_a_journaled_request_waits_out_a_sink_with_no_estimate_yet(tmp_path: Path) -> None:
    """Its journal write is done: a durable sink that has not measured its
    first batches yet is waited for (as admission waits for one), not
    answered 503 at once with the entry thrown away. Past the deadline it is
    still refused, its entry discarded."""
    spans = task_spans(1, seed=3)

    async def run(unknown_polls: int) -> tuple[Refusal | None, _NoRateYet, list[object]]:
        journal = SpanJournal(tmp_path / f"journal-{unknown_polls}.db", 10**9)
        await asyncio.to_thread(journal.open)
        try:
            pipeline = _NoRateYet(unknown_polls)
            ingest = Ingest(pipeline, journal)
            ingest.accepting = True
            refusal = await ingest.accept(Decoded(spans=list(spans)), b"body")
            await asyncio.sleep(0.05)  # the journal's writer thread applies a discard
            return refusal, pipeline, list(journal.read(0, 0))
        finally:
            journal.close()

    refusal, pipeline, kept = asyncio.run(run(unknown_polls=20))  # about 0.2 s with no estimate
    assert refusal is None
    assert len(pipeline.taken) == len(spans)
    assert len(kept) == 1  # acknowledged: its journal entry stays for a replay
    refusal, pipeline, kept = asyncio.run(run(unknown_polls=10**6))  # never an estimate
    assert refusal is not None and refusal.retry_after_s == 2.0  # SPANVISOR_RETRY_AFTER's default
    assert pipeline.taken == [] and kept == []
