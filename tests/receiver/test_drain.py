"""A graceful stop keeps the OTLP ports open while it drains: new exports
get 503 + ``Retry-After`` (HTTP) and UNAVAILABLE + ``RetryInfo`` (gRPC, in
the status details and the ``google.rpc.retryinfo-bin`` trailer), never a
refused connection, until the ports close at the end of the drain.

A real ``spanvisor serve`` with the Slack sink on the fake Slack; the fake
holds its answers, so the drain lasts exactly as long as the test needs
(no timing margin): SIGTERM, then a client keeps sending on both
transports, the fake is released after a few refusals each, and the client
goes on until the ports are closed.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import grpc
import pytest
from agent_traces import request_for, task_spans
from google.rpc.error_details_pb2 import RetryInfo  # type: ignore[import-untyped]
from google.rpc.status_pb2 import Status  # type: ignore[import-untyped]
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from serve_proc import FakeSlackThread, ServeProcess, post, slack_env
from tests.waiting import wait_until

pytestmark = pytest.mark.slow

EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
# Refusals seen on each transport before the fake Slack lets the drain end.
REFUSALS = 3
MAX_ROUNDS = 5000


@pytest.fixture
def slack() -> FakeSlackThread:
    s = FakeSlackThread()
    yield s  # type: ignore[misc]
    s.release()
    s.close()


def _http_once(url: str, body: bytes) -> str:
    """O: 200; R: 503 with Retry-After; X: connection refused; E<...>: anything else."""
    req = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": "application/x-protobuf"})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return "O" if resp.status == 200 else f"E{resp.status}"
    except urllib.error.HTTPError as exc:
        if exc.code == 503 and int(exc.headers.get("Retry-After", "0")) >= 1:
            return "R"
        return f"E{exc.code}"
    except urllib.error.URLError as exc:
        return "X" if isinstance(exc.reason, ConnectionRefusedError) else f"E{type(exc.reason).__name__}"
    except ConnectionRefusedError:
        return "X"
    except OSError as exc:
        return f"E{type(exc).__name__}"


def _hook_once(url: str) -> tuple[int, bytes]:
    """serve's Claude Code hook route, asked once (status, body)."""
    hook = url.rsplit("/v1/", 1)[0] + "/v1/hooks/claude-code"
    req = urllib.request.Request(hook, data=b"{}", method="POST", headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _retry_info(err: grpc.RpcError) -> bool:
    """UNAVAILABLE with a RetryInfo both in the status details and in the trailer."""
    trailers = dict(err.trailing_metadata() or ())  # type: ignore[attr-defined]
    raw, status_raw = trailers.get("google.rpc.retryinfo-bin"), trailers.get("grpc-status-details-bin")
    if raw is None or status_raw is None:
        return False
    delay = RetryInfo.FromString(raw).retry_delay
    status = Status.FromString(status_raw)
    in_details = any(d.Is(RetryInfo.DESCRIPTOR) for d in status.details)
    return in_details and (delay.seconds > 0 or delay.nanos > 0)


def _grpc_once(port: int, body: bytes) -> str:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        export = channel.unary_unary(
            EXPORT, request_serializer=lambda b: b, response_deserializer=ExportTraceServiceResponse.FromString
        )
        try:
            export(body, timeout=30)
            return "O"
        except grpc.RpcError as err:
            code = err.code()  # type: ignore[attr-defined]
            if code == grpc.StatusCode.UNAVAILABLE:
                # A closed port is UNAVAILABLE too, but without any RetryInfo.
                return "R" if _retry_info(err) else "X"
            return f"E{code.name}"


def _one_span_request(i: int) -> bytes:
    req = ExportTraceServiceRequest()
    span = req.resource_spans.add().scope_spans.add().spans.add()
    span.trace_id = (i + 1).to_bytes(16, "big")
    span.span_id = (i + 1).to_bytes(8, "big")
    span.name = f"refused-{i}"
    span.start_time_unix_nano = time.time_ns()
    span.end_time_unix_nano = span.start_time_unix_nano + 1
    return req.SerializeToString()


def _well_formed(kind: str, seq: str) -> None:
    """Accepted, then refused with a retry hint, then closed: in that order only
    (one error, such as a reset, as the port closes under a request)."""
    assert re.fullmatch(r"O*R+(E[A-Za-z_]+)?X*", seq), f"{kind} outcomes during the stop: {seq}"


def test_drain_answers_retry_until_the_ports_close(tmp_path: Path, slack: FakeSlackThread) -> None:
    env = slack_env(
        tmp_path,
        slack.base_url,
        SPANVISOR_SINKS="slack,console",
        SPANVISOR_SHUTDOWN_TIMEOUT="120s",
        SPANVISOR_SLACK_TIMEOUT="120s",
        PYTHONFAULTHANDLER="1",
    )
    serve = ServeProcess(tmp_path, env, start=False)
    try:
        serve.start(timeout=240)
        assert post(serve.url, request_for(task_spans(1, seed=61)).SerializeToString())
        wait_until(lambda: len(slack.parents()) == 1, 30, "the first task's parent")
        # Slack stops answering: the next task's parent keeps the drain going.
        slack.hold()
        assert post(serve.url, request_for(task_spans(1, seed=62)).SerializeToString())
        assert serve.proc is not None
        serve.proc.send_signal(signal.SIGTERM)
        outcomes = {"http": "", "grpc": ""}
        released = False
        hook_said = None
        for i in range(MAX_ROUNDS):
            body = _one_span_request(i)
            if not outcomes["http"].endswith("X"):
                outcomes["http"] += _http_once(serve.url, body)
            if hook_said is None and outcomes["http"].endswith("R"):
                hook_said = _hook_once(serve.url)
            if not outcomes["grpc"].endswith("X"):
                outcomes["grpc"] += _grpc_once(serve.grpc, body)
            if not released and all(o.count("R") >= REFUSALS for o in outcomes.values()):
                slack.release()
                released = True
            if all(o.endswith("X") for o in outcomes.values()):
                break
        assert released, outcomes
        # A hook route answers its CLI's deny while serve drains (Claude Code
        # would run the call on a 503 unless its entry says onFailure: block).
        assert hook_said is not None and hook_said[0] == 200, hook_said
        inner = json.loads(hook_said[1])["hookSpecificOutput"]
        assert inner["permissionDecision"] == "deny" and "shutting down" in inner["permissionDecisionReason"]
        try:
            code = serve.proc.wait(60)
        except subprocess.TimeoutExpired:
            # Once in a full CI run serve took over 60 s to exit here (not
            # seen again): every thread's stack into its log this time.
            serve.proc.send_signal(signal.SIGABRT)  # PYTHONFAULTHANDLER
            serve.proc.wait(30)
            pytest.fail("serve did not exit within 60 s of its drain's end:\n" + serve.log_text()[-30_000:])
        assert code == 0
        for kind, seq in outcomes.items():
            _well_formed(kind, seq)
        log = serve.log_text()
        assert "marked delivered through entry" in log, log
        assert "Traceback" not in log, log
    finally:
        slack.release()
        serve.stop()
    # What was accepted before the stop was delivered; nothing refused was.
    parents = slack.parents()
    texts = " ".join(str(p.text) for p in parents)
    assert len(parents) == 2, texts
    assert "T61-0" in texts and "T62-0" in texts, texts
    assert "refused-" not in texts
