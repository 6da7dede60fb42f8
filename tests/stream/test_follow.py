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


def test_ids_money_and_ratios_are_shown_as_tasks_shows_them() -> None:
    """Twelve-character ids, dollars, percentages (it showed 65-character ids,
    "0.85 in ~3 calls" and "1.14 of 1.25 usd")."""
    from spanvisor.cli.follow import event_line
    from spanvisor.events import BudgetWarning, ContextForecast, TaskStarted, TaskView

    long_id = "4f0c2e1d9a7b" + "x" * 53
    v = TaskView(
        task_id=long_id, trace_id="ab" * 16, root_span_id="cd" * 8, agent_id="rivet", status="working",
        input_tokens=12_345, output_tokens=678, cost_usd=1.14,
    )  # fmt: skip
    forecast = ContextForecast(
        event_id="f", time_ns=1, task=v, threshold=0.85, ratio=0.73, tokens=146_000, limit=200_000, calls=3, eta_s=None
    )
    line = event_line("context_forecast", body(forecast))
    assert line.endswith("4f0c2e1d9a7b context at 73%: 85% in about 3 calls") and long_id not in line
    budget = BudgetWarning(event_id="b", time_ns=1, task=v, scope="task", unit="usd", level=0.9, used=1.14, budget=1.25)
    assert event_line("budget_warning", body(budget)).endswith("task budget at 90%: $1.14 of $1.25")
    view = View()
    view.take("task_started", body(TaskStarted(event_id="s", time_ns=1, task=v)))
    row = view.render().splitlines()[1]
    assert row.startswith("4f0c2e1d9a7b rivet") and "12,345/678" in row and "$1.14" in row


def test_a_request_shows_its_question_and_the_command_that_answers_it() -> None:
    """Once as lines when piped, and under the table while it waits, with the
    --url follow was given, as `spanvisor approvals` prints it."""
    from spanvisor.cli.follow import short_id
    from spanvisor.events import ApprovalRequest, Checkpoint, TaskView

    ask = ApprovalRequest(approval_id="a1", question="Apply the fix to prod?", digest="d" * 16)
    v = TaskView(
        task_id="T-approve-1", trace_id="ab" * 16, root_span_id="cd" * 8, agent_id="rivet", run_id="r1",
        status="awaiting_approval", approvals=(ask,),
    )  # fmt: skip
    view = View(url="http://127.0.0.1:9999")
    first = view.take("checkpoint", body(Checkpoint(event_id="c1", time_ns=1, task=v))).splitlines()
    assert len(first) == 3 and "Apply the fix to prod?" in first[1]
    command = first[2].strip()
    assert command.endswith(
        "approve --url http://127.0.0.1:9999 T-approve-1 a1 --run r1 --digest " + "d" * 16 + "   (or: reject)"
    )
    again = view.take("checkpoint", body(Checkpoint(event_id="c2", time_ns=2, task=v)))
    assert len(again.splitlines()) == 1  # said once per request
    shown = view.render()
    assert "Waiting for a person:" in shown and f"✋ {short_id(v.task_id)} a1: Apply the fix to prod?" in shown
    assert command in shown


def test_follow_says_when_the_stream_ended_and_stops(tmp_path: Path) -> None:
    """A stream that ends and does not come back within --wait (the demo has
    finished) is one line and exit 0, not a wait for ever."""
    s = serve_stream(tmp_path)
    cmd = [sys.executable, "-m", "spanvisor.cli", "follow", "--url", s.base, "--token", TOKEN, "--wait", "1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: s.receiver.pipeline.stats.value("stream_clients") == 1 or proc.poll() is not None, 30)
        s.post(tasks(1, seed=44, checkpoints=1, plain_per_step=0))
        wait_until(lambda: len(s.sink.events) >= 3, 30, "the events")
    finally:
        s.receiver.close()
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    [said] = [line for line in err.splitlines() if "ended" in line]
    assert said.startswith(f"spanvisor: the event stream at {s.base} ended and did not come back within 1s")
    assert out.strip()


def test_a_task_renamed_by_its_root_stays_one_row_and_its_requests_are_not_asked_again() -> None:
    """A task shown under a derived id, then under the id its root named
    (``former_id``): one row, and ``?task=`` by the former id still matches."""
    import dataclasses

    from spanvisor.events import ApprovalRequest, Checkpoint, TaskStarted, TaskView
    from spanvisor.stream.sink import item_of
    from spanvisor.stream.sse import Filters

    derived = f"{'ab' * 16}-{'cd' * 8}"
    ask = ApprovalRequest("go", "Ship it?", digest="d")
    v = TaskView(
        task_id=derived,
        trace_id="ab" * 16,
        root_span_id="cd" * 8,
        agent_id="rivet",
        status="awaiting_approval",
        approvals=(ask,),
    )
    view = View()
    first = view.take("task_started", body(TaskStarted(event_id="e1", time_ns=1, task=v)))
    assert "spanvisor approve" in first
    renamed = Checkpoint(event_id="e2", time_ns=2, task=dataclasses.replace(v, task_id="fix-42", former_id=derived))
    again = view.take(kind_of(renamed), body(renamed))
    assert "spanvisor approve" not in again  # the same request, not a new one
    assert list(view.tasks) == ["fix-42"] and list(view.runs) == ["fix-42"]
    assert Filters(tasks=frozenset({derived})).match(item_of(renamed))
    assert Filters(tasks=frozenset({"fix-42"})).match(item_of(renamed))
    assert not Filters(tasks=frozenset({"other"})).match(item_of(renamed))
