"""The local serve token: the bearer token ``spanvisor serve`` keeps for
itself in ``<data dir>/serve-token`` (mode 0600), and where this machine's
clients find it (issue 63: serve with no token configured makes one at its
first start, so the quick start is not an open door; :func:`make_or_read`
is how it makes it).

The file is created 0600 with ``O_EXCL`` (never readable by others, not
even for an instant) and read back only when it is a regular file of this
user's that neither the group nor others may read or write; anything else
is refused, saying why.

The local clients (the control client behind ``spanvisor approve``,
``cancel``, ``tasks``…, the hook, the launcher and its relay, the gate's
notes, central policy and cancel look) read the same file when they are
given no token, and only for a loopback URL (127.0.0.0/8, ::1, localhost):
a secret of this machine is never sent to another host (:func:`bearer`).
They find the data dir as ``serve`` does by default:
``SPANVISOR_DATA_DIR``, else ``$XDG_DATA_HOME/spanvisor``, else
``~/.local/share/spanvisor``.

A loopback port is anyone's to take: another user of the machine who
listens on serve's port first (serve not started yet, restarting, or on
another port) would receive the token with the first request, and could
answer as the control API: approve a call, permit it, publish a lenient
central policy, say a task has no cancel. So where the file's token is in
play, a loopback port is this user's serve only when its listening socket
belongs to this user (:func:`foreign`: the owner the kernel records for
the socket, :mod:`.listeners`). Nothing listening, or another user's
socket, and the request is refused before it is sent (:class:`Bearer`):
the sender answers as it does when serve cannot be reached (the gate by
its policy's ``on_unreachable``, a note stays in the spool). Where the
kernel cannot be asked (not Linux) this is not checked. A token passed
explicitly (``SPANVISOR_OTLP_TOKEN``, ``--token``) is sent as told, and
with no token file nothing is checked: whoever passed it, or runs serve
under another account, chose where it goes.

The hook reads the file before it decides but asks who listens only where
the token is sent (:func:`unvetted`, :func:`bearer`): before each request
of the gate's own senders (notes, OTLP records, the central policy, the
cancel look, the approval's requests), and of the launcher's relay. Under
the launcher, a call the policy decides no longer waits for the kernel's
tables before its answer (two netlink dumps, about 50 µs); a hook deciding
in its own process asks once before it, for the cancel look it starts.

The standard library only: the gate reads it on the path of a tool call's
answer.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    import ipaddress

FILE_NAME = "serve-token"
ENV_DATA_DIR = "SPANVISOR_DATA_DIR"
# A token is one line of URL-safe base64; anything longer is not ours.
_MAX_BYTES = 4096


class TokenFileError(Exception):
    """The token file cannot be used; the message says why and what to do."""


def data_dir(env: Mapping[str, str] | None = None) -> Path:
    """``serve``'s default data dir, as the environment gives it."""
    e = os.environ if env is None else env
    if e.get(ENV_DATA_DIR):
        return Path(e[ENV_DATA_DIR])
    base = e.get("XDG_DATA_HOME") or os.path.join(e.get("HOME") or os.path.expanduser("~"), ".local", "share")
    return Path(base) / "spanvisor"


def token_path(directory: str | os.PathLike[str]) -> Path:
    return Path(directory) / FILE_NAME


