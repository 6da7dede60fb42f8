"""Fixtures of the CLI tests."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from spanvisor.cli.main import main

Run = Any  # the ``cli`` fixture: (*argv) -> (exit code, stdout, stderr)


def _closed(handler: logging.Handler) -> bool:
    stream = getattr(handler, "stream", None)
    return bool(getattr(stream, "closed", False))


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Run]:
    """main(argv) in a clean environment: only the SPANVISOR_* a test sets.

    main() sets up the ``spanvisor`` logger's handler on the stderr it sees,
    which is this test's capture: put back the one before, or a later test's
    log line (a migration's, on another thread) writes to a closed file and
    Python prints a "Logging error" into that test's stderr."""
    for name in [n for n in os.environ if n.startswith(("SPANVISOR_", "OTEL_", "SLACK_"))]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("SPANVISOR_DATA_DIR", str(tmp_path / "data"))
    # Never a developer's own `spanvisor login` (the commands send its token).
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))

    def call(*argv: str) -> tuple[int, str, str]:
        code = main(list(argv))
        out = capsys.readouterr()
        return code, out.out, out.err

    logger = logging.getLogger("spanvisor")
    before = (list(logger.handlers), getattr(logger, "_spanvisor_handler", None), logger.level, logger.propagate)
    # A handler left by an earlier test that called main() without this
    # fixture writes to that test's closed capture: start without it.
    logger.handlers[:] = [h for h in logger.handlers if not _closed(h)]
    yield call
    logger.handlers[:] = before[0]
    logger._spanvisor_handler = before[1]  # type: ignore[attr-defined]
    logger.setLevel(before[2])
    logger.propagate = before[3]
