"""Ids derived from content, never from a clock or a counter: replaying the
same spans or the same request yields the same id, so every write keyed on
one is idempotent (events, runs, what a person was asked)."""

from __future__ import annotations

import hashlib


def stable_id(*parts: object) -> str:
    """A 32-hex-digit id that depends only on ``parts``."""
    # A list: join makes one anyway, and a generator's frame cost more than the hash.
    raw = "\x1f".join([str(p) for p in parts]).encode("utf-8", "surrogatepass")
    return hashlib.blake2b(raw, digest_size=16).hexdigest()


def run_id_of(trace_id: str, root_span_id: str) -> str:
    """A run's id: one task root span, named by its (trace id, root span id), as
    12 hex digits of a stable hash (replays keep it; a reused task id is another run)."""
    return stable_id("run", trace_id, root_span_id)[:12]


def question_digest(question: str, options: tuple[str, ...] = ("approve", "reject")) -> str:
    """What a person was shown of a request before digests covered its action
    (question and options), hashed: older clients' decisions still carry it."""
    return stable_id("question", question, *options)[:16]


__all__ = ["question_digest", "run_id_of", "stable_id"]
