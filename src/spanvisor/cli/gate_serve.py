"""``spanvisor gate serve``: the gate in a trust domain of its own.

Run it as a service under a user of its own (``spanvisor-gate``; see
docs/design/gate.md, "The system gate"). It listens on a Unix socket at a
fixed path (``--socket``) that the agents' hooks name on their command
line (``spanvisor hook <cli> --gate SOCKET``, in each CLI's managed
settings). Everything that decides lives with it, where the agent's user
cannot write: the policy (``--policy``, an absolute path), the central
policy's copy, the audit spool (under this user's home) and the tokens
(``--token-file``, ``--otlp-token-file``: read here, never sent to a hook).

Who may ask: a process of this user, or one whose primary or
supplementary groups include ``--group`` (the agents' group), by the
kernel's word for the connection (``SO_PEERCRED``, then the peer's
``/proc/<pid>/status``); anyone else's connection is closed unanswered,
and their hook blocks. The socket is made mode 0660, group ``--group``;
its directory should be this user's, mode 0750, group ``--group`` (a
systemd ``RuntimeDirectory=`` gives exactly that), so no agent can remove
it or bind its own in its place: a gate that finds the directory writable
by others says so and refuses to start.

Which task a call is of is the kernel's word too, not the environment's:
a repository can set the variables a hook carries (Claude Code applies a
project's settings ``env`` block to its hooks), which would file the
session's requests under another task, skip its cancel and choose the
agent a rule's ``agents`` condition reads. So the session's task and agent
variables (``SPANVISOR_TASK_ID``, ``SPANVISOR_TASK_AGENT``, the task and
run in ``OTEL_RESOURCE_ATTRIBUTES``) a hook carries are dropped; a
``spanvisor run`` that told this gate its session (a frame
``{"launcher": {...}}`` on a connection it keeps open for the session, its
pid by ``SO_PEERCRED``) gives them to the calls of hooks below it (its
nearest such ancestor, by ``/proc/<pid>/stat``); any other call is its
CLI's session's own task.

Each call is decided by the command hook's own code
(:func:`spanvisor.launcher.gate.decide_call`) as a locked hook with this
gate's options: from the hook's request only the CLI's name, the call,
the working directory, the flags that describe the call (``--at-terminal``,
``--cli-timeout``) and the session's context variables are read. At most
:data:`MAX_CALLS` calls are decided at once; a call beyond is closed
unanswered (its hook blocks), never queued past its CLI's deadline.
"""

from __future__ import annotations

import argparse
import grp
import os
import signal
import socket
import stat
import sys
import threading
import time
from collections.abc import Sequence
from types import FrameType
from typing import Any

from spanvisor.gate import cancel, local, servetoken
from spanvisor.hook.config import ALSO_LOCKED
from spanvisor.hook.system import CONTEXT

# Calls decided at once; a person's answer may hold one for minutes.
MAX_CALLS = 256
# Flags a hook may pass on: they describe the call, never choose a policy, a server or a token.
DESCRIBING = frozenset({"--at-terminal"})
WITH_VALUE = frozenset({"--cli-timeout"})


class CannotStart(Exception):
    """The gate cannot start as asked (said on stderr, exit status 2)."""


def group_id(name: str | None) -> int:
    """The agents' group by name or number; this process's own when None."""
    if name is None:
        return os.getgid()
    if name.isdigit():
        return int(name)
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        raise CannotStart(f"no group {name!r}") from None


