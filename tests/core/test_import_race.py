"""No import on spanvisor's threads while an agent runs.

openai's client reads ``sys.modules["httpx2"].Timeout`` on every request; a
module half imported on another thread is already in ``sys.modules``, so
while spanvisor's pipeline thread imported genai-prices (and with it httpx2)
to price its first model call, the agent's requests raised
``AttributeError: partially initialized module 'httpx2' has no attribute
'Timeout'``. Whatever spanvisor needs is now imported on the thread that
builds the processor or exporter, or read as plain data (the price table,
built in a child process or read from its cache file).

Each case runs an agent in a fresh interpreter (tests/core/_import_race_agent.py):
a thread stands in for openai's client in a tight loop while spanvisor
starts and prices the first calls, and an import hook records the thread of
every module's import. Nothing may be imported on a thread other than the
agent's once it is built: no module is allowed off it, since none needs to be.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from genai_prices import Usage, calc_price

from spanvisor.config import Config
from spanvisor.events import TaskFinished
from spanvisor.testing import InMemorySink
from spanvisor.tracking.prices import CallCost, Pricer

from ._sdk import Agent

AGENT = Path(__file__).with_name("_import_race_agent.py")
ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _closed_url() -> str:
    """A loopback address nothing listens on: sinks fail fast, and retry."""
    return f"http://127.0.0.1:{_free_port()}"


def _run(mode: str, data_dir: Path, out: Path, **env: str) -> dict[str, Any]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("SPANVISOR_", "OTEL_", "SLACK_"))}
    base.update(SPANVISOR_DATA_DIR=str(data_dir), SPANVISOR_SHUTDOWN_TIMEOUT_S="3", **env)
    done = subprocess.run(
        [sys.executable, str(AGENT), mode, str(out)],
        cwd=ROOT,
        env=base,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result: dict[str, Any] = json.loads(out.read_text())
    return result


def _assert_no_race(seen: dict[str, Any]) -> None:
    assert seen["reads"] > 0, "the stand-in for openai's client never ran"
    assert seen["attribute_errors"] == 0, seen["first_errors"]
    assert seen["half_imported"] == [], "half-imported modules the agent's threads could see"
    assert seen["off_thread"] == {}, "modules imported on a thread other than the agent's"


@pytest.fixture
def fresh_dir(tmp_path: Path) -> Iterator[Path]:
    """A data dir without the price table's cache: the first run's table comes from its child."""
    d = tmp_path / "data"
    d.mkdir()
    yield d


@pytest.mark.timeout_s(600)
def test_an_agent_pricing_its_first_calls_never_sees_a_half_imported_module(fresh_dir: Path, tmp_path: Path) -> None:
    """The reproducer: the default processor (console sink), a fresh data
    dir, model calls genai-prices prices, openai's reads in a tight loop."""
    seen = _run("processor", fresh_dir, tmp_path / "out.json")
    _assert_no_race(seen)
    assert (fresh_dir / "pricetable.json").is_file(), "the table's child wrote no cache file"


@pytest.mark.timeout_s(600)
def test_the_exporter_path_with_every_network_sink_imports_nothing_on_its_threads(tmp_path: Path) -> None:
    """Slack (posting, socket mode and signed requests), Prometheus, a
    webhook, Grafana and the SQLite state store: each sink's lazy imports
    (``imports``) happen where the exporter is built. The live channel's
    thread and the SDK's batch thread run too."""
    down = _closed_url()
    seen = _run(
        "exporter",
        tmp_path,
        tmp_path / "out.json",
        SLACK_BOT_TOKEN="xoxb-test",
        SLACK_APP_TOKEN="xapp-test",
        SLACK_SIGNING_SECRET="secret",
        SPANVISOR_SLACK_CHANNEL="#agents",
        SPANVISOR_SLACK_BASE_URL=down + "/api/",
        SPANVISOR_METRICS_PORT=str(_free_port()),
        SPANVISOR_WEBHOOK_URL=down + "/hook",
        SPANVISOR_GRAFANA_URL=down,
        SPANVISOR_GRAFANA_TOKEN="token",
        SPANVISOR_STATE_STORE="local",
    )
    _assert_no_race(seen)


