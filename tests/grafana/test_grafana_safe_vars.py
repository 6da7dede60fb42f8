"""Template variables that cannot break a query, and datasources chosen at import.

Task and agent ids come from agents, so a query must hold for any of them:
every variable in SQL is formatted ``${name:sqlstring}`` (Grafana quotes the
value and doubles its quotes) and every PromQL matcher is
``label=~`${name:regex}``` (Grafana regex-escapes the value; the raw string
keeps those backslashes for the regex engine, where a double-quoted PromQL
string would reject ``\\.`` as an unknown escape). Both are exercised with a
hostile id against the real servers: PostgreSQL on the audit schema,
Prometheus scraping series of the hostile agent and of a decoy its unescaped
regex would also match.

Datasources are the dashboard's ``type: datasource`` variables, whose
default is an ``__inputs`` entry, so Grafana's import asks for them.
"""

from __future__ import annotations

import json
import re
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from grafana_dash import (
    GRAFANA_DS_UID,
    PG_TYPE,
    PROM_TYPE,
    Query,
    dashboards,
    datasource_refs,
    expand_sql,
    prom_metrics,
    queries,
    variables_used,
)
from grafana_helpers import read_only, seeded_database
from tests.conftest import require

BOARDS = dashboards()
ALL_QUERIES = [q for name, d in BOARDS.items() for q in queries(name, d)]
NOW = datetime.now(UTC).replace(microsecond=0)
# Quotes, a backslash and every regex metacharacter Grafana escapes.
HOSTILE_TASK = 'it\'s "task" 7 (retry|again) [a-z]*+?.^$\\ {2} /x'
HOSTILE_AGENT = "o'brien.v2+ (beta|rc) [x]* \\ {1}?^ /a"
# What the hostile agent id matches as an unescaped regex (the "." and "+").
DECOY_AGENT = "o'brienXvvv2 (beta|rc) [x]* \\ {1}?^ /a"
SQLSTRING = re.compile(r"\$\{(\w+):sqlstring\}")
PROM_MATCHER = re.compile(r"(\w+)=~`\$\{(\w+):regex\}`")


# --- Grafana's formats (public/app/features/templating/formatRegistry.ts) ------------


def sqlstring(value: str | Sequence[str]) -> str:
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    return ",".join(sqlstring(v) for v in value)


def regex_escape(value: str) -> str:
    """kbn.regexEscape: ``[\\^$*+?.()|[]{}/]`` get a backslash."""
    return re.sub(r"[\\^$*+?.()|\[\]{}/]", lambda m: "\\" + m.group(0), value)


def regex(value: str | Sequence[str]) -> str:
    if isinstance(value, str):
        return regex_escape(value)
    escaped = [regex_escape(v) for v in value]
    return escaped[0] if len(escaped) == 1 else "(" + "|".join(escaped) + ")"


FORMATS = {"sqlstring": sqlstring, "regex": regex}


def interpolate(text: str, values: Mapping[str, str | Sequence[str]]) -> str:
    """Grafana's first step: ``${name:format}`` replaced by the formatted value."""

    def one(m: re.Match[str]) -> str:
        return FORMATS[m.group(2)](values[m.group(1)])

    return re.sub(r"\$\{(\w+):(sqlstring|regex)\}", one, text)


def _variables(q: Query, agent: str, task: str) -> dict[str, str | list[str]]:
    multi = q.dashboard == "agents-overview.json"
    return {"agent": [agent, "rivet"] if multi else agent, "task": task}


# --- structure -------------------------------------------------------------------


@pytest.mark.parametrize("query", [q for q in ALL_QUERIES if q.kind == "sql"], ids=str)
def test_sql_takes_variables_only_as_sqlstring(query: Query) -> None:
    used = variables_used(query.text)
    formatted = set(SQLSTRING.findall(query.text))
    assert used == formatted, f"{query}: {used - formatted} not formatted with :sqlstring"
    # No other spelling of a variable remains, quoted or not.
    rest = SQLSTRING.sub("", query.text)
    assert not re.search(r"\$\{?(?!__)\w+|\[\[\w+\]\]", rest), f"{query}: {rest}"


