"""``spanvisor run``'s local gate: the session's hooks decided in the
launcher's warm process (:mod:`spanvisor.gate.local`).

The socket lives in a fresh directory of mode 0700 (the socket itself
0600) under ``$XDG_RUNTIME_DIR`` or the temporary directory, and on Linux a
connection from another user id is refused (``SO_PEERCRED``) even where
the file modes would let it in. Each connection is one hook call, decided
by the same code as the command hook
(:func:`spanvisor.hook.command.main`), with the same policy file, deadline
(counted from the hook process's start) and answers; the reply goes the
moment the answer is known (the audit note after it, delivered on another
worker), and a backstop blocks a call still undecided just past the
deadline. Calls run on the
gate's long-lived workers, their backstops on one thread
(:mod:`.gate_threads`): no thread is started per call. The hook
process writes the answer out.
"""

from __future__ import annotations

import functools
import importlib.util
import io
import json
import os
import shutil
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from spanvisor.clis import registry
from spanvisor.clis.adapter import Adapter
from spanvisor.gate import centralcache, clitimeout, local
from spanvisor.gate import session as gs
from spanvisor.gate.answer import Answer
from spanvisor.gate.deadline import Deadline
from spanvisor.gate.policy import PolicyError, load
from spanvisor.hook import command as hook
from spanvisor.launcher import gate_http as run_gate_http
from spanvisor.launcher.gate_threads import BACKSTOPS, WORKERS


