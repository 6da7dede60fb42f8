"""Settings that are each valid but do not work together are said, once, in one line."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from spanvisor.cli.main import main
from spanvisor.config import Config
from spanvisor.config.conflicts import conflicts
from spanvisor.pipeline.pipeline import Pipeline
from spanvisor.testing import InMemorySink


def _config(**env: str) -> Config:
    return Config.load(env=env, extra=())


def test_defaults_work_together() -> None:
    assert conflicts(_config()) == []


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({"SPANVISOR_STALL_AFTER": "10s"}, "SPANVISOR_STALL_AFTER = 10s is not longer than SPANVISOR_HEARTBEAT = 30s"),
        ({"SPANVISOR_STALL_AFTER": "30s"}, "set it to at least 60s"),
        (
            {"SPANVISOR_STALL_AFTER_BY_AGENT": "rivet=20"},
            "SPANVISOR_STALL_AFTER_BY_AGENT (rivet) = 20s is not longer than SPANVISOR_HEARTBEAT",
        ),
        ({"SPANVISOR_LOST_AFTER": "5m"}, "SPANVISOR_LOST_AFTER = 300s is not longer than SPANVISOR_STALL_AFTER = 600s"),
        # The tracker says the stall just before the loss (issue 64): what is
        # lost is the time a stalled task could come back in.
        ({"SPANVISOR_LOST_AFTER": "10m"}, "said stalled and lost in the same check"),
    ],
)
def test_each_conflict_is_one_line_naming_both_settings(env: dict[str, str], says: str) -> None:
    lines = conflicts(_config(**env))
    assert len(lines) == 1 and says in lines[0] and "\n" not in lines[0], lines


def test_zero_turns_a_check_off_and_is_no_conflict() -> None:
    assert conflicts(_config(SPANVISOR_STALL_AFTER="0", SPANVISOR_LOST_AFTER="10s")) == []
    assert conflicts(_config(SPANVISOR_HEARTBEAT="5s", SPANVISOR_STALL_AFTER="12s")) == []


def test_check_prints_it_and_a_pipeline_logs_it_once(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    for name in ("SPANVISOR_SINKS", "SPANVISOR_DATABASE_URL", "SLACK_BOT_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SPANVISOR_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("SPANVISOR_STALL_AFTER", "10s")
    main(["check"])
    assert "\n  ! SPANVISOR_STALL_AFTER = 10s is not longer than" in capsys.readouterr().out
    config = _config(SPANVISOR_DATA_DIR=str(tmp_path), SPANVISOR_STALL_AFTER="10s").with_values(shutdown_timeout_s=2.0)
    said: list[str] = []
    # On the logger itself: spanvisor's logging, once configured, does not propagate to caplog.
    handler = logging.Handler(logging.WARNING)
    handler.emit = lambda record: said.append(record.getMessage())  # type: ignore[method-assign]
    logger = logging.getLogger("spanvisor.pipeline")
    logger.addHandler(handler)
    try:
        pipeline = Pipeline(config, sinks=[InMemorySink()]).start()
        pipeline.shutdown(5)
    finally:
        logger.removeHandler(handler)
    said = [line for line in said if "SPANVISOR_STALL_AFTER" in line]
    assert len(said) == 1 and said[0].startswith("configuration: SPANVISOR_STALL_AFTER = 10s"), said