@pytest.mark.parametrize("query", [q for q in ALL_QUERIES if q.kind == "promql"], ids=str)
def test_promql_matchers_take_variables_regex_escaped(query: Query) -> None:
    used = variables_used(query.text)
    matched = {var for _, var in PROM_MATCHER.findall(query.text)}
    assert used == matched, f"{query}: {used - matched} not in a label=~`${{var:regex}}` matcher"
    rest = PROM_MATCHER.sub("", query.text)
    assert not re.search(r"\$\{?(?!__)\w+|\[\[\w+\]\]", rest), f"{query}: {rest}"


@pytest.mark.parametrize("name", sorted(BOARDS))
def test_datasources_are_variables_with_inputs_for_import(name: str) -> None:
    dash = BOARDS[name]
    ds_vars = {v["name"]: v for v in dash["templating"]["list"] if v["type"] == "datasource"}
    assert {v["query"] for v in ds_vars.values()} == {PROM_TYPE, PG_TYPE}
    # Datasource variables come first: the query variables resolve through them.
    kinds = [v["type"] for v in dash["templating"]["list"]]
    assert kinds[: len(ds_vars)] == ["datasource"] * len(ds_vars)
    for where, ref in datasource_refs(dash):
        if ref.get("uid") == GRAFANA_DS_UID:
            continue
        m = re.fullmatch(r"\$\{(\w+)\}", str(ref.get("uid")))
        assert m, f"{name} {where}: datasource uid {ref.get('uid')!r} is hard-coded"
        assert m.group(1) in ds_vars, f"{name} {where}: {m.group(1)} is not a datasource variable"
        assert ds_vars[m.group(1)]["query"] == ref.get("type"), f"{name} {where}"
    inputs = {i["name"]: i for i in dash["__inputs"]}
    for var in ds_vars.values():
        m = re.fullmatch(r"\$\{(DS_\w+)\}", var["current"]["value"])
        assert m and m.group(1) in inputs, f"{name}: variable {var['name']} defaults to no __inputs entry"
        assert inputs[m.group(1)]["type"] == "datasource"
        assert inputs[m.group(1)]["pluginId"] == var["query"]
    required = {r["id"] for r in dash["__requires"]}
    assert {PROM_TYPE, PG_TYPE, "grafana"} <= required
    # Nothing outside the variables' defaults names an input: Grafana's import
    # replaces them, provisioning leaves them, and the variable then falls back.
    text = json.dumps({k: v for k, v in dash.items() if k != "templating"})
    assert "${DS_" not in text


def test_the_formats_behave_as_grafanas() -> None:
    assert sqlstring("o'brien") == "'o''brien'"
    assert sqlstring(["a", "b'c"]) == "'a','b''c'"
    assert regex("a.b(c)") == "a\\.b\\(c\\)"
    assert regex(["a.b"]) == "a\\.b"
    assert regex(["a", "b|c"]) == "(a|b\\|c)"


# --- real PostgreSQL ---------------------------------------------------------------


