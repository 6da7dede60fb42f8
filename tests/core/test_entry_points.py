"""Everything spanvisor plugs into is found through entry points.

* ``OTEL_TRACES_EXPORTER=spanvisor opentelemetry-instrument python agent.py``
  runs an agent that knows only the OTel API and prints its task lifecycle;
* every built-in sink name loads its class from ``spanvisor.sinks``;
* a third-party sink distribution, installed into a scratch directory, is
  found only through its entry point and selected from config.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import pytest

from spanvisor.otel.exporter import SpanvisorSpanExporter
from spanvisor.sink import ENTRY_POINT_GROUP, BaseSink

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
VENV_BIN = Path(sys.executable).parent
EXAMPLE_PKG = ROOT / "tests" / "example_sink_pkg"

BUILTIN_SINKS = {
    "console": "ConsoleSink",
    "decisionlogs": "DecisionLogSink",
    "postgres": "PostgresSink",
    "slack": "SlackSink",
    "prometheus": "PrometheusSink",
    "grafana": "GrafanaAnnotationSink",
    "webhook": "WebhookSink",
}


def test_exporter_entry_point() -> None:
    (ep,) = entry_points(group="opentelemetry_traces_exporter", name="spanvisor")
    assert ep.load() is SpanvisorSpanExporter


def test_pre_instrument_entry_point() -> None:
    (ep,) = entry_points(group="opentelemetry_pre_instrument", name="spanvisor")
    assert callable(ep.load())


@pytest.mark.parametrize(("name", "cls_name"), sorted(BUILTIN_SINKS.items()))
def test_builtin_sink_entry_points(name: str, cls_name: str) -> None:
    (ep,) = entry_points(group=ENTRY_POINT_GROUP, name=name)
    cls = ep.load()  # every built-in sink has landed: a failing import is a failure
    assert cls.__name__ == cls_name
    assert cls.name == name
    for method in ("start", "export", "force_flush", "shutdown"):
        assert callable(getattr(cls, method)), method
    assert issubclass(cls, BaseSink) or hasattr(cls, "enabled")


# -- subprocesses ------------------------------------------------------------------


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """A clean environment: no SPANVISOR_*, OTEL_* or Slack settings leak in."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SPANVISOR_", "OTEL_", "SLACK_"))}
    env.update(
        {
            "XDG_DATA_HOME": str(tmp_path / "data"),
            "SPANVISOR_STATE_STORE": "memory",
            "OTEL_METRICS_EXPORTER": "none",
            "OTEL_LOGS_EXPORTER": "none",
            "OTEL_SERVICE_NAME": "f47-agent",
            "PYTHONUNBUFFERED": "1",
            # No library instrumentation: the frameworks installed for the
            # test suite take a minute to import, and none is under test here.
            "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": "*",
        }
    )
    env.update(extra)
    return env


