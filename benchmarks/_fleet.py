"""The client side of bench_fleet: coding-agent sessions on their own
schedules, each exporting its log records as its CLI's OTel exporter does.

A session emits its records through a real SDK ``LoggerProvider`` (its CLI's
resource) whose processor hands each record to :class:`CliExporter` at the
moment of ``emit``. That exporter batches as the CLI's SDK does and sends each
batch as one OTLP/HTTP request made by the SDK's OTLP encoder (``encode_logs``,
what every OTLP log exporter sends; Gemini CLI's as OTLP/JSON):

* Claude Code and Gemini CLI use the JavaScript SDK's BatchLogRecordProcessor:
  a timer starts when a record finds the batch empty and the batch goes when
  it fires, ``scheduledDelayMillis`` later (Claude Code's
  ``OTEL_LOGS_EXPORT_INTERVAL``, default 5000; Gemini CLI leaves the SDK's
  default, 1000);
* Codex CLI (the Rust SDK) exports on a fixed tick, about every 3 s, at a phase
  of its own;
* Qwen Code, a Gemini CLI fork, sends Gemini CLI's records under its own names
  (``qwen-code.<event>``), as OTLP/JSON in a chunked request (no
  Content-Length), from its SDK's BatchLogRecordProcessor at its default 1 s.

The CLIs that need ``spanvisor run`` (Copilot CLI, OpenCode, Cline) are
:mod:`_fleet_launched`'s.

Each tool call's command carries a marker (``fl<setup><session>n<call>``) that
its Slack work log line shows, so the bench can find the first Slack call
showing it.
"""

from __future__ import annotations

import heapq
import json
import random
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from coding_sessions import PROMPT, Rec, as_json  # type: ignore[import-not-found]
from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
from opentelemetry.sdk._logs import LoggerProvider, ReadableLogRecord
from opentelemetry.sdk._logs.export import LogRecordExporter, LogRecordExportResult, SimpleLogRecordProcessor
from opentelemetry.sdk.resources import Resource

from _fleet_post import Poster

# (service.name, export behaviour, delay s) per CLI; see the module doc.
CLIS: dict[str, tuple[str, str, float]] = {
    "claude": ("claude-code", "timer", 5.0),
    "codex": ("codex_exec", "tick", 3.0),
    "gemini": ("gemini-cli", "timer", 1.0),
    "qwen": ("qwen-code", "timer", 1.0),
    # Under spanvisor run (_fleet_launched): Copilot CLI's spans leave at its
    # exit; the launcher sends what OpenCode and Cline print at once.
    "copilot": ("github-copilot", "exit", 0.0),
    "opencode": ("opencode", "timer", 0.0),
    "cline": ("cline", "timer", 0.0),
}
MODELS = {"gemini": "gemini-2.5-pro", "qwen": "qwen3-coder-plus"}


@dataclass
class ToolCall:
    session: int
    i: int
    emitted: float  # time.monotonic() when the SDK's emit handed it to the exporter
    acked: float = float("nan")  # its batch's 2xx


