"""The matrix's fixtures: the CLIs (npm ci from the lockfile), one real
``spanvisor serve`` with PostgreSQL and the fake Slack for the session, and
the fake model APIs on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.codingagents.fake_anthropic import fake_anthropic
from tests.codingagents.fake_http import FakeModelAPI
from tests.codingagents.npm_install import install
from tests.codingagents.served import Matrix, start_serve
from tests.receiver.serve_proc import FakeSlackThread


@pytest.fixture(scope="session")
def cli_bin() -> Path:
    return install()


@pytest.fixture(scope="session")
def matrix(pg_server: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Matrix]:
    slack = FakeSlackThread()
    serve = start_serve(pg_server.database(), slack, tmp_path_factory.mktemp("matrix-serve"))
    try:
        yield Matrix(serve, slack, str(serve.env["SPANVISOR_DATABASE_URL"]))
    finally:
        serve.stop()
        slack.close()


@pytest.fixture(scope="session")
def anthropic() -> Iterator[FakeModelAPI]:
    api = fake_anthropic()
    try:
        yield api
    finally:
        api.close()
