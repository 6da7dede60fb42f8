"""What ``serve`` refuses from a browser: a page on another site must not
reach the control API through the person's browser.

A browser on the machine (or the network) that runs ``serve`` is a client
that anyone can program: a page from any site may ``fetch`` serve's ports.
Three checks keep it out, on every HTTP route of ``serve``:

* **Host** (DNS rebinding): a page of ``evil.example`` whose name is made to
  resolve to 127.0.0.1 talks to serve as "same origin", but its requests
  still say ``Host: evil.example``. Allowed: loopback names (``localhost``,
  ``*.localhost``), any IP address (an address cannot be rebound: a page
  served from it is on that address), the bind address when it is a name,
  and the names of ``SPANVISOR_ALLOWED_HOSTS`` (``.example.com`` for its
  subdomains, ``*`` for any). Anything else is 403. A request without
  ``Host`` is not a browser's and passes.
* **Origin**: a browser names the page's origin on every cross-origin request
  (and on same-origin POSTs); one that is not this server's own (the
  request's host and port) is 403, and so is ``Origin: null`` (a sandboxed
  or file page). ``Sec-Fetch-Site: cross-site``/``same-site`` without an
  Origin (a no-cors GET, e.g. an ``<img>``) is 403 too, but a person's
  navigation (``Sec-Fetch-Mode: navigate``, GET) is let through: the page
  that linked can never read the answer.
* **Content type**: a form or ``text/plain`` POST is a "simple" request a
  page may send anywhere without asking the server first; a request that
  changes state must say ``Content-Type: application/json``, which a page
  can only send cross-origin after a CORS preflight serve never grants
  (415 otherwise). A DELETE without a body is preflighted whatever its
  content type, so only one with a body must say JSON.

Each check returns a :class:`Refused` or ``None``; :func:`middleware` applies
them and lets each app answer a refusal in its own shape (the hook route
answers every refusal with its deny JSON, since Claude Code runs a call
whose hook answers anything but 200).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass

from aiohttp import web

JSON = "application/json"
# Methods that change state; a DELETE only when it carries a body (see above).
_WRITES = frozenset({"POST", "PUT", "PATCH"})
_DEFAULT_PORTS = {"http": 80, "https": 443}
# A wildcard bind names no host a client could send.
_WILDCARDS = frozenset({"", "0.0.0.0", "::", "*"})
CAUSE_HOST = "host_not_allowed"
CAUSE_ORIGIN = "cross_origin"
CAUSE_CONTENT_TYPE = "json_required"


@dataclass(frozen=True, slots=True)
class Refused:
    """Why a request is refused, and the status that says so."""

    status: int
    cause: str
    message: str


def split_host(value: str) -> tuple[str, int | None] | None:
    """(host name or address, port or None) of a ``Host`` header or an
    origin's authority; None when it is malformed."""
    value = value.strip()
    if not value or any(c.isspace() or c in "/?#@\\" for c in value):
        return None
    if value.startswith("["):  # an IPv6 address: [::1]:4318
        host, sep, rest = value[1:].partition("]")
        if not sep:
            return None
        port_text = rest[1:] if rest.startswith(":") else None
        if rest and port_text is None:
            return None
    elif value.count(":") > 1:  # an IPv6 address without brackets: no port
        return (value.lower(), None) if _is_address(value) else None
    else:
        host, sep, port_text_or_empty = value.rpartition(":")
        if not sep:
            host, port_text = value, None
        else:
            port_text = port_text_or_empty
    if port_text is None:
        return (host.lower().rstrip("."), None) if host else None
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        return None
    return (host.lower().rstrip("."), int(port_text)) if host else None


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


@dataclass(frozen=True, slots=True)
class HostPolicy:
    """The host names a request may name in ``Host``: what serve serves."""

    names: frozenset[str] = frozenset()
    suffixes: tuple[str, ...] = ()  # ".example.com": any subdomain of it
    anything: bool = False  # "*": the check is off (a proxy in front checks Host)

    @classmethod
    def of(cls, binds: Iterable[str | None], allowed: Iterable[str] = ()) -> HostPolicy:
        """The policy for a server bound to ``binds`` with the configured
        extra names ``allowed`` (SPANVISOR_ALLOWED_HOSTS)."""
        names: set[str] = set()
        suffixes: list[str] = []
        anything = False
        for raw in allowed:
            entry = raw.strip().lower().rstrip(".")
            if entry == "*":
                anything = True
            elif entry.startswith("."):
                suffixes.append(entry)
            elif entry:
                got = split_host(entry)  # a name given with a port still names the host
                if got is not None:
                    names.add(got[0])
        for bind in binds:
            b = (bind or "").strip().lower().rstrip(".")
            if b not in _WILDCARDS and not _is_address(b.strip("[]")):
                names.add(b)
        return cls(frozenset(names), tuple(suffixes), anything)

    def allows(self, host: str) -> bool:
        """Whether ``host`` (no port; lowercase) is one this server serves."""
        if self.anything or _is_address(host) or host == "localhost" or host.endswith(".localhost"):
            return True
        return host in self.names or any(host.endswith(s) or host == s[1:] for s in self.suffixes)


