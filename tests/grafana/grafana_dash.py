"""Walk spanvisor's dashboards and expand queries the way Grafana does.

``expand_sql`` follows Grafana: the frontend first replaces template
variables (for SQL datasources a multi-value or include-all variable becomes a
list of quoted literals, a single value has its quotes doubled) and
``$__interval``; then the PostgreSQL backend's macro engine
(``pkg/tsdb/grafana-postgresql-datasource/macros.go``) rewrites every
``$name(args)``, failing on an unknown one exactly as Grafana would.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
DASHBOARDS = ROOT / "grafana" / "dashboards"
PROVISIONING = ROOT / "grafana" / "provisioning"
EXPECTED_UIDS = {"agents-overview.json": "spanvisor-overview", "task-drilldown.json": "spanvisor-task"}
GRAFANA_DS_UID = "-- Grafana --"
PG_TYPE = "grafana-postgresql-datasource"
PROM_TYPE = "prometheus"


def load(name: str) -> dict[str, Any]:
    return json.loads((DASHBOARDS / name).read_text(encoding="utf-8"))  # type: ignore[no-any-return]


def dashboards() -> dict[str, dict[str, Any]]:
    return {p.name: load(p.name) for p in sorted(DASHBOARDS.glob("*.json"))}


def all_panels(dash: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dash.get("panels", []):
        yield panel
        yield from panel.get("panels", [])  # collapsed rows nest theirs


@dataclass(frozen=True)
class Query:
    dashboard: str
    where: str  # "panel 7 'Title'", "variable task", "annotation 'Tasks'"
    datasource: dict[str, Any]
    text: str
    kind: str  # "sql", "promql", "tags"

    def __str__(self) -> str:
        return f"{self.dashboard}: {self.where}"


def queries(name: str, dash: Mapping[str, Any]) -> Iterator[Query]:
    for panel in all_panels(dash):
        for target in panel.get("targets", []):
            ds = target.get("datasource") or panel.get("datasource") or {}
            where = f"panel {panel['id']} {panel.get('title')!r} {target.get('refId')}"
            if "rawSql" in target:
                yield Query(name, where, ds, target["rawSql"], "sql")
            if "expr" in target:
                yield Query(name, where, ds, target["expr"], "promql")
    for var in dash.get("templating", {}).get("list", []):
        if var.get("type") != "query":
            continue
        q = var.get("query")
        text = q.get("query") if isinstance(q, dict) else q
        kind = "sql" if var["datasource"].get("type") == PG_TYPE else "promql"
        yield Query(name, f"variable {var['name']}", var["datasource"], text, kind)
    for anno in dash.get("annotations", {}).get("list", []):
        target = anno.get("target") or {}
        where = f"annotation {anno.get('name')!r}"
        if "rawSql" in target:
            yield Query(name, where, anno["datasource"], target["rawSql"], "sql")
        elif target.get("type") == "tags":
            yield Query(name, where, anno["datasource"], " ".join(target["tags"]), "tags")


def datasource_refs(dash: Mapping[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for panel in all_panels(dash):
        if "datasource" in panel:
            yield f"panel {panel['id']}", panel["datasource"]
        for t in panel.get("targets", []):
            if "datasource" in t:
                yield f"panel {panel['id']} target {t.get('refId')}", t["datasource"]
    for var in dash.get("templating", {}).get("list", []):
        if "datasource" in var:
            yield f"variable {var['name']}", var["datasource"]
    for anno in dash.get("annotations", {}).get("list", []):
        yield f"annotation {anno.get('name')!r}", anno["datasource"]
        if "datasource" in (anno.get("target") or {}):
            yield f"annotation {anno.get('name')!r} target", anno["target"]["datasource"]


def provisioned_datasources() -> dict[str, dict[str, str]]:
    """uid -> {type, name, ...} from the datasources YAML (flat keys only).

    No YAML library is installed; the file is plain enough to read line by
    line, and this keeps the test honest about the fields Grafana reads.
    """
    text = (PROVISIONING / "datasources" / "spanvisor.yml").read_text(encoding="utf-8")
    found: dict[str, dict[str, str]] = {}
    current: dict[str, str] | None = None
    section = ""
    for raw in text.splitlines():
        line = raw.split(" #", 1)[0].rstrip()
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        m = re.match(r"^  - (\w+): (.*)$", line)
        if m:
            current = {m.group(1): m.group(2)}
            section = ""
            found[str(len(found))] = current
            continue
        m = re.match(r"^    (\w+):\s*(.*)$", line)
        if m and current is not None:
            section = m.group(1) if not m.group(2) else ""
            if m.group(2):
                current[m.group(1)] = m.group(2)
            continue
        m = re.match(r"^      (\w+):\s*(.*)$", line)
        if m and current is not None and section:
            current[f"{section}.{m.group(1)}"] = m.group(2)
    return {ds["uid"]: ds for ds in found.values()}


# --- Grafana's interpolation ----------------------------------------------------

_MACRO = re.compile(r"\$([_a-zA-Z0-9]+)\(([^\)]*)\)")
_INTERVAL = re.compile(r"^(\d+)(ms|s|m|h|d)$")
_UNIT_S = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


def _rfc3339(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _interval_s(arg: str) -> float:
    m = _INTERVAL.match(arg.strip().strip("'"))
    if not m:
        raise ValueError(f"error parsing interval {arg}")
    return int(m.group(1)) * _UNIT_S[m.group(2)]


def _macro(name: str, args: list[str], frm: datetime, to: datetime) -> str:
    if name == "__time":
        return f'{args[0]} AS "time"'
    if name == "__timeEpoch":
        return f'extract(epoch from {args[0]}) as "time"'
    if name == "__timeFilter":
        if not args or not args[0]:
            raise ValueError("missing time column argument for macro __timeFilter")
        return f"{args[0]} BETWEEN '{_rfc3339(frm)}' AND '{_rfc3339(to)}'"
    if name == "__timeFrom":
        return f"'{_rfc3339(frm)}'"
    if name == "__timeTo":
        return f"'{_rfc3339(to)}'"
    if name in ("__timeGroup", "__timeGroupAlias"):
        if len(args) < 2:
            raise ValueError(f"macro {name} needs time column and interval")
        secs = _interval_s(args[1])
        group = f"floor(extract(epoch from {args[0]})/{secs:g})*{secs:g}"
        return group + (' AS "time"' if name == "__timeGroupAlias" else "")
    if name == "__unixEpochFilter":
        return f"{args[0]} >= {int(frm.timestamp())} AND {args[0]} <= {int(to.timestamp())}"
    raise ValueError(f"unknown macro {name!r}")


def sql_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _regex_escape(value: str) -> str:
    # Grafana's escapeRegex: the characters of a JavaScript regex.
    return re.sub(r"([\\^$*+?.()|\[\]{}/])", r"\\\1", value)


def format_value(value: str | Sequence[str], fmt: str) -> str:
    """``${var:fmt}``: Grafana's variable formats (docs: "Advanced variable format options")."""
    values = [value] if isinstance(value, str) else list(value)
    if fmt == "sqlstring":
        return ",".join(sql_literal(v) for v in values)
    if fmt == "singlequote":
        return ",".join("'" + v.replace("'", "\\'") + "'" for v in values)
    if fmt == "doublequote":
        return ",".join('"' + v.replace('"', '\\"') + '"' for v in values)
    if fmt in ("csv", "raw", "text"):
        return ",".join(values)
    if fmt == "pipe":
        return "|".join(values)
    if fmt == "regex":
        escaped = [_regex_escape(v) for v in values]
        return escaped[0] if len(escaped) == 1 else "(" + "|".join(escaped) + ")"
    raise ValueError(f"variable format {fmt!r} is not one this helper knows")


