"""Where the assets live in the repository, in the wheel and in an export."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# Repository files and where the wheel keeps them.
ASSET_SOURCES = {
    "grafana": "spanvisor/_assets/grafana",
    "collector-config": "spanvisor/_assets/collector-config",
    "plugins/spanvisor_prometheus/rules": "spanvisor/_assets/prometheus/rules",
    "docs/alertmanager-example.yml": "spanvisor/_assets/alertmanager/alertmanager-example.yml",
}
# Where `spanvisor assets export DIR` puts them (OpenCode's plugin twice:
# Kilo, a fork, loads it too).
EXPORTED = (
    ("grafana", "grafana"),
    ("collector-config", "collector-config"),
    ("plugins/spanvisor_prometheus/rules", "prometheus/rules"),
    ("docs/alertmanager-example.yml", "alertmanager/alertmanager-example.yml"),
    ("src/spanvisor/_assets/opencode", "opencode"),
    ("src/spanvisor/_assets/opencode", "kilo"),
    ("src/spanvisor/_assets/cline", "cline"),
    ("src/spanvisor/_assets/pi", "pi"),
)


def repo_files(rel: str) -> dict[str, bytes]:
    """Files under a repository path, keyed by their path below it ('' for a file)."""
    path = ROOT / rel
    if path.is_file():
        return {"": path.read_bytes()}
    return {
        p.relative_to(path).as_posix(): p.read_bytes()
        for p in sorted(path.rglob("*"))
        if p.is_file() and "__pycache__" not in p.parts
    }