def _run(cmd: list[str], env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cmd, check=False, env=env, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


@pytest.fixture(scope="module")
def example_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example sink installed (offline, no build dependency) into a scratch dir."""
    target = tmp_path_factory.mktemp("site")
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-index",
            "--no-build-isolation",
            "--disable-pip-version-check",
            "--target",
            str(target),
            str(EXAMPLE_PKG),
        ],
        env=dict(os.environ),
        timeout=120,
    )
    assert (target / "spanvisor_example_sink-0.0.1.dist-info" / "entry_points.txt").exists()
    return target


def _console_sink_landed() -> bool:
    try:
        (ep,) = entry_points(group=ENTRY_POINT_GROUP, name="console")
        ep.load()
        return True
    except (ImportError, AttributeError, ValueError):
        return False


def _read_events(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _has_configurator() -> bool:
    return bool(entry_points(group="opentelemetry_configurator"))


@pytest.mark.slow
def test_opentelemetry_instrument_with_zero_code(tmp_path: Path, example_site: Path) -> None:
    """``OTEL_TRACES_EXPORTER=spanvisor opentelemetry-instrument python agent.py``."""
    cmd = [str(VENV_BIN / "opentelemetry-instrument"), sys.executable, str(HERE / "agent_script.py")]
    if _console_sink_landed():
        env = _env(
            tmp_path, OTEL_TRACES_EXPORTER="spanvisor", SPANVISOR_SINKS="console", SPANVISOR_CONSOLE_COLOR="never"
        )
        out = _run(cmd, env).stdout
        assert "Diagnose F47" in out, out
        assert "Routed to siemens SME" in out, out
        assert "complete" in out.lower(), out
        assert out.lower().index("diagnose f47") < out.lower().rindex("complete")
    else:  # until the console sink lands: the example sink, selected the same way
        events_file = tmp_path / "events.jsonl"
        env = _env(
            tmp_path,
            OTEL_TRACES_EXPORTER="spanvisor",
            SPANVISOR_SINKS="example",
            SPANVISOR_EXAMPLE_OUT=str(events_file),
            PYTHONPATH=str(example_site),
        )
        _run(cmd, env)
        kinds = [e["kind"] for e in _read_events(events_file)]
        assert kinds[0] == "TaskStarted" and kinds[-1] == "TaskFinished", kinds


LIVE_AND_EXPORTER = textwrap.dedent(
    """
    import os
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from spanvisor.otel.autoconfig import install_live_processor
    from spanvisor.otel.exporter import SpanvisorSpanExporter

    # What opentelemetry-instrument does with OTEL_TRACES_EXPORTER=spanvisor,
    # then its opentelemetry_pre_instrument hook with SPANVISOR_LIVE=1.
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(SpanvisorSpanExporter()))
    trace.set_tracer_provider(provider)
    install_live_processor()

    exec(open(os.environ["AGENT_SCRIPT"]).read())
    provider.shutdown()
    """
)


@pytest.mark.slow
def test_live_and_exporter_together_do_not_double_events(tmp_path: Path, example_site: Path) -> None:
    """``SPANVISOR_LIVE=1`` adds the processor next to the exporter; one
    pipeline serves both, so every event is delivered once."""
    events_file = tmp_path / "events.jsonl"
    env = _env(
        tmp_path,
        SPANVISOR_LIVE="1",
        SPANVISOR_SINKS="example",
        SPANVISOR_EXAMPLE_OUT=str(events_file),
        PYTHONPATH=str(example_site),
        AGENT_SCRIPT=str(HERE / "agent_script.py"),
    )
    _run([sys.executable, "-c", LIVE_AND_EXPORTER], env)
    events = _read_events(events_file)
    kinds = [e["kind"] for e in events]
    assert kinds.count("TaskStarted") == 1 and kinds.count("TaskFinished") == 1, kinds
    assert len({e["event_id"] for e in events}) == len(events)
    assert events[-1]["task_name"] == "Diagnose F47" and events[-1]["agent_id"] == "rivet"


EXIT_FLUSH = textwrap.dedent(
    """
    import os
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from spanvisor.otel.exporter import SpanvisorSpanExporter

    provider = TracerProvider()  # shutdown_on_exit: the SDK flushes at exit
    provider.add_span_processor(BatchSpanProcessor(SpanvisorSpanExporter()))
    trace.set_tracer_provider(provider)
    exec(open(os.environ["AGENT_SCRIPT"]).read())
    # no explicit shutdown, as under opentelemetry-instrument
    """
)


@pytest.mark.slow
def test_exit_flush_reaches_a_sink_that_uses_a_thread(tmp_path: Path, example_site: Path) -> None:
    """The SDK shuts the provider down from ``atexit``. By then
    ``concurrent.futures`` has already run its own exit hook (registered with
    ``threading._register_atexit``, which runs before ``atexit``), so every
    ``asyncio.to_thread`` / ``run_in_executor`` in a sink raises "cannot
    schedule new futures after interpreter shutdown": the outbox (sqlite via
    to_thread) and any aiohttp DNS lookup fail, and the last events of a
    zero-code agent are retried until the deadline and dropped."""
    events_file = tmp_path / "events.jsonl"
    env = _env(
        tmp_path,
        SPANVISOR_SINKS="example",
        SPANVISOR_EXAMPLE_OUT=str(events_file),
        PYTHONPATH=str(example_site),
        AGENT_SCRIPT=str(HERE / "agent_script.py"),
        SPANVISOR_SHUTDOWN_TIMEOUT="3s",
    )
    proc = _run([sys.executable, "-c", EXIT_FLUSH], env)
    kinds = [e["kind"] for e in _read_events(events_file)]
    assert kinds and kinds[-1] == "TaskFinished", proc.stderr


THIRD_PARTY_AGENT = textwrap.dedent(
    """
    import sys
    from opentelemetry.sdk.trace import TracerProvider
    from spanvisor.config import Config
    from spanvisor.otel.processor import SpanvisorSpanProcessor
    from spanvisor.sink import available_sinks

    # Found through its entry point only: nothing in spanvisor names it.
    cls = available_sinks()["example"]
    assert cls.__module__ == "spanvisor_example_sink", cls
    assert "spanvisor_example_sink" in sys.modules[cls.__module__].__file__
    # Its own settings joined the one config table.
    assert "example_out" in {s.name for s in Config.load().settings}

    provider = TracerProvider()
    provider.add_span_processor(SpanvisorSpanProcessor())  # sinks chosen by config
    tracer = provider.get_tracer("agent")
    with tracer.start_as_current_span("t", attributes={"agent.task.name": "third party", "agent.id": "ext"}) as root:
        root.add_event("agent.checkpoint", {"message": "half", "agent.progress": 50})
    provider.shutdown()
    """
)


@pytest.mark.slow
@pytest.mark.parametrize("selection", ["example", "auto"])
def test_third_party_sink_found_through_its_entry_point(tmp_path: Path, example_site: Path, selection: str) -> None:
    events_file = tmp_path / "events.jsonl"
    env = _env(
        tmp_path,
        SPANVISOR_SINKS=selection,
        SPANVISOR_EXAMPLE_OUT=str(events_file),
        PYTHONPATH=str(example_site),
    )
    _run([sys.executable, "-c", THIRD_PARTY_AGENT], env)
    events = _read_events(events_file)
    assert events[0]["kind"] == "TaskStarted"
    assert events[-1]["kind"] == "TaskFinished" and events[-1]["status"] == "complete"
    assert [e["progress"] for e in events if e["kind"] == "Checkpoint"][-1] == 50
    assert {e["agent_id"] for e in events} == {"ext"}


def test_unknown_sink_name_is_a_clear_error(tmp_path: Path) -> None:
    from spanvisor.sink import SinkLoadError, load_sink_class

    with pytest.raises(SinkLoadError, match=r"no sink named 'nope'.*installed: .*console"):
        load_sink_class("nope")


@pytest.mark.parametrize(
    "group", ["spanvisor.sinks", "spanvisor.settings", "spanvisor.commands", "spanvisor.clis", "console_scripts"]
)
def test_the_entry_points_read_once_are_those_importlib_lists(group: str) -> None:
    """spanvisor.entrypoints reads the installed metadata once per process:
    what it gives is what ``importlib.metadata`` gives, by group and name."""
    from spanvisor import entrypoints

    assert entrypoints.entry_points(group) == tuple(entry_points(group=group))
    for ep in entry_points(group=group):
        assert entrypoints.entry_points(group, ep.name) == tuple(entry_points(group=group, name=ep.name))
    assert entrypoints.entry_points(group, "no such entry point") == ()
    # However often it was asked, in this process or before this test: one read.
    assert entrypoints._installed.cache_info().misses == 1


AUTO_AGENT = textwrap.dedent(
    """
    import json, sys
    from spanvisor.otel.processor import SpanvisorSpanProcessor

    processor = SpanvisorSpanProcessor()  # SPANVISOR_SINKS=auto, nothing configured: the console
    print(json.dumps({"sinks": [s.name for s in processor.pipeline.sinks], "modules": sorted(sys.modules)}))
    processor.shutdown()
    """
)


def test_auto_imports_no_sink_it_does_not_run(tmp_path: Path) -> None:
    """``SPANVISOR_SINKS=auto`` asks each built-in sink through the rule
    beside its settings table: an agent's process at the defaults runs the
    console and imports no other sink, nor their libraries (the Telegram
    sink alone brought aiohttp, 180 ms of imports and a heap every later
    collection of the agent's thread walks)."""
    proc = _run([sys.executable, "-c", AUTO_AGENT], _env(tmp_path, SPANVISOR_DATA_DIR=str(tmp_path / "d")))
    got = json.loads(proc.stdout.splitlines()[-1])
    assert got["sinks"] == ["console"], got["sinks"]
    modules = set(got["modules"])
    assert "spanvisor_console.sink" in modules
    others = {f"spanvisor_{name}.sink" for name in BUILTIN_SINKS if name != "console"} | {"spanvisor_telegram.sink"}
    heavy = {"aiohttp", "cryptography", "slack_sdk", "asyncpg", "prometheus_client", "spanvisor_teams.sink"}
    assert not modules & (others | heavy), sorted(modules & (others | heavy))


def test_every_builtin_sink_says_beside_its_settings_when_auto_runs_it() -> None:
    """Each ``spanvisor.sink_settings`` entry of the built-in sinks names a
    module with ``enabled(config)``, the rule its class's ``enabled`` is (a
    sink without one would be imported again in every process that
    chooses its sinks)."""
    import importlib

    from spanvisor.config import Config
    from spanvisor.sink import auto_sink_names, load_sink_class

    configs = [
        Config.load(env={}),
        Config.load(
            env={
                "SLACK_BOT_TOKEN": "xoxb-1",
                "SPANVISOR_METRICS_PORT": "9464",
                "SPANVISOR_DATABASE_URL": "postgresql://u@127.0.0.1:9/d",
            }
        ),
        Config.load(env={"TELEGRAM_BOT_TOKEN": "1:a", "SPANVISOR_WEBHOOK_URL": "http://127.0.0.1:9/h"}),
    ]
    for ep in entry_points(group="spanvisor.sink_settings"):
        rule = getattr(importlib.import_module(ep.module), "enabled", None)
        assert callable(rule), ep
        cls = load_sink_class(ep.name)
        for config in configs:
            assert bool(rule(config)) == bool(cls.enabled(config)), (ep.name, config)
    assert auto_sink_names(configs[0]) == ["console"]
    assert auto_sink_names(configs[1]) == ["postgres", "prometheus", "slack"]
    assert auto_sink_names(configs[2]) == ["console", "telegram", "webhook"]