def read(path: str | os.PathLike[str]) -> str | None:
    """The token in ``path``; None when there is no such file. Raises
    :class:`TokenFileError` for a file that must not be trusted or used."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise TokenFileError(f"token file {path}: cannot read it ({exc.strerror}); remove it or fix it") from None
    try:
        st = os.fstat(fd)
        _check(path, st)
        raw = os.read(fd, _MAX_BYTES + 1)
    finally:
        os.close(fd)
    token = raw.decode("ascii", "replace").strip()
    if not token or len(raw) > _MAX_BYTES or any(c.isspace() for c in token):
        raise TokenFileError(f"token file {path} does not hold one token; remove it and serve makes a new one")
    return token


def _check(path: str | os.PathLike[str], st: os.stat_result) -> None:
    if not stat.S_ISREG(st.st_mode):
        raise TokenFileError(f"token file {path} is not a regular file; remove it")
    if hasattr(os, "getuid") and st.st_uid != os.getuid():
        raise TokenFileError(
            f"token file {path} belongs to uid {st.st_uid}, not to this user ({os.getuid()}): not trusted; "
            "remove it and serve makes a new one"
        )
    loose = stat.S_IMODE(st.st_mode) & 0o077
    if loose:
        raise TokenFileError(
            f"token file {path} is readable or writable by others (mode {stat.S_IMODE(st.st_mode):04o}): "
            f"its token may be known; remove it (serve makes a new one) or `chmod 600 {path}` if it is yours alone"
        )


def make_or_read(path: str | os.PathLike[str]) -> tuple[str, bool]:
    """The token in ``path``, made (and written, mode 0600) when there is
    none: (token, whether it was made now). The new file is written whole
    under another name, created 0600 with ``O_EXCL``, then linked into
    place, so no reader sees half a token and two first starts agree on one."""
    got = read(path)
    if got is not None:
        return got, False
    import secrets  # only here: the hook's cold start reads, never makes

    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    token = secrets.token_urlsafe(32)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(tmp, flags, 0o600)
    except OSError as exc:
        raise TokenFileError(f"cannot write a token file in {target.parent} ({exc.strerror})") from None
    try:
        try:
            os.write(fd, (token + "\n").encode("ascii"))
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, target)
        except FileExistsError:  # another first start won: its token it is
            theirs = read(target)
            if theirs is None:
                raise TokenFileError(f"token file {target} came and went; start serve again") from None
            return theirs, False
        except OSError as exc:
            raise TokenFileError(f"cannot write {target} ({exc.strerror})") from None
    finally:
        try:
            os.unlink(tmp)
        except OSError:
            pass
    return token, True


def is_loopback(url: str) -> bool:
    """Whether ``url`` names this machine: 127.0.0.0/8, ::1 or localhost,
    however spelt (``127.1``, ``2130706433``, ``[::ffff:127.0.0.1]``), or
    the unspecified address (a connection to ``0.0.0.0`` lands here)."""
    host = _host(url).lower()
    if host in ("localhost", "localhost.", "127.0.0.1", "::1"):
        return True
    return _loopback_address(host) is not None


def _loopback_address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The loopback address a connection to ``host`` (an address, spelt
    any way the C library reads one) lands on; None for any other host."""
    import ipaddress
    import socket

    try:
        ip: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.ip_address(host)
    except ValueError:
        try:  # 127.1, 0x7f.1, 2130706433: what inet_aton (and so connect) reads
            ip = ipaddress.IPv4Address(socket.inet_aton(host))
        except (OSError, ValueError):
            return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_unspecified:
        return ipaddress.ip_address("127.0.0.1" if ip.version == 4 else "::1")
    return ip if ip.is_loopback else None


def _port(url: str) -> int | None:
    """The port of ``url``, its scheme's when it names none; None when unreadable."""
    scheme, sep, rest = url.strip().partition("://")
    if not sep:
        scheme, rest = "http", url.strip()
    netloc = rest.split("/", 1)[0].split("?", 1)[0].split("#", 1)[0].rpartition("@")[2]
    tail = netloc.rpartition("]")[2] if netloc.startswith("[") else netloc
    if tail.count(":") == 1:
        digits = tail.rpartition(":")[2]
        return int(digits) if digits.isdigit() and 0 < int(digits) < 65536 else None
    return {"http": 80, "https": 443}.get(scheme.lower())