def groups_of(pid: int) -> set[int]:
    """A process's supplementary groups (``/proc/<pid>/status``)."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Groups:"):
                    return {int(g) for g in line.split()[1:]}
    except (OSError, ValueError):
        pass
    return set()


def allowed(conn: socket.socket, gid: int) -> bool:
    who = local.peer(conn)
    if who is None:
        return False
    pid, uid, primary = who
    return uid == os.getuid() or primary == gid or gid in groups_of(pid)


def passed_on(argv: object) -> list[str] | None:
    """The hook's CLI and describing flags from its request; None when the
    request names no CLI. Anything else it sent is dropped."""
    from spanvisor.clis import registry

    if not isinstance(argv, list) or not argv or not isinstance(argv[0], str) or registry.get(argv[0]) is None:
        return None
    out = [str(argv[0])]
    i = 1
    while i < len(argv):
        a = argv[i]
        if a in DESCRIBING:
            out.append(a)
        elif a in WITH_VALUE and i + 1 < len(argv) and isinstance(argv[i + 1], str):
            out += [a, argv[i + 1]]
            i += 1
        i += 1
    return out


# The session variables a hook carries that only a launcher may set.
SESSION_VARS = ("SPANVISOR_TASK_ID", "SPANVISOR_TASK_AGENT", "SPANVISOR_TASK_OWNER")
# Launchers told at once, and how far up a call's ancestry one is looked for.
MAX_LAUNCHERS = 256
MAX_DEPTH = 64


def process(pid: int) -> tuple[int, int] | None:
    """A process's (parent, start time in clock ticks since boot), by
    ``/proc/<pid>/stat``, or None. The start time tells a process from a
    later one given the same pid."""
    from spanvisor.launcher.procs import stat_fields

    fields = stat_fields(pid)
    try:
        return int(fields[1]), int(fields[19])
    except (IndexError, ValueError):
        return None


# What runs between a CLI and its hook's client: a shell running the hook's
# command, the client itself.
BETWEEN = ("sh", "bash", "dash", "zsh", "python", "spanvisor", "setpriv")


def peer_cli(pid: int) -> str | None:
    """The CLI a hook's client runs under, by the kernel's word: the nearest
    ancestor of the client that is not a shell or a Python running it, as
    ``<pid>:<start time>`` (so a later process given its pid is not it);
    None when there is none to tell."""
    from spanvisor.launcher.procs import stat_fields

    here = pid
    for _ in range(MAX_DEPTH):
        fields = stat_fields(here)
        if len(fields) < 20 or not fields[1].isdigit():
            return None
        parent = int(fields[1])
        if parent <= 1:
            return None
        try:
            with open(f"/proc/{parent}/comm", encoding="utf-8", errors="replace") as f:
                comm = f.read().strip()
        except OSError:
            return None
        if not comm.startswith(BETWEEN):
            started = stat_fields(parent)
            return f"{parent}:{started[19]}" if len(started) > 19 else None
        here = parent
    return None


def launcher_session(doc: object) -> dict[str, str] | None:
    """The session a launcher's frame names, as the variables a hook would
    carry, or None when it is not one."""
    if not isinstance(doc, dict):
        return None
    task, agent, run = doc.get("task_id"), doc.get("agent"), doc.get("run")
    if not isinstance(task, str) or not 0 < len(task) <= 256 or not task.isprintable():
        return None
    out = {"SPANVISOR_TASK_ID": task}
    if isinstance(agent, str) and 0 < len(agent) <= 128 and agent.isprintable():
        out["SPANVISOR_TASK_AGENT"] = agent
    if isinstance(run, str) and 0 < len(run) <= 64 and run.isprintable():
        out["run"] = run
    owner = doc.get("owner")
    if isinstance(owner, str) and 0 < len(owner) <= 128 and owner.isprintable():
        out["SPANVISOR_TASK_OWNER"] = owner
    return out


def session_context(context: dict[str, str], session: dict[str, str] | None) -> dict[str, str]:
    """A hook's context with nothing of what only a launcher may say of the
    session (its task, agent, owner, the task's name and repository:
    :func:`spanvisor.gate.session.unclaimed`) but what ``session`` (a
    launcher's, by the kernel's word) says."""
    from spanvisor.gate import session as gs

    out = gs.unclaimed(context)
    if session is None:
        return out
    out.update({k: v for k, v in session.items() if k in SESSION_VARS})
    if "run" in session:
        resource = gs.resource_attributes(out) if "OTEL_RESOURCE_ATTRIBUTES" in out else {}
        resource[gs.RESOURCE_TASK_ID] = session["SPANVISOR_TASK_ID"]
        resource[gs.RESOURCE_TASK_RUN] = session["run"]
        out["OTEL_RESOURCE_ATTRIBUTES"] = gs.encode_resource(resource)
    return out


class Launchers:
    """The sessions ``spanvisor run`` processes told this gate of, by pid,
    while their connection stays open."""

    def __init__(self) -> None:
        # pid -> (its start time, its session): a process that exits while
        # another holds its connection open leaves its pid to a later one,
        # whose start time differs.
        self._by_pid: dict[int, tuple[int, dict[str, str]]] = {}
        self._lock = threading.Lock()

    def hold(self, pid: int, session: dict[str, str]) -> bool:
        known = process(pid)
        if known is None:
            return False
        with self._lock:
            if len(self._by_pid) >= MAX_LAUNCHERS and pid not in self._by_pid:
                return False
            self._by_pid[pid] = (known[1], session)
            return True

    def drop(self, pid: int) -> None:
        with self._lock:
            self._by_pid.pop(pid, None)

    def above(self, pid: int) -> dict[str, str] | None:
        """The session of ``pid``'s nearest ancestor that told one (itself
        excluded: a hook is never its own launcher)."""
        seen = 0
        me = process(pid)
        current = me[0] if me is not None else None
        while current is not None and current > 1 and seen < MAX_DEPTH:
            known = process(current)
            if known is None:
                return None
            with self._lock:
                found = self._by_pid.get(current)
            if found is not None and found[0] == known[1]:
                return found[1]
            current, seen = known[0], seen + 1
        return None


class SystemGate:
    def __init__(self, args: argparse.Namespace) -> None:
        self.path = os.path.abspath(args.socket)
        self.gid = group_id(args.group)
        self.options = own_options(args)
        self.env = own_environment()
        self._slots = threading.BoundedSemaphore(MAX_CALLS)
        self.launchers = Launchers()
        self.answered = 0
        # An agent listening on serve's port (serve restarting) would take
        # this gate's token and answer its questions: never asked. With
        # --serve-user, only that account's socket (or this gate's, root's).
        gid, serve_uid = self.gid, user_id(getattr(args, "serve_user", None))
        if serve_uid is None:
            servetoken.distrust(lambda uid: an_agent(uid, gid))
        else:
            servetoken.distrust(lambda uid: uid not in (serve_uid, os.getuid(), 0))
        guard(os.path.dirname(self.path))
        if os.path.lexists(self.path):
            if not stat.S_ISSOCK(os.lstat(self.path).st_mode) or os.lstat(self.path).st_uid != os.getuid():
                raise CannotStart(f"{self.path} exists and is not this gate's socket")
            os.unlink(self.path)  # a socket a gate before this one left
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(self.path)
        os.chmod(self.path, 0o660)
        if self.gid != os.getgid():
            os.chown(self.path, -1, self.gid)
        self.sock.listen(128)

    def serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            if not self._slots.acquire(blocking=False):
                conn.close()  # its hook blocks: better than an answer past the CLI's deadline
                continue
            threading.Thread(target=self._call, args=(conn,), name="spanvisor-gate-call", daemon=True).start()

    def _call(self, conn: socket.socket) -> None:
        from spanvisor.launcher.gate import decide_call

        accepted = time.monotonic()
        held = True
        try:
            with conn:
                who = local.peer(conn)
                if who is None or not allowed(conn, self.gid):
                    return
                doc = local.read_frame(conn, accepted + 10.0) or {}
                if "launcher" in doc:
                    self._slots.release()  # a session's lifetime, not a call's
                    held = False
                    self._launcher(conn, who[0], launcher_session(doc.get("launcher")))
                    return
                argv, raw, cwd, env = passed_on(doc.get("argv")), doc.get("stdin"), doc.get("cwd"), doc.get("env")
                if argv is None or not isinstance(raw, str) or not isinstance(cwd, str) or not isinstance(env, dict):
                    return
                context = {k: v for k, v in env.items() if k in CONTEXT and isinstance(v, str)}
                context = session_context(context, self.launchers.above(who[0]))
                started = doc.get("started")
                t0 = (
                    float(started)
                    if isinstance(started, int | float) and accepted - 60 <= started <= accepted
                    else accepted
                )

                def send(code: int, out: str, err: str) -> None:
                    self.answered += 1
                    try:
                        conn.settimeout(5.0)
                        conn.sendall(local.frame({"code": code, "stdout": out, "stderr": err}))
                    except OSError:
                        pass

                own = [*self.options, "--session-cli", cli] if (cli := peer_cli(who[0])) else self.options
                decide_call(
                    send, argv + own, raw.encode("latin-1"), t0, {**self.env, **context}, cwd, received=accepted
                )
        finally:
            if held:
                self._slots.release()

    def _launcher(self, conn: socket.socket, pid: int, session: dict[str, str] | None) -> None:
        """A launcher's session, held for the calls below it until it closes
        the connection (or dies: the kernel closes it)."""
        if session is None or not self.launchers.hold(pid, session):
            return
        try:
            conn.settimeout(5.0)
            conn.sendall(local.frame({"ok": True}))
            conn.settimeout(None)
            while conn.recv(4096):
                pass
        except OSError:
            pass
        finally:
            self.launchers.drop(pid)

    def close(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        try:
            os.unlink(self.path)
        except OSError:
            pass


def guard(folder: str) -> None:
    """Refuse a socket directory another user could write: an agent could
    remove the socket and listen in its place."""
    try:
        st = os.stat(folder)
    except OSError as exc:
        raise CannotStart(f"the socket's directory {folder} cannot be read ({exc.strerror})") from None
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH) and not st.st_mode & stat.S_ISVTX:
        raise CannotStart(f"{folder} is writable by others: an agent could replace the socket (make it 0750)")
    if st.st_uid not in (os.getuid(), 0):
        raise CannotStart(f"{folder} belongs to another user (uid {st.st_uid}): it could replace the socket")


def _secret(path: str | None, what: str) -> str | None:
    if path is None:
        return None
    try:
        with open(path, encoding="utf-8") as f:
            return f.read().strip() or None
    except OSError as exc:
        raise CannotStart(f"the {what} file {path} cannot be read ({exc.strerror})") from None


def own_options(args: argparse.Namespace) -> list[str]:
    """The options every call is decided with: locked, this gate's."""
    if not os.path.isabs(args.policy):
        raise CannotStart(f"--policy must be an absolute path, not {args.policy!r}")
    # --key-sessions: a session without the launcher ends by this gate's word
    # (hook/sessionkey.py); its secrets live in this user's state folder.
    wait = getattr(args, "cancel_wait", None)
    if wait is not None and cancel.seconds(wait) is None:
        raise CannotStart(f"--cancel-wait {wait!r} is no duration (100ms, 0.5s, 2)")
    out = ["--locked", "--key-sessions", "--policy", args.policy]
    for flag, value in (
        ("--central", args.central),
        ("--url", args.url),
        ("--endpoint", args.endpoint),
        ("--token", _secret(args.token_file, "token")),
        ("--otlp-token", _secret(args.otlp_token_file, "OTLP token")),
        ("--cancel-wait", wait),
    ):
        if value:
            out += [flag, value]
    return out