# Slow by design: a whole agent process under the import tracer (every import
# on every thread recorded), built by the SDK's configurator with Slack's dry run.
@pytest.mark.timeout_s(600)
def test_otel_traces_exporter_spanvisor_with_live_progress_imports_nothing_on_its_threads(tmp_path: Path) -> None:
    """``OTEL_TRACES_EXPORTER=spanvisor SPANVISOR_LIVE=1``: the exporter built
    by the SDK's configurator through its entry point, and the processor
    beside it on one pipeline; Slack's dry run."""
    seen = _run(
        "autoconfig",
        tmp_path,
        tmp_path / "out.json",
        OTEL_TRACES_EXPORTER="spanvisor",
        OTEL_METRICS_EXPORTER="none",
        OTEL_LOGS_EXPORTER="none",
        SPANVISOR_LIVE="1",
        SPANVISOR_SLACK_DRY_RUN="1",
    )
    _assert_no_race(seen)


@pytest.mark.timeout_s(600)
def test_the_postgres_sink_imports_nothing_on_the_pipelines_thread(pg_url: str, tmp_path: Path) -> None:
    """The audit trail's sink and its state store (asyncpg, the migrations'
    files) on a real PostgreSQL."""
    seen = _run("processor", tmp_path, tmp_path / "out.json", SPANVISOR_DATABASE_URL=pg_url)
    _assert_no_race(seen)


# The calls of the in-process cases: model, provider, input, cache read, output.
CALLS = [
    ("gpt-4o", "openai", 1200, 0, 80),
    ("gpt-4o-mini", "openai", 5000, 4000, 300),
    ("claude-3-5-sonnet-20241022", "anthropic", 900, 0, 45),
    ("gemini-2.5-pro", "google", 250_000, 0, 12),  # tiered at 200,000 input tokens
]
NOON = int(datetime(2026, 3, 1, 12, tzinfo=UTC).timestamp()) * 10**9


def _genai_prices(model: str, provider: str, t_in: int, read: int, t_out: int, end_ns: int) -> float:
    """What genai-prices itself says (imported here, on the test's thread)."""
    usage = Usage(input_tokens=t_in, cache_read_tokens=read or None, output_tokens=t_out)
    when = datetime.fromtimestamp(end_ns / 1e9, UTC)
    return float(calc_price(usage, model_ref=model, provider_id=provider, genai_request_timestamp=when).total_price)


def _call_attrs(provider: str, read: int) -> dict[str, Any]:
    attrs: dict[str, Any] = {"gen_ai.provider.name": provider}
    if read:
        attrs["gen_ai.usage.cache_read.input_tokens"] = read
    return attrs


def test_in_process_calls_cost_what_genai_prices_says_and_come_from_the_table(tmp_path: Path) -> None:
    """The processor prices from the table (read on a helper thread before
    the first call is priced), the same dollars genai-prices gives, and
    never imports genai-prices on the pipeline's thread."""
    memory = InMemorySink()
    config = Config.load(env={"SPANVISOR_DATA_DIR": str(tmp_path)}, extra=()).with_values(shutdown_timeout_s=2.0)
    agent = Agent([memory], config)
    try:
        with agent.tracer.start_as_current_span("task", attributes={"agent.task.name": "priced", "agent.id": "a"}):
            for model, provider, t_in, read, t_out in CALLS:
                attrs = {
                    "gen_ai.operation.name": "chat",
                    "gen_ai.request.model": model,
                    "gen_ai.usage.input_tokens": t_in,
                    "gen_ai.usage.output_tokens": t_out,
                    **_call_attrs(provider, read),
                }
                with agent.tracer.start_as_current_span(f"chat {model}", attributes=attrs):
                    pass
        assert agent.flush()
        pricer = agent.processor.pipeline.tracker.settings.pricer
    finally:
        agent.close()
    assert pricer._table is not None and pricer._calc is None
    ends = {s.name: s.end_time for s in agent.exported.get_finished_spans()}
    want = sum(_genai_prices(m, p, i, r, o, ends[f"chat {m}"] or 0) for m, p, i, r, o in CALLS)
    (finished,) = [e for e in memory.events if isinstance(e, TaskFinished)]
    assert finished.task.unpriced_calls == 0
    assert finished.task.cost_usd == pytest.approx(want, rel=1e-12)


