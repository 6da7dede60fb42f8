"""What OpenCode and Cline print, reported by ``spanvisor run`` on the task
it started: their model calls (tokens, and a cost when they give one) and
tool calls, as they happen.

Neither CLI sends telemetry spanvisor can read: OpenCode's OpenTelemetry
is experimental, sends hundreds of spans of its own internals a run and
loses its last batch at exit; Cline exports only to its vendor. Their
machine-readable output says what a task needs, line by line: OpenCode's
``run --format json`` (``step_finish``: a model call's tokens and cost;
``tool_use``: a finished tool call; ``error``), Cline's ``--json``
(``usage`` after each model call, cached input inside its input, its
cost a running total;
``content_start``/``content_end`` of a tool; ``error``). Each becomes a log
record named ``spanvisor.run.<event>``
(:mod:`spanvisor.receiver.codingagents.launched` reads them), sent as
OTLP/JSON from a bounded background queue, like the launcher's own
records: the CLI never waits on it. A record the receiver did not take is
tried again while the session runs; what could not be queued is counted
and said at the end.

Neither line says which model answered: the launcher takes it from the
command (``-m``/``--model``), else from the CLI's settings (OpenCode's
``opencode.json``, Cline's ``providers.json``), else leaves it unsaid (the
calls are then unpriced and the context window unknown).
"""

from __future__ import annotations

import collections
import json
import os
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from spanvisor.gate import otlp
from spanvisor.gate.taskids import launcher_task_ids

PREFIX = "spanvisor.run."
MAX_QUEUED = 1024
RETRY_S = 2.0
REQUEST_TIMEOUT_S = 3.0
MAX_INPUT_CHARS = 4_000
# The resource keys the receiver reads of a launched session.
TASK_ID_KEY, TASK_NAME_KEY = "spanvisor.task.id", "spanvisor.task.name"
AGENT_KEY = "spanvisor.agent"  # the receiver reads it before service.name
STREAMED = ("opencode", "cline")


def _dict(v: Any) -> dict[str, Any]:
    return v if isinstance(v, dict) else {}


def _list(v: Any) -> list[Any]:
    return v if isinstance(v, list) else []


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
        """Send what waits, for at most ``within_s``; what is left unsent."""
        with self._cond:
            self._stopping = True
            self._cond.notify()
        self._thread.join(within_s)
        with self._cond:
            return len(self._queue)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._stopping:
                    self._cond.wait()
                if not self._queue:
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


def _ns_of_ms(v: Any) -> int:
    return int(v * 1_000_000) if isinstance(v, int | float) and not isinstance(v, bool) and v > 0 else time.time_ns()


def _ns_of_iso(v: Any) -> int:
    if isinstance(v, str):
        try:
            return int(datetime.fromisoformat(v.replace("Z", "+00:00")).timestamp() * 1e9)
        except ValueError:
            pass
    return time.time_ns()


def _num(d: Mapping[str, Any], key: str) -> int:
    v = d.get(key)
    return int(v) if isinstance(v, int | float) and not isinstance(v, bool) and v > 0 else 0


