"""Every third-party distribution spanvisor imports is a declared requirement.

Not left to arrive as somebody else's dependency (googleapis-common-protos
came only through the OTLP exporters). A meta-distribution that ships no
code of its own (opentelemetry-exporter-otlp) declares its parts.
"""

from __future__ import annotations

import tomllib

from .deps import ROOT, imported_distributions, normalize, provided_by_meta


def _declared() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return {
        normalize(r.split(";")[0].split("[")[0].split(">")[0].split("=")[0].split("<")[0])
        for r in project["dependencies"]
    }


def test_the_scan_finds_the_imports_that_matter() -> None:
    found = imported_distributions()
    assert {"googleapis-common-protos", "protobuf", "grpcio", "slack-sdk", "asyncpg", "opentelemetry-sdk"} <= found


def test_every_imported_distribution_is_declared() -> None:
    declared = _declared()
    missing = {d for d in imported_distributions() if d not in declared and not provided_by_meta(d, declared)}
    assert not missing, f"imported but not in [project] dependencies: {sorted(missing)}"
