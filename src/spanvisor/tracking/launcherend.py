"""A task that ``spanvisor run`` started ends by its launcher's word (issue 63).

Every agent holds the OTLP token, and a task's root ids are derived from its
id: anyone could send the root's end of a launched task, marked complete,
and ``spanvisor cancel`` would then answer "already finished" while the CLI
went on (a budget stop skipped the same way). So the launcher mints a
secret for its session (:mod:`spanvisor.launcher.credential`: never in the
CLI's environment or argv, and the launcher is not dumpable, so the CLI
cannot read its memory or environment) and names the secret's SHA-256 in
the task's start record (``agent.session.key``), sent before the CLI
starts. Its end of the task carries the secret (``agent.session.proof``).

The Python helper (``spanvisor.agent.task``) does the same for a task it
opens while its live records go to a receiver (``spanvisor serve``): the
process that opened the task holds the secret, and its root's end carries
it. (In process, nothing else reaches the pipeline: no key.) So does the
system gate for a session it guards that runs without the launcher
(:mod:`spanvisor.hook.sessionkey`), at the session's first tool call.

A root end of such a task without the secret is a *claim*: said on the task
once (its message), counted (``claimed_ends_total``), kept; the task stays
open, so a cancel or a budget stop still applies and the launcher stops the
CLI. The end that counts is the launcher's, whose notes keep the claim
beside it. The secret is dropped from the end before it is read: no sink
stores it (it is worth nothing once the task has ended).

The first start record that names a key sets it; another key later is
ignored. A task that no start record keyed (no launcher, or the launcher's
record lost) ends as before, on any root end.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from spanvisor.spans import conventions as cv
from spanvisor.spans.data import SpanData

# A proof longer than this is not the launcher's (it sends 64 hex digits).
_MAX_PROOF = 256
# Other keys a task's start records named after the first, kept to tell the
# shared record of runs (control.runsync): two keys are two starters, one of
# them the agent. More than this is as telling as this many.
MAX_RIVALS = 3


@dataclass(slots=True)
class LauncherEnd:
    """What a launched task holds: its key, and the first claim of its end."""

    key: str
    claimed: str | None = None  # "complete", as first claimed
    claimed_ns: int = 0
    claims: int = 0
    # Its end carried the secret of ``key`` (the end that counts: not one the
    # tracker ruled, such as lost), and the other keys start records named.
    proved: bool = False
    rivals: tuple[str, ...] = ()

    def named(self, key: str) -> bool:
        """Another start record named ``key``: the first stands, the rest are
        noted; True when it was one not noted before."""
        if key == self.key or key in self.rivals or len(self.rivals) >= MAX_RIVALS:
            return False
        self.rivals = (*self.rivals, key)
        return True

    def claim(self, outcome: str, at_ns: int) -> bool:
        """Note a claimed end; True for the first (the one said)."""
        self.claims += 1
        if self.claimed is not None:
            return False
        self.claimed, self.claimed_ns = outcome, at_ns
        return True

    def notes(self) -> list[str]:
        """What the launcher's end says of the claims before it."""
        if self.claimed is None:
            return []
        more = f" ({self.claims} claims)" if self.claims > 1 else ""
        return [f"the agent had reported this task's end ({self.claimed}) without its starter's word{more}"]


def key_of(attrs: Mapping[str, Any]) -> str | None:
    """The session key a start record names: 64 hex digits, else None."""
    key = attrs.get(cv.SESSION_KEY)
    if not isinstance(key, str) or len(key) != 64:
        return None
    try:
        int(key, 16)
    except ValueError:
        return None
    return key.lower()


def proves(key: str, attrs: Mapping[str, Any]) -> bool:
    """Whether a root end carries the secret whose SHA-256 is ``key``."""
    proof = attrs.get(cv.SESSION_PROOF)
    if not isinstance(proof, str) or not proof or len(proof) > _MAX_PROOF:
        return False
    return hmac.compare_digest(hashlib.sha256(proof.encode("utf-8", "replace")).hexdigest(), key)


def claimed_outcome(span: SpanData) -> str:
    """The end a root end claims, in a word."""
    status = span.attributes.get(cv.STATUS)
    if isinstance(status, str) and status.strip():
        return status.strip()[:40]
    return "error" if span.error else "complete"


def claim_message(outcome: str) -> str:
    return (
        f"⚠ The agent reported this task's end ({outcome}) without its starter's word (spanvisor run, the system "
        "gate, or the process that opened the task): the task stays open and supervised (a cancel still stops it); "
        "its end is its starter's to say"
    )


def without_proof(span: SpanData) -> SpanData:
    """``span`` less the secret: read and stored nowhere."""
    if cv.SESSION_PROOF not in span.attributes:
        return span
    return replace(span, attributes={k: v for k, v in span.attributes.items() if k != cv.SESSION_PROOF})


__all__ = ["LauncherEnd", "claim_message", "claimed_outcome", "key_of", "proves", "without_proof"]