class LocalGate:
    """The listening socket and its threads, for one session. ``identity``:
    the session's task, agent, owner and resource as the launcher set them
    for its CLI, which its hooks are decided under whatever their
    environment says."""

    def __init__(self, identity: Mapping[str, str] | None = None) -> None:
        self.identity = dict(identity or {})
        base = os.environ.get("XDG_RUNTIME_DIR")
        self.dir = tempfile.mkdtemp(prefix="spanvisor-gate-", dir=base if base and os.path.isdir(base) else None)
        os.chmod(self.dir, 0o700)
        self.path = os.path.join(self.dir, "gate.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(self.path)
        os.chmod(self.path, 0o600)
        self.sock.listen(64)
        self.answered = 0
        # The central policy's copy is read again ahead of its time (a call rarely waits for the server).
        centralcache.AHEAD = True
        # The settings the CLI was started with (claude --settings FILE or
        # JSON): their hook timeout counts, though no hook could find them.
        self.settings = clitimeout.launched_settings(sys.argv, self.dir)
        self._warn_once()
        self.bin = _write_client(self.dir, self.settings)
        # Calls of this gate on the shared workers (gate_threads.py), waited
        # for a moment at close so their answers go out.
        self._busy = 0
        self._idle = threading.Condition()
        self.http: run_gate_http.HttpGate | None = None
        self._thread = threading.Thread(target=self._accept, name="spanvisor-run-gate", daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with self._idle:
                self._busy += 1
            WORKERS.run(functools.partial(self._serve, conn, time.monotonic()))

    def _serve(self, conn: socket.socket, accepted: float) -> None:
        try:
            self._serve_one(conn, accepted)
        finally:
            with self._idle:
                self._busy -= 1
                self._idle.notify_all()

    def _serve_one(self, conn: socket.socket, accepted: float) -> None:
        with conn:
            if not _same_user(conn):
                return
            doc = local.read_frame(conn, accepted + 10.0) or {}
            argv, raw, cwd, env = doc.get("argv"), doc.get("stdin"), doc.get("cwd"), doc.get("env")
            if not isinstance(argv, list) or not all(isinstance(a, str) for a in argv) or not isinstance(raw, str):
                return  # the hook decides by itself
            if (
                not isinstance(cwd, str)
                or not isinstance(env, dict)
                or not all(isinstance(v, str) for v in env.values())
            ):
                return
            started = _started(doc.get("started"), accepted)
            small = bool(doc.get("small"))

            def send(code: int, out: str, err: str) -> None:
                try:
                    conn.settimeout(5.0)
                    conn.sendall(local.frame({"code": code, "stdout": out, "stderr": err, "small": small}))
                except OSError:
                    pass

            self.decide(send, argv, raw.encode("latin-1"), started, env, cwd)

    def decide(
        self,
        send: Callable[[int, str, str], None],
        argv: list[str],
        raw: bytes,
        started: float,
        env: dict[str, str],
        cwd: str,
        entry_timeout_s: float | None = None,
    ) -> None:
        """Decide as the hook process would (its variables, its directory,
        its start) and ``send`` the answer (:func:`decide_call`).
        ``entry_timeout_s``: the timeout of the one hook entry that made the
        call, when it is known (the ``http`` listener's own)."""
        if self.settings and clitimeout.ENV_SETTINGS not in env:
            env = {**env, clitimeout.ENV_SETTINGS: os.pathsep.join(self.settings)}
        if self.identity:
            # The launcher's word on its session, not the hook's environment:
            # Claude Code applies a repository's settings `env` block to its
            # hooks, which could name another task (its requests filed there,
            # this task's cancel never looked for), another owner or another
            # repository (a rule on them matched by the repository's word).
            env = {**gs.unclaimed(env), **self.identity}

        def counted(code: int, out: str, err: str) -> None:
            self.answered += 1
            send(code, out, err)

        decide_call(counted, argv, raw, started, env, cwd, entry_timeout_s, self._later)

    def _later(self, job: Callable[[], object]) -> None:
        """What follows an answer (the audit note's delivery) on another
        worker, so that the thread that answered is free for its
        connection's next call; counted as a call is, so that :meth:`close`
        gives it the same second a call gets (a delivery still running then
        leaves what it has not sent in the spool for the next hook or
        launcher)."""
        with self._idle:
            self._busy += 1

        def counted() -> None:
            try:
                job()
            finally:
                with self._idle:
                    self._busy -= 1
                    self._idle.notify_all()

        WORKERS.run(counted)

    def client_path(self, env: dict[str, str]) -> None:
        """Put the small client first on the CLI's ``PATH``, as ``spanvisor``:
        the hooks' ``spanvisor hook …`` asks this launcher without loading
        the package (:mod:`spanvisor.gate.client`); anything else it hands
        to the full command."""
        if self.bin is not None:
            env["PATH"] = self.bin + os.pathsep + env.get("PATH", os.defpath)

    def for_http(self, adapter: Adapter, argv: list[str], env: Mapping[str, str]) -> list[str]:
        """The CLI's arguments, with its ``http`` hook pointed at this
        launcher when ``SPANVISOR_LOCAL_GATE=http`` and its adapter has such
        hooks (``env``: the session's variables, which its calls are
        decided with)."""
        if os.environ.get(run_gate_http.ENV_MODE) != "http" or not adapter.http_hooks:
            return argv
        try:
            self.http = run_gate_http.HttpGate(adapter, self.decide, env, os.getcwd())
        except OSError as exc:
            print(f"spanvisor run: no http gate ({exc.strerror or exc}); the command hook decides", file=sys.stderr)
            return argv
        try:
            merged = self.http.settings(argv, self.dir)
        except OSError as exc:
            print(f"spanvisor run: no http gate ({exc.strerror or exc}); the command hook decides", file=sys.stderr)
            return argv
        if merged is None:
            print("spanvisor run: the settings given cannot be read as JSON: no http gate added", file=sys.stderr)
            return argv
        return merged

    def _warn_once(self) -> None:
        """Say once, here where the session starts, when the CLI's own hook
        timeout leaves a person less time than the policy gives."""
        cli = clitimeout.launched_cli(sys.argv)
        if cli is None:
            return
        env = dict(os.environ)
        if self.settings:
            env[clitimeout.ENV_SETTINGS] = os.pathsep.join(self.settings)
        try:
            timeout_s = load(env.get(hook.ENV_POLICY)).timeout_s
        except PolicyError:
            return  # every hook call says what is wrong with the policy
        said = clitimeout.short_for(cli, timeout_s, env, os.getcwd())
        if said:
            print(f"spanvisor run: {said}", file=sys.stderr)

    def close(self) -> None:
        if self.http is not None:
            self.http.close()
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        self._thread.join(5)
        with self._idle:  # each call is bounded by its deadline, not waited for past a moment
            self._idle.wait_for(lambda: self._busy == 0, 1.0)
        shutil.rmtree(self.dir, ignore_errors=True)


def decide_call(
    send: Callable[[int, str, str], None],
    argv: list[str],
    raw: bytes,
    started: float,
    env: dict[str, str],
    cwd: str,
    entry_timeout_s: float | None = None,
    later: Callable[[Callable[[], object]], object] | None = None,
    received: float | None = None,
) -> None:
    """One hook call decided in this process by the command hook's own code
    (:func:`spanvisor.hook.command.main`), ``send`` given the answer (exit
    status, stdout, stderr) the moment it is known (the audit note comes
    after, its delivery handed to ``later`` when given), and a block at the
    backstop if the worker is still deciding then (a hung request, a slow
    disk).

    The deadline counts from the CLI's hook timeout: ``entry_timeout_s``
    when the call's own hook entry is known (the ``http`` listener's, whose
    entry only the launcher wrote), else the shortest the CLI's settings
    files give the gate's command hook (:mod:`spanvisor.gate.clitimeout`: a
    command hook cannot tell which entry ran it). ``received``: when this
    process got the call, if ``started`` is the caller's claim (the system
    gate's): the cancel look's wait counts from the later of the two."""
    out, err = io.StringIO(), io.StringIO()
    cli = argv[0] if argv and registry.get(argv[0]) is not None else None

    def reply(code: int) -> None:
        send(code, out.getvalue(), err.getvalue())

    answer = Answer(cli, out, err, reply)
    answer.later = later
    limit = entry_timeout_s if entry_timeout_s is not None else clitimeout.limit(cli or "", _given(argv), env, cwd)
    deadline = Deadline.for_cli(cli, limit, started)
    stand_down = BACKSTOPS.at(
        deadline.launcher_backstop(), lambda: answer.block("spanvisor: no answer before the CLI's hook timeout; denied")
    )
    try:
        hook.main(
            argv, stdin=raw, started=started, env=env, cwd=cwd, answer=answer, deadline=deadline, received=received
        )
    finally:
        stand_down()


def _write_client(where: str, settings: list[str]) -> str | None:
    """The small client as ``spanvisor`` in a private folder, with the full
    command and the shortest hook timeout the CLI's settings give; None
    when it cannot be (no full command found, an interpreter path a
    ``#!`` line cannot hold)."""
    real = shutil.which("spanvisor") or str(Path(sys.executable).with_name("spanvisor"))
    spec = importlib.util.find_spec("spanvisor.gate.client")
    if not os.access(real, os.X_OK) or spec is None or spec.origin is None or " " in sys.executable:
        return None
    cli = clitimeout.launched_cli(sys.argv)
    env = dict(os.environ)
    if settings:
        env[clitimeout.ENV_SETTINGS] = os.pathsep.join(settings)
    found = clitimeout.configured(cli, env, os.getcwd()) if cli else []
    try:
        source = Path(spec.origin).read_text(encoding="utf-8")
        folder = os.path.join(where, "bin")
        os.mkdir(folder, 0o700)
        path = os.path.join(folder, "spanvisor")
        head = f"#!{sys.executable} -IS\nREAL = {os.path.abspath(real)!r}\nLIMIT = {min(found) if found else 0.0!r}\n"
        head += _client_facts()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o700)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(head + source)
    except OSError:
        return None
    return folder


def _client_facts() -> str:
    """What the small client knows of each CLI, from its adapter (it imports
    nothing of spanvisor): its default hook timeout and its block."""
    defaults = {a.name: a.hook_timeout_s for a in registry.every()}
    blocks = {
        a.name: (json.dumps(a.reply(a.default_event, "deny", "@REASON@")), a.block_status) for a in registry.every()
    }
    return f"DEFAULTS = {defaults!r}\nBLOCKS = {blocks!r}\n"


def _started(given: object, accepted: float) -> float:
    """The hook's start as it says (the same monotonic clock), if plausible."""
    if isinstance(given, int | float) and not isinstance(given, bool) and accepted - 60.0 <= given <= accepted:
        return float(given)
    return accepted


def _given(argv: list[str]) -> float | None:
    for i, a in enumerate(argv):
        value = a.split("=", 1)[1] if a.startswith("--cli-timeout=") else None
        if a == "--cli-timeout" and i + 1 < len(argv):
            value = argv[i + 1]
        if value is not None:
            try:
                return float(value)
            except ValueError:
                return None
    return None


def _same_user(conn: socket.socket) -> bool:
    """Whether the peer runs as this user (Linux's SO_PEERCRED; elsewhere
    the directory's mode is the guard)."""
    if getattr(socket, "SO_PEERCRED", None) is None or not sys.platform.startswith("linux"):
        return True
    who = local.peer(conn)
    return who is not None and who[1] == os.getuid()


__all__ = ["LocalGate", "decide_call"]
