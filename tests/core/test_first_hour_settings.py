"""One bad setting disables only its part (issue 66).

``SPANVISOR_CONTEXT_THRESHOLDS=70,85`` (percents, not ratios) used to turn
all of spanvisor off in the agent's process. A core setting that only tunes
one part now keeps its default there, in one error line; the settings that
choose where events go or what limits an agent still turn it off.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from unittest.mock import patch

import pytest

from spanvisor.config import DEFAULT_STANDS_IN, Config
from spanvisor.otel.processor import SpanvisorSpanProcessor
from spanvisor.pipeline.agentconfig import blocking_problems
from tests.core.test_bad_settings_in_agents import _clean_env, _heard


def test_percent_thresholds_keep_spanvisor_on_with_the_default(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    env = {**_clean_env(tmp_path), "SPANVISOR_SINKS": "stream", "SPANVISOR_CONTEXT_THRESHOLDS": "70,85"}
    with patch.dict(os.environ, env, clear=True), _heard(caplog):
        processor = SpanvisorSpanProcessor()
    try:
        assert not processor.off
        assert [s.name for s in processor.pipeline.sinks] == ["stream"]
        assert processor.pipeline.config.get("context_thresholds") == (0.7, 0.85)
    finally:
        processor.shutdown()
    said = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert said == [
        "configuration error: context_thresholds (env SPANVISOR_CONTEXT_THRESHOLDS) = '70,85' is invalid; "
        "accepted: ratios in (0, 1], e.g. 0.7,0.85; the default (0.7,0.85) is used in this process"
    ]


def test_the_settings_that_stand_in_are_the_cores_and_the_rest_still_block() -> None:
    loaded = Config.load(env={})
    core = {s.name for s in loaded.settings if s.name not in loaded.owners}
    assert DEFAULT_STANDS_IN.issubset(core)
    # Where events go and what limits an agent never fall back silently.
    assert not DEFAULT_STANDS_IN & {"sinks", "data_dir", "state_store", "budget_day_usd", "budget_stop", "model_prices"}
    bad = Config.load(env={"SPANVISOR_CONTEXT_THRESHOLDS": "70,85", "SPANVISOR_LOG_TAIL_LINES": "many"}, lenient=True)
    assert len(bad.invalid) == 2 and blocking_problems(bad) == []
    blocked = Config.load(env={"SPANVISOR_BUDGET_DAY_USD": "lots"}, lenient=True)
    assert [p.split(" ")[0] for p in blocking_problems(blocked)] == ["budget_day_usd"]


def test_serve_and_the_cli_stay_strict() -> None:
    with pytest.raises(Exception, match="context_thresholds"):
        Config.load(env={"SPANVISOR_CONTEXT_THRESHOLDS": "70,85"})