def expand_sql(
    sql: str,
    variables: Mapping[str, str | Sequence[str]],
    frm: datetime,
    to: datetime,
    interval: str = "1m",
) -> str:
    """The SQL Grafana would send to PostgreSQL for this query."""

    def var(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(3) or m.group(4)
        if name not in variables:
            return m.group(0)
        value = variables[name]
        if m.group(2):  # an explicit format wins over the datasource's own quoting
            return format_value(value, m.group(2))
        if isinstance(value, str):
            return value.replace("'", "''")
        return ",".join(sql_literal(v) for v in value)

    sql = sql.replace("$__interval_ms", str(int(_interval_s(interval) * 1000)))
    sql = sql.replace("$__interval", interval)
    sql = re.sub(r"\$\{(\w+)(?::(\w+))?\}|\[\[(\w+)\]\]|\$(?!__)(\w+)(?!\()", var, sql)

    def macro(m: re.Match[str]) -> str:
        args = [a.strip() for a in m.group(2).split(",")]
        return _macro(m.group(1), args, frm, to)

    out = _MACRO.sub(macro, sql)
    leftover = re.findall(r"\$\{?\w+", out)
    if leftover:
        raise ValueError(f"not interpolated: {leftover}")
    return out


# Template variables and built-ins a query may use.
BUILTINS = {
    "__range",
    "__range_s",
    "__range_ms",
    "__rate_interval",
    "__rate_interval_ms",
    "__interval",
    "__interval_ms",
    "__from",
    "__to",
    "__dashboard",
    "__org",
    "__user",
    "__timeFilter",
    "__timeFrom",
    "__timeTo",
    "__timeGroup",
    "__timeGroupAlias",
    "__time",
    "__timeEpoch",
    "__unixEpochFilter",
    "__data",
    "__value",
    "__field",
    "__series",
    "__url",
    "__all",
    "timeFilter",
}


def variables_used(text: str) -> set[str]:
    names = set(re.findall(r"\$\{(\w+)(?:[:.][^}]*)?\}", text))
    names |= set(re.findall(r"\[\[(\w+)\]\]", text))
    names |= set(re.findall(r"\$(\w+)", text))
    return names - BUILTINS


def prom_metrics(expr: str) -> set[str]:
    """Metric names in a PromQL expression (functions, labels and keywords excluded)."""
    no_strings = re.sub(r'"[^"]*"', '""', expr)
    no_labels = re.sub(r"\{[^}]*\}", "", no_strings)
    no_ranges = re.sub(r"\[[^\]]*\]", "", no_labels)
    names = set(re.findall(r"\b(spanvisor_\w+)", no_ranges))
    if re.search(r"\bup\b", no_ranges):
        names.add("up")
    return names