def user_id(name: str | None) -> int | None:
    """``--serve-user`` by name or number; None when not given."""
    if name is None:
        return None
    if name.isdigit():
        return int(name)
    import pwd

    try:
        return pwd.getpwnam(name).pw_uid
    except KeyError:
        raise CannotStart(f"no user {name!r} (--serve-user)") from None


def an_agent(uid: int, gid: int) -> bool:
    """Whether ``uid`` may be one of the agents this gate decides for: in
    the agents' group ``gid`` (primary or supplementary, as the account
    database and its NSS sources say), or an account the database does not
    know (nothing vouches for it). Never this gate's own user or root. A
    group given to a process only (systemd's ``SupplementaryGroups=``,
    ``docker --group-add``) is not in the database: ``--serve-user`` then
    names the one account taken for serve."""
    if uid in (os.getuid(), 0):
        return False
    now = time.monotonic()
    known = _AGENTS.get((uid, gid))
    if known is not None and now - known[1] < AGENTS_TTL_S:
        return known[0]
    import pwd

    try:
        account = pwd.getpwuid(uid)
        found = gid in os.getgrouplist(account.pw_name, account.pw_gid)
    except (KeyError, OSError):
        found = True
    if len(_AGENTS) >= 1024:
        _AGENTS.clear()
    _AGENTS[(uid, gid)] = (found, now)
    return found


