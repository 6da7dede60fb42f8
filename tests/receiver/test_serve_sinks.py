"""``spanvisor serve`` runs the sinks ``SPANVISOR_SINKS`` names, and no other.

With ``SPANVISOR_SINKS=postgres`` no Prometheus sink runs (no worker, no
event counted for it), yet the admin port's ``/metrics`` still shows the
pipeline's self-metrics (from its counters, read at scrape time). With the
default ``auto`` the Prometheus sink runs and serves the task metrics.
"""

from __future__ import annotations

import urllib.request
from pathlib import Path
from typing import Any

from agent_traces import request_for, task_spans
from prometheus_client.parser import text_string_to_metric_families
from test_http import post
from tests.waiting import wait_until

from conftest import RunningReceiver, local_settings
from spanvisor.config import Config
from spanvisor.pipeline.pipeline import Pipeline
from spanvisor.receiver.serve import admin_services, serve_config, serve_sinks


def _serve_pipeline(tmp_path: Path, **env: str) -> tuple[Pipeline, list[Any]]:
    """serve's pipeline and admin extras, assembled as ``serve.run`` does."""
    config = serve_config(Config.load(env={"SPANVISOR_DATA_DIR": str(tmp_path / "data"), **env}))
    pipeline = Pipeline(config=config, sinks=serve_sinks(config), path="receiver").start()
    assert pipeline.wait_ready(60), pipeline.ready()
    return pipeline, admin_services(pipeline.sinks, pipeline.stats)


def _scrape(url: str) -> dict[str, list[dict[str, str]]]:
    with urllib.request.urlopen(url + "/metrics", timeout=10) as resp:
        text = resp.read().decode()
    found: dict[str, list[dict[str, str]]] = {}
    for fam in text_string_to_metric_families(text):
        for sample in fam.samples:
            found.setdefault(sample.name, []).append(sample.labels)
    return found


def _worker_sinks(pipeline: Pipeline) -> set[str]:
    """The sinks with a worker: each registers its queue depth gauge."""
    return {dict(labels)["sink"] for name, labels in pipeline.stats.gauges if name == "queue_depth"}


def test_sinks_postgres_runs_no_prometheus_sink(tmp_path: Path, pg_server: Any) -> None:
    db_url = pg_server.database()
    pipeline, extra = _serve_pipeline(
        tmp_path, SPANVISOR_SINKS="postgres", SPANVISOR_DATABASE_URL=db_url, SPANVISOR_EMBEDDED_DB="false"
    )
    r = RunningReceiver(pipeline, local_settings(tmp_path), admin_extra=extra)
    try:
        assert [s.name for s in pipeline.sinks] == ["postgres"]
        assert _worker_sinks(pipeline) == {"postgres"}
        assert [type(e).__name__ for e in extra] == ["SelfMetrics"]
        assert post(r.http_url, request_for(task_spans(1)).SerializeToString())[0] == 200
        wait_until(lambda: pipeline.stats.value("sink_deliveries_total", sink="postgres", outcome="success") > 0)
        found = _scrape(r.admin_url)
        # the pipeline's own counters, read from its stats at scrape time
        assert {"transport": "http", "outcome": "ok"} in found["spanvisor_receiver_requests_total"]
        assert "spanvisor_build_info" in found
        assert {s["sink"] for s in found["spanvisor_queue_depth"]} == {"postgres"}
        # no task metrics: no sink counted events for them
        assert not any(name.startswith("spanvisor_tasks_") for name in found), sorted(found)
    finally:
        r.close()


def test_sinks_auto_runs_the_prometheus_sink(tmp_path: Path) -> None:
    pipeline, extra = _serve_pipeline(tmp_path, SPANVISOR_SINKS="auto", SPANVISOR_EMBEDDED_DB="false")
    r = RunningReceiver(pipeline, local_settings(tmp_path), admin_extra=extra)
    try:
        assert "prometheus" in _worker_sinks(pipeline)
        assert extra == []  # the sink itself serves /metrics
        assert post(r.http_url, request_for(task_spans(1)).SerializeToString())[0] == 200
        wait_until(lambda: "spanvisor_tasks_started_total" in _scrape(r.admin_url), what="task metrics")
    finally:
        r.close()
