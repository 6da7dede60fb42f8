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

from spanvisor.clis import registry
from spanvisor.gate import centralcache, notes
from spanvisor.gate import contracts as gc
from spanvisor.gate.answer import Answer
from spanvisor.gate.central import combine
from spanvisor.gate.policy import Policy, PolicyError, Ruling, load
from spanvisor.gate.rules import KNOWN_NOTHING, Facts, fact
from spanvisor.gate.session import ENV_TASK_OWNER, launched_task, resource_attributes
from spanvisor.gate.taskids import session_task_id

# The largest hook input read: past it, a block (a CLI sends far less).
MAX_INPUT = 4 * 1024 * 1024
# The central policy's version on a policy answer's audit note.
VERSION_ATTR = "spanvisor.policy.version"


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
    url: str | None = None,
    token: str | None = None,
    time_left: float | None = None,
    locked: bool = False,
) -> Asked | Decided:
    """Answer ``raw`` in ``out`` when the policy (or a failure) decides;
    else what a person must decide. The local policy and the server's
    central one (:mod:`.centralcache`: ``url``, ``token``) both have a say,
    and the strictest wins. ``time_left``: what the deadline leaves (the
    server is asked within a quarter of it, not at all past it); ``locked``:
    the central policy's copy on disk is asked about before it is used."""
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
    ask_s = centralcache.TIMEOUT_S if time_left is None else min(centralcache.TIMEOUT_S, time_left / 4)
    seen = centralcache.view(env, url, endpoint, token, ask_s, trust_file=not locked)
    central = seen.central
    facts = hook_facts(call, env) if policy.uses_facts or (central and central.policy.uses_facts) else KNOWN_NOTHING
    ruling = combine(policy.decide(call, facts), central.ruling(call, facts) if central is not None else None)
    if central is not None:
        # The stricter fallbacks of the two: a person's silence, an unreachable server.
        policy = policy._replace(
            on_timeout="deny" if "deny" in (policy.on_timeout, central.policy.on_timeout) else "allow",
            on_unreachable="deny" if "deny" in (policy.on_unreachable, central.policy.on_unreachable) else "allow",
        )
    if seen.state == "unknown" and ruling.verdict != "deny" and policy.on_unreachable == "deny":
        # Never an allow the server may since have taken back.
        ruling = Ruling("deny", "policy:on_unreachable", f"{seen.why}; denied until it can be (on_unreachable)")
    if ruling.verdict == "ask":
        return Asked(call, policy, ruling)
    decided_at = time.time_ns()
    word = "allowed" if ruling.verdict == "allow" else "denied"
    reason = f"spanvisor: {ruling.reason or word + ' by ' + ruling.by}"
    code = out.allow(reason) if ruling.verdict == "allow" else out.deny(reason)
    basis = call.call_id or hashlib.blake2b(raw, digest_size=16).hexdigest()
    note = notes.note("policy", call, basis, endpoint, decided_at, env, verdict=ruling.verdict, by=ruling.by)
    if note is not None and central is not None:
        for _name, attrs, _at in note["records"]:
            attrs[VERSION_ATTR] = central.version
    return Decided(code, note)


def hook_facts(call: gc.Call, env: Mapping[str, str]) -> Facts:
    """What a hook knows of its call's agent and task: the CLI, the agents
    it may report as, the owner and the task's id (the launcher's, else the
    session's); its name and repository when the resource names them, else
    unknown (a rule on them is then taken at its strictest)."""
    resource = resource_attributes(env) if env.get("OTEL_RESOURCE_ATTRIBUTES") else {}
    adapter = registry.get(call.cli)
    task_id = launched_task(env) or (
        session_task_id(adapter.service, call.session_id) if call.session_id and adapter is not None else None
    )
    name, repo = resource.get("spanvisor.task.name"), resource.get("agent.repo")
    return Facts(
        agent=adapter.services if adapter is not None else None,
        cli=(call.cli,),
        owner=fact(env.get(ENV_TASK_OWNER) or resource.get("agent.owner")),
        task={
            "id": fact(task_id) if task_id else None,
            "name": (name,) if name else None,
            "repo": (repo,) if repo else None,
        },
    )


__all__ = ["MAX_INPUT", "VERSION_ATTR", "Asked", "Decided", "by_policy", "hook_facts"]
