"""Who listens on a local TCP port: the uid the kernel records for each
listening socket, so a client can tell its own ``serve`` from a port that
another user took first (:mod:`.servetoken`).

Asked of the kernel's socket diagnostics over netlink (what ``ss -ltn``
does): only listening sockets come back, a few even on a busy machine, in
well under a millisecond. Where netlink is refused (a sandbox), the text
tables ``/proc/net/tcp`` and ``tcp6`` say the same, slower: the kernel
writes out every socket of the machine (10 ms for 1,400 sockets under
load). Neither is there off Linux: None, not checked.

The standard library only: the gate asks on the path of a tool call's answer.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
import sys

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
# One listening socket: its address, its owner's uid, whether it is
# IPv6-only (an IPv6 socket on every address takes IPv4 too unless it is).
Listener = tuple[Address, int, bool]

_SOCK_DIAG_BY_FAMILY = 20
_NETLINK_SOCK_DIAG = 4
_NLM_F_REQUEST, _NLM_F_DUMP = 0x1, 0x300
_NLMSG_ERROR, _NLMSG_DONE = 2, 3
_TCP_LISTEN = 10
_HEADER = struct.Struct("=IHHII")  # struct nlmsghdr
_REQUEST = struct.Struct("=BBBBI48s")  # struct inet_diag_req_v2 (its socket id left zero)
# struct inet_diag_msg: family, state, timer, retrans, then the socket id
# (sport, dport: big-endian; src, dst: 16 bytes each; if; cookie), expires,
# rqueue, wqueue, uid, inode.
_MESSAGE = struct.Struct("=BBBB2s2s16s16sI8sIIIII")
# The attributes after it (struct rtattr: length, type), and the one that
# says whether an IPv6 socket is IPv6-only (INET_DIAG_SKV6ONLY, a u8).
_ATTRIBUTE = struct.Struct("=HH")
_SKV6ONLY = 11
_PROC_NET = (("/proc/net/tcp", 4), ("/proc/net/tcp6", 16))
_PROC_LISTEN = "0A"


def listening(port: int) -> list[Listener] | None:
    """(address, uid, IPv6-only) of every TCP socket listening on ``port``
    in this network namespace; None when the kernel cannot be asked here.
    ``/proc`` does not say which are IPv6-only: none there."""
    got = _by_netlink(port)
    return got if got is not None else _by_proc(port)


def _by_netlink(port: int) -> list[Listener] | None:
    if not hasattr(socket, "AF_NETLINK"):
        return None
    out: list[Listener] = []
    try:
        with socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, _NETLINK_SOCK_DIAG) as nl:
            nl.settimeout(1.0)
            for family, width in ((socket.AF_INET, 4), (socket.AF_INET6, 16)):
                body = _REQUEST.pack(family, socket.IPPROTO_TCP, 0, 0, 1 << _TCP_LISTEN, b"")
                flags = _NLM_F_REQUEST | _NLM_F_DUMP
                nl.send(_HEADER.pack(_HEADER.size + len(body), _SOCK_DIAG_BY_FAMILY, flags, family, 0) + body)
                if not _read_dump(nl, port, width, out):
                    return None
    except (OSError, struct.error, ValueError):  # a message cut short: the tables in /proc say it
        return None
    return out


def _read_dump(nl: socket.socket, port: int, width: int, out: list[Listener]) -> bool:
    """Read one dump's answers into ``out``; False when the kernel refused."""
    while True:
        data = nl.recv(1 << 16)
        at = 0
        while at + _HEADER.size <= len(data):
            length, kind, _, _, _ = _HEADER.unpack_from(data, at)
            if length < _HEADER.size:
                return False
            if kind == _NLMSG_DONE:
                return True
            if kind == _NLMSG_ERROR:
                return False
            if kind == _SOCK_DIAG_BY_FAMILY and length >= _HEADER.size + _MESSAGE.size:
                msg = _MESSAGE.unpack_from(data, at + _HEADER.size)
                if msg[1] == _TCP_LISTEN and int.from_bytes(msg[4], "big") == port:
                    only6 = _v6only(data, at + _HEADER.size + _MESSAGE.size, at + length)
                    out.append((ipaddress.ip_address(msg[6][:width]), int(msg[13]), only6))
            at += (length + 3) & ~3
        if not data:
            return False


def _v6only(data: bytes, at: int, end: int) -> bool:
    """The INET_DIAG_SKV6ONLY attribute among those from ``at`` to ``end``."""
    end = min(end, len(data))
    while at + _ATTRIBUTE.size <= end:
        length, kind = _ATTRIBUTE.unpack_from(data, at)
        if length < _ATTRIBUTE.size:
            return False
        if kind == _SKV6ONLY and length > _ATTRIBUTE.size and at + _ATTRIBUTE.size < end:
            return data[at + _ATTRIBUTE.size] != 0
        at += (length + 3) & ~3
    return False


def _by_proc(port: int) -> list[Listener] | None:
    out: list[Listener] = []
    read_any = False
    at_port = f":{port:04X}"
    for table, width in _PROC_NET:
        try:
            with open(table, encoding="ascii", errors="replace") as f:
                lines = f.read().splitlines()[1:]
        except OSError:
            continue
        read_any = True
        for line in lines:
            cols = line.split()
            if len(cols) < 8 or cols[3] != _PROC_LISTEN or not cols[1].endswith(at_port):
                continue
            try:
                raw = bytes.fromhex(cols[1].partition(":")[0])
                uid = int(cols[7])
            except ValueError:
                continue
            if len(raw) != width:
                continue
            if sys.byteorder == "little":  # printed as 32-bit words in the machine's order
                raw = b"".join(raw[i : i + 4][::-1] for i in range(0, width, 4))
            out.append((ipaddress.ip_address(raw), uid, False))
    return out if read_any else None


def reaches(listener: Address, wanted: set[Address], v6only: bool = False) -> bool:
    """Whether a socket listening on ``listener`` takes a connection to one
    of ``wanted``: the same address, every address (an IPv6 one on every
    address takes IPv4 too, unless it is IPv6-only), or its IPv4-mapped form."""
    if listener.is_unspecified:
        if listener.version == 4:  # IPv4's every address takes no IPv6 connection
            return any(w.version == 4 for w in wanted)
        return not v6only or any(w.version == 6 for w in wanted)
    if listener in wanted:
        return True
    mapped = getattr(listener, "ipv4_mapped", None)
    return mapped is not None and mapped in wanted


__all__ = ["Address", "Listener", "listening", "reaches"]
