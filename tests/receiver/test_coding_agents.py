"""Coding-agent sessions become tasks through the OTLP receiver, with no
code: Claude Code's and Codex CLI's log records as OTLP protobuf (HTTP and
gRPC), Gemini CLI's as OTLP/JSON over HTTP, each request made by the real
OpenTelemetry SDK (tests/receiver/coding_sessions.py), into the real
receiver and pipeline.

Per CLI: one task per session, named from its prompt (secret redacted);
every model call once with its tokens, even when a batch is sent again;
the cost Claude Code reports, the others priced from tokens; tool calls as
steps named with their command; context warnings at 70 % and 85 % from the
tokens of the latest call against the model's window; an API error and a
denied tool call as warnings. The CLIs' own spans make no second task.
"""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Iterator

import grpc
import pytest
from coding_sessions import Rec, Session, as_json, claude, codex, gemini, request
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest, ExportLogsServiceResponse
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from tests.waiting import wait_until

from conftest import RunningReceiver
from spanvisor.events import Checkpoint, ContextWarning, Event, TaskStarted
from spanvisor.pipeline.pipeline import Pipeline
from spanvisor.receiver.codingagents.ids import session_task
from spanvisor.receiver.codingagents.sessions import SESSIONS
from spanvisor.testing import InMemorySink

# The price table (read once in a child process) and a pipeline's start take
# minutes on a loaded machine; the checks themselves take seconds.
pytestmark = [pytest.mark.timeout_s(900)]


@pytest.fixture(scope="module", autouse=True)
def _price_table() -> None:
    """The price table is read once per interpreter in a child process: read
    it before the first pipeline waits for its sinks (a loaded machine
    takes longer than that wait)."""
    from spanvisor.tracking import pricetable

    pricetable.build(None, timeout_s=600)


@pytest.fixture(autouse=True)
def _fresh_sessions() -> Iterator[None]:
    SESSIONS.clear()  # each test's serve is new: so is what it remembers
    yield
    SESSIONS.clear()


def _post(receiver: RunningReceiver, path: str, body: bytes, ctype: str) -> int:
    url = receiver.http_url.removesuffix("/v1/traces") + path
    req = urllib.request.Request(url, data=body, headers={"Content-Type": ctype}, method="POST")
    with urllib.request.urlopen(req, timeout=180) as resp:
        return int(resp.status)


def _send(receiver: RunningReceiver, s: Session, req: ExportLogsServiceRequest, grpc_: bool = False) -> None:
    if s.cli == "gemini":
        assert _post(receiver, "/v1/logs", as_json(req), "application/json") == 200
    elif grpc_:
        with grpc.insecure_channel(receiver.grpc_target) as ch:
            export = ch.unary_unary(
                "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
                request_serializer=ExportLogsServiceRequest.SerializeToString,
                response_deserializer=ExportLogsServiceResponse.FromString,
            )
            export(req, timeout=180)
    else:
        assert _post(receiver, "/v1/logs", req.SerializeToString(), "application/x-protobuf") == 200


def _task_events(sink: InMemorySink, task_id: str) -> list[Event]:
    return sink.for_task(task_id)


def _settled(pipeline: Pipeline, sink: InMemorySink, task_id: str, calls: int) -> list[Event]:
    def done() -> list[Event] | None:
        pipeline.force_flush(10)
        evs = _task_events(sink, task_id)
        n = sum(1 for e in evs if isinstance(e, Checkpoint) and e.source == "model_call")
        return evs if n >= calls and any(isinstance(e, TaskStarted) for e in evs) else None

    return wait_until(done, 240, what=f"{calls} model calls of task {task_id}")


SESSIONS_OF = {"claude": claude, "codex": codex, "gemini": gemini}


