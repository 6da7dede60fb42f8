"""Paths for the Prometheus tests, and the suite's one ``require`` for their tools.

``require`` is tests/conftest.py's: a missing promtool, prometheus or amtool
is a skip (with the install command) on a developer's machine and a failure
under any truthy ``CI``.
"""

from __future__ import annotations

from pathlib import Path

from tests.conftest import require

ROOT = Path(__file__).resolve().parents[2]
RULES_DIR = ROOT / "plugins" / "spanvisor_prometheus" / "rules"

__all__ = ["ROOT", "RULES_DIR", "require"]