class FleetSession:
    """One CLI session: its records, its exporter's batch and its tool calls."""

    def __init__(self, setup: str, k: int, cli: str, run: str) -> None:
        self.setup, self.k, self.cli = setup, k, cli
        self.service, self.mode, self.delay = CLIS[cli]
        self.session_id = f"fleet-{setup}-{k:03d}-{run}"
        self.agent = f"fl-{setup}-{k:03d}"
        self.rng = random.Random(f"{setup}-{k}")
        self.tools: list[ToolCall] = []
        self.batch: list[tuple[object, ToolCall | None]] = []  # a log record, a span or a launcher record
        self.armed = False  # a timer (JS SDK) is running for the batch
        self.done = False
        self.pending: ToolCall | None = None
        self.supervision: dict[str, Any] = {}  # bench_fleet --supervised (_fleet_supervised)
        self.fleet: Fleet | None = None
        self.seq = 0
        self.model_tokens = 20_000
        resource = Resource.create(
            {"service.name": self.service, "service.version": "fleet", "spanvisor.agent": self.agent}
        )
        self.provider = LoggerProvider(resource=resource, shutdown_on_exit=False)
        self.logger = self.provider.get_logger(f"com.{cli}.telemetry")

    def marker(self, i: int) -> str:
        return f"fl{self.setup}{self.k:03d}n{i:04d}"

    def attach(self, fleet: Fleet) -> None:
        """Its records go to ``fleet`` when the SDK's processor hands them over."""
        self.fleet = fleet
        self.provider.add_log_record_processor(SimpleLogRecordProcessor(_Handoff(fleet, self)))

    def request(self, batch: Sequence[object]) -> tuple[bytes, str, str, bool]:
        """One export of ``batch``: (body, content type, path, chunked)."""
        req = encode_logs([r for r in batch if isinstance(r, ReadableLogRecord)])
        if self.cli in ("gemini", "qwen"):  # their exporters speak OTLP/JSON over HTTP; Qwen Code's chunked
            return as_json(req), "application/json", "/v1/logs", self.cli == "qwen"
        return req.SerializeToString(), "application/x-protobuf", "/v1/logs", False

    @property
    def tasks(self) -> int:
        """The tasks it makes: one (the launched CLIs': one a run)."""
        return 1

    def close(self) -> None:
        """The session's end (the CLIs that only end when their process does)."""

    def fleet_flush(self) -> None:
        """Its batch goes now (the CLI exits)."""
        if self.fleet is not None:
            self.fleet.flush(self)

    # --- records, named and shaped as tests/receiver/coding_sessions.py's ---

    def _emit(self, name: str, attrs: dict[str, Any], body: str | None = None) -> None:
        if self.cli == "claude":
            self.seq += 1
            attrs = {"session.id": self.session_id, "prompt.id": "p-1", "event.sequence": self.seq, **attrs}
            rec = Rec(f"claude_code.{name}", {**attrs, "event.name": name}, body=f"claude_code.{name}")
        elif self.cli == "codex":
            rec = Rec(
                f"codex.{name}",
                {"conversation.id": self.session_id, "event.name": f"codex.{name}", "model": "gpt-5-codex", **attrs},
            )
        else:  # Gemini CLI, and Qwen Code under its own names
            event = f"{'qwen-code' if self.cli == 'qwen' else 'gemini_cli'}.{name}"
            rec = Rec(
                event,
                {"session.id": self.session_id, "installation.id": "i-1", "event.name": event, **attrs},
                body=body,
            )
        now = time.time_ns()
        self.logger.emit(timestamp=now, observed_timestamp=now, body=rec.body, attributes=rec.attrs)

    def prompt(self) -> None:
        if self.cli == "codex":
            self._emit("conversation_starts", {"approval_policy": "never", "sandbox_policy": "workspace-write"})
        if self.cli in MODELS:
            self._emit("config", {"model": MODELS[self.cli]}, "CLI configuration loaded.")
        self._emit("user_prompt", {"prompt": PROMPT, "prompt_length": len(PROMPT)}, "User prompt.")

    def model_call(self, seconds: float) -> None:
        self.model_tokens += self.rng.randint(500, 2_500)  # the context grows, well under 70 % of any window
        total = self.model_tokens
        if self.cli == "claude":
            time.sleep(seconds)
            self._emit(
                "api_request",
                {
                    "model": "claude-sonnet-4-5-20250929",
                    "input_tokens": total // 10,
                    "output_tokens": 600,
                    "cache_read_tokens": total - total // 10 - 500,
                    "cache_creation_tokens": 500,
                    "cost_usd": 0.02,
                    "duration_ms": int(seconds * 1000),
                },
            )
        elif self.cli == "codex":
            self._emit("api_request", {"http.response.status_code": 200, "attempt": 1, "duration_ms": 900})
            self._emit("sse_event", {"event.kind": "response.created"})
            time.sleep(seconds)
            self._emit(
                "sse_event",
                {
                    "event.kind": "response.completed",
                    "input_token_count": total,
                    "cached_token_count": total // 3,
                    "output_token_count": 700,
                    "reasoning_token_count": 200,
                },
            )
        else:
            self._emit("api_request", {"model": MODELS[self.cli], "prompt_id": "g-1"}, "API request.")
            time.sleep(seconds)
            self._emit(
                "api_response",
                {
                    "model": MODELS[self.cli],
                    "status_code": 200,
                    "duration_ms": int(seconds * 1000),
                    "prompt_id": "g-1",
                    "input_token_count": total,
                    "output_token_count": 500,
                    "cached_content_token_count": total // 4,
                    "thoughts_token_count": 150,
                    "total_token_count": total + 650,
                },
                "API response.",
            )

    def tool_call(self, seconds: float) -> None:
        i = len(self.tools)
        m = self.marker(i)
        if self.cli == "claude":
            self._emit("tool_decision", {"tool_name": "Bash", "decision": "accept", "source": "config"})
            time.sleep(seconds)
            self.pending = ToolCall(self.k, i, 0.0)
            self._emit(
                "tool_result",
                {
                    "tool_name": "Bash",
                    "success": "true",
                    "duration_ms": int(seconds * 1000),
                    "tool_input": json.dumps({"command": f"pytest -k {m}"}),
                },
            )
        elif self.cli == "codex":
            call = {"tool_name": "shell", "call_id": f"c{i}"}
            self._emit("tool_decision", {**call, "decision": "approved", "source": "config"})
            time.sleep(seconds)
            self.pending = ToolCall(self.k, i, 0.0)
            args = json.dumps({"command": ["bash", "-lc", f"rg {m}"]})
            self._emit(
                "tool_result",
                {**call, "duration_ms": int(seconds * 1000), "success": "true", "output": "ok", "arguments": args},
            )
        else:
            time.sleep(seconds)
            self.pending = ToolCall(self.k, i, 0.0)
            self._emit(
                "tool_call",
                {
                    "function_name": "run_shell_command",
                    "decision": "accept",
                    "success": True,
                    "duration_ms": int(seconds * 1000),
                    "function_args": json.dumps({"command": f"ls {m}"}),
                    "prompt_id": "g-1",
                },
                "Tool call.",
            )


