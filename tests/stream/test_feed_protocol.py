"""An event feed written to the protocol's first version (``start`` takes
only ``deliver``) still starts and feeds the stream."""

from __future__ import annotations

from pathlib import Path

from spanvisor.stream.feed import Deliver, MemoryFeed
from spanvisor.stream.sink import StreamSink
from spanvisor.testing import InMemorySink
from tests.receiver.conftest import RunningReceiver, local_settings, make_pipeline
from tests.stream.conftest import TOKEN, Served, tasks
from tests.waiting import wait_until


class FirstVersionFeed(MemoryFeed):
    async def start(self, deliver: Deliver) -> int:  # type: ignore[override]
        return await super().start(deliver)


def test_a_feed_whose_start_takes_only_deliver_feeds_the_stream(tmp_path: Path) -> None:
    sink, stream = InMemorySink(), StreamSink()
    stream.feed = FirstVersionFeed()
    pipeline = make_pipeline(tmp_path / "data", [sink, stream], plugins=True, SPANVISOR_OTLP_TOKEN=TOKEN)
    s = Served(RunningReceiver(pipeline, local_settings(tmp_path, token=TOKEN)), sink, stream)
    try:
        s.head()  # a client's position: the stream is read, so it is recorded
        s.post(tasks(1, seed=47, checkpoints=2, plain_per_step=0))
        events = wait_until(lambda: s.sink.events, 30, "the pipeline's own sink")
        wait_until(
            lambda: stream.ring is not None and stream.ring.head >= len(events) > 0,
            30,
            "every event in the stream's ring",
        )
    finally:
        s.receiver.close()
