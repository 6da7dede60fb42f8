"""A task's work as a diff (``agent.diff``, tracking/diffs.py), on the
in-process path and through the receiver:

* an ``agent.diff`` span event becomes a ``DiffUpdated`` carrying the diff
  whole, secrets redacted; the same diff said again is no event; the task's
  other events do not carry it (its view has no diff);
* a diff over its bound is clipped at the end of the last file that fits,
  and says so (a property over diffs of any size);
* through ``serve``'s decoder (OTLP/HTTP protobuf) a 200 KB diff arrives
  whole: its key has a bound of its own (the receiver's default is 64 KB).
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

from spanvisor.events import DiffUpdated, TaskView
from spanvisor.receiver.decode import decode_request
from spanvisor.spans import conventions as cv
from spanvisor.testing import InMemorySink
from spanvisor.tracking.diffs import MAX_DIFF_CHARS, clip

from ._sdk import Agent


def _file(name: str, lines: int) -> str:
    body = "".join(f"+line {i} of {name}\n" for i in range(lines))
    return f"diff --git a/{name} b/{name}\n--- a/{name}\n+++ b/{name}\n@@ -0,0 +1,{lines} @@\n{body}"


def test_an_agent_diff_event_is_one_diff_updated_redacted_and_said_once(agent: Agent, memory: InMemorySink) -> None:
    diff = _file("app.py", 3) + "+TOKEN = 'ghp_" + "a" * 36 + "'\n"
    with agent.tracer.start_as_current_span("fix", attributes={cv.TASK_NAME: "fix", cv.TASK_ID: "D1"}) as root:
        attrs = {cv.DIFF_TEXT: diff, cv.DIFF_FILES: 1}
        root.add_event(cv.EVENT_DIFF, attrs)
        root.add_event(cv.EVENT_DIFF, attrs)  # unchanged: nothing new
        root.add_event(cv.EVENT_DIFF, {cv.DIFF_TEXT: diff + _file("b.py", 1)})
    assert agent.flush()
    events = memory.for_task("D1")
    diffs = [e for e in events if isinstance(e, DiffUpdated)]
    assert [d.files for d in diffs] == [1, 2]  # the second counted from its text
    first = diffs[0]
    assert "ghp_" + "a" * 36 not in first.diff and "****" in first.diff
    assert not first.clipped and first.diff.startswith("diff --git a/app.py")
    seqs = [e.task.seq for e in events]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)  # in order, each its own state
    assert not hasattr(TaskView, "diff")  # no other event carries it


@settings(max_examples=60, deadline=None)
@given(sizes=st.lists(st.integers(min_value=0, max_value=4000), min_size=1, max_size=12), limit=st.integers(64, 60_000))
def test_a_diff_over_its_bound_is_clipped_at_a_files_end(sizes: list[int], limit: int) -> None:
    whole = "".join(_file(f"f{i}.py", n) for i, n in enumerate(sizes))
    text, clipped = clip(whole, limit)
    assert len(text) <= limit
    assert clipped == (len(whole) > limit)
    assert whole.startswith(text)
    if clipped and text.count("diff --git") >= 1 and len(whole) > limit:
        cut_at_file = whole[len(text) :].startswith("diff --git")
        cut_at_line = text.endswith("\n")
        assert cut_at_file or cut_at_line


def _value(s: str) -> AnyValue:
    return AnyValue(string_value=s)


def test_through_the_receiver_a_large_diff_arrives_whole() -> None:
    diff = "".join(_file(f"f{i}.py", 400) for i in range(20))
    assert 64 * 1024 < len(diff) < MAX_DIFF_CHARS
    event = Span.Event(
        name=cv.EVENT_DIFF, time_unix_nano=2, attributes=[KeyValue(key=cv.DIFF_TEXT, value=_value(diff))]
    )
    span = Span(
        trace_id=b"\x01" * 16,
        span_id=b"\x02" * 8,
        name="fix",
        start_time_unix_nano=1,
        end_time_unix_nano=3,
        attributes=[KeyValue(key=cv.TASK_NAME, value=_value("fix"))],
        events=[event],
    )
    req = ExportTraceServiceRequest(resource_spans=[ResourceSpans(scope_spans=[ScopeSpans(spans=[span])])])
    [decoded] = decode_request(req).spans
    [ev] = [e for e in decoded.events if e.name == cv.EVENT_DIFF]
    assert ev.attributes[cv.DIFF_TEXT] == diff


def test_an_empty_diff_is_said_too_all_work_undone() -> None:
    memory = InMemorySink()
    agent = Agent([memory])
    try:
        with agent.tracer.start_as_current_span("fix", attributes={cv.TASK_NAME: "fix", cv.TASK_ID: "D2"}) as root:
            root.add_event(cv.EVENT_DIFF, {cv.DIFF_TEXT: "", cv.DIFF_FILES: 0})  # all work undone: an empty diff
        assert agent.flush()
        [d] = [e for e in memory.for_task("D2") if isinstance(e, DiffUpdated)]
        assert (d.diff, d.files, d.clipped) == ("", 0, False)
    finally:
        agent.close()