# What an_agent found, a while: the account database may be a directory
# server, which every request of the gate to serve would otherwise wait on.
AGENTS_TTL_S = 30.0
_AGENTS: dict[tuple[int, int], tuple[bool, float]] = {}


def own_environment() -> dict[str, str]:
    """This process's environment without spanvisor's variables (its options
    decide; the session's come from each call): its home holds the spool and
    the central policy's copy."""
    return {k: v for k, v in os.environ.items() if not (k.startswith("SPANVISOR_") or k in ALSO_LOCKED)}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--socket", required=True, help="the socket's absolute path, named by the hooks' --gate")
    p.add_argument("--policy", required=True, help="the policy file (absolute; keep it where agents cannot write)")
    p.add_argument("--group", help="the agents' group, allowed to ask (default: this user's primary group)")
    p.add_argument("--central", help="the central policy of serve: auto, required, off (default: auto)")
    p.add_argument("--url", help="the control API of serve (default: the OTLP endpoint)")
    p.add_argument("--endpoint", help="the OTLP/HTTP endpoint the audit notes go to")
    p.add_argument("--token-file", metavar="FILE", help="a file holding the control API token")
    p.add_argument(
        "--serve-user",
        metavar="USER",
        help="the account serve runs as: on loopback, only its socket (or this gate's, root's) is taken for serve "
        "(default: any but the agents' group's and unknown uids)",
    )
    p.add_argument("--otlp-token-file", metavar="FILE", help="a file holding the OTLP endpoint's token")
    p.add_argument(
        "--cancel-wait",
        metavar="DURATION",
        help="how long an allowed call may wait for the look at its session's cancel (default 100ms, at most 5s): "
        "raise it for a busy serve, whose late answer lets that one call's allow stand",
    )


