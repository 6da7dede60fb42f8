"""bench_fleet's sessions of the CLIs that need ``spanvisor run``: GitHub
Copilot CLI, OpenCode and Cline, each as the launcher runs it.

Each session is a series of runs (``copilot -p``, ``opencode run``,
``cline``: one prompt each, 15-30 s of the same turns as the other CLIs',
then the CLI exits and the next run starts). A run is a task of the
launcher's own id, and sends what the launcher and the pinned CLI send:

* the launcher's records (:mod:`spanvisor.launcher.records`): the task's
  ``agent.task.start`` when the CLI starts, a heartbeat every 30 s
  (``SPANVISOR_HEARTBEAT``'s default), and the ended root span at the exit
  (:class:`spanvisor.hook.task.SessionTask`), each sent at once;
* Copilot CLI 1.0: its OTel GenAI spans (``invoke_agent`` → ``chat <model>`` /
  ``execute_tool <tool>``, the command captured as its settings allow),
  protobuf, in one request **when it exits** (its batch processor waits for
  the process's end): its steps reach serve only then;
* OpenCode and Cline: the lines they print (``opencode run --format json``,
  ``cline --json``) read by the launcher's own reader
  (:class:`spanvisor.launcher.stream.StreamReport`, the real one), whose
  records go at once as OTLP/JSON encoded by its real
  :class:`~spanvisor.launcher.stream.Sender`, as the launcher's background
  sender does.

The task's name carries a marker (``fl<setup><session>s<run>``) so that the
bench sees when Slack first showed the task: what a supervisor sees of a
Copilot CLI run before its exit.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from coding_sessions import PROMPT  # type: ignore[import-not-found]
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

from _fleet import CLIS, Fleet, FleetSession, ToolCall
from spanvisor.gate import otlp
from spanvisor.gate.taskids import launcher_task_ids
from spanvisor.hook.task import SessionTask, otlp_args
from spanvisor.launcher.stream import Sender, StreamReport
from spanvisor.spans import conventions as cv

LAUNCHED = ("copilot", "opencode", "cline")
START = re.compile(r"fl([a-e])(\d{3})s(\d{2})")
HEARTBEAT_S = 30.0
COPILOT_MODEL = "gpt-4.1"
JSON = "application/json"


def _ms() -> int:
    return time.time_ns() // 1_000_000


def _iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class _HandingSender(Sender):
    """The launcher's sender, its records handed to the bench's fleet (which
    sends them at once, as the sender's own thread does) instead of its queue."""

    def __init__(self, session: LaunchedSession, service: str, task_id: str, name: str) -> None:
        super().__init__(service, task_id, name, "http://127.0.0.1:9", None)
        self.session = session

    def say(self, name: str, attrs: Mapping[str, Any], at: int) -> None:
        self.session.hand((name, dict(attrs), at))


class _SpanHandoff(SpanExporter):
    def __init__(self, session: LaunchedSession) -> None:
        self.session = session

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        for span in spans:
            self.session.hand(span)
        return SpanExportResult.SUCCESS


class LaunchedSession(FleetSession):
    """One slot of successive launched runs of ``cli``."""

    def __init__(self, setup: str, k: int, cli: str, run: str) -> None:
        super().__init__(setup, k, cli, run)
        self.fleet: Fleet | None = None
        self.runs = 0
        self.open = False
        self.task_id = self.name = ""
        self.started_ns = 0
        self.opened = self.beat = 0.0
        self.run_s = 0.0
        self.starts: dict[int, float] = {}  # run -> when the launcher sent its start (monotonic)
        self.exits: list[float] = []  # when each Copilot CLI run exported (monotonic)
        self.report: StreamReport | None = None
        self.sender: _HandingSender | None = None
        self.tracer: trace.Tracer | None = None
        self.root: trace.Span | None = None
        self.calls = 0

    def attach(self, fleet: Fleet) -> None:
        self.fleet = fleet

    @property
    def tasks(self) -> int:
        return self.runs

    def hand(self, record: object) -> None:
        assert self.fleet is not None
        self.fleet.handed(self, record)

    def request(self, batch: Sequence[object]) -> tuple[bytes, str, str, bool]:
        if self.cli == "copilot":  # http/protobuf, as the launcher sets it
            spans = [s for s in batch if isinstance(s, ReadableSpan)]
            return encode_spans(spans).SerializeToString(), "application/x-protobuf", "/v1/traces", False
        assert self.sender is not None
        return self.sender.encode([r for r in batch if isinstance(r, tuple)]), JSON, "/v1/logs", False

    # --- the launcher ---

    def _launcher(self, name: str, attrs: Mapping[str, Any], at: int | None = None) -> None:
        assert self.fleet is not None
        trace_hex, span_hex = launcher_task_ids(self.task_id)
        record = (name, {otlp.TASK_ID: self.task_id, **attrs}, at or time.time_ns())
        self.fleet.send(otlp.encode(self.service, trace_hex, span_hex, [record]), JSON, "/v1/logs", 1)

    def _beat(self) -> None:
        if time.monotonic() - self.beat >= HEARTBEAT_S:
            self.beat = time.monotonic()
            self._launcher(cv.LIVE_HEARTBEAT, {})

    def prompt(self) -> None:
        """A new run: the previous one exits first."""
        self.close()
        self.runs += 1
        self.open = True
        self.task_id = f"{self.session_id}-r{self.runs:02d}"
        self.name = f"{PROMPT[:40]} fl{self.setup}{self.k:03d}s{self.runs:02d}"
        self.started_ns = time.time_ns()
        self.opened = self.beat = time.monotonic()
        self.run_s = self.rng.uniform(15.0, 30.0)
        self.starts[self.runs] = self.opened
        self._launcher(cv.LIVE_TASK_START, {cv.TASK_NAME: self.name, cv.AGENT_ID: self.service}, self.started_ns)
        if self.cli == "copilot":
            resource = {"service.name": self.service, "service.version": "1.0.102", "spanvisor.agent": self.agent}
            resource |= {"spanvisor.task.id": self.task_id, "spanvisor.task.name": self.name}
            provider = TracerProvider(resource=Resource.create(resource), shutdown_on_exit=False)
            provider.add_span_processor(SimpleSpanProcessor(_SpanHandoff(self)))
            self.tracer = provider.get_tracer("github.copilot")
            messages = [{"role": "user", "parts": [{"type": "text", "content": PROMPT}]}]
            self.root = self.tracer.start_span(
                "invoke_agent",
                attributes={
                    "gen_ai.operation.name": "invoke_agent",
                    "gen_ai.conversation.id": self.session_id,
                    "gen_ai.input.messages": json.dumps(messages),
                },
            )
            return
        self.sender = _HandingSender(self, self.service, self.task_id, self.name)
        self.report = StreamReport(self.cli, self.sender, "anthropic/claude-sonnet-4-5")
        if self.cli == "opencode":
            self._line({"type": "step_start", "part": {"type": "step-start"}})
        else:
            self._line({"type": "agent_event", "event": {"type": "content_start", "contentType": "text"}})

    def _line(self, doc: dict[str, Any]) -> None:
        """One line the CLI printed, as the launcher reads it."""
        assert self.report is not None
        if self.cli == "opencode":
            doc = {"timestamp": _ms(), "sessionID": f"ses_{self.session_id}-{self.runs}", **doc}
        else:
            doc = {"ts": _iso(), "taskId": f"{self.session_id}-{self.runs}", **doc}
        self.report(doc)

    def _child(self, name: str, attrs: dict[str, Any]) -> trace.Span:
        assert self.tracer is not None and self.root is not None
        attrs["gen_ai.conversation.id"] = self.session_id
        return self.tracer.start_span(name, context=trace.set_span_in_context(self.root), attributes=attrs)

    def model_call(self, seconds: float) -> None:
        if time.monotonic() - self.opened > self.run_s:
            self.prompt()
        self._beat()
        self.model_tokens += self.rng.randint(500, 2_500)
        total = self.model_tokens
        self.calls += 1
        if self.cli == "copilot":
            span = self._child(f"chat {COPILOT_MODEL}", {"gen_ai.operation.name": "chat"})
            time.sleep(seconds)
            span.set_attributes(
                {
                    "gen_ai.request.model": COPILOT_MODEL,
                    "gen_ai.response.model": COPILOT_MODEL,
                    "gen_ai.usage.input_tokens": total,
                    "gen_ai.usage.output_tokens": 600,
                    "gen_ai.usage.cache_read.input_tokens": total // 3,
                }
            )
            span.end()
        elif self.cli == "opencode":
            self._line({"type": "step_start", "part": {"type": "step-start"}})
            time.sleep(seconds)
            self._line({"type": "text", "part": {"type": "text", "text": "Running the tests."}})
            tokens = {"input": total // 10, "output": 500, "reasoning": 100, "cache": {"read": total - total // 10}}
            self._line({"type": "step_finish", "part": {"type": "step-finish", "tokens": tokens, "cost": 0.02}})
        else:
            time.sleep(seconds)
            self._line({"type": "agent_event", "event": {"type": "content_start", "contentType": "text"}})
            usage = {"type": "usage", "inputTokens": total // 10, "outputTokens": 600}
            usage |= {"cacheReadTokens": total - total // 10, "totalCost": round(0.02 * self.calls, 4)}
            self._line({"type": "agent_event", "event": usage})

    def tool_call(self, seconds: float) -> None:
        self._beat()
        i = len(self.tools)
        m = self.marker(i)
        if self.cli == "copilot":
            attrs = {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "bash", "gen_ai.tool.call.id": m}
            span = self._child("execute_tool bash", {**attrs, "github.copilot.tool.parameters.command": f"ls {m}"})
            time.sleep(seconds)
            self.pending = ToolCall(self.k, i, 0.0)
            span.end()
        elif self.cli == "opencode":
            began = _ms()
            time.sleep(seconds)
            state: dict[str, Any] = {
                "status": "completed",
                "input": {"command": f"pytest -k {m}", "description": "Run the tests"},
            }
            state |= {"output": "ok", "time": {"start": began, "end": _ms()}}
            self.pending = ToolCall(self.k, i, 0.0)
            self._line({"type": "tool_use", "part": {"type": "tool", "tool": "bash", "callID": m, "state": state}})
        else:
            opened: dict[str, Any] = {
                "type": "content_start",
                "contentType": "tool",
                "toolCallId": m,
                "toolName": "execute_command",
            }
            self._line({"type": "agent_event", "event": {**opened, "input": {"command": f"rg {m}"}}})
            time.sleep(seconds)
            end: dict[str, Any] = {
                "type": "content_end",
                "contentType": "tool",
                "toolCallId": m,
                "toolName": "execute_command",
            }
            end |= {"output": [{"success": True, "text": "ok"}], "durationMs": int(seconds * 1000)}
            self.pending = ToolCall(self.k, i, 0.0)
            self._line({"type": "agent_event", "event": end})

    def close(self) -> None:
        """The run's CLI exits: Copilot CLI's spans go now; the launcher waits
        for what it has to send, then ends the task."""
        if not self.open:
            return
        self.open = False
        assert self.fleet is not None
        run_tools = [t for t in self.tools if t.emitted >= self.opened]
        if self.cli == "copilot":
            assert self.root is not None
            self.root.end()
            self.exits.append(time.monotonic())
            self.fleet.flush(self)
        elif self.cli == "opencode":
            self._line({"type": "text", "part": {"type": "text", "text": "Done."}})
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and (self.batch or any(math.isnan(t.acked) for t in run_tools)):
            time.sleep(0.05)
        if self.sender is not None:
            self.sender.close(0)
        task = SessionTask(self.task_id, self.service, True, otlp_args("http://127.0.0.1:9", None, 3.0))
        end = task.end_request(self.name, self.started_ns, "complete", None, None)
        self.fleet.send(json.dumps(end, separators=(",", ":")).encode(), JSON, "/v1/traces", 1)


def session(setup: str, k: int, cli: str, run: str) -> FleetSession:
    """A session of ``cli`` (one of :data:`_fleet.CLIS`)."""
    assert cli in CLIS
    return LaunchedSession(setup, k, cli, run) if cli in LAUNCHED else FleetSession(setup, k, cli, run)
