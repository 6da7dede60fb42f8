"""The annotation sink against the local fake of Grafana's annotations API."""

from __future__ import annotations

import asyncio
import logging

import pytest
from grafana_helpers import T0, clock_of, config, finished, start_sink, started, view, with_fake
from hypothesis import given
from hypothesis import strategies as st
from tests.fakes.grafana_api import FakeGrafana

from spanvisor.config import Config
from spanvisor.sink import SinkResult
from spanvisor.statestores.memory import InMemoryStateStore
from spanvisor.stats import PipelineStats
from spanvisor_grafana import GrafanaAnnotationSink
from spanvisor_grafana.client import parse_retry_after
from spanvisor_grafana.settings import SETTINGS
from spanvisor_grafana.sink import NAMESPACE
from spanvisor_grafana.text import MAX_TAG, clean, clean_tag


def test_create_then_patch_one_region() -> None:
    async def body(fake: FakeGrafana) -> None:
        store = InMemoryStateStore()
        sink = await start_sink(fake, store)
        assert await sink.export([started()]) is SinkResult.SUCCESS
        (post,) = fake.calls("POST")
        assert post.authorization == f"Bearer {fake.token}"
        assert post.body["time"] == T0 // 1_000_000
        assert "timeEnd" not in post.body
        assert set(post.body["tags"]) >= {"spanvisor", "agent:rivet", "status:starting"}
        assert await store.get(NAMESPACE, "task-1") == {"id": 1}

        assert await sink.export([finished()]) is SinkResult.SUCCESS
        (patch,) = fake.calls("PATCH")
        assert patch.path == "/api/annotations/1"
        (ann,) = fake.annotations.values()
        assert ann["timeEnd"] - ann["time"] == 42_000
        assert "status:complete" in ann["tags"] and "status:starting" not in ann["tags"]
        assert "complete in 42s" in ann["text"] and "report.md" in ann["text"]
        await sink.shutdown(1)

    with_fake(body)


def test_error_outcome_text_and_tags() -> None:
    async def body(fake: FakeGrafana) -> None:
        sink = await start_sink(fake, grafana_tags=("env:prod",))
        await sink.export([started(), finished(outcome="error")])
        (ann,) = fake.annotations.values()
        assert "status:error" in ann["tags"] and "env:prod" in ann["tags"]
        assert "ValueError: bad flange" in ann["text"]
        await sink.shutdown(1)

    with_fake(body)


def test_replay_is_idempotent_by_event_id() -> None:
    async def body(fake: FakeGrafana) -> None:
        sink = await start_sink(fake)
        events = [started(), finished()]
        for _ in range(3):
            assert await sink.export(events) is SinkResult.SUCCESS
        assert len(fake.calls("POST")) == 1 and len(fake.calls("PATCH")) == 1
        await sink.shutdown(1)

    with_fake(body)


def test_restart_patches_the_same_annotation() -> None:
    async def body(fake: FakeGrafana) -> None:
        store = InMemoryStateStore()
        first = await start_sink(fake, store)
        await first.export([started()])
        await first.shutdown(1)
        # A new process: no memory, same state store; the start is replayed.
        second = await start_sink(fake, store)
        await second.export([started(), finished()])
        await second.shutdown(1)
        assert len(fake.annotations) == 1 and len(fake.calls("POST")) == 1
        (ann,) = fake.annotations.values()
        assert ann["timeEnd"] > ann["time"]

    with_fake(body)


def test_two_replicas_create_one_annotation() -> None:
    async def body(fake: FakeGrafana) -> None:
        store = InMemoryStateStore()
        a, b = await start_sink(fake, store), await start_sink(fake, store)
        tasks = [f"task-{i}" for i in range(20)]
        await asyncio.gather(a.export([started(t) for t in tasks]), b.export([started(t) for t in tasks]))
        await asyncio.gather(
            a.export([finished(t) for t in tasks[::2]]),
            b.export([finished(t) for t in tasks[1::2]]),
        )
        assert len(fake.annotations) == 20
        assert all(a["timeEnd"] > a["time"] for a in fake.annotations.values())
        await a.shutdown(1)
        await b.shutdown(1)

    with_fake(body)