def run(args: argparse.Namespace) -> int:
    try:
        gate = SystemGate(args)
    except (CannotStart, OSError) as exc:
        print(f"spanvisor gate serve: {exc}; not started", file=sys.stderr)
        return 2

    def stop(signum: int, _frame: FrameType | None) -> None:
        gate.close()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    # `kill -USR1 <pid>`: every thread's stack on stderr, for a gate that
    # seems stuck (faulthandler writes from the signal, holding no lock).
    import faulthandler

    faulthandler.register(signal.SIGUSR1, all_threads=True)
    print(f"spanvisor gate serve: deciding for group {gate.gid} at {gate.path}", file=sys.stderr, flush=True)
    gate.serve()
    return 0


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("gate", help="the system gate: hooks decided under a user of its own")
    sub = p.add_subparsers(dest="gate_command", metavar="COMMAND", required=True)
    serve = sub.add_parser("serve", help="decide the hooks that name --gate SOCKET, as this user")
    add_arguments(serve)
    serve.set_defaults(func=lambda args, config: run(args))
    from spanvisor.cli import gate_install

    install = sub.add_parser("install", help="write the gate's hook into each CLI's system-wide settings (run as root)")
    gate_install.add_arguments(install)
    install.set_defaults(func=lambda args, config: gate_install.run(args))


def main(argv: Sequence[str]) -> int:
    p = argparse.ArgumentParser(prog="spanvisor gate serve")
    add_arguments(p)
    return run(p.parse_args(list(argv)))


__all__ = ["MAX_CALLS", "SystemGate", "allowed", "passed_on", "register", "run"]
