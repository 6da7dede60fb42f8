"""Signing a webhook body and checking it: stdlib only, for senders and receivers.

The signature is ``v1=`` and the hex HMAC-SHA256, keyed with the shared
secret, of ``f"{timestamp}.{body}"``: the unix-seconds timestamp sent in
``X-Spanvisor-Timestamp``, a dot, and the raw body bytes. Signing the
timestamp with the body means a captured request cannot be replayed with a
fresh timestamp; :func:`verify` rejects a timestamp outside its window, so a
captured request stops verifying after ``tolerance_s``. The intervention id
(``X-Spanvisor-Intervention-Id``, also in the body) lets a receiver drop a
request it has already acted on within that window.
"""

from __future__ import annotations

import hashlib
import hmac
import time

SCHEME = "v1"
DEFAULT_TOLERANCE_S = 300.0


def _key(secret: str | bytes) -> bytes:
    return secret.encode("utf-8") if isinstance(secret, str) else secret


def _body(body: str | bytes) -> bytes:
    return body.encode("utf-8") if isinstance(body, str) else body


def signature(secret: str | bytes, timestamp: int | str, body: str | bytes) -> str:
    """The ``X-Spanvisor-Signature`` value for ``body`` sent at ``timestamp``."""
    mac = hmac.new(_key(secret), f"{timestamp}.".encode("ascii") + _body(body), hashlib.sha256)
    return f"{SCHEME}={mac.hexdigest()}"


def verify(
    secret: str | bytes,
    timestamp: str | int | None,
    body: str | bytes,
    signature_header: str | None,
    tolerance_s: float = DEFAULT_TOLERANCE_S,
    *,
    now: float | None = None,
) -> bool:
    """Whether a request is from someone holding ``secret`` and recent.

    ``timestamp`` and ``signature_header`` are the raw header values,
    ``body`` the raw request body (not re-serialised JSON). False for a
    missing or malformed header, a timestamp more than ``tolerance_s`` away
    from ``now`` (either way: a clock ahead of ours is as suspect as a stale
    request), or no matching ``v1=`` signature. The header may list several
    comma-separated signatures (e.g. while a secret is rotated); one match is
    enough. Comparisons take constant time.
    """
    if not secret or timestamp is None or not signature_header:
        return False
    ts = str(timestamp).strip()
    if not ts.isascii() or not ts.isdigit() or len(ts) > 12:
        return False
    current = time.time() if now is None else now
    if abs(current - int(ts)) > tolerance_s:
        return False
    expected = signature(secret, ts, body).encode("ascii")
    found = False
    for part in signature_header.split(","):
        candidate = part.strip().encode("utf-8", "replace")
        # Every candidate is compared, so the time taken does not say which matched.
        found |= hmac.compare_digest(candidate, expected)
    return found


__all__ = ["DEFAULT_TOLERANCE_S", "SCHEME", "signature", "verify"]