@pytest.mark.parametrize("cli", ["claude", "codex", "gemini"])
def test_a_session_is_one_task_with_its_calls_tools_warnings_and_context(
    cli: str, receiver: RunningReceiver, pipeline: Pipeline, sink: InMemorySink
) -> None:
    s = SESSIONS_OF[cli](f"{cli}-session-1")
    task_id, _, _ = session_task(s.service, s.session_id)
    t0 = 1_795_000_000_000_000_000
    # Two batches, as the CLIs' periodic export cuts a session, the second
    # sent twice (a retry after a lost answer): nothing counts twice.
    half = len(s.records) // 2
    first, second = request(s, s.records[:half], t0), request(s, s.records[half:], t0)
    _send(receiver, s, first)
    _send(receiver, s, second, grpc_=cli == "codex")
    _send(receiver, s, second)
    evs = _settled(pipeline, sink, task_id, s.calls)

    [started] = [e for e in evs if isinstance(e, TaskStarted)]
    assert started.task.task_name == "fix the flaky test in tests/test_io.py, the key is sk-ant-****"
    assert started.task.agent_name == s.service
    calls = [e for e in evs if isinstance(e, Checkpoint) and e.source == "model_call"]
    assert len(calls) == s.calls
    view = evs[-1].task
    assert (view.input_tokens, view.output_tokens) == (s.input_tokens, s.output_tokens)
    assert view.model == s.model
    if s.cost_usd is not None:  # Claude Code reports its cost: that is the cost
        assert view.cost_usd == pytest.approx(s.cost_usd)
        assert {c.attributes["cost_source"] for c in calls} == {"reported"}
    else:  # priced from the tokens (genai-prices knows these models)
        assert view.cost_usd > 0
        assert view.unpriced_calls == 0
    tools = [e.attributes for e in evs if isinstance(e, Checkpoint) and e.source == "tool_call"]
    assert len(tools) == 2
    assert "git status" in str(tools[0]["tool"])
    assert "error" in tools[1] and "error" not in tools[0]
    warnings = [e for e in evs if isinstance(e, ContextWarning)]
    assert [w.threshold for w in warnings] == [0.7, 0.85]
    assert view.context_limit == s.window
    notes = [
        str(e.attributes.get("message") or e.task.message)
        for e in evs
        if isinstance(e, Checkpoint) and e.source == "event"
    ]
    assert any("API error" in n for n in notes), notes
    assert any("Denied" in n for n in notes), notes
    assert len({e.task.task_id for e in evs}) == 1
    assert len(sink.of_type(TaskStarted)) == 1  # no other task from anything sent


def test_a_session_that_also_sends_spans_is_one_task(
    receiver: RunningReceiver, pipeline: Pipeline, sink: InMemorySink
) -> None:
    """Claude Code's traces beta: an interaction span (invoke_agent) over
    llm_request spans with usage. Read from the logs alone: one task, each
    call once."""
    s = claude("claude-with-spans")
    task_id, _, _ = session_task(s.service, s.session_id)
    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    kv = rs.resource.attributes.add()
    kv.key, kv.value.string_value = "service.name", "claude-code"
    ss = rs.scope_spans.add()
    ss.scope.name = "com.anthropic.claude_code.tracing"
    t = 1_795_000_000_000_000_000
    root = ss.spans.add(
        trace_id=bytes(range(1, 17)),
        span_id=bytes(range(1, 9)),
        name="claude_code.interaction",
        start_time_unix_nano=t,
        end_time_unix_nano=t + 10**9,
    )
    for key, value in (("gen_ai.operation.name", "invoke_agent"), ("gen_ai.conversation.id", s.session_id)):
        a = root.attributes.add()
        a.key, a.value.string_value = key, value
    call = ss.spans.add(
        trace_id=root.trace_id,
        span_id=bytes(range(2, 10)),
        parent_span_id=root.span_id,
        name="claude_code.llm_request",
        start_time_unix_nano=t,
        end_time_unix_nano=t + 10**8,
    )
    for key, n in (("gen_ai.usage.input_tokens", 5000), ("gen_ai.usage.output_tokens", 100)):
        a = call.attributes.add()
        a.key, a.value.int_value = key, n
    assert _post(receiver, "/v1/traces", req.SerializeToString(), "application/x-protobuf") == 200
    _send(receiver, s, request(s, None, t))
    evs = _settled(pipeline, sink, task_id, s.calls)
    assert len(sink.of_type(TaskStarted)) == 1
    assert evs[-1].task.input_tokens == s.input_tokens
    assert pipeline.stats.value("coding_agent_spans_ignored_total") == 2


def test_the_launchers_task_id_and_name_win(receiver: RunningReceiver, pipeline: Pipeline, sink: InMemorySink) -> None:
    """Codex reports OTEL_RESOURCE_ATTRIBUTES as it got it, without the
    percent-decoding the OTel specification asks for: the receiver decodes
    its values (the launcher encodes only what the specification requires,
    so a task id of baggage octets such as ``deploy:web/42`` is never encoded)."""
    s = codex(
        "codex-launched", **{"spanvisor.task.id": "deploy:web/42", "spanvisor.task.name": "nightly%20deps%2C%20bump"}
    )
    task_id, trace_id, root_id = session_task(s.service, s.session_id, "deploy:web/42")
    assert task_id == "deploy:web/42"
    _send(receiver, s, request(s))
    evs = _settled(pipeline, sink, "deploy:web/42", s.calls)
    [started] = [e for e in evs if isinstance(e, TaskStarted)]
    assert started.task.task_name == "nightly deps, bump"
    assert (started.task.trace_id, started.task.root_span_id) == (trace_id, root_id)


