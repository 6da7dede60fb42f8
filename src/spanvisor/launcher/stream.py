"""What a CLI that sends no telemetry spanvisor reads prints, reported by
``spanvisor run`` on the task it started: its model calls (tokens, and a
cost when it gives one) and tool calls, as they happen.

Its adapter's ``stream`` module reads each JSON line of its output
(:mod:`spanvisor.clis.stream`: OpenCode's and Cline's say why their own
telemetry does not serve) and says what it meant through the
:class:`StreamReport`. Each becomes a log record named
``spanvisor.run.<event>`` (:mod:`spanvisor.receiver.codingagents.launched`
reads them), sent as OTLP/JSON from a bounded background queue, like the
launcher's own records: the CLI never waits on it. A record the receiver
did not take is tried again while the session runs; what could not be
queued is counted and said at the end.

No line says which model answered: the adapter takes it from the command
or the CLI's settings, else leaves it unsaid (the calls are then unpriced
and the context window unknown).
"""

from __future__ import annotations

import collections
import json
import os
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

from spanvisor.clis import registry
from spanvisor.gate import otlp
from spanvisor.gate.taskids import launcher_task_ids

PREFIX = "spanvisor.run."
MAX_QUEUED = 1024
RETRY_S = 2.0
REQUEST_TIMEOUT_S = 3.0
# The resource keys the receiver reads of a launched session.
TASK_ID_KEY, TASK_NAME_KEY = "spanvisor.task.id", "spanvisor.task.name"
AGENT_KEY = "spanvisor.agent"  # the receiver reads it before service.name


def _value(v: Any) -> dict[str, Any]:
    if isinstance(v, bool):
        return {"boolValue": v}
    if isinstance(v, int):
        return {"intValue": str(v)}
    if isinstance(v, float):
        return {"doubleValue": v}
    return {"stringValue": str(v)}


class Sender:
    """Records of one launched session, sent in the background."""

    def __init__(
        self, service: str, task_id: str, name: str, endpoint: str, token: str | None, agent: str | None = None
    ) -> None:
        self.service, self.task_id, self.name = service, task_id, name
        self.agent = agent or service
        self.endpoint, self.token = endpoint, token
        self.trace_hex, self.root_hex = launcher_task_ids(task_id)
        self._queue: collections.deque[otlp.Record] = collections.deque()
        self._cond = threading.Condition()
        self._stopping = False
        self._until = 0.0  # once stopping: no request starts after this (time.monotonic)
        self.dropped = 0
        self._thread = threading.Thread(target=self._run, name="spanvisor-run-stream", daemon=True)
        self._thread.start()

    def say(self, name: str, attrs: Mapping[str, Any], at: int) -> None:
        with self._cond:
            if len(self._queue) >= MAX_QUEUED:
                self.dropped += 1
                return
            self._queue.append((name, dict(attrs), at))
            self._cond.notify()

    def encode(self, records: Sequence[otlp.Record]) -> bytes:
        logs = [
            {
                "timeUnixNano": str(at),
                "observedTimeUnixNano": str(at),
                "eventName": name,
                "traceId": self.trace_hex,
                "spanId": self.root_hex,
                "flags": 1,
                "attributes": [{"key": k, "value": _value(v)} for k, v in attrs.items()],
                "body": {"stringValue": name},
            }
            for name, attrs, at in records
        ]
        resource = {
            "attributes": [
                {"key": k, "value": {"stringValue": v}}
                for k, v in (
                    ("service.name", self.service),
                    (TASK_ID_KEY, self.task_id),
                    (TASK_NAME_KEY, self.name),
                    (AGENT_KEY, self.agent),
                )
            ]
        }
        doc = {
            "resourceLogs": [
                {"resource": resource, "scopeLogs": [{"scope": {"name": "spanvisor.run"}, "logRecords": logs}]}
            ]
        }
        return json.dumps(doc, separators=(",", ":")).encode()

    def close(self, within_s: float) -> int:
        """Send what waits: no request starts after ``within_s``, and one
        under way then is waited for (it ends within :data:`REQUEST_TIMEOUT_S`):
        nothing is in flight once this returns, so the task's end that
        follows never overtakes a record. What is left unsent."""
        with self._cond:
            self._stopping = True
            self._until = time.monotonic() + within_s
            self._cond.notify()
        self._thread.join(within_s + REQUEST_TIMEOUT_S + 1.0)
        with self._cond:
            return len(self._queue)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._stopping:
                    self._cond.wait()
                if not self._queue or (self._stopping and time.monotonic() >= self._until):
                    return
                batch = list(self._queue)[:256]
            if otlp.post(self.endpoint, self.token, self.encode(batch), REQUEST_TIMEOUT_S):
                with self._cond:
                    for _ in batch:
                        self._queue.popleft()
                continue
            with self._cond:
                if self._stopping:
                    return
                self._cond.wait(RETRY_S)


