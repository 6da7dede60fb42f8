"""The dashboards and provisioning files, checked structurally."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from grafana_dash import (
    DASHBOARDS,
    EXPECTED_UIDS,
    GRAFANA_DS_UID,
    PG_TYPE,
    PROM_TYPE,
    PROVISIONING,
    ROOT,
    all_panels,
    dashboards,
    datasource_refs,
    prom_metrics,
    provisioned_datasources,
    queries,
    variables_used,
)

# The metric names fixed by the metrics contract (docs/reference/observability.md), histograms expanded.
_HISTOGRAMS = {"spanvisor_task_duration_seconds", "spanvisor_sink_latency_seconds"}
CONTRACT = {
    "spanvisor_tasks_started_total",
    "spanvisor_tasks_finished_total",
    "spanvisor_tasks_running",
    "spanvisor_checkpoints_total",
    "spanvisor_model_calls_total",
    "spanvisor_context_utilization_ratio",
    "spanvisor_context_warnings_total",
    "spanvisor_tokens_total",
    # Cost, budgets, forecasts.
    "spanvisor_cost_usd_total",
    "spanvisor_unpriced_model_calls_total",
    "spanvisor_budget_used_ratio",
    "spanvisor_budget_warnings_total",
    "spanvisor_context_forecasts_total",
    "spanvisor_last_checkpoint_timestamp_seconds",
    "spanvisor_stalest_task_activity_timestamp_seconds",
    "spanvisor_label_overflow_total",
    "spanvisor_spans_received_total",
    "spanvisor_events_emitted_total",
    "spanvisor_dropped_total",
    "spanvisor_sink_deliveries_total",
    "spanvisor_queue_depth",
    "spanvisor_inbox_depth",
    "spanvisor_open_tasks",
    "spanvisor_outbox_events",
    "spanvisor_duplicate_spans_total",
    "spanvisor_build_info",
    "up",
} | {h + s for h in _HISTOGRAMS for s in ("_bucket", "_sum", "_count")}

DRILLDOWN_PATH = "/d/spanvisor-task/spanvisor-task-drill-down"
# The Slack sink's SPANVISOR_SLACK_DASHBOARD_URL placeholders.
SLACK_TEMPLATE = DRILLDOWN_PATH + "?var-agent={agent_id}&var-task={task_id}&from={start_ms}&to={end_ms}"
BOARDS = dashboards()


def test_both_dashboards_present_with_stable_uids() -> None:
    assert set(BOARDS) == set(EXPECTED_UIDS)
    for name, dash in BOARDS.items():
        assert dash["uid"] == EXPECTED_UIDS[name]
        assert 39 <= dash["schemaVersion"] <= 41
        assert dash["title"].startswith("spanvisor")
        assert "id" not in dash or dash["id"] is None  # provisioning assigns ids


@pytest.mark.parametrize("name", sorted(BOARDS))
def test_panel_ids_unique_and_layout_fits(name: str) -> None:
    panels = list(all_panels(BOARDS[name]))
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), f"duplicate panel ids in {name}"
    cells: set[tuple[int, int]] = set()
    for p in panels:
        g = p["gridPos"]
        assert g["x"] >= 0 and g["x"] + g["w"] <= 24, p["title"]
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, f"{name}: panel {p['id']} overlaps another"
                cells.add((x, y))


@pytest.mark.parametrize("name", sorted(BOARDS))
def test_every_datasource_matches_provisioning(name: str) -> None:
    provisioned = provisioned_datasources()
    # Datasource template variables (importable dashboards): name -> plugin type.
    ds_vars = {v["name"]: v["query"] for v in BOARDS[name]["templating"]["list"] if v.get("type") == "datasource"}
    for where, ref in datasource_refs(BOARDS[name]):
        uid = ref.get("uid")
        if uid == GRAFANA_DS_UID:
            assert ref.get("type") == "grafana", where
            continue
        var = re.fullmatch(r"\$\{(\w+)\}|\$(\w+)", uid or "")
        if var is not None:
            # A variable: it must be a datasource variable of the same type,
            # and provisioning must offer a datasource of that type to pick.
            var_name = var.group(1) or var.group(2)
            assert var_name in ds_vars, f"{name} {where}: {uid!r} is not a datasource variable"
            assert ref.get("type") == ds_vars[var_name], f"{name} {where}"
            assert ref.get("type") in {d["type"] for d in provisioned.values()}, f"{name} {where}"
            continue
        assert uid in provisioned, f"{name} {where}: datasource uid {uid!r} is not provisioned"
        assert ref.get("type") == provisioned[uid]["type"], f"{name} {where}"


def test_provisioned_datasources() -> None:
    ds = provisioned_datasources()
    assert ds["spanvisor-prometheus"]["type"] == PROM_TYPE
    pg = ds["spanvisor-postgres"]
    assert pg["type"] == PG_TYPE
    # Grafana 12: database in jsonData, password in secureJsonData, from the environment.
    assert re.fullmatch(r"\$\{\w+\}", pg["jsonData.database"])
    assert re.fullmatch(r"\$\{\w+\}", pg["secureJsonData.password"])
    assert re.fullmatch(r"\$\{\w+\}", pg["user"])
    assert "password" not in pg and "database" not in pg


def test_dashboard_provider() -> None:
    text = (PROVISIONING / "dashboards" / "spanvisor.yml").read_text()
    assert text.startswith("#") and "apiVersion: 1" in text
    assert "type: file" in text and re.search(r"^\s+path: /\S+$", text, re.M)


@pytest.mark.parametrize("name", sorted(BOARDS))
def test_every_variable_used_is_defined(name: str) -> None:
    dash = BOARDS[name]
    defined = {v["name"] for v in dash["templating"]["list"]}
    texts: list[tuple[str, str]] = [(str(q), q.text) for q in queries(name, dash)]
    texts += [(f"panel {p['id']} title", p.get("title", "")) for p in all_panels(dash)]
    for where, text in texts:
        missing = variables_used(text) - defined
        assert not missing, f"{where} uses undefined variables {missing}"


@pytest.mark.parametrize("name", sorted(BOARDS))
def test_prometheus_queries_use_only_contract_metrics(name: str) -> None:
    used: set[str] = set()
    for q in queries(name, BOARDS[name]):
        if q.kind == "promql":
            metrics = prom_metrics(q.text)
            assert metrics, f"{q}: no metric in {q.text!r}"
            unknown = metrics - CONTRACT
            assert not unknown, f"{q}: {unknown} are not in the metrics contract"
            used |= metrics
    if name == "agents-overview.json":
        needed = {
            "spanvisor_tasks_running",
            "spanvisor_tasks_started_total",
            "spanvisor_tasks_finished_total",
            "spanvisor_task_duration_seconds_bucket",
            "spanvisor_context_utilization_ratio",
            "spanvisor_context_warnings_total",
            "spanvisor_tokens_total",
            # The agents' checkpoints and their model calls, apart.
            "spanvisor_checkpoints_total",
            "spanvisor_model_calls_total",
            "spanvisor_dropped_total",
            "spanvisor_queue_depth",
            "spanvisor_sink_latency_seconds_bucket",
            "spanvisor_sink_deliveries_total",
            "spanvisor_outbox_events",
            # The stall panel shows what SpanvisorTaskStalled alerts on.
            "spanvisor_stalest_task_activity_timestamp_seconds",
            # Cost per model, and the budgets the alerts watch.
            "spanvisor_cost_usd_total",
            "spanvisor_budget_used_ratio",
            "up",
        }
        assert needed <= used, f"overview lacks {needed - used}"


@pytest.mark.parametrize("name", sorted(BOARDS))
def test_annotations_both_ways(name: str) -> None:
    annos = BOARDS[name]["annotations"]["list"]
    pg = [a for a in annos if a["datasource"].get("type") == PG_TYPE]
    tags = [a for a in annos if a["datasource"].get("uid") == GRAFANA_DS_UID and not a.get("builtIn")]
    assert len(pg) == 1 and pg[0]["enable"]
    sql = pg[0]["target"]["rawSql"]
    assert "$__timeFilter(" in sql
    for column in ('AS "time"', "AS timeend", "AS text", "AS tags"):
        assert column in sql, column
    assert len(tags) == 1 and tags[0]["enable"]
    target = tags[0]["target"]
    assert target["type"] == "tags" and "spanvisor" in target["tags"]
    assert target["matchAny"] is False


def test_drilldown_variables_and_links() -> None:
    dash = BOARDS["task-drilldown.json"]
    by_name = {v["name"]: v for v in dash["templating"]["list"]}
    assert by_name["agent"]["datasource"]["type"] == PROM_TYPE
    assert "label_values(spanvisor_tasks_started_total, agent)" in by_name["agent"]["definition"]
    assert by_name["task"]["datasource"]["type"] == PG_TYPE
    assert "agent" in variables_used(by_name["task"]["query"]) and "$__timeFrom()" in by_name["task"]["query"]
    # Task links (both dashboards) open the drill-down in the documented form.
    for board in BOARDS.values():
        urls = _link_urls(board)
        for url in urls:
            if "spanvisor-task" in url:
                assert url.startswith(DRILLDOWN_PATH + "?var-agent=")
                assert all(p in url for p in ("var-task=", "from=", "to="))
    assert any("spanvisor-task" in u for u in _link_urls(BOARDS["agents-overview.json"]))


def test_docs_give_the_same_drilldown_url() -> None:
    doc = (ROOT / "docs" / "reference" / "observability.md").read_text(encoding="utf-8")
    assert SLACK_TEMPLATE in doc
    assert "plugins/spanvisor_prometheus/rules/spanvisor-rules.yml" in doc
    assert "grafana/provisioning" in doc and "annotations:write" in doc


def _link_urls(obj: Any) -> list[str]:
    found: list[str] = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            if k == "url" and isinstance(v, str):
                found.append(v)
            else:
                found.extend(_link_urls(v))
    elif isinstance(obj, list):
        for v in obj:
            found.extend(_link_urls(v))
    return found


def test_json_files_are_formatted_and_parse() -> None:
    """Each file, read from disk (not through the helpers), is a dashboard Grafana can load:
    panels with a datasource and queries, every query with PromQL or SQL for its
    datasource's type, ids and uids unique."""
    paths = sorted(DASHBOARDS.glob("*.json"))
    assert {p.name for p in paths} == set(EXPECTED_UIDS)
    uids: list[str] = []
    for path in paths:
        text = path.read_text(encoding="utf-8")
        assert text.endswith("\n") and "\t" not in text, path.name
        dash = json.loads(text)
        assert isinstance(dash, dict), path.name
        assert isinstance(dash.get("uid"), str) and dash["uid"], path.name
        uids.append(dash["uid"])
        assert isinstance(dash.get("title"), str) and dash["title"], path.name
        assert isinstance(dash.get("panels"), list) and dash["panels"], path.name
        _check_panels(path.name, dash)
        names = [v["name"] for v in dash["templating"]["list"]]
        assert len(names) == len(set(names)), f"{path.name}: duplicate variables"
        annos = [a["name"] for a in dash["annotations"]["list"]]
        assert len(annos) == len(set(annos)), f"{path.name}: duplicate annotation names"
    assert len(uids) == len(set(uids)), f"dashboard uids are not unique: {uids}"


