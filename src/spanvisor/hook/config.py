"""What ``spanvisor hook`` decides by: its own arguments first.

The hook's command line lives in the settings file the operator installed
(ideally the CLI's managed settings, which a repository cannot override).
Its environment does not: Claude Code applies a project's
``.claude/settings.json`` ``env`` block to the hooks it runs, so a
repository under the agent's control can set ``SPANVISOR_HOOK_POLICY`` (a
policy of its own) or ``SPANVISOR_CENTRAL_POLICY=off`` (no central floor).

So an option on the hook's command line always wins over the variable it
stands for (``--policy``, ``--central``, ``--url``, ``--token``,
``--endpoint``, ``--otlp-token``), said once on stderr when they differ;
and ``--locked`` ignores every ``SPANVISOR_*`` variable but the few that
only describe the session (:data:`KEPT`), the OTLP endpoint variables too:
what is decided then comes from the command line and the built-in defaults
alone. The result is one environment the rest of the hook reads, so no
reader further down can pick up what was meant to be ignored.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from typing import NamedTuple

from spanvisor.gate import servetoken
from spanvisor.gate.centralcache import ENV_MODE, ENV_TTL
from spanvisor.gate.session import otlp_endpoint

ENV_POLICY = "SPANVISOR_HOOK_POLICY"
# What a locked hook still reads from its environment: the session it runs
# in (the launcher sets these for the CLI it starts) and its start, none of
# which chooses a policy, a server or a token. A start is taken only from
# the last minute, and the CLI's settings files only shorten the deadline.
# (Not the cancel's wait: 0 would skip a cancelled session's veto.)
KEPT = frozenset(
    {
        "SPANVISOR_TASK_ID",
        "SPANVISOR_TASK_OWNER",
        "SPANVISOR_TASK_AGENT",
        "SPANVISOR_HOOK_STARTED",
        "SPANVISOR_CLI_SETTINGS",
    }
)
# Not spanvisor's, but where a hook's records (and, by default, its
# control API and central policy) go.
ALSO_LOCKED = frozenset({"OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_PROTOCOL"})
# Each option and the variable it stands for.
OPTIONS: tuple[tuple[str, str], ...] = (
    ("policy", ENV_POLICY),
    ("central", ENV_MODE),
    ("url", "SPANVISOR_CONTROL_URL"),
    ("token", "SPANVISOR_CONTROL_TOKEN"),
    ("endpoint", "SPANVISOR_OTLP_ENDPOINT"),
    ("otlp_token", "SPANVISOR_OTLP_TOKEN"),
)


def refused(args: argparse.Namespace) -> str | None:
    """Why a locked hook's command line cannot be obeyed, or None: a
    relative ``--policy`` would be read in the working directory, the
    agent's repository."""
    policy = getattr(args, "policy", None)
    if getattr(args, "locked", False) and policy and not os.path.isabs(policy):
        return (
            f"spanvisor hook: --locked needs an absolute --policy, not {policy!r} (read in the agent's folder); denied"
        )
    return None


class Settled(NamedTuple):
    """The arguments and the environment the hook decides by, and what it
    says about the variables it set aside (one line, or empty)."""

    args: argparse.Namespace
    env: dict[str, str]
    said: str


def locked_out(name: str) -> bool:
    """Whether a locked hook ignores the variable ``name``."""
    return (name.startswith("SPANVISOR_") and name not in KEPT) or name in ALSO_LOCKED


def settle(args: argparse.Namespace, env: Mapping[str, str]) -> Settled:
    """The environment with the command line's options written over the
    variables they stand for (and, when ``--locked``, every deciding
    variable dropped); the options left unset on the command line filled
    from that environment."""
    locked = bool(getattr(args, "locked", False))
    out = {k: v for k, v in env.items() if not (locked and locked_out(k))}
    for option, var in OPTIONS:
        given = getattr(args, option, None)
        if given is None:
            setattr(args, option, out.get(var))
        else:
            out[var] = given
    # Said for the variables that would have changed the decision, not for
    # every one a launcher sets the same.
    names = [v for v in (*(var for _, var in OPTIONS), ENV_TTL) if v in env and env[v] != out.get(v)]
    why = "--locked and its command line decide" if locked else "its command line decides"
    said = f"spanvisor hook: {', '.join(names)} in its environment ignored ({why})" if names else ""
    local_token(args, out)
    return Settled(args, out, said)


def local_token(args: argparse.Namespace, env: dict[str, str]) -> None:
    """No OTLP token given: the local serve's own (``<data dir>/serve-token``),
    when both where the records go and the control API it asks are on
    this machine (loopback); never for another host. Whom it goes to is
    asked where it is sent, never here on the way to the answer: only to a
    listener of this user's (:func:`servetoken.bearer`)."""
    if getattr(args, "otlp_token", None):
        return
    endpoint = otlp_endpoint(getattr(args, "endpoint", None), env)
    control = getattr(args, "url", None) or env.get("SPANVISOR_CONTROL_URL") or endpoint
    token = servetoken.unvetted(endpoint, env)
    if token and control != endpoint and not servetoken.is_loopback(control):
        token = None
    if token:
        args.otlp_token = token
        env["SPANVISOR_OTLP_TOKEN"] = token


__all__ = ["ENV_POLICY", "KEPT", "Settled", "local_token", "locked_out", "refused", "settle"]
