"""The real Prometheus check.

A real Prometheus server (Debian's /usr/bin/prometheus) on loopback scrapes a
spanvisor process running the demo every second and loads our rule files.
Then every PromQL expression in the rule files and in the Grafana dashboards
is evaluated through the HTTP API: none may error, and the expressions the
demo feeds must return data. Prometheus's own rule evaluation must be healthy
and the exemplars (trace ids) must have been scraped.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prom_tools import ROOT, RULES_DIR, require

# ---------------------------------------------------------------------------
# THE SWITCH: which process Prometheus scrapes.
#   "demo"      -> `.venv/bin/spanvisor demo --fast --linger 20` (the real thing)
#   "synthetic" -> tests/prometheus/synthetic_target.py (the sink alone, fed a
#                  hand-built stream; what this test used before the demo existed)
# SPANVISOR_PROM_TEST_TARGET overrides it.
TARGET = os.environ.get("SPANVISOR_PROM_TEST_TARGET", "demo")
# ---------------------------------------------------------------------------

DEADLINE_S = 90.0  # the demo ends in about 10 s; a loaded CI machine took over 30
GRAFANA_DIR = ROOT / "grafana"
# A demo agent and repo, for dashboards' $agent / $repo variables.
VARIABLES = {"agent": "rivet", "repo": "plant-ops/line3"}
GRAFANA_BUILTINS = {
    "__rate_interval": "1m",
    "__interval": "15s",
    "__range": "5m",
    "__range_s": "300",
    "__range_ms": "300000",
    "__interval_ms": "15000",
    "__auto": "15s",
}

# What the demo (3 agents, one failing, one crossing the context thresholds, one
# passing its budget) feeds.
MUST_RETURN_DATA = [
    "spanvisor_build_info",
    'up{job="spanvisor"} == 1',
    "spanvisor_tasks_started_total",
    'spanvisor_tasks_finished_total{outcome="complete"}',
    'spanvisor_tasks_finished_total{outcome="error"}',
    "spanvisor_tasks_running",
    "spanvisor_task_duration_seconds_bucket",
    "histogram_quantile(0.95, sum by (le, agent) (rate(spanvisor_task_duration_seconds_bucket[1m])))",
    "spanvisor_checkpoints_total",
    "sum by (agent) (rate(spanvisor_checkpoints_total[1m]))",
    "spanvisor_model_calls_total",
    "sum by (agent) (rate(spanvisor_model_calls_total[1m]))",
    "spanvisor_context_utilization_ratio",
    'spanvisor_context_warnings_total{level="critical"}',
    'spanvisor_tokens_total{direction="input"}',
    'spanvisor_tokens_total{direction="output"}',
    "spanvisor_last_checkpoint_timestamp_seconds",
    # Cost: every demo task is priced; rivet passes its budget; gauge's context is forecast.
    "spanvisor_cost_usd_total",
    "sum by (model) (increase(spanvisor_cost_usd_total[5m]))",
    'spanvisor_budget_warnings_total{scope="task",level="critical"}',
    "spanvisor_context_forecasts_total",
    "spanvisor_label_overflow_total",
    "spanvisor_spans_received_total",
    "spanvisor_spans_in_tasks_total",
    "spanvisor_events_emitted_total",
    'spanvisor_sink_deliveries_total{sink="prometheus"}',
    "spanvisor_sink_latency_seconds_bucket",
    "spanvisor_queue_depth",
    "spanvisor_inbox_depth",
    "spanvisor_open_tasks",
    "spanvisor_duplicate_spans_total",
    "spanvisor:task_max_duration_seconds",
    "agent:spanvisor_task_failure_ratio:rate30m",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def api(base: str, path: str, **params: str) -> Any:
    url = f"{base}{path}?{urllib.parse.urlencode(params)}"
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return json.load(resp)
    except urllib.error.HTTPError as exc:  # 400/422 carry the PromQL error as JSON
        return json.load(exc)


def target_command() -> list[str]:
    if TARGET == "demo":
        return [str(ROOT / ".venv" / "bin" / "spanvisor"), "demo", "--fast", "--linger", "20"]
    if TARGET == "synthetic":
        script = Path(__file__).with_name("synthetic_target.py")
        return [sys.executable, str(script), "--seconds", "3", "--linger", "20"]
    raise ValueError(f"SPANVISOR_PROM_TEST_TARGET={TARGET!r}: use demo or synthetic")


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def dashboard_exprs() -> Iterator[tuple[str, str]]:
    """(where, expr) for every Prometheus target in every dashboard JSON."""
    for path in sorted(GRAFANA_DIR.rglob("*.json")) if GRAFANA_DIR.exists() else []:
        doc = json.loads(path.read_text())
        if not isinstance(doc, dict) or "panels" not in doc:
            continue
        stack = list(doc.get("panels") or [])
        while stack:
            panel = stack.pop()
            stack.extend(panel.get("panels") or [])  # collapsed rows hold their panels
            for target in panel.get("targets") or []:
                expr = target.get("expr")
                if expr:
                    where = f"{path.relative_to(ROOT)} panel {panel.get('id')} {panel.get('title')!r}"
                    yield where, expr


def expand_grafana(expr: str) -> str:
    def value(name: str) -> str:
        if name in GRAFANA_BUILTINS:
            return GRAFANA_BUILTINS[name]
        return VARIABLES.get(name, ".*")

    expr = re.sub(r"\$\{(\w+)(?::\w+)?\}", lambda m: value(m.group(1)), expr)
    expr = re.sub(r"\[\[(\w+)\]\]", lambda m: value(m.group(1)), expr)
    return re.sub(r"\$(\w+)", lambda m: value(m.group(1)), expr)


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    binary = require("prometheus")
    require("promtool")
    tmp = tmp_path_factory.mktemp("prometheus")
    metrics_port, web_port = free_port(), free_port()
    config = tmp / "prometheus.yml"
    config.write_text(
        json.dumps(
            {  # JSON is YAML
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "rule_files": [str(p) for p in sorted(RULES_DIR.glob("*.yml")) if ".test." not in p.name],
                "scrape_configs": [
                    {
                        "job_name": "spanvisor",
                        "scrape_timeout": "1s",
                        "static_configs": [{"targets": [f"127.0.0.1:{metrics_port}"]}],
                    }
                ],
            }
        )
    )
    server = subprocess.Popen(
        [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp / 'data'}",
            "--storage.tsdb.retention.time=1h",
            f"--web.listen-address=127.0.0.1:{web_port}",
            "--enable-feature=exemplar-storage",
            "--log.level=warn",
        ],
        stdout=subprocess.DEVNULL,
        stderr=(tmp / "prometheus.log").open("wb"),
    )
    env = {
        **os.environ,
        "SPANVISOR_METRICS_PORT": str(metrics_port),
        "SPANVISOR_SINKS": "prometheus,console",
        "SPANVISOR_DATA_DIR": str(tmp / "spanvisor"),
    }
    try:
        target = subprocess.Popen(
            target_command(), env=env, cwd=ROOT, stdout=(tmp / "target.log").open("wb"), stderr=subprocess.STDOUT
        )
    except BaseException:  # no target to run: prometheus must not outlive the session
        stop(server)
        raise
    base = f"http://127.0.0.1:{web_port}"
    try:
        wait_for_data(base, server, target, tmp)
        yield base
    finally:
        stop(target)
        stop(server)


def wait_for_data(base: str, server: subprocess.Popen[bytes], target: subprocess.Popen[bytes], tmp: Path) -> None:
    """Until the demo's tasks have finished and been scraped a few times since."""
    deadline = time.monotonic() + DEADLINE_S
    seen_since = 0
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"prometheus exited: {(tmp / 'prometheus.log').read_text()[-2000:]}")
        if target.poll() is not None:
            pytest.fail(f"{TARGET} target exited early: {(tmp / 'target.log').read_text()[-2000:]}")
        try:
            r = api(base, "/api/v1/query", query="count(spanvisor_tasks_finished_total) >= 3")
        except (OSError, ValueError):  # not listening yet, or its plain-text 503 while it starts
            r = {}
        if r.get("status") == "success" and r["data"]["result"]:
            seen_since += 1
            # rate() over 1m needs two samples after the last change; allow 3 s.
            if seen_since >= 4:
                return
        time.sleep(1)
    pytest.fail(
        f"no data from the {TARGET} target within {DEADLINE_S:.0f}s; "
        f"target log: {(tmp / 'target.log').read_text()[-2000:]}"
    )