def _input(v: Any) -> str:
    try:
        text = json.dumps(v, ensure_ascii=False, sort_keys=True)
    except (TypeError, ValueError):
        text = str(v)
    return (
        text if len(text) <= MAX_INPUT_CHARS else text[: MAX_INPUT_CHARS // 2] + " … " + text[-MAX_INPUT_CHARS // 2 :]
    )


def _cline_input(given: Any) -> str:
    """A Cline tool's input as its step shows it: a ``run_commands`` call's
    commands one after another (Cline runs each, in order), else the input."""
    commands = _list(_dict(given).get("commands"))
    if commands and all(isinstance(c, str) for c in commands):
        return _input({"command": "; ".join(commands)})
    return _input(given)


class StreamReport:
    """The tap of :class:`~spanvisor.launcher.results.ResultReader`: one JSON
    line of OpenCode's or Cline's output at a time, as records."""

    def __init__(self, cli: str, sender: Sender, model: str | None) -> None:
        self.cli, self.sender, self.model = cli, sender, model
        self.seq = 0
        self.session: str | None = None
        self.cost_so_far = 0.0
        self.tool_inputs: dict[str, tuple[Any, int]] = {}
        # The file OpenCode's gate plugin writes when it loads (spanvisor run --gate), until looked at.
        self.gate_marker: str | None = None

    def __call__(self, doc: dict[str, Any]) -> None:
        if self.cli == "opencode":
            self._opencode(doc)
        elif self.cli == "cline":
            self._cline(doc)

    def _say(self, event: str, attrs: dict[str, Any], at: int) -> None:
        if self.session is None:
            return  # no session named yet: nothing to file it under
        self.seq += 1
        said = {k: v for k, v in attrs.items() if v is not None}
        self.sender.say(PREFIX + event, {"session.id": self.session, "event.sequence": self.seq, **said}, at)

    def _call(self, at: int, fresh: int, read: int, write: int, output: int, cost: float | None, ms: Any) -> None:
        attrs = {
            "model": self.model,
            "input_tokens": fresh + read + write,
            "output_tokens": output,
            "cache_read_tokens": read,
            "cache_write_tokens": write,
            "cost_usd": cost if cost and cost > 0 else None,
            "duration_ms": float(ms) if isinstance(ms, int | float) and not isinstance(ms, bool) else None,
        }
        self._say("model_call", attrs, at)

    def _opencode(self, doc: dict[str, Any]) -> None:
        sid = doc.get("sessionID")
        if isinstance(sid, str) and sid:
            self.session = sid
        at = _ns_of_ms(doc.get("timestamp"))
        part = _dict(doc.get("part"))
        kind = doc.get("type")
        if kind == "step_finish":
            tokens = _dict(part.get("tokens"))
            cache = _dict(tokens.get("cache"))
            cost = part.get("cost")
            out = _num(tokens, "output") + _num(tokens, "reasoning")
            usd = float(cost) if isinstance(cost, int | float) and not isinstance(cost, bool) else None
            self._call(at, _num(tokens, "input"), _num(cache, "read"), _num(cache, "write"), out, usd, None)
        elif kind == "tool_use":
            self._gated(at)
            state = _dict(part.get("state"))
            times = _dict(state.get("time"))
            start, end = times.get("start"), times.get("end")
            ms = end - start if isinstance(start, int) and isinstance(end, int) and end >= start else None
            failed = state.get("status") == "error"
            attrs = {
                "tool_name": part.get("tool"),
                "tool_input": _input(state.get("input")),
                "success": not failed,
                "error": state.get("error") if failed else None,
                "duration_ms": ms,
            }
            self._say("tool_call", attrs, _ns_of_ms(end) if isinstance(end, int) else at)
        elif kind == "error":
            err = _dict(doc.get("error"))
            data = _dict(err.get("data"))
            status = data.get("statusCode")
            msg = data.get("message") or err.get("name") or "error"
            self._say("warning", {"message": "API error" + (f" (HTTP {status})" if status else "") + f": {msg}"}, at)
        else:
            self._say("life", {}, at)

    def _gated(self, at: int) -> None:
        """Said once, loudly: OpenCode ran a tool with the gate's plugin never
        loaded (OpenCode runs tools ungated when a plugin fails to load)."""
        marker, self.gate_marker = self.gate_marker, None
        if marker is None or os.path.exists(marker):
            return
        said = "OpenCode ran a tool call but spanvisor's gate plugin never loaded: its tool calls are NOT gated"
        print(f"spanvisor run: {said}", file=sys.stderr, flush=True)
        self._say("warning", {"message": said}, at)

    def _cline(self, doc: dict[str, Any]) -> None:
        task = doc.get("taskId")
        if isinstance(task, str) and task:
            self.session = task
        at = _ns_of_iso(doc.get("ts"))
        event = _dict(doc.get("event"))
        kind = event.get("type") if doc.get("type") == "agent_event" else None
        if kind == "usage":
            total = event.get("totalCost")
            cost = None
            if isinstance(total, int | float) and not isinstance(total, bool):
                cost, self.cost_so_far = float(total) - self.cost_so_far, float(total)
            # Cline counts cached input inside inputTokens (its own pricing
            # takes the fresh input as inputTokens - cacheRead - cacheWrite).
            read, write = _num(event, "cacheReadTokens"), _num(event, "cacheWriteTokens")
            fresh = max(0, _num(event, "inputTokens") - read - write)
            self._call(at, fresh, read, write, _num(event, "outputTokens"), cost, None)
        elif kind == "content_start" and event.get("contentType") == "tool":
            self.tool_inputs[str(event.get("toolCallId"))] = (event.get("input"), at)
        elif kind == "content_end" and event.get("contentType") == "tool":
            given, _ = self.tool_inputs.pop(str(event.get("toolCallId")), (None, at))
            outputs = _list(event.get("output"))
            failed = any(isinstance(o, dict) and o.get("success") is False for o in outputs) or bool(event.get("error"))
            attrs = {
                "tool_name": event.get("toolName"),
                "tool_input": _cline_input(given),
                "success": not failed,
                "error": str(event.get("error") or "a command failed") if failed else None,
                "duration_ms": event.get("durationMs"),
            }
            self._say("tool_call", attrs, at)
        elif kind == "error":
            err = _dict(event.get("error"))
            klass = event.get("errorClass")
            said = f"API error ({klass}): " if isinstance(klass, str) and klass else "error: "
            self._say("warning", {"message": said + str(err.get("message") or "unknown")}, at)
        else:
            self._say("life", {}, at)


def _flag(argv: Sequence[str], *names: str) -> str | None:
    for i, a in enumerate(argv):
        for n in names:
            if a == n and i + 1 < len(argv):
                return argv[i + 1]
            if a.startswith(n + "="):
                return a.split("=", 1)[1]
    return None


def _read_json(path: Path) -> Any:
    try:
        if path.stat().st_size > 1024 * 1024:
            return None
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def model_of(cli: str, argv: Sequence[str], env: Mapping[str, str], cwd: str) -> str | None:
    """The model a launched OpenCode or Cline session uses, as far as its
    command or settings say (OpenCode's ``provider/model`` without the provider)."""
    given = _flag(argv[1:], "-m", "--model")
    home = Path(env.get("HOME") or os.path.expanduser("~"))
    if cli == "opencode":
        if not given:
            config = Path(env.get("XDG_CONFIG_HOME") or home / ".config") / "opencode" / "opencode.json"
            for path in (Path(cwd) / "opencode.json", config):
                doc = _read_json(path)
                if isinstance(doc, dict) and isinstance(doc.get("model"), str):
                    given = doc["model"]
                    break
        return given.split("/", 1)[1] if given and "/" in given else given or None
    if cli == "cline" and not given:
        data = _flag(argv[1:], "--data-dir")
        folder = Path(data) if data else Path(_flag(argv[1:], "--config") or home / ".cline") / "data"
        doc = _read_json(folder / "settings" / "providers.json")
        if isinstance(doc, dict):
            provider = _flag(argv[1:], "-P", "--provider") or doc.get("lastUsedProvider")
            entry = (doc.get("providers") or {}).get(provider) if isinstance(doc.get("providers"), dict) else None
            settings = entry.get("settings") if isinstance(entry, dict) else None
            model = settings.get("model") if isinstance(settings, dict) else None
            given = model if isinstance(model, str) else None
    return given or None


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
    """The report of a launched OpenCode or Cline session (None for the
    other CLIs, whose own telemetry says it)."""
    if cli not in STREAMED:
        return None
    model = model_of(cli, argv, os.environ, os.getcwd())
    return StreamReport(cli, Sender(service, task_id, name, endpoint, token, agent), model)


def finish(report: StreamReport | None, within_s: float) -> None:
    if report is None:
        return
    left = report.sender.close(within_s) + report.sender.dropped
    if left:
        print(f"spanvisor run: {left} of the records of what {report.cli} printed were not sent", file=sys.stderr)


__all__ = ["PREFIX", "Sender", "StreamReport", "finish", "model_of", "start"]
