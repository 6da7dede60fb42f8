"""The Grafana client's real retry schedule, on an injected clock: no real sleeping.

The budget comes from the setting (``SPANVISOR_GRAFANA_RETRY_BUDGET``)
through the sink, as in production; only the clock is a test's.
"""

from __future__ import annotations

import random

import pytest
from grafana_helpers import FakeClock, clock_of, run, start_sink, started
from tests.fakes.grafana_api import FakeGrafana

from spanvisor.config import Config
from spanvisor.sink import SinkContext, SinkResult
from spanvisor.statestores.memory import InMemoryStateStore
from spanvisor.stats import PipelineStats
from spanvisor_grafana import GrafanaAnnotationSink
from spanvisor_grafana.client import GrafanaClient, LoopClock, TransientError
from spanvisor_grafana.settings import SETTINGS

# The client's defaults: the wait after failure n is drawn from
# [cap/2, cap], cap = min(15 s, 0.5 s * 2**(n-1)).
BASE_S, MAX_S = 0.5, 15.0


def cap(n: int) -> float:
    return min(MAX_S, BASE_S * 2 ** (n - 1))


async def _sink_from_env(fake: FakeGrafana, budget: str, clock: FakeClock) -> GrafanaAnnotationSink:
    env = {
        "SPANVISOR_GRAFANA_URL": fake.url,
        "SPANVISOR_GRAFANA_TOKEN": fake.token,
        "SPANVISOR_GRAFANA_RETRY_BUDGET": budget,
    }
    sink = GrafanaAnnotationSink(clock=clock)
    ctx = SinkContext(Config.load(env=env, extra=SETTINGS), InMemoryStateStore(), PipelineStats())
    await sink.start(ctx)
    return sink


@pytest.mark.parametrize(("budget", "seconds"), [("30s", 30.0), ("2m", 120.0), ("3s", 3.0)])
def test_backoff_schedule_uses_the_configured_budget(budget: str, seconds: float) -> None:
    async def main() -> None:
        async with FakeGrafana() as fake:
            clock = FakeClock()
            sink = await _sink_from_env(fake, budget, clock)
            assert sink.client is not None and sink.client.retry_budget_s == seconds
            fake.fail_next("POST", 503, times=10_000)  # Grafana stays down
            start = clock.now()
            assert await sink.export([started()]) is SinkResult.RETRY
            sleeps = clock.sleeps
            assert sleeps, "never backed off"
            # Each wait within its own step, the steps doubling up to the cap.
            for n, wait in enumerate(sleeps, start=1):
                assert cap(n) / 2 <= wait <= cap(n), (n, wait, sleeps)
            # Within the budget, and it stopped only when the next wait could not fit.
            assert sum(sleeps) <= seconds
            assert sum(sleeps) + cap(len(sleeps) + 1) > seconds, sleeps
            assert clock.now() - start == pytest.approx(sum(sleeps))
            # One POST per attempt; a 5xx may have landed, so each retry looks first.
            posts = fake.calls("POST")
            assert len(posts) == len(sleeps) + 1 and {p.status for p in posts} == {503}
            assert len(fake.calls("GET")) == len(sleeps)
            assert not fake.annotations
            await sink.shutdown(1)

    run(main())


def test_the_default_budget_is_thirty_seconds() -> None:
    async def main() -> None:
        async with FakeGrafana() as fake:
            sink = GrafanaAnnotationSink(clock=FakeClock())
            env = {"SPANVISOR_GRAFANA_URL": fake.url, "SPANVISOR_GRAFANA_TOKEN": fake.token}
            await sink.start(SinkContext(Config.load(env=env, extra=SETTINGS), InMemoryStateStore(), PipelineStats()))
            assert sink.client is not None and sink.client.retry_budget_s == 30.0
            await sink.shutdown(1)

    run(main())


def test_seeded_jitter_gives_the_same_schedule() -> None:
    async def schedule(seed: int) -> list[float]:
        async with FakeGrafana() as fake:
            clock = FakeClock()
            client = GrafanaClient(fake.url, fake.token, retry_budget_s=30.0, clock=clock, rng=random.Random(seed))
            fake.fail_next("GET", 502, times=10_000)
            with pytest.raises(TransientError) as err:
                await client.call("GET", "/api/annotations")
            assert err.value.status == 502
            await client.close()
            return clock.sleeps

    one, again, other = run(schedule(7)), run(schedule(7)), run(schedule(8))
    assert one == again
    assert one != other  # the jitter is drawn, not fixed


def test_retry_after_beyond_the_budget_pauses_every_call() -> None:
    async def main() -> None:
        async with FakeGrafana() as fake:
            clock = FakeClock()
            client = GrafanaClient(fake.url, fake.token, retry_budget_s=30.0, clock=clock)
            fake.fail_next("POST", 429, retry_after="100")
            body = {"text": "x", "time": 1_700_000_000_000}
            with pytest.raises(TransientError) as err:
                await client.call("POST", "/api/annotations", body)
            assert err.value.status == 429
            assert clock.sleeps == [] and len(fake.calls("POST")) == 1  # no wait that cannot help
            # Grafana's limit is per token: another call holds back without a request.
            with pytest.raises(TransientError, match="rate limited"):
                await client.call("GET", "/api/annotations")
            assert not fake.calls("GET")
            clock.advance(100)
            assert await client.call("POST", "/api/annotations", body) == {"message": "Annotation added", "id": 1}
            await client.close()

    run(main())


def test_a_pause_that_fits_is_waited_out_by_the_next_call() -> None:
    async def main() -> None:
        async with FakeGrafana() as fake:
            clock = FakeClock()
            client = GrafanaClient(fake.url, fake.token, retry_budget_s=30.0, clock=clock)
            fake.fail_next("GET", 429, retry_after="40")  # more than the budget: this call gives up
            with pytest.raises(TransientError):
                await client.call("GET", "/api/annotations")
            clock.advance(25)  # 15 s of the pause left: fits the next call's budget
            assert await client.call("GET", "/api/annotations") == []
            assert clock.sleeps == [pytest.approx(15.0)]
            await client.close()

    run(main())


def test_retry_after_on_a_5xx_is_the_wait_without_pausing_others() -> None:
    async def main() -> None:
        async with FakeGrafana() as fake:
            sink = await start_sink(fake)
            fake.fail_next("POST", 503, retry_after="4")
            assert await sink.export([started()]) is SinkResult.SUCCESS
            assert clock_of(sink).sleeps == [4.0]
            assert [r.status for r in fake.calls("POST")] == [503, 200]
            await sink.shutdown(1)

    run(main())


def test_the_default_clock_is_the_event_loop() -> None:
    async def main() -> None:
        import asyncio

        clock, loop = LoopClock(), asyncio.get_running_loop()
        before = loop.time()
        now = clock.now()
        assert before <= now <= loop.time()
        await clock.sleep(0)
        client = GrafanaClient("http://127.0.0.1:1", "t")
        assert isinstance(client.clock, LoopClock)
        await client.close()

    run(main())