def _seed() -> list[tuple[str, tuple[Any, ...]]]:
    t0 = NOW - timedelta(minutes=30)
    ns = int(t0.timestamp() * 1e9)
    rows: list[tuple[str, tuple[Any, ...]]] = []
    for task_id, agent, ended in (
        (HOSTILE_TASK, HOSTILE_AGENT, t0 + timedelta(minutes=10)),
        ("decoy-task", DECOY_AGENT, t0 + timedelta(minutes=5)),
    ):
        rows.append(
            (
                """INSERT INTO agent_tasks (task_id, trace_id, root_span_id, agent_id, agent_name, task_name,
                 status, progress, started_at, updated_at, updated_ns, ended_at, duration_s, input_tokens,
                 output_tokens, context_tokens, context_limit, last_checkpoint_at, last_event_id)
               VALUES ($1, 'a1b2', 'c3d4', $2, NULL, $3, 'complete', 100, $4, $4, $5, $6, 600, 10, 20,
                 1000, 200000, $4, 'ev')""",
                (task_id, agent, f"Name of {task_id}", t0, ns, ended),
            )
        )
        rows.append(
            (
                """INSERT INTO agent_checkpoints (event_id, task_id, agent_id, kind, at, time_ns, status,
                 progress, step, message, source, context_tokens, context_limit, input_tokens, output_tokens)
               VALUES ($1, $2, $3, 'checkpoint', $4, $5, 'working', 50, 'Route', 'halfway', 'event',
                 1000, 200000, 10, 20)""",
                (f"cp-{task_id}", task_id, agent, t0 + timedelta(minutes=1), ns + 1),
            )
        )
        rows.append(
            (
                """INSERT INTO human_interventions (intervention_id, task_id, at, actor, action, comment, outcome,
                 reason, approval_id, source, actor_name, agent_id, time_ns, known)
               VALUES ($1, $2, $3, 'U1', 'approve', 'ok', 'applied', NULL, 'a1', 'slack', 'alice', $4, $5, true)""",
                (f"hi-{task_id}", task_id, t0 + timedelta(minutes=2), agent, ns + 2),
            )
        )
    return rows


@pytest.fixture(scope="module")
def hostile_db(pg_server: Any) -> str:
    return seeded_database(pg_server, _seed())


@pytest.mark.parametrize("query", [q for q in ALL_QUERIES if q.kind == "sql"], ids=str)
def test_sql_with_a_hostile_task_and_agent_runs_and_finds_only_them(hostile_db: str, query: Query) -> None:
    values = _variables(query, HOSTILE_AGENT, HOSTILE_TASK)
    sql = expand_sql(interpolate(query.text, values), {}, NOW - timedelta(hours=6), NOW)
    rows = read_only(hostile_db, sql)
    assert rows, f"{query}: no rows for the hostile task\n{sql}"
    values_seen = {v for r in rows for v in r.values() if isinstance(v, str)}
    assert not values_seen & {DECOY_AGENT, "decoy-task"}, f"{query}: matched the decoy\n{sql}"
    if query.where == "variable task":
        assert [r["__value"] for r in rows] == [HOSTILE_TASK]
    if "task_id" in rows[0]:
        assert {r["task_id"] for r in rows} == {HOSTILE_TASK}


# --- real Prometheus --------------------------------------------------------------


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def exposition() -> str:
    """Series of every metric the dashboards' matchers filter, for both agents."""
    metrics = set()
    for q in ALL_QUERIES:
        if q.kind == "promql" and PROM_MATCHER.search(q.text):
            metrics |= prom_metrics(q.text)
    lines = []
    for name in sorted(metrics - {"up"}):
        for agent, value in ((HOSTILE_AGENT, 3), (DECOY_AGENT, 5)):
            labels = f'agent="{_label(agent)}",outcome="error",direction="input",level="warning",model="m",repo="r"'
            if name.endswith("_bucket"):
                lines += [f'{name}{{{labels},le="1"}} {value}', f'{name}{{{labels},le="+Inf"}} {value}']
            else:
                lines.append(f"{name}{{{labels}}} {value}")
    return "\n".join(lines) + "\n"


class _Metrics(BaseHTTPRequestHandler):
    body = b""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args: Any) -> None:
        pass


def _api(base: str, expr: str) -> dict[str, Any]:
    url = f"{base}/api/v1/query?{urllib.parse.urlencode({'query': expr})}"
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return json.load(resp)  # type: ignore[no-any-return]
    except urllib.error.HTTPError as exc:  # 400/422 carry the PromQL error
        return json.load(exc)  # type: ignore[no-any-return]


