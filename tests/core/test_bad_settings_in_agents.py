"""A bad ``SPANVISOR_*`` value never breaks the agent, in-process or zero-code.

Whatever the environment holds, the agent runs, its spans (and logs) reach
the OTLP exporter configured beside spanvisor (a real SDK exporter to a
local OTLP receiver the test owns), and every refused value is one line
naming its variable. spanvisor runs without the part the value concerns
(a sink's setting: that sink), or not at all.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from unittest.mock import patch

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

from spanvisor.config import Config
from spanvisor.otel import attach
from spanvisor.otel.exporter import SpanvisorSpanExporter
from spanvisor.otel.processor import SpanvisorSpanProcessor
from spanvisor.pipeline.agentconfig import blocking_problems
from spanvisor.spans import conventions as cv
from tests.fakes.otlp_receiver import OtlpReceiver

VENV_BIN = Path(sys.executable).parent

# Every variable spanvisor reads, but the few that choose where it writes
# (fixed below so that nothing lands outside the test's directory).
FIXED = {"SPANVISOR_SINKS", "SPANVISOR_DATA_DIR", "SPANVISOR_CONFIG", "SPANVISOR_CONSOLE_STREAM"}
VARIABLES = sorted({s.env for s in Config.load(env={}).settings} - FIXED)
# Values valid for some settings and junk for most.
VALUES = ["70,85", "0.7,0.85", "abc", "-1", "0", "1", "2.5", "1s", "yes", "off", "a=1", "{", "http://", "never"]

environments = st.dictionaries(st.sampled_from(VARIABLES), st.sampled_from(VALUES), min_size=1, max_size=6)


def _clean_env(tmp: Path) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("SPANVISOR_", "SLACK_", "OTEL_"))}
    return {
        **base,
        "SPANVISOR_SINKS": "console",
        "SPANVISOR_CONSOLE_STREAM": "stderr",
        "SPANVISOR_DATA_DIR": str(tmp / "data"),
        "SPANVISOR_SHUTDOWN_TIMEOUT": "2s",
    }


def _said(records: list[logging.LogRecord], env: dict[str, str]) -> None:
    """Each refused value is one line naming its variable (a sink's, when the sink runs)."""
    config = Config.load(env=env, lenient=True)
    text = [r.getMessage() for r in records]
    # A bad core value turns spanvisor off: no sink is built, so only the
    # core's lines are said (and `spanvisor check` lists the rest).
    off = bool(blocking_problems(config))
    for name, why in config.invalid.items():
        sink = config.owners.get(name, "sink:console").startswith("sink:")
        if sink and (off or config.owners.get(name) != "sink:console"):
            continue
        lines = [t for t in text if why in t]
        assert len(lines) >= 1 and all("\n" not in t for t in lines), (name, text)


@contextmanager
def _heard(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """spanvisor's lines in ``caplog``, whether or not its own handler
    (which does not propagate) is set up by then."""
    logger = logging.getLogger("spanvisor")
    level, propagate = logger.level, logger.propagate
    logger.addHandler(caplog.handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        yield
    finally:
        logger.removeHandler(caplog.handler)
        logger.setLevel(level)
        logger.propagate = propagate


@pytest.fixture(scope="module")
def receiver() -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as r:
        yield r


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(env=environments, path=st.sampled_from(["processor", "exporter"]))
def test_in_process_the_agent_runs_and_its_spans_reach_the_exporter_beside(
    env: dict[str, str], path: str, receiver: OtlpReceiver, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    full = {**_clean_env(tmp_path), **env}
    name = f"task-{len(receiver.requests)}-{sorted(env.items())}"
    caplog.clear()
    with patch.dict(os.environ, full, clear=True), patch.object(attach, "_default", None):
        with _heard(caplog):
            provider = TracerProvider(shutdown_on_exit=False)
            ours = SpanvisorSpanProcessor() if path == "processor" else BatchSpanProcessor(SpanvisorSpanExporter())
            provider.add_span_processor(ours)
            provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=f"{receiver.url}/v1/traces")))
            tracer = provider.get_tracer("agent")
            with tracer.start_as_current_span(name, attributes={cv.TASK_NAME: "t", cv.AGENT_ID: "a"}):
                with tracer.start_as_current_span("step"):
                    pass
            provider.shutdown()
    assert name in receiver.span_names() and "step" in receiver.span_names()
    _said(caplog.records, full)


def test_a_bad_core_value_turns_spanvisor_off_in_one_line(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # A core setting that tunes one part keeps its default instead
    # (tests/core/test_first_hour_settings.py); a budget does not.
    env = {**_clean_env(tmp_path), "SPANVISOR_BUDGET_DAY_USD": "lots"}
    with patch.dict(os.environ, env, clear=True), _heard(caplog):
        processor = SpanvisorSpanProcessor(sinks=[])
    assert processor.off and processor.force_flush()
    processor.shutdown()
    said = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert said == [
        "configuration error: budget_day_usd (env SPANVISOR_BUDGET_DAY_USD) = 'lots' is invalid; "
        "accepted: dollars; spanvisor is off in this process; the agent runs on "
        "(`spanvisor check` lists every problem)"
    ]


def test_a_bad_sink_setting_leaves_that_sink_out_and_the_others_run(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    env = {**_clean_env(tmp_path), "SPANVISOR_SINKS": "console,stream", "SPANVISOR_CONSOLE_INTERVAL": "often"}
    with patch.dict(os.environ, env, clear=True), _heard(caplog):
        processor = SpanvisorSpanProcessor(config=Config.load(lenient=True))
    try:
        assert not processor.off
        assert [s.name for s in processor.pipeline.sinks] == ["stream"]
    finally:
        processor.shutdown()
    said = [r.getMessage() for r in caplog.records if "SPANVISOR_CONSOLE_INTERVAL" in r.getMessage()]
    assert len(said) == 1 and said[0].endswith("the agent runs on without the console sink"), said


def test_a_setting_only_serve_reads_is_ignored_in_an_agent(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    env = {**_clean_env(tmp_path), "SPANVISOR_SINKS": "stream", "SPANVISOR_OTLP_HTTP_PORT": "http"}
    with patch.dict(os.environ, env, clear=True), _heard(caplog):
        processor = SpanvisorSpanProcessor(config=Config.load(lenient=True))
    try:
        assert not processor.off and [s.name for s in processor.pipeline.sinks] == ["stream"]
    finally:
        processor.shutdown()
    said = [r.getMessage() for r in caplog.records if "SPANVISOR_OTLP_HTTP_PORT" in r.getMessage()]
    assert len(said) == 1 and said[0].endswith("ignored (only `spanvisor serve` reads it)"), said


APP = textwrap.dedent(
    """
    import logging
    from opentelemetry import trace

    logging.getLogger().setLevel(logging.INFO)
    tracer = trace.get_tracer("agent")
    with tracer.start_as_current_span("the-agents-task", attributes={"agent.task.name": "t"}):
        with tracer.start_as_current_span("step"):
            logging.getLogger("agent").warning("the agent's own log line")
    print("the agent ran")
    """
)


@pytest.mark.slow
@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(env=environments, live=st.booleans())
def test_zero_code_the_provider_keeps_its_other_exporters(
    env: dict[str, str], live: bool, receiver: OtlpReceiver, tmp_path: Path
) -> None:
    """``OTEL_TRACES_EXPORTER=spanvisor,otlp opentelemetry-instrument``: the
    SDK's configurator never sees an exception from spanvisor, so the OTLP
    span exporter and the logger provider are set up as without it."""
    app = tmp_path / "app.py"
    app.write_text(APP)
    before = len(receiver.requests)
    full = {
        **_clean_env(tmp_path),
        **env,
        "OTEL_TRACES_EXPORTER": "spanvisor,otlp",
        "OTEL_LOGS_EXPORTER": "otlp",
        "OTEL_METRICS_EXPORTER": "none",
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url,
        "OTEL_PYTHON_LOGGING_AUTO_INSTRUMENTATION_ENABLED": "true",
        "OTEL_BSP_SCHEDULE_DELAY": "100",
        "OTEL_BLRP_SCHEDULE_DELAY": "100",
        # The frameworks' instrumentations (installed for the conformance
        # matrix) are off: what is tested is the SDK's configurator meeting
        # spanvisor's settings, and loading them cost 7 s of CPU a run.
        "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": "*,openai_agents,smolagents,langchain,llama_index",
        **({"SPANVISOR_LIVE": "1"} if live else {}),
    }
    out = subprocess.run(
        [str(VENV_BIN / "opentelemetry-instrument"), sys.executable, str(app)],
        env=full,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0 and "the agent ran" in out.stdout, out
    assert "Traceback" not in out.stderr and "Configuration of spanvisor failed" not in out.stderr, out.stderr
    got = OtlpReceiver.__new__(OtlpReceiver)
    got.requests, got._lock = receiver.requests[before:], receiver._lock
    assert {"the-agents-task", "step"} <= set(got.span_names()), out.stderr
    assert "the agent's own log line" in got.log_bodies(), out.stderr
    config = Config.load(env=full, lenient=True)
    off = bool(blocking_problems(config))  # off: no sink is built, only the core's lines
    for name, why in config.invalid.items():
        sink = config.owners.get(name, "sink:console").startswith("sink:")
        if sink and (off or config.owners.get(name) != "sink:console"):
            continue  # a sink that does not run
        assert why in out.stderr, (why, out.stderr)