def test_a_session_named_after_another_task_is_its_own_task(
    receiver: RunningReceiver, pipeline: Pipeline, sink: InMemorySink
) -> None:
    """A session id is whatever a record says: in its CLI's namespace it can
    never name another task (here an agent's task "nightly-build")."""
    s = claude("nightly-build")
    _send(receiver, s, request(s))
    evs = _settled(pipeline, sink, "claude-code:nightly-build", s.calls)
    assert all(e.task.task_id == "claude-code:nightly-build" for e in evs)
    assert sink.for_task("nightly-build") == []


def test_unreadable_records_are_counted_and_never_fail_the_request(
    receiver: RunningReceiver, pipeline: Pipeline, sink: InMemorySink
) -> None:
    """A future CLI version: attributes renamed, values of the wrong type,
    no session id. The request is answered 200; what has a session is still
    its task (signs of life), what has none is counted."""
    s = claude("claude-odd")
    s.records = [
        Rec(
            "claude_code.user_prompt",
            {"session.id": "claude-odd", "event.name": "user_prompt", "prompt": 42},
            "claude_code.user_prompt",
            True,
        ),
        Rec(
            "claude_code.api_request",
            {
                "session.id": "claude-odd",
                "event.name": "api_request",
                "input_tokens": "many",
                "cost_usd": "NaN",
                "model": ["x"],
            },
            "claude_code.api_request",
            True,
        ),
        Rec(
            "claude_code.tool_result",
            {"event.name": "tool_result", "tool_name": "Bash"},
            "claude_code.tool_result",
            True,
        ),
    ]
    _send(receiver, s, request(s))
    task_id, _, _ = session_task(s.service, "claude-odd")
    evs = _settled(pipeline, sink, task_id, 1)
    assert evs[-1].task.input_tokens == 0
    assert pipeline.stats.value("coding_agent_records_total", outcome="no_session_id") == 1
    assert pipeline.stats.value("coding_agent_records_total", outcome="read") == 2


def test_token_counts_past_int64_are_clamped_and_noted_never_failing_the_request(
    receiver: RunningReceiver, pipeline: Pipeline, sink: InMemorySink
) -> None:
    """A count above 2**63 (and three large ones Claude Code's reader adds):
    the request is answered 200, the call is counted with its tokens clamped,
    and its event says what was clamped."""
    s = claude("claude-huge")
    huge = 2**63 - 1
    s.records = [
        r
        if r.event != "claude_code.api_request"
        else Rec(
            r.event,
            {**r.attrs, "input_tokens": huge, "cache_read_tokens": huge, "cache_creation_tokens": "9" * 30},
            r.body,
            r.short_name,
        )
        for r in s.records
    ]
    _send(receiver, s, request(s))
    task_id, _, _ = session_task(s.service, "claude-huge")
    evs = _settled(pipeline, sink, task_id, s.calls)
    calls = [e for e in evs if isinstance(e, Checkpoint) and e.source == "model_call"]
    assert len(calls) == s.calls
    assert all(any("clamped to 100,000,000" in n for n in c.notes) for c in calls), [c.notes for c in calls]
    assert evs[-1].task.input_tokens == 100_000_000 * s.calls


def test_a_hook_naming_the_session_by_its_bare_id_names_the_namespaced_task(
    receiver: RunningReceiver, pipeline: Pipeline, sink: InMemorySink
) -> None:
    """A hook of an earlier version opens the session's task with its bare
    session id: the record's ids prove whose task it is, so it names the
    namespaced task, and the CLI's records that follow make no second one."""
    from spanvisor.gate import otlp

    s = claude("sess-bare")
    task_id, trace_id, root_id = session_task(s.service, s.session_id)
    now = time.time_ns()
    said = [
        (otlp.LIVE_TASK_START, {otlp.TASK_ID: "sess-bare", otlp.AGENT_ID: s.service}, now),
        (otlp.EVENT_CHECKPOINT, {otlp.TASK_ID: "sess-bare", otlp.MESSAGE: "Bash(ls): allowed by policy"}, now + 1),
    ]
    assert _post(receiver, "/v1/logs", otlp.encode(s.service, trace_id, root_id, said), "application/json") == 200
    _send(receiver, s, request(s, None, now + 10_000_000))
    evs = _settled(pipeline, sink, task_id, s.calls)
    assert task_id == "claude-code:sess-bare" and len([e for e in evs if isinstance(e, TaskStarted)]) == 1
    assert sink.for_task("sess-bare") == []