class StreamReport:
    """The tap of :class:`~spanvisor.launcher.results.ResultReader`: one JSON
    line of the CLI's output at a time, read by its adapter, as records
    (a :class:`spanvisor.clis.stream.Report`)."""

    def __init__(self, cli: str, sender: Sender, model: str | None, argv: Sequence[str] = ()) -> None:
        self.cli, self.sender, self.model = cli, sender, model
        self.argv: Sequence[str] = tuple(argv)
        self.adapter = registry.need(cli)
        self.seq = 0
        self.session: str | None = None
        self.notes: dict[str, Any] = {}
        # The file the gate the launcher gave the CLI writes when it loads
        # (spanvisor run --gate: OpenCode's plugin), until looked at.
        self.gate_marker: str | None = None

    def __call__(self, doc: dict[str, Any]) -> None:
        self.adapter.read_stream(self, doc)

    def say(self, event: str, attrs: dict[str, Any], at: int) -> None:
        if self.session is None:
            return  # no session named yet: nothing to file it under
        self.seq += 1
        said = {k: v for k, v in attrs.items() if v is not None}
        self.sender.say(PREFIX + event, {"session.id": self.session, "event.sequence": self.seq, **said}, at)

    def call(
        self,
        at: int,
        fresh: int,
        read: int,
        write: int,
        output: int,
        cost: float | None,
        ms: Any,
        model: str | None = None,
    ) -> None:
        attrs = {
            "model": model or self.model,
            "input_tokens": fresh + read + write,
            "output_tokens": output,
            "cache_read_tokens": read,
            "cache_write_tokens": write,
            "cost_usd": cost if cost and cost > 0 else None,
            "duration_ms": float(ms) if isinstance(ms, int | float) and not isinstance(ms, bool) else None,
        }
        self.say("model_call", attrs, at)

    def tool_ran(self, at: int) -> None:
        """Said once, loudly: the CLI ran a tool with the gate the launcher gave
        it never loaded (OpenCode runs tools ungated when a plugin fails to load)."""
        marker, self.gate_marker = self.gate_marker, None
        if marker is None or os.path.exists(marker):
            return
        said = f"{self.adapter.title} ran a tool call but spanvisor's gate never loaded: its tool calls are NOT gated"
        print(f"spanvisor run: {said}", file=sys.stderr, flush=True)
        self.say("warning", {"message": said}, at)


def start(
    cli: str,
    service: str,
    task_id: str,
    name: str,
    endpoint: str,
    token: str | None,
    argv: Sequence[str],
    agent: str | None = None,
) -> StreamReport | None:
    """The report of a launched session of a CLI whose adapter reads what
    it prints (None for the others, whose own telemetry says it)."""
    adapter = registry.need(cli)
    if adapter.stream is None:
        return None
    model = adapter.stream_model(argv, os.environ, os.getcwd())
    return StreamReport(cli, Sender(service, task_id, name, endpoint, token, agent), model, argv)


def finish(report: StreamReport | None, within_s: float) -> None:
    if report is None:
        return
    left = report.sender.close(within_s) + report.sender.dropped
    if left:
        print(f"spanvisor run: {left} of the records of what {report.cli} printed were not sent", file=sys.stderr)


__all__ = ["PREFIX", "Sender", "StreamReport", "finish", "start"]
