"""Whose task a tool call belongs to, and where its records go.

The key is the launcher's ``spanvisor.task.id`` (``SPANVISOR_TASK_ID``,
which every CLI passes to its hooks) when ``spanvisor run`` started the
CLI, in the launcher's run of it when it gave one (:func:`own_run`), else
the CLI's session id; the task's trace and root span ids are
derived from it exactly as the receiver derives them
(:mod:`spanvisor.gate.taskids`, standard library only), so the
hook, the launcher and the CLI's own records name one task, in one run.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import NamedTuple

from spanvisor.clis import registry

RESOURCE_TASK_ID = "spanvisor.task.id"
# The launcher's run of the task (a nonce it draws when the task id it was
# given names a run that ended): the CLI's records say it in their resource,
# beside the task id.
RESOURCE_TASK_RUN = "spanvisor.task.run"
# What the launcher tells the CLI's hooks, in variables a CLI passes on:
# Claude Code (2.1) removes every OTEL_* variable from a hook's environment,
# so OTEL_RESOURCE_ATTRIBUTES alone would leave the hook without the task.
ENV_TASK_ID = "SPANVISOR_TASK_ID"
ENV_TASK_OWNER = "SPANVISOR_TASK_OWNER"
ENV_ENDPOINT = "SPANVISOR_OTLP_ENDPOINT"
ENV_TASK_AGENT = "SPANVISOR_TASK_AGENT"
# Where a session's agent is named in OTEL_RESOURCE_ATTRIBUTES, as the
# receiver reads a CLI's own records (receiver.codingagents.batch).
AGENT_KEYS = ("spanvisor.agent", "agent.name")
MAX_AGENT = 200
DEFAULT_ENDPOINT = "http://127.0.0.1:4318"


def resource_attributes(env: Mapping[str, str]) -> dict[str, str]:
    """``OTEL_RESOURCE_ATTRIBUTES`` decoded (key=value pairs, percent-encoded)."""
    import urllib.parse  # after the answer: off the gate's fast path

    out: dict[str, str] = {}
    for part in env.get("OTEL_RESOURCE_ATTRIBUTES", "").split(","):
        key, sep, value = part.partition("=")
        if sep and key.strip():
            out[urllib.parse.unquote(key.strip())] = urllib.parse.unquote(value.strip())
    return out


# What OTEL_RESOURCE_ATTRIBUTES may hold unencoded: W3C Baggage's
# baggage-octet (printable ASCII but space, '"', ',', ';' and '\\'), less
# '%' itself, which must be encoded for a decoder to read the value back.
_BAGGAGE_SAFE = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) not in '",;\\%')
# A key is read up to its first '=': one in a key is encoded too.
_KEY_SAFE = _BAGGAGE_SAFE.replace("=", "")
OWNER = "agent.owner"


def encode_resource(attrs: Mapping[str, str]) -> str:
    """``attrs`` as ``OTEL_RESOURCE_ATTRIBUTES``: only what the OTel
    specification requires is percent-encoded (characters outside the
    baggage octets, and '%'), so a task id such as ``deploy:web/42`` travels
    as it is, whether or not the CLI decodes."""
    import urllib.parse

    def enc(text: str, safe: str) -> str:
        return urllib.parse.quote(text, safe=safe)

    return ",".join(f"{enc(k, _KEY_SAFE)}={enc(v, _BAGGAGE_SAFE)}" for k, v in attrs.items())


def with_resource(env: Mapping[str, str], attrs: Mapping[str, str]) -> str:
    """The user's ``OTEL_RESOURCE_ATTRIBUTES`` (decoded) with ``attrs`` added
    (ours win), encoded by :func:`encode_resource`."""
    return encode_resource({**resource_attributes(env), **attrs})


def task_owner(env: Mapping[str, str]) -> str | None:
    """The person the agent works for, who may not approve its requests:
    ``SPANVISOR_TASK_OWNER``, else ``agent.owner`` in ``OTEL_RESOURCE_ATTRIBUTES``."""
    return env.get(ENV_TASK_OWNER) or resource_attributes(env).get(OWNER) or None


def task_agent(env: Mapping[str, str], service: str) -> str:
    """The agent a launched session's task is under: ``SPANVISOR_TASK_AGENT``,
    else ``spanvisor.agent`` or ``agent.name`` in ``OTEL_RESOURCE_ATTRIBUTES``
    (what the CLI's own records say), else the CLI's ``service``: the
    launcher's records name the agent its CLI's records name."""
    named = env.get(ENV_TASK_AGENT, "").strip()
    if not named:
        attrs = resource_attributes(env)
        named = next((v.strip() for k in AGENT_KEYS if (v := attrs.get(k, "")).strip()), "")
    return named[:MAX_AGENT] if named else service


def launched_task(env: Mapping[str, str]) -> str | None:
    """The launcher's task id, if this process runs under ``spanvisor run``:
    ``SPANVISOR_TASK_ID``, else ``spanvisor.task.id`` in
    ``OTEL_RESOURCE_ATTRIBUTES`` (a launcher of an older version)."""
    return env.get(ENV_TASK_ID) or resource_attributes(env).get(RESOURCE_TASK_ID) or None


def launched_run(env: Mapping[str, str]) -> str | None:
    """The launcher's run of its task as ``env`` names it: ``spanvisor.task.run``
    in ``OTEL_RESOURCE_ATTRIBUTES`` beside that same task's ``spanvisor.task.id``
    (a CLI that passes its resource on to its hooks). None for anything but a
    run's nonce. Claude Code removes every ``OTEL_*`` variable from a hook's
    environment: its hooks learn the run from the launcher's local gate
    (:func:`own_run`)."""
    task = launched_task(env)
    if not task or RESOURCE_TASK_RUN not in env.get("OTEL_RESOURCE_ATTRIBUTES", ""):
        return None  # (as the launcher writes it: nothing to decode on a hook's way)
    from spanvisor.gate import taskids

    attrs = resource_attributes(env)
    run = attrs.get(RESOURCE_TASK_RUN) if attrs.get(RESOURCE_TASK_ID) == task else None
    return run if taskids.is_run(run) else None


# A launched session's key: its task id, then its run when it has one. The
# key is what a spooled note keeps of its session ([key, service, launched]),
# so a note sent later still names its run.
RUN_SEPARATOR = "\x1f"


def launched_key(task_id: str, run: str | None) -> str:
    """The key of launched task ``task_id`` in its run ``run`` (None: the task
    id alone, as launchers before runs)."""
    return f"{task_id}{RUN_SEPARATOR}{run}" if run else task_id


# The run of a task this process is part of, as its launcher said it
# (join_run): the launcher's local gate answers its CLI's hooks in the
# launcher's own process, whose environment names no run.
_JOINED: dict[str, str] = {}


def join_run(task_id: str, run: str) -> None:
    """Say this process (a launcher) is run ``run`` of task ``task_id``."""
    _JOINED[task_id] = run


def own_run(task_id: str, env: Mapping[str, str] | None = None) -> str | None:
    """The run of launched task ``task_id`` a hook or launcher is part of:
    the launcher's (:func:`join_run`: the hooks its local gate answers, in
    its own process), else the environment's (``env``, else this process's)
    when it names the same task (:func:`launched_run`), else None. For the
    hook and the launcher, never for a record received, which says its run."""
    joined = _JOINED.get(task_id)
    if joined is not None:
        return joined
    e = os.environ if env is None else env
    return launched_run(e) if launched_task(e) == task_id else None


def endpoint_from(explicit: str | None, env: Mapping[str, str] | None = None) -> str:
    e = os.environ if env is None else env
    return (explicit or e.get(ENV_ENDPOINT) or DEFAULT_ENDPOINT).rstrip("/")


def otlp_endpoint(explicit: str | None, env: Mapping[str, str]) -> str:
    """Where a session's records go: ``explicit``, ``SPANVISOR_OTLP_ENDPOINT``,
    the OTLP/HTTP endpoint the CLI exports to, else the local default."""
    if explicit or env.get(ENV_ENDPOINT):
        return endpoint_from(explicit, env)
    grpc = env.get("OTEL_EXPORTER_OTLP_PROTOCOL") == "grpc"
    return (("" if grpc else env.get("OTEL_EXPORTER_OTLP_ENDPOINT")) or DEFAULT_ENDPOINT).rstrip("/")


class TaskKey(NamedTuple):
    """A session's task as the hook names it: its key, service, and derived
    ids (hex). A launched session's key is :func:`launched_key`: the task id,
    and its run when the launcher gave one."""

    key: str
    service: str
    launched: bool

    def _launched(self) -> tuple[str, str | None]:
        """(task id, run) of a launched session's key."""
        from spanvisor.gate import taskids

        head, sep, tail = self.key.rpartition(RUN_SEPARATOR)
        return (head, tail) if sep and taskids.is_run(tail) else (self.key, None)

    @property
    def run(self) -> str | None:
        """The launcher's run of the task, if it gave one."""
        return self._launched()[1] if self.launched else None

    @property
    def task_id(self) -> str:
        """The task's id: the launcher's, else the session id in its CLI's namespace."""
        from spanvisor.gate import taskids

        return self._launched()[0] if self.launched else taskids.session_task_id(self.service, self.key)

    @property
    def ids(self) -> tuple[str, str]:
        from spanvisor.gate import taskids  # hashlib: not before the launcher's CLI starts

        if self.launched:
            return taskids.launcher_task_ids(*self._launched())
        return taskids.task_ids(self.service, self.key)


