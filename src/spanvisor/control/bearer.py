"""The bearer-token check every HTTP entry point of ``serve`` shares: OTLP
ingest, the control API and the event stream."""

from __future__ import annotations

import hmac


def bearer_matches(header: str | bytes | None, token: bytes) -> bool:
    """``Authorization: Bearer <token>``; the scheme in any case (RFC 7235)."""
    if not header:
        return False
    raw = header.encode() if isinstance(header, str) else bytes(header)
    scheme, _, credentials = raw.strip().partition(b" ")
    # Compared in constant time whatever the scheme, so the answer's timing
    # says nothing about the token.
    same = hmac.compare_digest(credentials.strip(), token)
    return same and scheme.lower() == b"bearer"


def bearer_token(header: str | bytes | None) -> str | None:
    """The token of ``Authorization: Bearer <token>``, or None."""
    if not header:
        return None
    raw = header.decode("latin-1") if isinstance(header, bytes) else header
    scheme, _, credentials = raw.strip().partition(" ")
    return credentials.strip() or None if scheme.lower() == "bearer" else None


__all__ = ["bearer_matches", "bearer_token"]