class Fleet:
    """Every session's exporter: batches kept per session, sent when due by
    one scheduler thread (a heap of due times) through the poster's pool."""

    def __init__(self, sessions: Sequence[FleetSession], poster: Poster) -> None:
        self.sessions, self.poster = list(sessions), poster
        self.sent = poster.sent
        self.cv = threading.Condition()
        self.heap: list[tuple[float, int]] = []
        self.stopping = False
        self.inflight = 0
        for s in self.sessions:
            s.attach(self)
        self.thread = threading.Thread(target=self._run, name="fleet-export", daemon=True)

    def start_ticks(self, t0: float) -> None:
        with self.cv:
            for s in self.sessions:
                if s.mode == "tick":
                    heapq.heappush(self.heap, (t0 + s.rng.uniform(0, s.delay), s.k))
        self.thread.start()

    def handed(self, s: FleetSession, record: object) -> None:
        """The SDK's processor hands a record over at emit (the agent's thread)."""
        tool, s.pending = s.pending, None
        if tool is not None:
            tool.emitted = time.monotonic()
            s.tools.append(tool)
        with self.cv:
            s.batch.append((record, tool))
            if s.mode == "timer" and not s.armed:
                s.armed = True
                heapq.heappush(self.heap, (time.monotonic() + s.delay, s.k))
                self.cv.notify()

    def flush(self, s: FleetSession) -> None:
        """``s``'s batch goes now (a CLI that exports when it exits)."""
        with self.cv:
            if s.batch and not s.armed:
                s.armed = True
                heapq.heappush(self.heap, (time.monotonic(), s.k))
                self.cv.notify()

    def send(self, body: bytes, ctype: str, path: str, records: int) -> None:
        """A request of its own (the launcher's start, heartbeats and end), sent at once."""
        with self.cv:
            self.inflight += 1
        self.poster.pool.submit(self._send, body, ctype, path, records)

    def _send(self, body: bytes, ctype: str, path: str, records: int) -> None:
        try:
            ok = self.poster.post(body, ctype, path)
            with self.sent.lock:
                self.sent.requests += 1
                self.sent.records += records
                self.sent.unsent += 0 if ok else records
        finally:
            with self.cv:
                self.inflight -= 1
                self.cv.notify()

    def _run(self) -> None:
        by_k = {s.k: s for s in self.sessions}
        while True:
            with self.cv:
                if self.stopping and not self.heap:
                    return
                now = time.monotonic()
                if not self.heap or self.heap[0][0] > now:
                    self.cv.wait(min(0.5, self.heap[0][0] - now) if self.heap else 0.5)
                    continue
                _, k = heapq.heappop(self.heap)
                s = by_k[k]
                batch, s.batch, s.armed = s.batch, [], False
                if s.mode == "tick" and not (s.done and not batch):
                    heapq.heappush(self.heap, (now + s.delay, k))
                if batch:
                    self.inflight += 1
            if batch:
                self.poster.pool.submit(self._export, s, batch)

    def _export(self, s: FleetSession, batch: list[tuple[object, ToolCall | None]]) -> None:
        try:
            body, ctype, path, chunked = s.request([r for r, _ in batch])
            ok = self.poster.post(body, ctype, path, chunked)
            acked = time.monotonic()
            with self.sent.lock:
                self.sent.requests += 1
                self.sent.records += len(batch)
                self.sent.unsent += 0 if ok else len(batch)
            for _, tool in batch:
                if tool is not None and ok:
                    tool.acked = acked
        finally:
            with self.cv:
                self.inflight -= 1
                self.cv.notify()

    def finish(self, timeout: float) -> bool:
        """After the sessions' last records: every batch sent at its due time
        (no early flush), then the scheduler stops. False if it took too long."""
        deadline = time.monotonic() + timeout
        for s in self.sessions:
            s.done = True
        with self.cv:
            while any(s.batch for s in self.sessions) or self.inflight:
                if time.monotonic() > deadline:
                    return False
                self.cv.wait(0.2)
            self.stopping = True
            self.heap.clear()
            self.cv.notify()
        self.thread.join(5)
        self.poster.pool.shutdown(wait=True)
        return True