def host_refusal(headers: Mapping[str, str], policy: HostPolicy) -> Refused | None:
    raw = headers.get("Host")
    if raw is None:
        return None  # HTTP/1.0 or a hand-written client: never a browser
    got = split_host(raw)
    if got is None:
        return Refused(400, CAUSE_HOST, "the Host header is malformed")
    if policy.allows(got[0]):
        return None
    return Refused(
        403,
        CAUSE_HOST,
        f"Host {got[0][:100]!r} is not a name this server serves (a DNS rebinding guard); "
        "add it to SPANVISOR_ALLOWED_HOSTS if clients reach serve by that name",
    )


def origin_refusal(method: str, headers: Mapping[str, str]) -> Refused | None:
    """A browser's request from a page of another origin; None for a
    non-browser client (no Origin) or the server's own origin."""
    origin = headers.get("Origin")
    if origin is None:
        site = headers.get("Sec-Fetch-Site", "").strip().lower()
        navigation = headers.get("Sec-Fetch-Mode", "").strip().lower() == "navigate" and method in ("GET", "HEAD")
        if site in ("cross-site", "same-site") and not navigation:
            return Refused(403, CAUSE_ORIGIN, f"a browser request from another site (Sec-Fetch-Site: {site})")
        return None
    origin = origin.strip()
    if origin.lower() == "null":
        return Refused(403, CAUSE_ORIGIN, "a browser request from an opaque origin (Origin: null)")
    o_scheme, sep, authority = origin.partition("://")
    o_scheme = o_scheme.lower()
    o_host = split_host(authority) if sep and o_scheme in _DEFAULT_PORTS else None
    own = split_host(headers.get("Host", ""))
    if o_host is not None and own is not None:
        # The Host header has the port only when it is not the default of the
        # scheme the browser used, which is the origin's on a same-origin request
        # (behind a TLS proxy serve itself speaks plain HTTP).
        default = _DEFAULT_PORTS[o_scheme]
        if o_host[0] == own[0] and (o_host[1] or default) == (own[1] or default):
            return None
    return Refused(
        403, CAUSE_ORIGIN, f"a browser request from another origin ({origin[:100]!r}); serve answers no page's script"
    )


def content_type_refusal(request: web.BaseRequest) -> Refused | None:
    """A state-changing request that does not say JSON (415)."""
    method = request.method
    has_body = bool(request.content_length) or "Transfer-Encoding" in request.headers
    if method not in _WRITES and not (method == "DELETE" and has_body):
        return None
    if request.content_type == JSON:
        return None
    return Refused(
        415,
        CAUSE_CONTENT_TYPE,
        f"{method} needs Content-Type: {JSON} (not {request.content_type!r}): "
        "a form or text/plain request may come from any web page",
    )


Answer = Callable[[web.Request, Refused], web.StreamResponse]
_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def json_answer(request: web.Request, refusal: Refused) -> web.StreamResponse:
    """The control API's shape: ``{"error", "cause"}``."""
    del request
    return web.json_response({"error": refusal.message, "cause": refusal.cause}, status=refusal.status)


def middleware(
    policy: HostPolicy,
    *,
    json_writes: Callable[[str], bool] = lambda path: False,
    answer: Answer = json_answer,
) -> Callable[..., Awaitable[web.StreamResponse]]:
    """Host, then Origin, then (for the paths ``json_writes`` names) the
    content type of a state-changing request; ``answer`` shapes a refusal."""

    @web.middleware
    async def guard(request: web.Request, handler: _Handler) -> web.StreamResponse:
        refusal = host_refusal(request.headers, policy) or origin_refusal(request.method, request.headers)
        if refusal is None and json_writes(request.path):
            refusal = content_type_refusal(request)
        if refusal is not None:
            return answer(request, refusal)
        return await handler(request)

    return guard


__all__ = [
    "CAUSE_CONTENT_TYPE",
    "CAUSE_HOST",
    "CAUSE_ORIGIN",
    "HostPolicy",
    "Refused",
    "content_type_refusal",
    "host_refusal",
    "json_answer",
    "middleware",
    "origin_refusal",
    "split_host",
]