def session_of(cli: str, session_id: str | None, env: Mapping[str, str]) -> TaskKey | None:
    launched = launched_task(env)
    key = launched_key(launched, own_run(launched, env)) if launched else session_id
    adapter = registry.get(cli)
    if not key or adapter is None:
        return None
    return TaskKey(key, adapter.service, launched is not None)


# What a hook's environment says of its session that only a launcher may
# say: which task (and run) it is, its agent, its owner, the task's name and
# repository. A repository's settings can set a hook's environment (Claude
# Code applies their `env` block to hooks), and a rule on the owner or the
# task would then match a fact the repository chose.
CLAIMED_VARS = (ENV_TASK_ID, ENV_TASK_AGENT, ENV_TASK_OWNER)
CLAIMED_RESOURCE = (RESOURCE_TASK_ID, RESOURCE_TASK_RUN, "spanvisor.task.name", "agent.repo", OWNER, *AGENT_KEYS)


def unclaimed(env: Mapping[str, str]) -> dict[str, str]:
    """``env`` without what only a launcher may say of the session
    (:data:`CLAIMED_VARS`, and :data:`CLAIMED_RESOURCE` in its resource):
    the session is then its CLI's own, and a rule on its owner or its task
    is taken at its strictest (an unknown fact never allows)."""
    out = {k: v for k, v in env.items() if k not in CLAIMED_VARS}
    if "OTEL_RESOURCE_ATTRIBUTES" in env:
        resource = {k: v for k, v in resource_attributes(env).items() if k not in CLAIMED_RESOURCE}
        if resource:
            out["OTEL_RESOURCE_ATTRIBUTES"] = encode_resource(resource)
        else:
            del out["OTEL_RESOURCE_ATTRIBUTES"]
    return out


__all__ = [
    "AGENT_KEYS",
    "CLAIMED_RESOURCE",
    "CLAIMED_VARS",
    "DEFAULT_ENDPOINT",
    "ENV_ENDPOINT",
    "ENV_TASK_AGENT",
    "ENV_TASK_ID",
    "ENV_TASK_OWNER",
    "OWNER",
    "RESOURCE_TASK_ID",
    "RESOURCE_TASK_RUN",
    "RUN_SEPARATOR",
    "TaskKey",
    "encode_resource",
    "endpoint_from",
    "join_run",
    "launched_key",
    "launched_run",
    "launched_task",
    "otlp_endpoint",
    "own_run",
    "resource_attributes",
    "session_of",
    "task_agent",
    "task_owner",
    "unclaimed",
    "with_resource",
]
