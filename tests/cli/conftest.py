"""Fixtures of the CLI tests."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from spanvisor.cli.main import main

Run = Any  # the ``cli`` fixture: (*argv) -> (exit code, stdout, stderr)


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Run:
    """main(argv) in a clean environment: only the SPANVISOR_* a test sets."""
    for name in [n for n in os.environ if n.startswith(("SPANVISOR_", "OTEL_", "SLACK_"))]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("SPANVISOR_DATA_DIR", str(tmp_path / "data"))

    def call(*argv: str) -> tuple[int, str, str]:
        code = main(list(argv))
        out = capsys.readouterr()
        return code, out.out, out.err

    return call