def listener_owners(url: str) -> set[int] | None:
    """The uids of the sockets listening where a connection to ``url``
    (a loopback one) lands: on its address or on every address, over IPv4
    or IPv6 (:mod:`.listeners`). None when the kernel cannot be asked here."""
    import ipaddress

    from spanvisor.gate import listeners

    port = _port(url)
    host = _host(url).lower().rstrip(".")
    if host == "localhost":
        wanted = {ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1")}
    else:
        found_at = _loopback_address(host)
        wanted = {found_at} if found_at is not None else _named_loopback(host)
        if not wanted:
            return set()
    if port is None:
        return set()
    found = listeners.listening(port)
    if found is None:
        return None
    return {uid for addr, uid, only6 in found if listeners.reaches(addr, wanted, only6)}


NOTHING = "nothing listens there"
# How a refusal for nothing listening starts (the same as a refused connection).
NOTHING_AT = "nothing listens at"


def foreign(url: str) -> str | None:
    """Why what listens where ``url`` connects is not this user's (another
    user's socket, or nothing at all); None when only this user's sockets
    listen there (:func:`listener_owners`), or where the kernel's tables
    cannot be read (not checked)."""
    owners = listener_owners(url)
    if owners is None or not hasattr(os, "getuid"):
        return None
    if owners and owners <= {os.getuid()}:
        return None
    others = ", ".join(f"uid {u}" for u in sorted(owners - {os.getuid()}))
    return f"a socket of {others} listens there, not this user's (uid {os.getuid()})" if others else NOTHING


def _host(url: str) -> str:
    """The host of ``url`` (no brackets, no port, no user info)."""
    rest = url.strip().partition("://")[2] if "://" in url else url.strip()
    netloc = rest.split("/", 1)[0].split("?", 1)[0].split("#", 1)[0].rpartition("@")[2]
    if netloc.startswith("["):
        return netloc[1:].partition("]")[0]
    return netloc.rpartition(":")[0] if netloc.count(":") == 1 else netloc


def local(env: Mapping[str, str] | None = None) -> str | None:
    """The local serve's token, when its file is there and safe; else None
    (a file that is not safe is not read: serve refuses to start on it and
    says why). Whom it may go to is :func:`for_url`'s to say."""
    try:
        return read(token_path(data_dir(env)))
    except (TokenFileError, OSError):
        return None


class Bearer(NamedTuple):
    """What a request to one URL may carry: ``token``, the bearer token to
    send (None: no ``Authorization`` header); ``refused``, why no request
    may go there at all (None: it may)."""

    token: str | None
    refused: str | None = None


# Tokens read from a token file whose listener was not asked yet (the
# hook's, :func:`unvetted`): each is asked for the URL it is sent to.
_UNVETTED: set[str] = set()
# What was said already (where, reason): a refusal is logged once a process.
_SAID: set[tuple[str, str]] = set()
# Whose loopback sockets this process never takes for serve, whatever token
# it sends (:func:`distrust`); none: only the local token's rule.
_DISTRUSTED: list[Callable[[int], bool]] = []


def distrust(who: Callable[[int], bool] | None) -> None:
    """Never take a loopback socket of a uid ``who`` names for serve: a
    request to a loopback URL, with whatever token (one passed explicitly
    too), is refused where such a socket listens. The system gate names its
    agents: one could listen on serve's port while serve restarts, take
    the gate's token and answer its questions (an approval, a permit)."""
    _DISTRUSTED[:] = [who] if who is not None else []


def _named_loopback(host: str) -> set[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    """The loopback addresses a host name resolves to (``/etc/hosts`` maps
    the machine's own name to 127.0.1.1 on Debian): asked of the resolver
    only where a process distrusts some sockets (:func:`distrust`), never
    on a hook's way to its answer."""
    if not _DISTRUSTED:
        return set()
    import socket

    try:
        found = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return set()
    out = set()
    for *_, sockaddr in found:
        at = _loopback_address(str(sockaddr[0]).partition("%")[0])
        if at is not None:
            out.add(at)
    return out


def distrusts() -> bool:
    """Whether this process names sockets it never takes for serve."""
    return bool(_DISTRUSTED)


def _agents_at(url: str) -> str | None:
    """Why ``url`` is refused to this process whatever its token (a socket
    of a uid :func:`distrust` names listens there); None when none does."""
    held = sorted(u for u in listener_owners(url) or () if _DISTRUSTED[0](u))
    if not held:
        return None
    where = f"{_host(url)} port {_port(url)}"
    found = ", ".join(f"uid {u}" for u in held)
    why = f"{where} is not spanvisor serve: a socket of {found} listens there, which this process never takes for serve; nothing is sent there"
    _said(where, found, why)
    return why


def _said(where: str, found: str, why: str) -> None:
    if (where, found) not in _SAID:
        _SAID.add((where, found))
        # logging is imported here only: the hook and the launcher's start
        # read this module on their way (about 5 ms of a cold hook).
        import logging

        logging.getLogger("spanvisor.token").warning("%s", why)


def bearer(url: str | None, token: str | None, env: Mapping[str, str] | None = None, say: bool = True) -> Bearer:
    """What a request to ``url`` carries: ``token`` when it was passed
    explicitly (sent as told: whoever passed it chose where it goes), else
    the local serve's own token. That one, read from the file or passed
    along (a variable a hook set, a spool of several destinations), never
    goes to another host: to a URL that is not loopback the request goes
    without it. To a loopback URL it goes only to this user's listener
    (:func:`foreign`). Anything else listening there, another user's
    socket or nothing, is not this user's serve, whose token is in play:
    the request is ``refused`` and must not be sent, so a port squatter
    never hears a call's details and nothing it answers (an approval, a
    permit, a central policy, a cancel's absence) counts. A loopback URL
    with no local token in play (no token file: a serve of another
    account, open or with a token passed explicitly) is not checked.
    ``say``: log a refusal (once a place); False for a caller that prints
    it itself (a command's own line, not the same words twice)."""
    if not url:  # nowhere known to ask about: the local serve's token goes nowhere
        return Bearer(None if token and (token in _UNVETTED or token == local(env)) else token or None)
    if _DISTRUSTED and (agents := _agents_at(url)) is not None:
        return Bearer(None, agents)
    if token and token not in _UNVETTED and token != local(env):
        return Bearer(token)
    if not is_loopback(url):
        return Bearer(None)
    token = token or local(env)
    if not token:
        return Bearer(None)
    if _port(url) is None:
        return Bearer(None, f"{url[:200]}: its port cannot be read")
    found = foreign(url)
    if found is None:
        return Bearer(token)
    where = f"{_host(url)} port {_port(url)}"
    if found == NOTHING:
        why = f"{NOTHING_AT} {where}: this user's spanvisor serve is not running there"
    else:
        why = (
            f"{where} is not this user's spanvisor serve ({found}), and this user's token file "
            f"({token_path(data_dir(env))}) says that one is meant: nothing is sent there and nothing it answers "
            "counts; start spanvisor serve, or pass the token of the serve you mean explicitly "
            "(SPANVISOR_OTLP_TOKEN), or remove that file if this user's serve is gone for good"
        )
    if say:
        _said(where, found, why)
    return Bearer(None, why)


def for_url(url: str | None, env: Mapping[str, str] | None = None) -> str | None:
    """The local serve token to send to ``url`` now, when it may go there
    (:func:`bearer`); else None. Known for the file's wherever it is passed
    on in this process, so it stays under the same rule."""
    token = bearer(url, None, env).token
    if token:
        _UNVETTED.add(token)
    return token


def unvetted(url: str | None, env: Mapping[str, str] | None = None) -> str | None:
    """The local serve token for ``url`` when ``url`` is a loopback one and
    the file is there and safe, its listener not asked yet: whoever sends
    it asks first (:func:`bearer`)."""
    if not url or not is_loopback(url):
        return None
    token = local(env)
    if token:
        _UNVETTED.add(token)  # a token or two a process: one per data dir
    return token


__all__ = [
    "FILE_NAME",
    "Bearer",
    "TokenFileError",
    "bearer",
    "data_dir",
    "distrust",
    "distrusts",
    "for_url",
    "foreign",
    "is_loopback",
    "listener_owners",
    "local",
    "make_or_read",
    "read",
    "token_path",
    "unvetted",
]
