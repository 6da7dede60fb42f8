"""What the launcher reads of Cline's ``--json`` (spanvisor.launcher.stream),
sent as OTLP/JSON to a loopback receiver: each model call once with Cline's
own counts (its ``inputTokens`` holds the cached input: counted once), the
cost of each call the step of Cline's running total, and a shell call's
commands as its step's input. The real Cline proves the same in
tests/codingagents/test_cline.py."""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spanvisor.launcher.stream import PREFIX, Sender, StreamReport


class Collector(ThreadingHTTPServer):
    """An OTLP/JSON logs receiver keeping every record it was sent."""

    def __init__(self) -> None:
        self.records: list[tuple[str, dict[str, Any]]] = []
        self.lock = threading.Lock()
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with collector.lock:
                    for rl in body["resourceLogs"]:
                        for sl in rl["scopeLogs"]:
                            for r in sl["logRecords"]:
                                attrs = {a["key"]: next(iter(a["value"].values())) for a in r["attributes"]}
                                collector.records.append((r["eventName"], attrs))
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args: Any) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def of(self, task: str) -> list[tuple[str, dict[str, Any]]]:
        with self.lock:
            return [(n, a) for n, a in self.records if a.get("session.id") == task]


@pytest.fixture(scope="module")
def collector() -> Iterator[Collector]:
    server = Collector()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def _read(collector: Collector, task: str, lines: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    report = StreamReport("cline", Sender("cline", f"launched-{task}", "a task", collector.endpoint, None), "gpt-4.1")
    for line in lines:
        report({**line, "taskId": task, "ts": "2026-11-26T01:45:17.342Z"})
    assert report.sender.close(10.0) == 0
    return collector.of(task)


def _usage(fresh: int, read: int, write: int, output: int, total_cost: float) -> dict[str, Any]:
    """A ``usage`` line as Cline 3.0.65 prints it: the cache inside
    ``inputTokens``, a cache field left out when 0, the cost a running total."""
    event: dict[str, Any] = {"type": "usage", "inputTokens": fresh + read + write, "outputTokens": output}
    event.update({k: v for k, v in (("cacheReadTokens", read), ("cacheWriteTokens", write)) if v})
    event["totalCost"] = total_cost
    return {"type": "agent_event", "event": event}


SESSIONS = itertools.count()
CALL = st.tuples(*(st.integers(0, 200_000) for _ in range(4)), st.integers(0, 10_000))


@settings(max_examples=60, deadline=None)
@given(calls=st.lists(CALL, min_size=1, max_size=6))
def test_each_call_once_with_clines_counts_and_its_share_of_the_cost(
    collector: Collector, calls: list[tuple[int, int, int, int, int]]
) -> None:
    task = f"conv-{next(SESSIONS)}"  # a session of its own per example
    lines, running = [], 0
    for fresh, read, write, output, cents in calls:
        running += cents
        lines.append(_usage(fresh, read, write, output, running / 100))
    got = [a for n, a in _read(collector, task, lines) if n == PREFIX + "model_call"]
    assert len(got) == len(calls)
    for a, (fresh, read, write, output, cents) in zip(got, calls, strict=True):
        assert (int(a["input_tokens"]), int(a["cache_read_tokens"]), int(a["cache_write_tokens"])) == (
            fresh + read + write,
            read,
            write,
        )
        assert int(a["output_tokens"]) == output
        assert a.get("cost_usd", 0) == pytest.approx(cents / 100, abs=1e-9)
    assert sum(int(a["input_tokens"]) for a in got) == sum(f + r + w for f, r, w, _, _ in calls)


def test_a_shell_calls_commands_are_its_steps_input(collector: Collector) -> None:
    commands = ["npm test", "git status"]
    start = {"type": "content_start", "contentType": "tool", "toolName": "run_commands", "toolCallId": "c1"}
    end = {"type": "content_end", "contentType": "tool", "toolName": "run_commands", "toolCallId": "c1"}
    lines = [
        {"type": "agent_event", "event": {**start, "input": {"commands": commands}}},
        {"type": "agent_event", "event": {**end, "output": [{"success": True}], "durationMs": 12}},
    ]
    [(_, a)] = [(n, a) for n, a in _read(collector, "shell", lines) if n == PREFIX + "tool_call"]
    assert (a["tool_name"], a["tool_input"], a["success"]) == (
        "run_commands",
        '{"command": "npm test; git status"}',
        True,
    )
