"""pytest plugin: which tests share a worker, so the suite holds at its own load.

The suite runs in several processes (``make unit``: ``-n TEST_WORKERS
--dist loadgroup``). Each test file is one unit of work, as ``--dist
loadfile`` would make it (its module fixtures are set up once), with one
exception: the files that run the real coding-agent CLIs (node processes
that each take a core to start, several at once in a test) are spread over
``TEST_CLI_GROUPS`` units only, each run by one worker from start to end.
So at most that many CLI files run at once, whatever the number of
workers: with three workers and every worker free to take a CLI file, three
of them at once drove a 2-core machine to load 6 and real CLIs past the
liveness windows their tests set.

xdist reads the group from the ``xdist_group`` mark, which this hook adds
before xdist's own collection hook turns it into the node id's ``@group``
suffix. Without ``--dist loadgroup`` (one process, ``-n 0``) the marks do
nothing.

Loaded from ``tests/conftest.py``.
"""

from __future__ import annotations

import os

import pytest

ENV = "TEST_CLI_GROUPS"
DEFAULT_CLI_GROUPS = 2
# The fixture every test that runs a real CLI asks for (tests/codingagents/conftest.py).
CLI_FIXTURE = "cli_bin"


def cli_groups() -> int:
    raw = os.environ.get(ENV, "").strip()
    if not raw:
        return DEFAULT_CLI_GROUPS
    try:
        value = int(raw)
    except ValueError:
        raise pytest.UsageError(f"{ENV} must be a whole number of worker groups, got {raw!r}") from None
    if value < 1:
        raise pytest.UsageError(f"{ENV} must be at least 1, got {value}")
    return value


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    groups = cli_groups()
    cli_files = sorted({item.path for item in items if CLI_FIXTURE in getattr(item, "fixturenames", ())})
    slot = {path: f"real-clis-{i % groups}" for i, path in enumerate(cli_files)}
    root = config.rootpath
    for item in items:
        if any(True for _ in item.iter_markers("xdist_group")):
            continue
        name = slot.get(item.path) or str(item.path.relative_to(root) if item.path.is_relative_to(root) else item.path)
        item.add_marker(pytest.mark.xdist_group(name))
