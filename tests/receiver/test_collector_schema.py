"""The Collector configs against the Collector's own schema (no Collector binary here).

``collector_schema.json`` is a table of the component types, distributions
and keys the configs may use, taken from a named Collector release. Each
config must use only current names (no deprecated alias), only components
of the distribution it claims, keys where the schema puts them, and needs
no release newer than the floor ``collector-config/README.md`` states, the
one place a version is written.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from collector_yaml import parse_yaml

from spanvisor.spans.conventions import KNOWN_KEYS, ROUTE

ROOT = Path(__file__).resolve().parents[2]
CONFIG_DIR = ROOT / "collector-config"
FILES = sorted(CONFIG_DIR.glob("*.yaml"))
SCHEMA = json.loads((Path(__file__).parent / "collector_schema.json").read_text())
SECTIONS = ("receivers", "processors", "exporters", "extensions")
DISTRIBUTION = re.compile(r"^# Distribution: (otelcol-contrib|otelcol \(core\))", re.MULTILINE)


def _version(v: str) -> tuple[int, ...]:
    return tuple(int(x) for x in v.lstrip("v").split("."))


def _floors() -> dict[str, str]:
    text = (CONFIG_DIR / "README.md").read_text()
    m = re.search(r"\*\*Version floor: otelcol-contrib (v[\d.]+); otelcol \(core\) (v[\d.]+)\.\*\*", text)
    assert m, "collector-config/README.md states the version floor"
    return {"contrib": m.group(1), "core": m.group(2)}


def _distribution(text: str) -> str:
    m = DISTRIBUTION.search(text)
    assert m, "each file names its distribution in a '# Distribution:' line"
    return "contrib" if m.group(1) == "otelcol-contrib" else "core"


def _resolve(spec: Any) -> Any:
    return SCHEMA["$defs"][spec[1:]] if isinstance(spec, str) and spec.startswith("$") else spec


def _check_keys(value: Any, spec: Any, where: str) -> list[str]:
    """Keys of ``value`` the schema does not have at that place."""
    spec = _resolve(spec)
    if spec is None or not isinstance(value, dict):
        return []
    bad = []
    for key, sub in value.items():
        if key not in spec:
            bad.append(f"{where}.{key}")
        else:
            bad += _check_keys(sub, spec[key], f"{where}.{key}")
    return bad


def _since(version: str | None, floor: str) -> bool:
    return version is None or _version(version) <= _version(floor)


def test_the_schema_table_names_its_collector_release() -> None:
    assert re.fullmatch(r"v0\.\d+\.\d+", SCHEMA["collector_version"])
    floors = _floors()
    assert _version(SCHEMA["collector_version"]) >= max(_version(v) for v in floors.values())


def test_there_are_three_configs() -> None:
    assert {f.name for f in FILES} == {"agent-sidecar.yaml", "gateway.yaml", "single-node.yaml"}


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_components_are_current_and_of_the_claimed_distribution(path: Path) -> None:
    text = path.read_text()
    dist = _distribution(text)
    floor = _floors()[dist]
    # The floor is stated once, in the README: no file repeats a version.
    assert not re.search(r"\bv?0\.1\d\d\b", text), f"{path.name} names a Collector version"
    doc = parse_yaml(text)
    problems: list[str] = []
    for section in SECTIONS:
        table = SCHEMA["components"][section]
        aliases = SCHEMA["deprecated_aliases"].get(section, {})
        for cid, conf in (doc.get(section) or {}).items():
            kind = cid.split("/")[0]
            if kind in aliases:
                problems.append(f"{section}.{cid}: deprecated name, use {aliases[kind]}")
                continue
            if kind not in table:
                problems.append(f"{section}.{cid}: unknown type {kind!r}")
                continue
            entry = table[kind]
            if dist not in entry["distributions"]:
                problems.append(f"{section}.{cid}: {kind} is not in the {dist} distribution")
            if not _since(entry["since"], floor):
                problems.append(f"{section}.{cid}: {kind} needs {entry['since']}, above the floor {floor}")
            for key, since in entry.get("key_since", {}).items():
                if isinstance(conf, dict) and key in conf and not _since(since, floor):
                    problems.append(f"{section}.{cid}.{key} needs {since}, above the floor {floor}")
            for key in entry.get("deprecated_keys", {}):
                if isinstance(conf, dict) and key in conf:
                    problems.append(f"{section}.{cid}.{key}: deprecated, use {entry['deprecated_keys'][key]}")
            problems += _check_keys(conf, entry["keys"], f"{section}.{cid}")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_pipelines_reference_defined_components(path: Path) -> None:
    doc = parse_yaml(path.read_text())
    service = doc["service"]
    assert set(service) <= {"extensions", "pipelines", "telemetry"}
    for ext in service.get("extensions", []):
        assert ext in doc["extensions"], ext
    for name, pipe in service["pipelines"].items():
        assert name.split("/")[0] in ("traces", "logs")
        for kind in ("receivers", "processors", "exporters"):
            for comp in pipe.get(kind, []):
                assert comp in doc[kind], f"{path.name}: {kind} {comp} is not defined"
    # Every queue that names a storage names a file_storage extension the service runs.
    for match in re.finditer(r"storage: (\S+)", path.read_text()):
        assert match.group(1).startswith("file_storage/")
        assert match.group(1) in doc["extensions"]
        assert match.group(1) in service["extensions"]


def test_gateway_queues_and_retries_at_the_top_of_load_balancing() -> None:
    doc = parse_yaml((CONFIG_DIR / "gateway.yaml").read_text())
    lb = doc["exporters"]["load_balancing/spanvisor"]
    # A task's spans and records by one key: the trace id as text, set on both
    # by transform/route (routed by traceID, the exporter hashes a record's id
    # as text and a span's as bytes, so they parted).
    assert (lb["routing_key"], lb["routing_attributes"]) == ("attributes", [ROUTE])
    route = doc["processors"]["transform/route"]
    # A sender's own copy on the resource or the scope (read first) is deleted.
    unset = [f'delete_key(resource.attributes, "{ROUTE}")', f'delete_key(scope.attributes, "{ROUTE}")']
    assert route["trace_statements"] == [*unset, f'set(span.attributes["{ROUTE}"], span.trace_id.string)']
    none = '"' + "0" * 32 + '"'
    assert route["log_statements"] == [
        *unset,
        f'set(log.attributes["{ROUTE}"], log.trace_id.string) where log.trace_id.string != {none}',
        f'set(log.attributes["{ROUTE}"], UUID()) where log.trace_id.string == {none}',
    ]
    for signal in ("traces", "logs"):
        procs = doc["service"]["pipelines"][signal]["processors"]
        assert procs.index("transform/route") < procs.index("batch"), procs
    assert lb["sending_queue"]["enabled"] is True
    assert lb["sending_queue"]["storage"] == "file_storage/lb"
    assert lb["retry_on_failure"]["enabled"] is True
    assert "timeout" in lb
    # The per-replica exporters keep no queue of their own (never a persistent
    # one, which they would share) and hand failures back instead of retrying.
    otlp = lb["protocol"]["otlp"]
    assert otlp["sending_queue"] == {"enabled": False}
    assert otlp["retry_on_failure"] == {"enabled": False}
    assert len(lb["resolver"]["static"]["hostnames"]) >= 2
    assert doc["service"]["pipelines"]["traces"]["exporters"] == ["load_balancing/spanvisor"]


def test_gateway_filters_exactly_the_known_keys() -> None:
    doc = parse_yaml((CONFIG_DIR / "gateway.yaml").read_text())
    filt = doc["processors"]["filter/agent_spans"]
    [condition] = filt["trace_conditions"]
    keys = set(re.findall(r'span\.attributes\["([^"]+)"\] == nil', condition))
    assert keys == set(KNOWN_KEYS)
    # True drops: the condition must be a conjunction of "absent" checks.
    assert " or " not in condition
    procs = doc["service"]["pipelines"]["traces"]["processors"]
    assert procs.index("filter/agent_spans") < procs.index("batch")


def test_http_exporters_retry_forever_and_only_contrib_queues_persist() -> None:
    for path in (CONFIG_DIR / "agent-sidecar.yaml", CONFIG_DIR / "single-node.yaml"):
        text = path.read_text()
        doc = parse_yaml(text)
        [exp] = [v for k, v in doc["exporters"].items() if k.startswith("otlp_http/")]
        assert exp["retry_on_failure"]["max_elapsed_time"] == "0s"
        persistent = "storage" in exp["sending_queue"]
        assert persistent == (_distribution(text) == "contrib"), path.name


def test_the_docs_point_to_the_floor_instead_of_repeating_it() -> None:
    deploy = (ROOT / "docs" / "reference" / "deploy.md").read_text()
    assert "collector-config/README.md" in deploy
    assert not re.search(r"\bv0\.1\d\d\b", deploy)
