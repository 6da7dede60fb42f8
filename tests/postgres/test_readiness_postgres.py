"""Readiness follows the PostgreSQL sink's health, on the real database.

``Pipeline.ready()`` (and ``/readyz`` of the real admin app over a real
Ingest) is false while the database refuses connections or the credentials,
names the sink and the reason, and comes back by itself once the database
answers again (here: a loopback TCP forwarder the test opens late).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import pytest

from spanvisor.pipeline.pipeline import Pipeline
from spanvisor.receiver.admin import make_app
from spanvisor.receiver.ingest import Ingest
from spanvisor_postgres import PostgresSink

from .conftest import make_config


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _with(url: str, *, port: int | None = None, password: str | None = None) -> str:
    parts = urlsplit(url)
    user = parts.username or "postgres"
    pw = password if password is not None else (parts.password or "")
    host = f"{parts.hostname}:{port if port is not None else parts.port}"
    return urlunsplit((parts.scheme, f"{user}:{pw}@{host}", parts.path, parts.query, parts.fragment))


def _wait(check: Callable[[], bool], timeout_s: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return check()


@pytest.fixture
def pipelines() -> Iterator[Callable[[Path, str], Pipeline]]:
    started: list[Pipeline] = []

    def start(data_dir: Path, url: str) -> Pipeline:
        config = make_config(data_dir, url, db_command_timeout=2.0, state_store="memory")
        p = Pipeline(config=config, sinks=[PostgresSink()], path="receiver").start()
        started.append(p)
        assert p.wait_ready(30)
        return p

    yield start
    for p in started:
        p.shutdown(5.0)


def test_not_ready_while_postgres_refuses_connections(
    pipelines: Callable[[Path, str], Pipeline], db_url: str, tmp_path: Path
) -> None:
    p = pipelines(tmp_path, _with(db_url, port=_closed_port()))
    ok, why = p.ready()
    assert not ok
    assert why.startswith("postgres: cannot connect"), why


def test_not_ready_with_a_wrong_password(
    pipelines: Callable[[Path, str], Pipeline], db_url: str, tmp_path: Path
) -> None:
    p = pipelines(tmp_path, _with(db_url, password="not-the-password"))
    ok, why = p.ready()
    assert not ok
    assert why.startswith("postgres: authentication failed"), why
    assert "not-the-password" not in why


def test_ready_with_the_right_dsn(pipelines: Callable[[Path, str], Pipeline], db_url: str, tmp_path: Path) -> None:
    p = pipelines(tmp_path, db_url)
    assert p.ready() == (True, "ok")


class Forwarder:
    """A loopback TCP forwarder on a fixed port, listening only once opened."""

    def __init__(self, target_port: int) -> None:
        self.port = _closed_port()
        self.target = target_port
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.server: asyncio.Server | None = None

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target)
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))

    def open(self) -> None:
        async def start() -> None:
            self.server = await asyncio.start_server(self._client, "127.0.0.1", self.port, reuse_address=True)

        asyncio.run_coroutine_threadsafe(start(), self.loop).result(10)

    def close(self) -> None:
        async def stop() -> None:
            if self.server is not None:
                self.server.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@pytest.mark.slow
def test_readyz_is_503_while_the_database_is_unreachable_and_ready_once_it_answers(
    pipelines: Callable[[Path, str], Pipeline], db_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="spanvisor.postgres")
    forwarder = Forwarder(int(urlsplit(db_url).port or 5432))
    try:
        p = pipelines(tmp_path, _with(db_url, port=forwarder.port))
        app = make_app(Ingest(p, journal=None), lambda: (True, "ok"))

        async def get_readyz() -> tuple[int, str]:
            from aiohttp.test_utils import TestClient, TestServer

            async with TestClient(TestServer(app)) as client:
                live = await client.get("/healthz")
                assert live.status == 200  # liveness stays 200 throughout
                resp = await client.get("/readyz")
                return resp.status, await resp.text()

        status, text = asyncio.run(get_readyz())
        assert status == 503
        assert not [r for r in caplog.records if "is back" in r.getMessage()]
        assert text.startswith("not ready: postgres: cannot connect"), text

        forwarder.open()  # the database answers again: readiness comes back by itself
        assert _wait(lambda: p.ready()[0]), p.ready()
        app = make_app(Ingest(p, journal=None), lambda: (True, "ok"))
        status, text = asyncio.run(get_readyz())
        assert (status, text) == (200, "ready: ok\n")
        # Seen away, then reachable: said once.
        assert _wait(lambda: any("PostgreSQL is back" in r.getMessage() for r in caplog.records))
        assert len([r for r in caplog.records if "PostgreSQL is back" in r.getMessage()]) == 1
        p.shutdown(5.0)  # before the forwarder goes, with the pool's connections through it
    finally:
        forwarder.close()


assert aiohttp  # the admin app's client library, imported for its test utilities above
