"""``spanvisor follow`` as a real subprocess against a real receiver: one
line per event when piped, the table of open tasks when rendered."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

from spanvisor.cli.follow import View, bar
from spanvisor.stream.body import body, kind_of
from spanvisor.stream.sink import StreamSink
from spanvisor.testing import InMemorySink
from tests.receiver.conftest import RunningReceiver, local_settings, make_pipeline
from tests.stream.conftest import TOKEN, Served, serve_stream, tasks
from tests.waiting import wait_until


def test_follow_prints_every_event_of_a_run(tmp_path: Path) -> None:
    s = serve_stream(tmp_path)
    try:
        spans = tasks(2, seed=41, checkpoints=2, plain_per_step=0)
        cmd = [sys.executable, "-m", "spanvisor.cli", "follow", "--url", s.base, "--token", TOKEN, "--agent", "rivet"]
        proc = subprocess.Popen([*cmd, "--events", "18"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        wait_until(
            lambda: s.receiver.pipeline.stats.value("stream_clients") == 1 or proc.poll() is not None, 30, "follow"
        )
        s.post(spans)
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
        lines = out.splitlines()
        events = wait_until(lambda: len(s.sink.events) == 18 and s.sink.events, what="the pipeline's own sink")
        assert len(lines) == len(events) == 18
        for line, e in zip(lines, events, strict=True):
            assert kind_of(e) in line and e.task_id in line
    finally:
        s.receiver.close()


def test_follow_started_before_the_server_waits_for_it(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    cmd = [sys.executable, "-m", "spanvisor.cli", "follow", "--url", f"http://127.0.0.1:{port}", "--token", TOKEN]
    proc = subprocess.Popen(
        [*cmd, "--events", "9", "--wait", "60"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert proc.stderr is not None
        assert "waiting for the event stream" in proc.stderr.readline()
        sink, stream = InMemorySink(), StreamSink()
        pipeline = make_pipeline(tmp_path / "data", [sink, stream], plugins=True, SPANVISOR_OTLP_TOKEN=TOKEN)
        s = Served(RunningReceiver(pipeline, local_settings(tmp_path, token=TOKEN, http_port=port)), sink, stream)
        try:
            wait_until(lambda: s.receiver.pipeline.stats.value("stream_clients") == 1 or proc.poll() is not None, 60)
            s.post(tasks(1, seed=43, checkpoints=2, plain_per_step=0))
            out, _ = proc.communicate(timeout=30)
        finally:
            s.receiver.close()
    finally:
        proc.kill()
    assert proc.returncode == 0 and len(out.splitlines()) == 9


def test_follow_says_when_nothing_answers() -> None:
    start = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "spanvisor.cli", "follow", "--url", "http://127.0.0.1:9", "--wait", "1"],
        check=False,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2 and "waiting for the event stream" in done.stderr and "no event stream" in done.stderr
    assert time.monotonic() - start < 30


def test_follow_exits_at_once_on_a_url_that_cannot_name_a_server() -> None:
    """Waiting helps a server still starting, never a malformed URL: without
    --wait it would have waited for ever."""
    for url, why in (("localhost:4318", "is not a URL"), ("http://[bad", "is not a URL")):
        done = subprocess.run(
            [sys.executable, "-m", "spanvisor.cli", "follow", "--url", url],
            check=False,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 2, done
        assert done.stderr.startswith(f"spanvisor: {url} {why} ("), done.stderr
        assert "give --url http://HOST:PORT" in done.stderr and "waiting" not in done.stderr


def test_the_table_shows_open_tasks_with_progress_and_forgets_finished_ones() -> None:
    from spanvisor.events import TaskFinished, TaskStarted, TaskView

    v = TaskView(
        task_id="T1", trace_id="ab" * 16, root_span_id="cd" * 8, agent_id="rivet", status="working", progress=50
    )
    view = View()
    view.take("task_started", body(TaskStarted(event_id="e1", time_ns=1, task=v)))
    shown = view.render()
    assert "T1" in shown and bar(50) in shown and "█" * 10 in shown
    done = TaskView(task_id="T1", trace_id="ab" * 16, root_span_id="cd" * 8, agent_id="rivet", status="complete")
    view.take(
        "task_finished", body(TaskFinished(event_id="e2", time_ns=2, task=done, outcome="complete", duration_s=1))
    )
    assert "(no open task)" in view.render() and "task_finished" in view.render()


def test_a_refused_decision_is_shown_as_refused_and_an_applied_one_as_before() -> None:
    from spanvisor.cli.follow import event_line
    from spanvisor.events import Decision, HumanIntervention, TaskView

    v = TaskView(task_id="T1", trace_id="ab" * 16, root_span_id="cd" * 8, agent_id="rivet", status="working")
    d = Decision("iv-1", "T1", "retry", "U1", 1, actor_name="alice")
    applied = event_line("intervention", body(HumanIntervention(event_id="iv-1", time_ns=1, task=v, decision=d)))
    assert applied.endswith("T1 retry by alice")
    refused = HumanIntervention(
        event_id="iv-1", time_ns=1, task=v, decision=d, outcome="denied", reason="not failed", code="not_failed"
    )
    assert event_line("intervention", body(refused)).endswith("T1 refused (not_failed): retry by alice")


def test_a_process_without_a_stream_sink_says_so_and_follow_does_not_wait(tmp_path: Path) -> None:
    """An explicit SPANVISOR_SINKS without 'stream': GET /v1/events is a 404
    naming the setting (a 503 told clients to wait for ever), and follow
    exits with that line."""
    from tests.cli.test_decide import TOKEN as DECIDE_TOKEN
    from tests.cli.test_decide import _Serve

    served = _Serve(tmp_path / "serve")  # a pipeline whose only sink is in memory
    try:
        done = subprocess.run(
            [sys.executable, "-m", "spanvisor.cli", "follow", "--url", served.base, "--token", DECIDE_TOKEN],
            check=False,
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        served.close()
    assert done.returncode == 1, done
    assert "HTTP 404" in done.stderr and "SPANVISOR_SINKS names no 'stream'" in done.stderr, done.stderr