def _port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    binary = require("prometheus")
    tmp = tmp_path_factory.mktemp("prom-hostile")
    handler = type("Metrics", (_Metrics,), {"body": exposition().encode()})
    target = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=target.serve_forever, daemon=True).start()
    config = tmp / "prometheus.yml"
    config.write_text(
        json.dumps(
            {
                "global": {"scrape_interval": "1s"},
                "scrape_configs": [
                    {
                        "job_name": "spanvisor",
                        "scrape_timeout": "1s",
                        "static_configs": [{"targets": [f"127.0.0.1:{target.server_address[1]}"]}],
                    }
                ],
            }
        )
    )
    web = _port()
    server = subprocess.Popen(
        [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp / 'data'}",
            f"--web.listen-address=127.0.0.1:{web}",
            "--log.level=warn",
        ],
        stdout=subprocess.DEVNULL,
        stderr=(tmp / "prometheus.log").open("wb"),
    )
    base = f"http://127.0.0.1:{web}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if server.poll() is not None:
                pytest.fail(f"prometheus exited: {(tmp / 'prometheus.log').read_text()[-2000:]}")
            try:
                r = _api(base, "count(spanvisor_tasks_running) >= 2")
            except (OSError, ValueError):  # not listening yet, or "Service Unavailable" while it starts
                r = {}
            if r.get("status") == "success" and r["data"]["result"]:
                break
            if time.monotonic() > deadline:
                pytest.fail("Prometheus scraped no series within 60 s")
            time.sleep(0.2)
        yield base
    finally:
        server.terminate()
        try:
            server.wait(5)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(5)
        target.shutdown()


BUILTINS = {"__rate_interval": "1m", "__interval": "15s", "__range": "5m"}


def _promql(q: Query, agent: str) -> str:
    text = interpolate(q.text, {"agent": [agent] if q.dashboard == "agents-overview.json" else agent})
    return re.sub(r"\$(__\w+)", lambda m: BUILTINS[m.group(1)], text)


@pytest.mark.slow
def test_promql_with_a_hostile_agent_parses_and_matches_only_it(prometheus: str) -> None:
    errors = []
    for q in ALL_QUERIES:
        if q.kind != "promql" or not PROM_MATCHER.search(q.text):
            continue
        expr = _promql(q, HOSTILE_AGENT)
        r = _api(prometheus, expr)
        if r.get("status") != "success":
            errors.append(f"{q}: {expr!r}: {r.get('error')}")
            continue
        for series in r["data"]["result"]:
            assert series["metric"].get("agent") in (None, HOSTILE_AGENT), f"{q}: matched {series['metric']}"
    assert not errors, "\n".join(errors)
    # The overview's running count is the hostile agent's 3, not 3 + the decoy's 5.
    [running] = [q for q in ALL_QUERIES if q.dashboard == "agents-overview.json" and "'Running tasks'" in q.where]
    result = _api(prometheus, _promql(running, HOSTILE_AGENT))["data"]["result"]
    assert [float(s["value"][1]) for s in result] == [3.0]


def test_a_double_quoted_matcher_would_have_failed(tmp_path: Path) -> None:
    """Why the raw string: Prometheus rejects the escaped value inside "..." (promtool parses both)."""
    promtool = require("promtool")
    results = {}
    for name, quote in (("raw", "`"), ("quoted", '"')):
        expr = f"spanvisor_tasks_running{{agent=~{quote}{regex(HOSTILE_AGENT)}{quote}}}"
        path = tmp_path / f"{name}.yml"
        path.write_text(json.dumps({"groups": [{"name": "g", "rules": [{"record": "x:y", "expr": expr}]}]}))
        results[name] = subprocess.run(
            [promtool, "check", "rules", str(path)], check=False, capture_output=True, text=True
        )
    assert results["raw"].returncode == 0, results["raw"].stdout + results["raw"].stderr
    assert results["quoted"].returncode != 0
    assert "escape" in results["quoted"].stdout + results["quoted"].stderr
