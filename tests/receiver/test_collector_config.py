"""The Collector configs, checked structurally (no Collector binary installs here).

No YAML library is a dependency, so a small parser for the subset these
files use (block mappings, block lists, plain and folded scalars, comments)
reads them; it refuses anything else, so a file outside the subset fails
loudly rather than passing unchecked.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from spanvisor.spans.conventions import KNOWN_KEYS

CONFIG_DIR = Path(__file__).resolve().parents[2] / "collector-config"
FILES = sorted(CONFIG_DIR.glob("*.yaml"))


def _lines(text: str) -> list[tuple[int, str]]:
    out = []
    for raw in text.splitlines():
        line = re.sub(r"(^|\s)#.*$", "", raw).rstrip()
        if line.strip():
            out.append((len(line) - len(line.lstrip(" ")), line.strip()))
    return out


def parse_yaml(text: str) -> Any:
    lines = _lines(text)
    pos = 0

    def scalar(s: str) -> Any:
        s = s.strip()
        if s in ("true", "false"):
            return s == "true"
        if re.fullmatch(r"-?\d+", s):
            return int(s)
        if s.startswith(("'", '"')):
            return s[1:-1]
        if s.startswith("[") and s.endswith("]") and not re.search(r"[\[\]{}'\"]", s[1:-1]):
            return [scalar(x) for x in s[1:-1].split(",") if x.strip()]
        if s.startswith(("{", "[", "&", "*", "|")):
            raise ValueError(f"unsupported YAML: {s}")
        return s

    def block(indent: int) -> Any:
        nonlocal pos
        if pos >= len(lines):
            return None
        is_list = lines[pos][1].startswith("- ") or lines[pos][1] == "-"
        result: Any = [] if is_list else {}
        while pos < len(lines):
            ind, text = lines[pos]
            if ind < indent:
                break
            if ind > indent:
                raise ValueError(f"bad indentation at {text!r}")
            pos += 1
            if is_list:
                item = text[2:].strip()
                if item == ">-":
                    parts = []
                    while pos < len(lines) and lines[pos][0] > ind:
                        parts.append(lines[pos][1])
                        pos += 1
                    result.append(" ".join(parts))
                else:
                    result.append(scalar(item))
                continue
            key, sep, rest = text.partition(":")
            if not sep:
                raise ValueError(f"expected 'key:' at {text!r}")
            rest = rest.strip()
            if rest:
                result[key] = scalar(rest)
            elif pos < len(lines) and lines[pos][0] > ind:
                result[key] = block(lines[pos][0])
            elif pos < len(lines) and lines[pos][0] == ind and lines[pos][1].startswith("- "):
                result[key] = block(ind)
            else:
                result[key] = None
        return result

    return block(0)


def test_there_are_three_configs() -> None:
    assert {f.name for f in FILES} == {"agent-sidecar.yaml", "gateway.yaml", "single-node.yaml"}


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_pipelines_reference_defined_components(path: Path) -> None:
    text = path.read_text()
    assert re.search(r"v0\.1\d\d", text), "each file names the Collector versions it targets"
    doc = parse_yaml(text)
    service = doc["service"]
    for ext in service.get("extensions", []):
        assert ext in doc["extensions"], ext
    for name, pipe in service["pipelines"].items():
        assert name.split("/")[0] == "traces"
        for kind in ("receivers", "processors", "exporters"):
            for comp in pipe.get(kind, []):
                assert comp in doc[kind], f"{path.name}: {kind} {comp} is not defined"
    # Every queue that names a storage names a defined file_storage extension.
    for match in re.finditer(r"storage: (\S+)", text):
        assert match.group(1) in doc["extensions"]
        assert match.group(1) in service["extensions"]


def test_gateway_filters_exactly_the_known_keys_and_load_balances() -> None:
    doc = parse_yaml((CONFIG_DIR / "gateway.yaml").read_text())
    filt = doc["processors"]["filter/agent_spans"]
    [condition] = filt["trace_conditions"]
    keys = set(re.findall(r'span\.attributes\["([^"]+)"\] == nil', condition))
    assert keys == set(KNOWN_KEYS)
    # True drops: the condition must be a conjunction of "absent" checks.
    assert " or " not in condition
    lb = doc["exporters"]["loadbalancing/spanvisor"]
    assert lb["routing_key"] == "traceID"
    otlp = lb["protocol"]["otlp"]
    assert otlp["sending_queue"]["storage"] == "file_storage/lb"
    assert otlp["retry_on_failure"]["enabled"] is True
    assert len(lb["resolver"]["static"]["hostnames"]) >= 2
    assert doc["service"]["pipelines"]["traces"]["processors"].index("filter/agent_spans") < (
        doc["service"]["pipelines"]["traces"]["processors"].index("batch")
    )


def test_http_exporters_use_the_new_name_and_persistent_queues() -> None:
    for name in ("agent-sidecar.yaml", "single-node.yaml"):
        doc = parse_yaml((CONFIG_DIR / name).read_text())
        [exp] = [v for k, v in doc["exporters"].items() if k.startswith("otlp_http")]
        assert exp["sending_queue"]["storage"].startswith("file_storage/")
        assert exp["retry_on_failure"]["max_elapsed_time"] == "0s"
