"""Suite-wide fixtures. The PostgreSQL fixtures live in tests/conftest_pg.py."""

from __future__ import annotations

import os
import shutil

import pytest

pytest_plugins = ["tests.conftest_pg"]

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def require_tool(name: str) -> str:
    """The path of a Debian-provided tool; skip locally, fail under CI=true."""
    path = shutil.which(name)
    if path is None:
        msg = f"{name} is not installed (Debian package 'prometheus'; .ci/run installs it)"
        if IN_CI:
            pytest.fail(msg + " and CI=true requires it")
        pytest.skip(msg)
    return path