def test_finish_without_start_creates_the_region_in_one_post() -> None:
    async def body(fake: FakeGrafana) -> None:
        store = InMemoryStateStore()
        sink = await start_sink(fake, store)
        await sink.export([finished()])
        assert len(fake.calls("POST")) == 1 and not fake.calls("PATCH")
        (ann,) = fake.annotations.values()
        assert ann["timeEnd"] - ann["time"] == 42_000
        # A late start changes nothing.
        await sink.export([started()])
        assert len(fake.calls("POST")) == 1 and len(fake.annotations) == 1
        await sink.shutdown(1)

    with_fake(body)


def test_429_honours_retry_after() -> None:
    async def body(fake: FakeGrafana) -> None:
        sink = await start_sink(fake)
        fake.fail_next("POST", 429, retry_after="1")
        assert await sink.export([started()]) is SinkResult.SUCCESS
        # One wait, exactly what Grafana asked for, then the same POST again.
        assert clock_of(sink).sleeps == [1.0]
        assert [r.status for r in fake.calls("POST")] == [429, 200]
        assert not fake.calls("GET")  # a 429 was not applied: nothing to look up
        assert len(fake.annotations) == 1
        await sink.shutdown(1)

    with_fake(body)


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_5xx_retried_with_backoff(status: int) -> None:
    async def body(fake: FakeGrafana) -> None:
        sink = await start_sink(fake)
        fake.fail_next("*", status, times=3)
        assert await sink.export([started(), finished()]) is SinkResult.SUCCESS
        assert len(fake.annotations) == 1
        (ann,) = fake.annotations.values()
        assert "status:complete" in ann["tags"]
        failed = [r for r in fake.requests if r.status == status]
        assert len(failed) == 3
        # One backoff per failure, each within its jittered step (0.5 s, 1 s, 2 s, ...).
        sleeps = clock_of(sink).sleeps
        assert len(sleeps) == 3
        assert all(0.25 <= s <= 15.0 for s in sleeps), sleeps
        await sink.shutdown(1)

    with_fake(body)


def test_ambiguous_500_after_create_does_not_duplicate() -> None:
    async def body(fake: FakeGrafana) -> None:
        sink = await start_sink(fake)
        fake.fail_next("POST", 500, apply=True)
        assert await sink.export([started(), finished()]) is SinkResult.SUCCESS
        assert len(fake.annotations) == 1
        assert len(fake.calls("GET")) == 1  # the lookup by task tag
        await sink.shutdown(1)

    with_fake(body)


def test_timeout_after_create_does_not_duplicate() -> None:
    async def body(fake: FakeGrafana) -> None:
        sink = await start_sink(fake, grafana_timeout_s=0.2)
        fake.fail_next("POST", 200, apply=True, delay_s=0.6)
        assert await sink.export([finished()]) is SinkResult.SUCCESS
        assert len(fake.annotations) == 1
        (ann,) = fake.annotations.values()
        assert ann["timeEnd"] > ann["time"]
        await sink.shutdown(1)

    with_fake(body)


def test_budget_exhausted_returns_retry_then_delivers_once() -> None:
    async def body(fake: FakeGrafana) -> None:
        sink = await start_sink(fake, grafana_retry_budget_s=0.3)
        # The POST lands but answers 503, and Grafana stays down past the
        # budget: the lookup that would find it fails too.
        fake.fail_next("POST", 503, apply=True)
        fake.fail_next("GET", 503, times=1000)
        assert await sink.export([started()]) is SinkResult.RETRY
        fake.clear_script()
        # Redelivered later: the sink looks before it posts again.
        assert await sink.export([started(), finished()]) is SinkResult.SUCCESS
        assert len(fake.annotations) == 1 and len(fake.calls("POST")) == 1
        await sink.shutdown(1)

    with_fake(body)


def test_connection_refused_is_retried_not_dropped() -> None:
    async def body(fake: FakeGrafana) -> None:
        url = fake.url
        await fake.close()
        stats = PipelineStats()
        sink = await start_sink(fake, stats=stats, grafana_retry_budget_s=0.2, grafana_url=url)
        assert await sink.export([started()]) is SinkResult.RETRY
        assert stats.total("dropped_total") == 0
        await sink.shutdown(1)

    with_fake(body)