class _Handoff(LogRecordExporter):
    def __init__(self, fleet: Fleet, session: FleetSession) -> None:
        self.fleet, self.session = fleet, session

    def export(self, batch: Sequence[ReadableLogRecord]) -> LogRecordExportResult:
        for record in batch:
            self.fleet.handed(self.session, record)
        return LogRecordExportResult.SUCCESS

    def shutdown(self) -> None:
        return None

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True


def run_session(s: FleetSession, t0: float, seconds: float, supervisor: Any = None) -> None:
    """One session's life: a prompt, then turns of a model call and one to
    three tool calls, a second or two of thought between tool calls, now and
    then a new prompt; no new turn after ``seconds``. ``supervisor``
    (``_fleet_supervised.Supervised``): the session also asks for an
    approval once, waits for the answer, and ends (its run is shorter)."""
    r = s.rng
    if supervisor is not None:
        supervisor.plan(s)
        seconds = s.supervision["run_s"]
    end = t0 + seconds
    time.sleep(max(0.0, t0 + r.uniform(0, min(5.0, seconds / 6)) - time.monotonic()))
    began = time.monotonic()
    if supervisor is not None:
        supervisor.started(s)
    s.prompt()
    while time.monotonic() < end:
        s.model_call(r.uniform(0.5, 2.0))
        for _ in range(r.randint(1, 3)):
            if time.monotonic() >= end:
                break
            s.tool_call(r.uniform(0.05, 1.0))
            if supervisor is not None:
                supervisor.after_tool(s, began)
            time.sleep(r.uniform(0.5, 2.5))
        if r.random() < 0.1 and time.monotonic() < end:
            s.prompt()
    s.close()
    if supervisor is not None:
        s.fleet_flush()  # the CLI exports what it holds as it exits (Claude Code, Codex CLI), then its SessionEnd hook
        supervisor.end(s)
