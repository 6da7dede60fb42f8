"""The central policy as a hook sees it: read from ``serve``, kept a short
while, evaluated here.

``serve`` publishes its central policy at ``GET /v1/control/policy`` with
its version as the ETag. A hook keeps what it read in a small file (one per
server, ``<data dir>/policy-cache/``, mode 0600) and the launcher's warm
gate in memory; a copy younger than ``SPANVISOR_CENTRAL_POLICY_TTL``
(15 s) is used as it is, an older one is asked again (``If-None-Match``:
an unchanged policy costs a 304), so a newer version the server holds
replaces it as soon as the server can be asked.

When the server cannot be asked and no copy is fresh, the central policy
is *unknown*: a server known to publish one (a copy of it was read before)
or ``SPANVISOR_CENTRAL_POLICY=required`` makes the gate's fail-closed
rules apply (``on_unreachable``; a deny of the last copy still denies),
never an allow of the old copy. A server never reached and never known to
publish one leaves the local policy alone in charge, as before central
policies; ``SPANVISOR_CENTRAL_POLICY=off`` never asks.

The file is the agent's to write (it runs as the same user), so nothing in
it is taken on its word: a copy's age is counted on the hook's own clock
(a ``fetched`` time in the future is no age: the copy is stale, and a
``failed`` time in the future does not hold back the next request), and a
copy's files must hash to the version its ETag names (serve's ETag is the
SHA-256 of the files) or the file is no copy at all, so an edited copy is
fetched again and never answered "unchanged". A file that is there but
cannot be read as a copy still marks the server as one that publishes a
policy (the stricter reading). A locked hook (``--locked``) goes further:
a copy from the file is never fresh by itself, only a validator for the
request (a copy rewritten with a self-consistent policy of the agent's
and a current time would otherwise be used for as long as it is
rewritten); only copies this process fetched are used without asking.
Nor does the file's "failed a moment ago" keep a locked hook from asking
(only a failure of its own process does), and to a locked hook the
central policy is "none" only when its own request found nothing there at
all: no time to ask (a deadline the agent's settings can shorten), a
server that answered without a policy it could read (a token refused, a
5xx), a listener not taken for serve (a token file of the agent's makes
serve's own port refused): each is "unknown", and its fail-closed rules
answer. A copy's ETag is read exactly as serve writes it.

Standard library only: the request is a bare HTTP/1.1 GET on a socket
(TLS for ``https://``), bounded by a short timeout.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from collections.abc import Mapping
from typing import Any, Literal, NamedTuple

from spanvisor.gate import servetoken
from spanvisor.gate.central import Central, from_document
from spanvisor.gate.otlp import connect
from spanvisor.gate.policy import PolicyError
from spanvisor.gate.readlimit import read_at_most
from spanvisor.gate.session import otlp_endpoint

ROUTE = "/v1/control/policy"
ENV_MODE = "SPANVISOR_CENTRAL_POLICY"
ENV_TTL = "SPANVISOR_CENTRAL_POLICY_TTL"
DEFAULT_TTL_S = 15.0
# After a failed read, how long the next hooks wait before trying again.
RETRY_S = 3.0
# The longest a hook waits for the server's answer (within its deadline).
TIMEOUT_S = 1.0
MAX_BODY = 4 * 1024 * 1024
# get()'s status for a request not sent: a listener there not taken for serve;
# and for one reached that gave no answer to read (timed out, reset, not HTTP).
REFUSED, UNANSWERED = -1, -2
State = Literal["fresh", "none", "unknown"]
# The launcher's warm gate: a copy past half its time is read again in the
# background, so a call rarely waits for the server. Copies in memory are
# keyed by their file (the server and the data dir).
AHEAD = False
_refreshing: set[str] = set()


class CentralView(NamedTuple):
    """What a call must obey of the central policy: ``fresh`` (``central``
    as the server holds it, or None: it has none), ``none`` (no central
    policy is known for this server, or the gate is told not to ask), or
    ``unknown`` (the server should be obeyed but cannot be asked:
    ``central`` is the last copy, maybe None; ``why`` says why)."""

    central: Central | None
    state: State
    why: str | None = None
    url: str | None = None


_memory: dict[str, dict[str, Any]] = {}
_parsed: dict[str, Central] = {}
# The files whose copy in memory this process fetched itself.
_here: set[str] = set()
# This process's own failed requests, by file: when, and whether anything
# answered (a locked hook reads these, never the file's word).
_tried: dict[str, float] = {}
_answered: dict[str, bool] = {}


def ttl(env: Mapping[str, str]) -> float:
    try:
        return max(0.0, float(env.get(ENV_TTL, DEFAULT_TTL_S)))
    except ValueError:
        return DEFAULT_TTL_S


def server_url(env: Mapping[str, str], url: str | None = None, endpoint: str | None = None) -> str:
    """The control API the hook asks: ``--url``, ``SPANVISOR_CONTROL_URL``,
    else where its records go (serve answers both on one port)."""
    return (url or env.get("SPANVISOR_CONTROL_URL") or otlp_endpoint(endpoint, env)).rstrip("/")


def view(
    env: Mapping[str, str],
    url: str | None = None,
    endpoint: str | None = None,
    token: str | None = None,
    timeout_s: float = TIMEOUT_S,
    now: float | None = None,
    trust_file: bool = True,
) -> CentralView:
    """The central policy a call must obey now (see the module's doc).
    ``trust_file=False``: a copy read from the file is asked about again
    before it is used (a locked hook)."""
    mode = (env.get(ENV_MODE) or "auto").strip().lower()
    if mode == "off":
        return CentralView(None, "none")
    base = server_url(env, url, endpoint)
    t = time.time() if now is None else now
    path = _file(base, env)
    entry = _memory.get(path) or _read_file(base, env) or {}
    fetched = _time(entry.get("fetched"))
    # A locked hook holds a request back only after a failure of its own:
    # "it failed a moment ago" in the file is the agent's to write.
    failed = _time(entry.get("failed")) if trust_file else _tried.get(path, 0.0)
    secret = token or env.get("SPANVISOR_CONTROL_TOKEN") or env.get("SPANVISOR_OTLP_TOKEN")
    # Ages on this clock only: a time in the future is no age at all.
    if fetched and 0 <= t - fetched < ttl(env) and (trust_file or path in _here):
        if AHEAD and t - fetched >= ttl(env) / 2 and base not in _refreshing:
            _ahead(base, secret, dict(env))
        return CentralView(_central(entry), "fresh", url=base)
    why = entry.get("why") or "no time left to ask it"
    if timeout_s >= 0.05 and not (failed and 0 <= t - failed < RETRY_S and failed >= fetched):
        got, why = _refresh(base, secret, entry, env, timeout_s, t)
        if got is not None:
            return CentralView(_central(got), "fresh", url=base)
        entry = _memory.get(_file(base, env)) or entry
    elif not trust_file:
        why = str((_memory.get(path) or {}).get("why") or why)
    unknown = f"the central policy cannot be read from {base} ({why})"
    if not trust_file:
        # A locked hook: "none" only when its own last request found nothing
        # there at all. No time to ask (a deadline the agent's settings can
        # shorten), a server that answered without a policy it could read (a
        # token refused, a 5xx), a listener not taken for serve: unknown.
        # (Its last copy, the file's, only adds the central's fail-closed
        # rules to the local ones: a copy of the agent's could loosen them
        # no further than the local policy's own on_unreachable does.)
        doubt = timeout_s < 0.05 or _answered.get(path, True)
        if mode == "required" or entry.get("known") or doubt:
            return CentralView(_central(entry), "unknown", unknown, base)
        return CentralView(None, "none", url=base)
    if mode == "required" or entry.get("known"):
        return CentralView(_central(entry), "unknown", unknown, base)
    return CentralView(None, "none", url=base)


def forget() -> None:
    """Drop the copies this process holds (``serve``, when it reloads its
    policy: its own gate then reads the new version at once)."""
    _memory.clear()
    _here.clear()
    _tried.clear()
    _answered.clear()


def _refresh(
    base: str, token: str | None, entry: dict[str, Any], env: Mapping[str, str], timeout_s: float, t: float
) -> tuple[dict[str, Any] | None, str]:
    """Ask the server; the entry kept (None when it did not answer, and why)."""
    status, doc, etag = get(base, token, entry.get("etag"), timeout_s)
    got = _answer(entry, status, doc, etag, t)
    path = _file(base, env)
    if got is not None:
        _keep(base, got, env)
        _here.add(path)
        _tried.pop(path, None)
        _answered.pop(path, None)
        return got, ""
    why = _why(status, doc)
    _keep(base, {**entry, "failed": t, "why": why}, env)
    # This process's own: whether anything answered (or listened where it
    # was not taken for serve), for a locked hook's reading.
    _tried[path], _answered[path] = t, status != 0
    return None, why


def _ahead(base: str, token: str | None, env: dict[str, str]) -> None:
    import threading

    def run() -> None:
        try:
            _refresh(base, token, _memory.get(_file(base, env)) or {}, env, TIMEOUT_S, time.time())
        finally:
            _refreshing.discard(base)

    _refreshing.add(base)
    threading.Thread(target=run, name="spanvisor-central-policy", daemon=True).start()


def _answer(entry: dict[str, Any], status: int, doc: Any, etag: str | None, t: float) -> dict[str, Any] | None:
    """The cache entry an answer makes; None for no answer to go by."""
    if status == 304 and entry.get("etag"):
        return {**entry, "fetched": t, "failed": 0}
    if status == 404:  # no central policy here (or a serve from before them)
        return {"fetched": t, "etag": None, "doc": None, "known": False}
    if status == 200:
        try:
            from_document(doc)  # checked before it is kept
        except PolicyError:
            return None
        # An ETag that does not name these files is not kept: the copy is
        # then asked for whole, never "unchanged" on the server's word.
        sha = doc.get("sha256") if isinstance(doc, Mapping) else None
        return {"fetched": t, "etag": etag if etag and _tag(etag) == sha else None, "doc": doc, "known": True}
    return None


def _why(status: int, doc: Any) -> str:
    if status in (0, REFUSED, UNANSWERED):
        return str(doc) if isinstance(doc, str) else "no answer"
    if status in (401, 403):
        return f"HTTP {status}: the token was refused"
    if status == 200:
        return "its answer is not a policy"
    return f"HTTP {status}"


def _central(entry: Mapping[str, Any]) -> Central | None:
    doc = entry.get("doc")
    if not isinstance(doc, Mapping):
        return None
    key = str(doc.get("sha256"))
    got = _parsed.get(key)
    if got is None:
        try:
            got = from_document(doc)
        except PolicyError:
            return None
        _parsed.clear()  # one or two versions at a time
        _parsed[key] = got
    return got


# --- the file -----------------------------------------------------------------


def cache_dir(env: Mapping[str, str]) -> str:
    data = env.get("SPANVISOR_DATA_DIR")
    if data:
        return os.path.join(data, "policy-cache")
    state = env.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return os.path.join(state, "spanvisor", "policy-cache")


def _file(base: str, env: Mapping[str, str]) -> str:
    return os.path.join(cache_dir(env), hashlib.sha256(base.encode()).hexdigest()[:24] + ".json")


def _read_file(base: str, env: Mapping[str, str]) -> dict[str, Any] | None:
    """The copy in the file, checked (:func:`_checked`); None when there
    is no file; a file that is there but is not a copy of this server's
    policy marks the server as one that publishes a policy, with no copy."""
    try:
        with open(_file(base, env), "rb") as f:
            got = json.loads(read_at_most(f, MAX_BODY + 65535))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, RecursionError):
        return {"known": True, "why": "its cached copy cannot be read"}
    checked = _checked(got, base)
    if checked is None:
        return {"known": True, "why": "its cached copy is not the version it claims"}
    _memory[_file(base, env)] = checked
    return checked


def _checked(got: Any, base: str) -> dict[str, Any] | None:
    """A copy read from the file as it was kept: this server's, its times
    numbers, and its files hashing to the version its ETag names (or no
    policy and no ETag, a server that has none); else None."""
    if not isinstance(got, dict) or got.get("url") != base:
        return None
    if any(got.get(k) is not None and not _time(got[k]) and got[k] != 0 for k in ("fetched", "failed")):
        return None
    doc, etag = got.get("doc"), got.get("etag")
    if doc is None:
        return got if etag is None and not got.get("known") else None
    try:
        central = from_document(doc)
    except (PolicyError, RecursionError, TypeError, ValueError):
        return None
    # Exactly as serve writes it: anything else in the file would go into
    # the request's If-None-Match as it is.
    if etag not in (f'"{central.sha256}"', f'W/"{central.sha256}"'):
        return None
    return {**got, "known": True}


def _tag(etag: str) -> str:
    """An ETag's opaque part (no ``W/``, no quotes)."""
    return etag.removeprefix("W/").strip().strip('"')


def _time(value: Any) -> float:
    """A time kept in the file (0 when there is none); a value that is
    not a finite number reads as none."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0.0
    got = float(value)
    return got if math.isfinite(got) else 0.0


def _keep(base: str, entry: dict[str, Any], env: Mapping[str, str]) -> None:
    entry = {**entry, "url": base}
    path = _file(base, env)
    _memory[path] = entry
    try:
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        tmp = f"{path}.{os.getpid()}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(entry, f)
        os.replace(tmp, path)
    except OSError:
        pass  # the next hook asks again


# --- the request --------------------------------------------------------------


def get(base: str, token: str | None, etag: str | None, timeout_s: float) -> tuple[int, Any, str | None]:
    """``GET <base>/v1/control/policy``: (status, JSON body, ETag); status 0
    and the reason when nothing could be reached, :data:`REFUSED` when the
    listener there is not taken for serve, :data:`UNANSWERED` when one was
    reached and gave no answer to read."""
    scheme, _, rest = base.partition("://")
    if scheme not in ("http", "https") or not rest:
        return 0, f"not an http(s) URL: {base[:80]}", None
    hostport, _, prefix = rest.partition("/")
    host, port = hostport, 443 if scheme == "https" else 80
    if hostport.startswith("["):
        host, _, tail = hostport[1:].partition("]")
        port = int(tail[1:]) if tail.startswith(":") and tail[1:].isdigit() else port
    elif hostport.count(":") == 1:
        host, _, p = hostport.partition(":")
        port = int(p) if p.isdigit() else port
    path = ("/" + prefix.strip("/") if prefix.strip("/") else "") + ROUTE
    lines = [f"GET {path} HTTP/1.1", f"Host: {hostport}", "Accept: application/json", "Connection: close"]
    sending = servetoken.bearer(base, token)
    if sending.refused:  # not serve: no policy from it; a port someone holds is more than "nothing there"
        return (0 if sending.refused.startswith(servetoken.NOTHING_AT) else REFUSED), sending.refused, None
    if sending.token:
        lines.append(f"Authorization: Bearer {sending.token}")
    if etag:
        lines.append(f"If-None-Match: {etag}")
    deadline = time.monotonic() + timeout_s
    try:
        raw = connect(host, port, timeout_s)
    except (OSError, ValueError) as exc:  # nothing reached: nothing there
        said = getattr(exc, "strerror", None)
        return 0, type(exc).__name__ + (f": {said}" if said else ""), None
    try:
        with raw:
            conn: Any = raw
            if scheme == "https":
                import ssl

                conn = ssl.create_default_context().wrap_socket(raw, server_hostname=host)
            conn.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
            data = bytearray()
            while len(data) <= MAX_BODY:
                conn.settimeout(max(0.01, deadline - time.monotonic()))
                chunk = conn.recv(65536)
                if not chunk:
                    break
                data += chunk
    except (OSError, ValueError) as exc:  # reached, and no answer read: not "nothing there"
        said = getattr(exc, "strerror", None)
        return UNANSWERED, type(exc).__name__ + (f": {said}" if said else ""), None
    status, doc, got_etag = _response(bytes(data))
    return (UNANSWERED if status == 0 else status), doc, got_etag


def _response(data: bytes) -> tuple[int, Any, str | None]:
    head, sep, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2) if lines else []
    if not sep or len(parts) < 2 or not parts[1].isdigit():
        return 0, "not an HTTP answer", None
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    if "chunked" in headers.get("transfer-encoding", "").lower():
        body = _unchunk(body)
    elif headers.get("content-length", "").isdigit():
        body = body[: int(headers["content-length"])]
    try:
        doc = json.loads(body) if body else None
    except ValueError:
        doc = None
    return int(parts[1]), doc, headers.get("etag")


def _unchunk(body: bytes) -> bytes:
    out = bytearray()
    while body:
        size, _, rest = body.partition(b"\r\n")
        try:
            n = int(size.split(b";")[0], 16)
        except ValueError:
            break
        if n == 0:
            break
        out += rest[:n]
        body = rest[n + 2 :]
    return bytes(out)


__all__ = [
    "AHEAD",
    "ENV_MODE",
    "ENV_TTL",
    "ROUTE",
    "CentralView",
    "cache_dir",
    "forget",
    "get",
    "server_url",
    "ttl",
    "view",
]
