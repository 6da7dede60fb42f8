"""What ``spanvisor serve`` checks before it starts anything.

* The sinks it names, the people file (``SPANVISOR_DECIDERS``) and the
  identity provider's settings: a misspelt sink or a bad file is one line.
* The data dir's journal: one ``serve`` at a time. A second ``serve`` on
  the same data dir replayed the running one's journal to its console (and
  would have taken its acknowledged spans a second time) before failing on
  the port. It now holds a lock beside the journal for its whole life and
  stops at once, with one line naming the other's pid, when another holds
  it. The lock is ``flock``: released when the process ends however it
  ends, so a killed ``serve`` never leaves it behind.
* Its ports: one another process listens on stops ``serve`` at once with
  one line naming the port and its setting, before the journal is
  replayed (it used to replay it to its console, then fail on the bind).
  A bind test, so a port taken in the instant between is still the
  listener's own error. A port another user's socket holds says whose
  (it may be squatting serve's port on a shared machine).
"""

from __future__ import annotations

import fcntl
import os
import socket
from typing import Any

from spanvisor.config import ConfigError
from spanvisor.control.people import from_config as people_of
from spanvisor.sink import load_sink_class

# The lock's file descriptor, held open for the process's life.
_HELD: list[int] = []


def preflight(config: Any) -> None:
    """Raise :class:`ConfigError` (or :class:`SinkLoadError`), one line, for
    what would stop ``serve``: before the lock, which makes the data dir."""
    for name in config.get("sinks") or ():
        if name != "auto":
            load_sink_class(str(name))
    people_of(config)  # the people file and the identity provider's settings
    central_policy(config)
    ports_free(config)
    if config.get("journal"):
        hold_journal(config)


def central_policy(config: Any) -> None:
    """The central policy (``SPANVISOR_POLICY``) must read: one line saying
    what to fix, rather than a server that denies every request."""
    path = config.get("policy")
    if not path:
        return
    from spanvisor.gate.central import PolicyError, load

    try:
        load(str(path))
    except PolicyError as exc:
        raise ConfigError(f"SPANVISOR_POLICY ({path}): {exc}") from None


# (setting, its environment variable, serve's flag), per listener.
_PORTS = (
    ("otlp_http_port", "SPANVISOR_OTLP_HTTP_PORT", "--http-port", "otlp_bind"),
    ("otlp_grpc_port", "SPANVISOR_OTLP_GRPC_PORT", "--grpc-port", "otlp_bind"),
    ("admin_port", "SPANVISOR_ADMIN_PORT", "--admin-port", "admin_bind"),
)


def ports_free(config: Any) -> None:
    """:class:`ConfigError` naming the first listener whose port another process holds."""
    for key, env, flag, bind_key in _PORTS:
        port = config.get(key)
        if not port:  # off, or any free port
            continue
        host = str(config.get(bind_key) or config.get("otlp_bind") or "0.0.0.0")
        try:
            family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        except OSError:
            continue  # an address that does not resolve: the listener says so itself
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            # As the listeners bind: a port in TIME_WAIT is free, one a process listens on is not.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((host, port))
            except OSError as exc:
                raise ConfigError(
                    f"port {port} ({env}) on {host} is in use by another process ({exc.strerror}){_whose(port)}; "
                    f"stop it, or give serve another port ({env} or {flag})"
                ) from None


def _whose(port: int) -> str:
    """Another user's socket on the port, said: on a shared machine it may
    be squatting serve's port, so the operator hears whose it is (this
    user's clients send it nothing while this user's token file is there:
    gate/servetoken.py)."""
    from spanvisor.gate import listeners

    found = listeners.listening(port) or []
    others = sorted({uid for _addr, uid, _only6 in found if uid != os.getuid()})
    if not others:
        return ""
    uids = ", ".join(f"uid {u}" for u in others)
    return f", a socket of another user ({uids}; this is uid {os.getuid()})"


def hold_journal(config: Any) -> None:
    from spanvisor.receiver.server import journal_path

    path = journal_path(config).with_name("serve.lock")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        other = os.read(fd, 32).decode(errors="replace").strip() or "?"
        os.close(fd)
        raise ConfigError(
            f"another spanvisor serve (pid {other}) runs on this data dir ({config.data_dir}); "
            "stop it, or give this one its own SPANVISOR_DATA_DIR (each serve keeps its own journal)"
        ) from None
    os.ftruncate(fd, 0)
    os.write(fd, str(os.getpid()).encode())
    _HELD.append(fd)


__all__ = ["central_policy", "hold_journal", "ports_free", "preflight"]
