"""What ``spanvisor run`` learned from the CLI's output reaches the task
before or with its end, never after it: the receiver takes no record of a
task that ended, so a pull request said by a record the end overtook was
lost (the task ended complete, its pull request unsaid).

* The launcher's records (:mod:`spanvisor.launcher.records`) and the records
  of what the CLI printed (:mod:`spanvisor.launcher.stream`) are closed
  before the end is sent: a request still under way then is waited for,
  however short the close's bound, so nothing of them is in flight when
  the end goes.
* The end itself says the pull request the output showed
  (:func:`spanvisor.launcher.results.with_results`): a receiver that never
  got the record has it from the end.
"""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, cast

import pytest

from spanvisor.gate import session as gs
from spanvisor.hook import task as ct
from spanvisor.launcher.records import Records
from spanvisor.launcher.results import ResultReader, with_results
from spanvisor.launcher.stream import Sender
from spanvisor.spans import conventions as cv
from tests.cli.coding_harness import TOKEN, Serve, launch_claude
from tests.waiting import wait_until

PR = "https://github.com/acme/api/pull/12"


class HeldReceiver:
    """An OTLP/HTTP endpoint that holds each answer until it is let go of:
    what it was sent, and what it answered, in order."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.arrived = threading.Event()
        self.answered: list[dict[str, Any]] = []
        held = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                held.arrived.set()
                held.release.wait(30)
                held.answered.append(body)  # before the answer: a sender that got it finds it here
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture
def held() -> Iterator[HeldReceiver]:
    receiver = HeldReceiver()
    try:
        yield receiver
    finally:
        receiver.close()


def _closes_once_answered(held: HeldReceiver, close: Any) -> None:
    """``close`` (bounded by 0 s) started while a request is under way: it
    has not returned while the receiver holds the answer, and once it does,
    the request was answered and nothing is left."""
    assert held.arrived.wait(10), "the record was not sent"
    left: list[int] = []
    closing = threading.Thread(target=lambda: left.append(close()))
    closing.start()
    closing.join(0.3)
    # The old close returned at once here, the request still in flight:
    # the task's end, sent next, overtook it.
    assert closing.is_alive(), "close returned with a request in flight"
    held.release.set()
    closing.join(10)
    assert not closing.is_alive() and left == [0]
    assert len(held.answered) == 1


def test_the_launchers_records_are_answered_before_its_close_returns(held: HeldReceiver) -> None:
    task_id = f"claude-code-{uuid.uuid4().hex[:8]}"
    records = Records(gs.TaskKey(task_id, "claude-code", True), held.url, None, task_id)
    records.say(cv.LIVE_TASK_UPDATE, {cv.PULL_REQUEST: PR})
    _closes_once_answered(held, lambda: records.close(within_s=0.0))
    said = held.answered[0]["resourceLogs"][0]["scopeLogs"][0]["logRecords"][0]
    assert {"key": cv.PULL_REQUEST, "value": {"stringValue": PR}} in said["attributes"]


def test_the_records_of_what_the_cli_printed_are_answered_before_their_close_returns(held: HeldReceiver) -> None:
    sender = Sender("opencode", f"opencode-{uuid.uuid4().hex[:8]}", "a task", held.url, None)
    sender.say("spanvisor.run.step", {"n": 1}, 1)
    _closes_once_answered(held, lambda: sender.close(0.0))


def _reading_that_made(pr: str) -> ResultReader:
    told: list[str] = []
    reading = ResultReader("claude-code-text", on_pull_request=told.append)
    use = {"type": "tool_use", "id": "t1", "name": "Bash", "input": {"command": "gh pr create --fill"}}
    result = {"type": "tool_result", "tool_use_id": "t1", "content": f"{pr}\n", "is_error": False}
    for part, role in ((use, "assistant"), (result, "user")):
        reading.line(json.dumps({"type": role, "message": {"role": role, "content": [part]}}) + "\n")
    assert told == [pr]
    return reading


def test_the_end_says_the_pull_request_a_receiver_never_got_as_a_record(tmp_path: Path) -> None:
    """The record of the pull request is lost (refused, its answer never
    came): the end the launcher sends says it, and the task has it."""
    serve = Serve(tmp_path / "serve")
    try:
        task_id = f"claude-code-{uuid.uuid4().hex[:8]}"
        target = ct.otlp_args(serve.base, TOKEN, 10.0)
        task = ct.SessionTask(task_id, "claude-code", True, target)
        ended = task.end_request("open a PR", 1, "complete", None, "Finished")
        request = with_results(ended, _reading_that_made(PR))
        assert task.send_end(request)
        finished = wait_until(lambda: serve.finished(task_id), 60, "the task's end")
        assert (finished.outcome, finished.task.pull_request) == ("complete", PR)
    finally:
        serve.close()


class Swallowing:
    """A proxy in front of ``serve`` that answers the record saying the pull
    request and never passes it on (as if it reached the task after its
    end): every other request goes through."""

    def __init__(self, serve: Serve) -> None:
        self.swallowed = 0
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.path.endswith("/v1/logs") and cv.PULL_REQUEST.encode() in body:
                    proxy.swallowed += 1
                    status, answer, kind = 200, b"{}", "application/json"
                else:
                    headers = {k: v for k, v in self.headers.items() if k.lower() in ("authorization", "content-type")}
                    req = urllib.request.Request(serve.base + self.path, data=body, headers=headers, method="POST")
                    try:
                        with urllib.request.urlopen(req, timeout=30) as resp:
                            status, answer, kind = resp.status, resp.read(), resp.headers.get("Content-Type", "")
                    except urllib.error.HTTPError as exc:
                        status, answer, kind = exc.code, exc.read(), exc.headers.get("Content-Type", "")
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"  # all launch_claude reads of a Serve
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


def test_spanvisor_runs_end_says_the_pull_request_whatever_became_of_its_record(tmp_path: Path) -> None:
    """The launcher in front of a CLI whose output shows the pull request it
    made; the record saying it never reaches the task: its end does."""
    serve = Serve(tmp_path / "serve")
    proxy = Swallowing(serve)
    try:
        task = f"claude-code-{uuid.uuid4().hex[:8]}"
        use = {"type": "tool_use", "id": "t1", "name": "Bash", "input": {"command": "gh pr create --fill"}}
        result = {"type": "tool_result", "tool_use_id": "t1", "content": f"{PR}\n", "is_error": False}
        docs = [{"type": r, "message": {"role": r, "content": [p]}} for p, r in ((use, "assistant"), (result, "user"))]
        printed = tmp_path / "printed.jsonl"
        printed.write_text("".join(json.dumps(d) + "\n" for d in docs))
        work = tmp_path / "work"
        work.mkdir()
        # The launcher sends to the proxy; its control requests go straight to serve.
        control = {"SPANVISOR_CONTROL_URL": serve.base}
        launch_claude(cast(Serve, proxy), work, tmp_path, task, f"cat {printed}", env=control)
        assert proxy.swallowed == 1
        finished = wait_until(lambda: serve.finished(task), 60, "the launched task's end")
        assert (finished.outcome, finished.task.pull_request) == ("complete", PR)
    finally:
        proxy.close()
        serve.close()


def test_an_end_without_a_pull_request_says_none() -> None:
    task = ct.SessionTask("claude-code-x", "claude-code", True, ct.otlp_args("http://127.0.0.1:1", None, 1.0))
    request = task.end_request("a task", 1, "complete", None, "Finished")
    before = json.dumps(request, sort_keys=True)
    assert json.dumps(with_results(request, ResultReader("claude-code-text")), sort_keys=True) == before
