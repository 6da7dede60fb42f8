"""The gate's records over OTLP/HTTP, with the standard library only.

A note is one or two live-channel log records on the session's task root,
sent as OTLP/JSON (``POST …/v1/logs``, which the receiver reads like
protobuf). A plain-HTTP endpoint is spoken to over a socket by hand (the
standard ``http.client`` costs about 20 ms to import, more than the answer
itself); an ``https`` one through ``urllib.request``.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Mapping, Sequence
from typing import Any

from spanvisor.gate import servetoken

# The live channel's names (spanvisor.spans.conventions, which the gate does
# not import: it pulls in the events): tests/gate pins them to it.
EVENT_CHECKPOINT = "agent.checkpoint"
EVENT_APPROVAL_DECISION = "agent.approval.decision"
LIVE_TASK_START = "agent.task.start"
LIVE_TASK_UPDATE = "agent.task.update"
TASK_ID = "agent.task.id"
TASK_NAME = "agent.task.name"
AGENT_ID = "agent.id"
REPO = "agent.repo"
BRANCH = "agent.branch"
MESSAGE = "agent.message"
APPROVAL_ID = "agent.approval.id"
APPROVAL_OUTCOME = "agent.approval.outcome"
APPROVAL_DECIDED_BY = "agent.approval.decided_by"
RECORD_ID = "agent.record.id"
SESSION_KEY = "agent.session.key"  # spanvisor run's, on its task's start record
EVENT_DIFF = "agent.diff"  # spanvisor run's diff of the session's tree (launcher/diff.py)
DIFF_TEXT = "agent.diff.text"
DIFF_FILES = "agent.diff.files"
DIFF_CLIPPED = "agent.diff.clipped"

Record = tuple[str, Mapping[str, Any], int]  # (event name, attributes, time in ns)


def _value(v: Any) -> dict[str, Any]:
    if isinstance(v, bool):
        return {"boolValue": v}
    if isinstance(v, int):
        return {"intValue": str(v)}
    if isinstance(v, float):
        return {"doubleValue": v}
    return {"stringValue": str(v)}


def encode(service: str, trace_hex: str, span_hex: str, records: Sequence[Record]) -> bytes:
    """An ``ExportLogsServiceRequest`` as OTLP/JSON."""
    logs = [
        {
            "timeUnixNano": str(at),
            "observedTimeUnixNano": str(at),
            "eventName": name,
            "traceId": trace_hex,
            "spanId": span_hex,
            "flags": 1,
            "attributes": attributes(attrs),
            "body": {"stringValue": name},
        }
        for name, attrs, at in records
    ]
    resource = {"attributes": [{"key": "service.name", "value": {"stringValue": service}}]}
    doc = {
        "resourceLogs": [
            {"resource": resource, "scopeLogs": [{"scope": {"name": "spanvisor.hook"}, "logRecords": logs}]}
        ]
    }
    return json.dumps(doc, separators=(",", ":")).encode()


def attributes(attrs: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [{"key": k, "value": _value(v)} for k, v in attrs.items()]


def span_request(
    resource: Mapping[str, Any],
    trace_hex: str,
    span_hex: str,
    name: str,
    start_ns: int,
    end_ns: int,
    attrs: Mapping[str, Any],
    events: Sequence[Record] = (),
    error: str | None = None,
) -> dict[str, Any]:
    """An ``ExportTraceServiceRequest`` of one ended root span, as OTLP/JSON
    (a dict, so that it can wait in a spool)."""
    span: dict[str, Any] = {
        "traceId": trace_hex,
        "spanId": span_hex,
        "name": name,
        "kind": 1,  # INTERNAL
        "startTimeUnixNano": str(start_ns),
        "endTimeUnixNano": str(end_ns),
        "attributes": attributes(attrs),
        "events": [{"timeUnixNano": str(t), "name": n, "attributes": attributes(a)} for n, a, t in events],
    }
    if error is not None:
        span["status"] = {"code": 2, "message": error}  # STATUS_CODE_ERROR
    scope = {"scope": {"name": "spanvisor.run"}, "spans": [span]}
    return {"resourceSpans": [{"resource": {"attributes": attributes(resource)}, "scopeSpans": [scope]}]}


def post(endpoint: str, token: str | None, body: bytes, timeout_s: float, signal: str = "logs") -> bool:
    """POST ``body`` to ``endpoint``/v1/``signal`` (logs, traces); True on a
    2xx within ``timeout_s`` (the name's lookup, the connection, TLS and the
    answer all within it), False on anything else (refused, slow, an error)."""
    import urllib.parse  # after the answer: off the gate's fast path

    parts = urllib.parse.urlsplit(endpoint if "://" in endpoint else f"http://{endpoint}")
    path = parts.path.rstrip("/") + f"/v1/{signal}"
    headers = {"Content-Type": "application/json"}
    sending = servetoken.bearer(endpoint, token)
    if sending.refused:  # not this user's serve: it hears nothing (the caller keeps what it sends)
        return False
    if sending.token:
        headers["Authorization"] = f"Bearer {sending.token}"
    tls = parts.scheme == "https"
    try:
        host, port = parts.hostname or "127.0.0.1", parts.port or (443 if tls else 80)
        if tls and _proxied(host):
            return _post_by_proxy(f"https://{parts.netloc}{path}", headers, body, timeout_s)
        return _post(host, port, parts.netloc, path, headers, body, time.monotonic() + timeout_s, tls)
    except (OSError, ValueError):
        return False


def _proxied(host: str) -> bool:
    """Whether ``HTTPS_PROXY`` (and not ``NO_PROXY``) sends ``host`` through a
    proxy, as urllib would."""
    import urllib.request

    return "https" in urllib.request.getproxies() and not urllib.request.proxy_bypass(host)


def _post_by_proxy(url: str, headers: dict[str, str], body: bytes, timeout_s: float) -> bool:
    """Through the proxy the environment names (urllib's own way). The
    proxy's name is looked up by urllib, without a bound: looked up first,
    bounded, so a resolver that does not answer fails this fast too."""
    import urllib.parse
    import urllib.request

    proxy = urllib.parse.urlsplit(urllib.request.getproxies()["https"])
    addresses(proxy.hostname or "127.0.0.1", proxy.port or 80, timeout_s)
    req = urllib.request.Request(url, data=body, headers=headers, method="POST")
    # An opener of its own: urlopen's shared one read the proxies when the
    # process first used it, and this post follows the environment now.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler())
    with opener.open(req, timeout=timeout_s) as resp:
        return 200 <= int(resp.status) < 300


def _post(
    host: str, port: int, netloc: str, path: str, headers: dict[str, str], body: bytes, deadline: float, tls: bool
) -> bool:
    head = [f"POST {path} HTTP/1.1", f"Host: {netloc}", f"Content-Length: {len(body)}", "Connection: close"]
    head += [f"{k}: {v}" for k, v in headers.items()]
    sock = _connect(host, port, deadline)
    if tls:  # the system's trust store, the name checked (what urllib checks)
        import ssl

        sock.settimeout(max(0.001, deadline - time.monotonic()))
        sock = ssl.create_default_context().wrap_socket(sock, server_hostname=host)
    with sock:
        sock.settimeout(max(0.001, deadline - time.monotonic()))
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body)
        got = b""
        while b"\r\n" not in got and len(got) < 4096:
            sock.settimeout(max(0.001, deadline - time.monotonic()))
            chunk = sock.recv(4096)
            if not chunk:
                break
            got += chunk
    status = got.split(b"\r\n", 1)[0].split()
    return len(status) >= 2 and status[1][:1] == b"2"


def host_arg(host: str) -> str | bytes:
    """``host`` as the socket module takes it without importing the idna
    codec: an ASCII name or address as bytes, which the codec would give
    back unchanged (it cost a cold hook's call 1 to 2 ms to import, with
    stringprep and unicodedata, for 127.0.0.1), anything else as text for
    the codec to encode."""
    return host.encode("ascii") if host.isascii() else host


def connect(host: str, port: int, timeout_s: float) -> socket.socket:
    """``socket.create_connection`` to ``(host, port)``, the host as
    :func:`host_arg` gives it."""
    # The socket module takes a bytes host; typeshed lists text only.
    return socket.create_connection((host_arg(host), port), timeout=timeout_s)  # type: ignore[arg-type]


# Lookups still running, by (host, port): a resolver that does not answer
# holds one thread per name, not one per post.
_looking: dict[tuple[str, int], tuple[Any, list[str]]] = {}


def addresses(host: str, port: int, timeout_s: float) -> list[str]:
    """The addresses of ``host``, looked up within ``timeout_s``: a name's
    lookup has no timeout of its own, so a resolver that does not answer
    would hold the post (and the gate's answer, at a session's first call)
    past its deadline. A literal address is its own; a lookup still running
    at the deadline is left to its daemon thread (TimeoutError), which a
    later post of the same name waits on rather than starting another."""
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(family, host)
            return [host]
        except (OSError, ValueError):
            pass
    if timeout_s <= 0:
        raise TimeoutError(f"no time left to look {host} up")
    import threading

    key = (host, port)
    running = _looking.get(key)
    if running is None:
        done, found = threading.Event(), []

        def look() -> None:
            try:
                for info in socket.getaddrinfo(host_arg(host), port, type=socket.SOCK_STREAM):
                    if str(info[4][0]) not in found:
                        found.append(str(info[4][0]))
            except (OSError, UnicodeError, ValueError):
                pass
            finally:
                _looking.pop(key, None)
                done.set()

        try:
            threading.Thread(target=look, name="spanvisor-resolve", daemon=True).start()
        except RuntimeError as exc:  # no thread to be had: no lookup, and nothing left waiting
            raise OSError(f"no lookup of {host}: {exc}") from None
        running = _looking[key] = (done, found)
    done, found = running
    if not done.wait(timeout_s):
        raise TimeoutError(f"no address for {host} within {timeout_s:.2f} s")
    if not found:
        raise OSError(f"no address for {host}")
    return list(found)


def _connect(host: str, port: int, deadline: float) -> socket.socket:
    """A connection to ``host`` by the first of its addresses that takes
    one (``localhost`` may name ::1 before 127.0.0.1), before ``deadline``."""
    last: OSError = OSError(f"no address for {host}")
    for address in addresses(host, port, deadline - time.monotonic()):
        try:
            return connect(address, port, max(0.001, deadline - time.monotonic()))
        except OSError as exc:
            last = exc
    raise last


__all__ = ["Record", "attributes", "connect", "encode", "host_arg", "post", "span_request"]
