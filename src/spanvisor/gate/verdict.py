"""The policy's part of a decision, shared by every way a call reaches the
gate (the command hook, the launcher's socket and listener, ``serve``'s
``http`` hook route): read the call, read the policy, decide; answer a
failure (a block) or the policy's allow or deny at once, and hand back
what a person must decide (``ask``). The audit note of a policy's answer
is made here and kept after the answer.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Mapping
from typing import NamedTuple

from spanvisor.gate import contracts as gc
from spanvisor.gate import notes
from spanvisor.gate.answer import Answer
from spanvisor.gate.policy import Policy, PolicyError, Ruling, load

# The largest hook input read: past it, a block (a CLI sends far less).
MAX_INPUT = 4 * 1024 * 1024


class Asked(NamedTuple):
    """A call the policy asks a person about."""

    call: gc.Call
    policy: Policy
    ruling: Ruling


class Decided(NamedTuple):
    """A call the policy answered, and its note (kept after the answer)."""

    code: int
    note: dict[str, object] | None


def by_policy(
    raw: bytes,
    cli: gc.Cli,
    policy_path: str | None,
    cwd: str | None,
    out: Answer,
    env: Mapping[str, str],
    endpoint: str | None = None,
) -> Asked | Decided:
    """Answer ``raw`` in ``out`` when the policy (or a failure) decides;
    else what a person must decide."""
    if len(raw) > MAX_INPUT:
        return Decided(out.block(f"spanvisor: the hook input is over {MAX_INPUT} bytes; denied"), None)
    try:
        call = gc.parse(cli, raw)
    except gc.BadInput as exc:
        return Decided(out.block(f"spanvisor: {exc}; denied"), None)
    out.event = call.event
    if call.cwd is None and cwd is not None:
        call = call._replace(cwd=cwd)
    try:
        policy = load(policy_path)
    except PolicyError as exc:
        return Decided(out.block(f"spanvisor: {exc}; denied until the policy is fixed"), None)
    ruling = policy.decide(call)
    if ruling.verdict == "ask":
        return Asked(call, policy, ruling)
    decided_at = time.time_ns()
    word = "allowed" if ruling.verdict == "allow" else "denied"
    reason = f"spanvisor: {ruling.reason or word + ' by ' + ruling.by}"
    code = out.allow(reason) if ruling.verdict == "allow" else out.deny(reason)
    basis = call.call_id or hashlib.blake2b(raw, digest_size=16).hexdigest()
    note = notes.note("policy", call, basis, endpoint, decided_at, env, verdict=ruling.verdict, by=ruling.by)
    return Decided(code, note)


__all__ = ["MAX_INPUT", "Asked", "Decided", "by_policy"]