@pytest.mark.parametrize(
    ("token_kind", "status", "fix"),
    [("wrong", 401, "service account token"), ("readonly", 403, "annotations:write")],
)
def test_permanent_errors_counted_logged_once_without_token(
    token_kind: str, status: int, fix: str, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "glsa_SECRET_do_not_log_9f8e7d"

    async def body(fake: FakeGrafana) -> None:
        stats = PipelineStats()
        sink = await start_sink(fake, stats=stats, token=secret)
        with caplog.at_level(logging.DEBUG):
            result = await sink.export([started(f"t{i}") for i in range(5)])
        assert result is SinkResult.SUCCESS
        assert len(fake.calls("POST")) == 5  # never retried
        assert stats.value("dropped_total", reason=f"grafana_http_{status}", sink="grafana") == 5
        await sink.shutdown(1)

    kw = {"readonly_tokens": (secret,)} if token_kind == "readonly" else {}
    with_fake(body, **kw)
    text = caplog.text
    assert secret not in text
    assert fix in text
    assert text.count(f"HTTP {status}") == 1


def test_deleted_annotation_is_recreated_on_finish() -> None:
    async def body(fake: FakeGrafana) -> None:
        sink = await start_sink(fake)
        await sink.export([started()])
        fake.annotations.clear()
        assert await sink.export([finished()]) is SinkResult.SUCCESS
        (ann,) = fake.annotations.values()
        assert ann["timeEnd"] > ann["time"] and "status:complete" in ann["tags"]
        await sink.shutdown(1)

    with_fake(body)


def test_hostile_agent_text_is_cleaned_and_cut() -> None:
    async def body(fake: FakeGrafana) -> None:
        sink = await start_sink(fake, grafana_max_text=300)
        evil = "<!channel> \x00\x1b[31mred\x07 " + "x" * 1_000_000
        await sink.export([started(task_name=evil, agent_id="a\x00b" * 200, repo="r\nr")])
        (ann,) = fake.annotations.values()
        assert len(ann["text"]) <= 300 and ann["text"].endswith("…")
        assert "\x00" not in ann["text"] and "\x1b" not in ann["text"]
        assert "<!channel>" in ann["text"]  # shown as text by Grafana, not escaped
        assert all(len(t) <= MAX_TAG and "\x00" not in t and "\n" not in t for t in ann["tags"])
        await sink.shutdown(1)

    with_fake(body)


def test_other_events_are_ignored() -> None:
    from dataclasses import replace

    from spanvisor.events import Checkpoint

    async def body(fake: FakeGrafana) -> None:
        sink = await start_sink(fake)
        cp = Checkpoint(event_id="cp1", time_ns=T0 + 1, task=replace(view(), progress=50.0))
        assert await sink.export([cp]) is SinkResult.SUCCESS
        assert not fake.requests
        await sink.shutdown(1)

    with_fake(body)


def test_enabled_and_settings() -> None:
    assert not GrafanaAnnotationSink.enabled(Config.load(env={}, extra=SETTINGS))
    env = {"SPANVISOR_GRAFANA_URL": "http://g:3000", "SPANVISOR_GRAFANA_TOKEN": "glsa_x"}
    cfg = Config.load(env=env, extra=SETTINGS)
    assert GrafanaAnnotationSink.enabled(cfg)
    assert "glsa_x" not in repr(cfg.rows())


def test_check_against_fake() -> None:
    async def body(fake: FakeGrafana) -> None:
        ok = await GrafanaAnnotationSink.check(config(fake))
        assert all(row[1] for row in ok), ok
        bad = await GrafanaAnnotationSink.check(config(fake, token="nope"))
        assert not bad[-1][1] and "service account token" in bad[-1][2]

    with_fake(body)


def test_parse_retry_after() -> None:
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after("-5") == 0.0
    assert parse_retry_after("1e9") == 300.0
    assert parse_retry_after("nan") is None
    assert parse_retry_after("soon") is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0


@given(st.text(), st.integers(min_value=1, max_value=5000))
def test_clean_never_exceeds_limit_nor_keeps_controls(value: str, limit: int) -> None:
    out = clean(value, limit)
    assert len(out) <= limit
    assert not any(ord(c) < 32 and c not in "\n\t" for c in out)
    tag = clean_tag(value)
    assert len(tag) <= MAX_TAG and "\n" not in tag
    out.encode("utf-8")  # no lone surrogates left
