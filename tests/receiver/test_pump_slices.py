"""A receiver batch cut at a pump slice's end: the rest goes back to the head
of the inbox, still counted against its bound, and nothing is reordered."""

from __future__ import annotations

from spanvisor.pipeline.inbox import Inbox
from spanvisor.spans.data import SpanData
from spanvisor.stats import PipelineStats


def _span(i: int) -> SpanData:
    return SpanData(f"{1:032x}", f"{i + 1:016x}", None, f"s{i}", i, i + 1, {})


def test_the_rest_of_a_batch_goes_back_to_the_head() -> None:
    inbox = Inbox(1000, PipelineStats())
    first = [_span(i) for i in range(40)]
    second = [_span(i) for i in range(40, 50)]
    inbox.put_spans(first)
    inbox.put_spans(second)
    assert inbox.spans == 50
    entries = inbox.drain(lambda: True)
    kind, batch = next(entries)
    assert kind == "spans" and batch is first and inbox.spans == 10
    inbox.put_back(batch[15:])  # 15 tracked, the slice ended
    assert inbox.spans == 35 and not inbox.has_room_for(966)
    order = [s.name for _, b in inbox.drain(lambda: True) for s in b]
    assert order == [f"s{i}" for i in range(15, 50)]
    assert inbox.spans == 0
