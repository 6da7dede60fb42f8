"""`spanvisor emit` from separate calls forms one task, through the receiver."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import RunningReceiver, local_settings
from spanvisor.cli import emit, emit_spans
from spanvisor.config import Config
from spanvisor.events import ArtifactAdded, Checkpoint, TaskFinished, TaskStarted
from spanvisor.pipeline.pipeline import Pipeline
from spanvisor.testing import InMemorySink


@pytest.mark.parametrize("protocol", ["http/protobuf", "grpc"])
def test_emit_calls_form_one_task(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, protocol: str) -> None:
    monkeypatch.setenv("SPANVISOR_DATA_DIR", str(tmp_path))
    sink = InMemorySink()
    config = Config.load(env={"SPANVISOR_DATA_DIR": str(tmp_path)}, extra=[])
    pipeline = Pipeline(config=config, sinks=[sink], path="receiver").start()
    r = RunningReceiver(pipeline, local_settings(tmp_path, token="s3cret"))
    try:
        endpoint = f"http://{r.grpc_target}" if protocol == "grpc" else f"http://127.0.0.1:{r.receiver.http_port}"
        base = [
            "emit",
            "{kind}",
            "--task",
            "deploy-42",
            "--agent",
            "shellbot",
            "--endpoint",
            endpoint,
            "--protocol",
            protocol,
            "--token",
            "s3cret",
        ]

        def run(kind: str, *extra: str) -> int:
            argv = [a.format(kind=kind) for a in base] + list(extra)
            return emit.main(argv)

        assert run("start", "--name", "Deploy 42", "--repo", "acme/web") == 0
        assert run("checkpoint", "--progress", "50", "Validating") == 0
        assert run("artifact", "--name", "build.log", "--uri", "s3://b/build.log") == 0
        assert run("finish", "--status", "complete") == 0
        assert pipeline.force_flush(10)
    finally:
        r.close()
    events = [e for e in sink.events if e.task.task_id == "deploy-42"]
    kinds = [type(e) for e in events]
    assert kinds[0] is TaskStarted and kinds[-1] is TaskFinished
    assert kinds.count(TaskStarted) == 1 and kinds.count(TaskFinished) == 1
    assert any(isinstance(e, Checkpoint) and e.task.progress == 50 for e in events)
    assert any(isinstance(e, ArtifactAdded) for e in events)
    final = events[-1].task
    assert final.status == "complete" and final.agent_id == "shellbot"
    assert final.task_name == "Deploy 42"
    assert final.started_ns < final.ended_ns  # type: ignore[operator]


def test_a_progress_out_of_range_is_sent_in_range_and_said(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A script's arithmetic (150, -3) must not fail its task, nor pass silently."""
    monkeypatch.setenv("SPANVISOR_DATA_DIR", str(tmp_path))
    sink = InMemorySink()
    config = Config.load(env={"SPANVISOR_DATA_DIR": str(tmp_path)}, extra=[])
    pipeline = Pipeline(config=config, sinks=[sink], path="receiver").start()
    r = RunningReceiver(pipeline, local_settings(tmp_path, token="s3cret"))
    endpoint = f"http://127.0.0.1:{r.receiver.http_port}"
    try:
        base = ["emit", "checkpoint", "--task", "pct-1", "--agent", "sh", "--endpoint", endpoint, "--token", "s3cret"]
        assert emit.main([*base, "--progress", "150", "Almost"]) == 0
        assert "spanvisor emit: --progress 150 is outside 0-100: sent as 100" in capsys.readouterr().err
        assert pipeline.force_flush(30)
        assert any(isinstance(e, Checkpoint) and e.task.progress == 100 for e in sink.events)
        assert emit.main([*base, "--progress", "-3"]) == 0
        assert "--progress -3 is outside 0-100: sent as 0" in capsys.readouterr().err
    finally:
        r.close()


def test_emit_wrong_token_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pipeline: Pipeline, sink: InMemorySink
) -> None:
    monkeypatch.setenv("SPANVISOR_DATA_DIR", str(tmp_path))
    r = RunningReceiver(pipeline, local_settings(tmp_path, token="right"))
    try:
        argv = [
            "emit",
            "checkpoint",
            "--task",
            "t",
            "--endpoint",
            f"http://127.0.0.1:{r.receiver.http_port}",
            "--token",
            "wrong",
            "--timeout",
            "2",
            "x",
        ]
        assert emit.main(argv) == 1
        assert pipeline.stats.value("receiver_requests_total", transport="http", outcome="unauthenticated") >= 1
    finally:
        r.close()
    assert pipeline.stats.value("spans_received_total", path="receiver") == 0
    assert sink.events == []


def test_ids_are_deterministic() -> None:
    assert emit_spans.task_ids("a") == emit_spans.task_ids("a")
    assert emit_spans.task_ids("a") != emit_spans.task_ids("b")