def query(base: str, expr: str) -> dict[str, Any]:
    return api(base, "/api/v1/query", query=expr)  # type: ignore[no-any-return]


@pytest.mark.slow
def test_rules_and_dashboards_evaluate_against_real_prometheus(prometheus: str) -> None:
    groups = api(prometheus, "/api/v1/rules")["data"]["groups"]
    rules = [rule for g in groups for rule in g["rules"]]
    assert len(rules) >= 11, "the rule files did not load"
    exprs = [(f"rule {r['name']}", r["query"]) for r in rules]
    exprs += [(where, expand_grafana(e)) for where, e in dashboard_exprs()]
    errors = []
    for where, expr in exprs:
        r = query(prometheus, expr)
        if r.get("status") != "success":
            errors.append(f"{where}: {expr!r}: {r.get('errorType')}: {r.get('error')}")
    assert not errors, "\n".join(errors)
    # Prometheus evaluated the rules itself, every second: none may be unhealthy.
    unhealthy = [f"{r['name']}: {r.get('lastError')}" for r in rules if r.get("health") == "err"]
    assert not unhealthy, unhealthy


@pytest.mark.slow
def test_every_metric_name_used_is_exposed(prometheus: str) -> None:
    """The OpenLIT failure mode: dashboards and rules naming metrics nobody exports."""
    series = set(api(prometheus, "/api/v1/label/__name__/values")["data"])
    families = set(api(prometheus, "/api/v1/metadata")["data"])
    recorded = {
        r["name"]
        for g in api(prometheus, "/api/v1/rules")["data"]["groups"]
        for r in g["rules"]
        if r["type"] == "recording"
    }
    known = series | families | recorded
    # Families scraped as OpenMetrics are named without _total.
    suffixes = ("_bucket", "_count", "_sum", "_total")
    known |= {n + s for n in families for s in suffixes}
    sources = [(w, e) for w, e in dashboard_exprs()]
    sources += [
        (f"rule {r['name']}", r["query"])
        for g in api(prometheus, "/api/v1/rules")["data"]["groups"]
        for r in g["rules"]
    ]
    if GRAFANA_DIR.exists() and any(GRAFANA_DIR.rglob("*.json")):
        assert any(w.startswith("grafana") for w, _ in sources), "no PromQL found in dashboards"
    unknown = sorted(
        {
            f"{name} (in {where})"
            for where, expr in sources
            for name in re.findall(r"\b(spanvisor[_:][\w:]+|agent:spanvisor\w*:\w+)", expr)
            if name not in known
        }
    )
    assert not unknown, unknown


@pytest.mark.slow
def test_the_demo_feeds_the_listed_expressions(prometheus: str) -> None:
    empty = []
    for expr in MUST_RETURN_DATA:
        r = query(prometheus, expr)
        assert r.get("status") == "success", (expr, r)
        if not r["data"]["result"]:
            empty.append(expr)
    assert not empty, f"no data for: {empty}"
    agents = {s["metric"]["agent"] for s in query(prometheus, "spanvisor_tasks_started_total")["data"]["result"]}
    assert {"rivet", "sprocket", "gauge"} <= agents


@pytest.mark.slow
def test_exemplars_reach_prometheus(prometheus: str) -> None:
    now = time.time()
    r = api(
        prometheus,
        "/api/v1/query_exemplars",
        query="spanvisor_tasks_started_total",
        start=str(now - 300),
        end=str(now + 60),
    )
    assert r["status"] == "success", r
    traces = [e["labels"].get("trace_id") for series in r["data"] for e in series["exemplars"]]
    assert traces and all(t and len(t) == 32 for t in traces), r