# A query's language follows its datasource's type.
_QUERY_KEY = {PROM_TYPE: "expr", PG_TYPE: "rawSql"}


def _check_panels(name: str, dash: dict[str, Any]) -> None:
    ids: list[int] = []
    for panel in all_panels(dash):
        where = f"{name} panel {panel.get('id')} {panel.get('title')!r}"
        assert isinstance(panel.get("id"), int), where
        ids.append(panel["id"])
        assert isinstance(panel.get("type"), str) and panel["type"], where
        assert {"x", "y", "w", "h"} <= set(panel.get("gridPos", {})), where
        if panel["type"] == "row":
            assert not panel.get("targets"), f"{where}: a row has no queries"
            continue
        ds = panel.get("datasource")
        assert isinstance(ds, dict) and ds.get("type") and ds.get("uid"), f"{where}: no datasource"
        targets = panel.get("targets")
        assert isinstance(targets, list) and targets, f"{where}: no targets"
        ref_ids = [t.get("refId") for t in targets]
        assert all(isinstance(r, str) and r for r in ref_ids), f"{where}: a target without refId"
        assert len(ref_ids) == len(set(ref_ids)), f"{where}: duplicate refIds {ref_ids}"
        for target in targets:
            t_ds = target.get("datasource") or ds
            key = _QUERY_KEY.get(t_ds.get("type"))
            assert key is not None, f"{where} {target['refId']}: unknown datasource type {t_ds.get('type')!r}"
            query = target.get(key)
            assert isinstance(query, str) and query.strip(), f"{where} {target['refId']}: no {key}"
            other = "rawSql" if key == "expr" else "expr"
            assert other not in target, f"{where} {target['refId']}: {other} on a {t_ds['type']} target"
    assert len(ids) == len(set(ids)), f"{name}: duplicate panel ids"