class _Said(logging.Handler):
    """What spanvisor.cost says (attached to the logger itself: spanvisor's
    logging, once configured in this process, does not propagate to caplog's)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())

    def __enter__(self) -> _Said:
        logging.getLogger("spanvisor.cost").addHandler(self)
        return self

    def __exit__(self, *_: object) -> None:
        logging.getLogger("spanvisor.cost").removeHandler(self)


def _price_on_a_thread(p: Pricer, *args: Any) -> CallCost:
    got: list[CallCost] = []
    t = threading.Thread(target=lambda: got.append(p.price(*args)), name="spanvisor-pipeline")
    t.start()
    t.join(120)
    assert not t.is_alive()
    return got[0]


def test_genai_prices_is_used_only_on_the_thread_that_built_the_pricer() -> None:
    """Without the table (or for prices it does not hold), a call priced on
    another thread is unpriced, and why is said once: importing
    genai-prices there could hand the agent's threads a half-imported httpx."""
    p = Pricer()
    attrs = _call_attrs("openai", 0)
    with _Said() as said:
        assert _price_on_a_thread(p, attrs, "gpt-4o", 1000, 100, NOON) == CallCost(None, "unpriced")
        assert _price_on_a_thread(p, attrs, "gpt-4o-mini", 1000, 100, NOON) == CallCost(None, "unpriced")
    assert len([line for line in said.lines if "unpriced in this process" in line]) == 1, said.lines
    assert p._calc is None
    # The thread that built it may: a test's, or an agent's at its processor's construction.
    here = p.price(attrs, "gpt-4o", 1000, 100, NOON)
    assert here == CallCost(_genai_prices("gpt-4o", "openai", 1000, 0, 100, NOON), "genai-prices")


def test_an_agent_whose_table_cannot_be_read_leaves_calls_unpriced_and_says_why(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The table's child cannot start (no interpreter at that path): an
    agent's pricer does not fall back to importing genai-prices on the
    pipeline's thread; ``serve``'s (may_import) does, as before."""
    monkeypatch.setattr(sys, "executable", str(tmp_path / "no-python"))
    p = Pricer()
    p.warm(None, may_import=False)
    assert p._table is None
    with _Said() as said:
        assert _price_on_a_thread(p, _call_attrs("openai", 0), "gpt-4o", 10, 1, NOON) == CallCost(None, "unpriced")
    assert any("price table could not be read" in line for line in said.lines), said.lines
    assert p._calc is None
    receiver = Pricer()
    receiver.warm(None, may_import=True)
    got = _price_on_a_thread(receiver, _call_attrs("openai", 0), "gpt-4o", 10, 1, NOON)
    assert got == CallCost(_genai_prices("gpt-4o", "openai", 10, 0, 1, NOON), "genai-prices")


def test_a_call_priced_while_the_table_is_read_waits_for_it(tmp_path: Path) -> None:
    """The pipeline asks for the table as it starts (expect_table); a call
    priced before it is there (a flush at once) waits for it on the
    pipeline's thread, and is priced from it."""
    p = Pricer()
    p.expect_table()
    got: list[CallCost] = []
    t = threading.Thread(target=lambda: got.append(p.price(_call_attrs("openai", 0), "gpt-4o", 1000, 100, NOON)))
    t.start()
    t.join(0.2)
    assert t.is_alive() and not got  # nothing lets it through but the table
    p.warm(tmp_path, may_import=False)
    t.join(120)
    assert got == [CallCost(_genai_prices("gpt-4o", "openai", 1000, 0, 100, NOON), "genai-prices")]
    assert p._table is not None and p._calc is None
