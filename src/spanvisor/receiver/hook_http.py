"""A CLI's ``http`` hook, answered by ``serve``: one route for each CLI
whose adapter has such hooks (Claude Code's today).

``POST /v1/hooks/<cli>`` takes the hook's JSON (what a command hook
reads on stdin) and answers what ``spanvisor hook <cli>`` would print,
by the same gate: serve's policy (``SPANVISOR_HOOK_POLICY``) decides in
process (:mod:`spanvisor.gate.verdict`); a call it asks about is handed to
the command hook itself (``spanvisor hook <cli>``, run here with the
call on stdin, asking this very serve), so a person, the deadline, the
check where it runs and every failure are what they are for the command
hook. A call a person decides is *parked*: its command hook runs as a
child process the event loop awaits, holding no worker, so the calls the
policy decides are answered by :data:`WORKERS` threads of their own
however many wait for people; at most :data:`MAX_PARKED` wait at once, and
one more is denied at once with the reason (never queued past its CLI's
timeout). Every answer is HTTP 200 with a decision in the CLI's own reply:
Claude Code runs the call on any other status, an empty body or a timeout
unless the hook entry says ``"onFailure": "block"`` (checked with the
pinned Claude Code), so a failure here is the deny, never an error status.

The request may say, in headers the CLI fills from its environment
(``allowedEnvVars``): ``Authorization: Bearer …`` (required when serve has
a token), ``X-Spanvisor-Task`` (the launcher's task, else the session's),
``X-Spanvisor-Task-Owner`` (who may not approve); the query may say
``timeout`` (the hook entry's, in seconds: the answer comes before it; at
most :data:`MAX_TIMEOUT_S`, a longer one is cut to it, so one request holds
a worker for an hour at the most).

The hook command this route runs, and the note it keeps, reach serve at the
URL of serve's own configuration (its bind address and port, see
``server.own_url``), never one built from the request's ``Host`` header,
which the client chooses.
"""

from __future__ import annotations

import asyncio
import io
import json
import math
import os
import sys
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

from aiohttp import web

from spanvisor.clis import registry
from spanvisor.clis.adapter import Adapter
from spanvisor.control.bearer import bearer_matches
from spanvisor.gate import notes, verdict
from spanvisor.gate.answer import Answer
from spanvisor.gate.deadline import ENV_STARTED, Deadline
from spanvisor.gate.local import ENV_SOCKET
from spanvisor.gate.session import ENV_ENDPOINT, ENV_TASK_ID, ENV_TASK_OWNER

# A CLI's route is this and its adapter's name.
PREFIX = "/v1/hooks/"
TASK_HEADER = "X-Spanvisor-Task"
OWNER_HEADER = "X-Spanvisor-Task-Owner"
# Calls the policy decides at once (a person's are parked, below).
WORKERS = 16
# Calls waiting for a person at once, each a command hook process the loop
# awaits; one more is denied at once, with the reason.
MAX_PARKED = 64
# The longest a request waits for a person: a longer hook timeout is cut to it
# (the answer, a deny when nobody decided, comes before the CLI's own timeout).
MAX_TIMEOUT_S = 3600.0
_MAX_ID = 256


def add_routes(app: web.Application, token: str | None, own_url: Callable[[], str] | None = None) -> None:
    """The hook route on serve's OTLP/HTTP app, behind its token. ``own_url``:
    serve's own URL, from its configuration; without it (the control API of
    an agent's process) the address and port the request's connection
    reached, which is this listener's, not what the request says."""
    expected = token.encode() if token else None
    pool = ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="spanvisor-hook-http")
    parked = [0]  # calls waiting for a person now (on the loop: no lock)

    async def answer(adapter: Adapter, request: web.Request) -> web.Response:
        started = time.monotonic()
        try:
            raw = await request.content.read(verdict.MAX_INPUT + 1)
        except Exception:
            return _reply(_blocked(adapter, "spanvisor: the hook's request could not be read; denied"))
        if expected is not None and not bearer_matches(request.headers.get("Authorization"), expected):
            return _reply(_blocked(adapter, "spanvisor: the http hook's bearer token is missing or wrong; denied"))
        facts = HookRequest(
            raw=raw,
            started=started,
            cli=adapter.name,
            timeout=_timeout(request.query.get("timeout"), adapter.hook_timeout_s),
            task=_ident(request.headers.get(TASK_HEADER)),
            owner=_ident(request.headers.get(OWNER_HEADER)),
            origin=own_url() if own_url is not None else _local_url(request),
            token=token,
        )
        loop = asyncio.get_running_loop()
        try:
            got, after = await loop.run_in_executor(pool, decide, facts)
        except Exception:
            return _reply(_blocked(adapter, "spanvisor: the gate failed; denied"))
        if isinstance(got, Parked):
            if parked[0] >= MAX_PARKED:
                return _reply(
                    _blocked(adapter, f"spanvisor: {MAX_PARKED} calls already wait for a person here; denied")
                )
            parked[0] += 1
            try:
                body = await _asked(got.facts, got.env)
            finally:
                parked[0] -= 1
            return _reply(body)
        body = got
        if after is not None:
            loop.run_in_executor(pool, _quietly, after)  # the note, once the answer is on its way
        return _reply(body)

    async def close(_app: web.Application) -> None:
        pool.shutdown(wait=False, cancel_futures=True)

    def route(adapter: Adapter) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def handler(request: web.Request) -> web.Response:
            return await answer(adapter, request)

        return handler

    for adapter in registry.every():
        if adapter.http_hooks:
            app.router.add_post(PREFIX + adapter.name, route(adapter))
    app.on_cleanup.append(close)


class HookRequest:
    """One hook request as the route read it."""

    __slots__ = ("cli", "origin", "owner", "raw", "started", "task", "timeout", "token")

    def __init__(
        self,
        *,
        cli: str,
        raw: bytes,
        started: float,
        timeout: float,
        task: str | None,
        owner: str | None,
        origin: str,
        token: str | None,
    ) -> None:
        self.cli, self.raw, self.started, self.timeout = cli, raw, started, timeout
        self.task, self.owner, self.origin, self.token = task, owner, origin, token


class Parked(NamedTuple):
    """A call the policy asks a person about: the command hook decides it (:func:`_asked`)."""

    facts: HookRequest
    env: dict[str, str]


def decide(facts: HookRequest) -> tuple[bytes | Parked, Callable[[], None] | None]:
    """The answer's body and what to do once it is sent (the note); or,
    when a person decides, the call to park."""
    # serve's own environment, less what names one session: its socket and task.
    env = {k: v for k, v in os.environ.items() if k not in (ENV_SOCKET, ENV_TASK_ID, ENV_TASK_OWNER)}
    env[ENV_ENDPOINT] = facts.origin
    env["SPANVISOR_CONTROL_URL"] = facts.origin
    if facts.token:
        env["SPANVISOR_OTLP_TOKEN"] = facts.token
    if facts.task:
        env[ENV_TASK_ID] = facts.task
    if facts.owner:
        env[ENV_TASK_OWNER] = facts.owner
    out = Answer(facts.cli, io.StringIO(), io.StringIO())
    got = verdict.by_policy(facts.raw, facts.cli, env.get("SPANVISOR_HOOK_POLICY"), None, out, env, facts.origin)
    if isinstance(got, verdict.Decided):
        note = got.note
        return _text(facts.cli, out), (lambda: notes.keep(note, facts.token, env, released=True)) if note else None
    return Parked(facts, env), None


async def _asked(facts: HookRequest, env: dict[str, str]) -> bytes:
    """A person decides: the command hook itself, asking this serve, by the
    same deadline (counted from the request's arrival), awaited on the loop."""
    adapter = registry.need(facts.cli)
    deadline = Deadline.for_cli(facts.cli, facts.timeout, facts.started)
    env[ENV_STARTED] = repr(facts.started)
    argv = ["-P", "-m", "spanvisor.cli", "hook", facts.cli, "--cli-timeout", f"{facts.timeout:g}"]
    proc = None
    try:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            *argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
            env=env,
        )
        out, _ = await asyncio.wait_for(proc.communicate(facts.raw), max(0.1, deadline.last() - time.monotonic()))
    except (OSError, TimeoutError):
        return _blocked(adapter, "spanvisor: no answer before the hook's timeout; denied")
    finally:
        if proc is not None and proc.returncode is None:  # timed out, or the request went away
            proc.kill()
            await proc.wait()
    lines = [ln for ln in out.decode("utf-8", "replace").splitlines() if ln.startswith("{")]
    if proc.returncode not in (0, 2) or not lines:
        return _blocked(adapter, f"spanvisor hook failed (status {proc.returncode}); denied")
    try:
        json.loads(lines[-1])
    except ValueError:
        return _blocked(adapter, "spanvisor hook gave no answer; denied")
    return lines[-1].encode()


def _text(cli: str, out: Answer) -> bytes:
    said = out.stdout.getvalue() if isinstance(out.stdout, io.StringIO) else ""
    line = said.strip().splitlines()[-1] if said.strip() else ""
    return line.encode() if line else _blocked(registry.need(cli), "spanvisor: the gate gave no answer; denied")


def _blocked(adapter: Adapter, reason: str) -> bytes:
    return json.dumps(adapter.reply(adapter.default_event, "deny", reason)).encode()


def hook_cli(path: str) -> Adapter | None:
    """The CLI whose hook route ``path`` is, or None (not a hook route)."""
    if not path.startswith(PREFIX):
        return None
    adapter = registry.get(path[len(PREFIX) :])
    return adapter if adapter is not None and adapter.http_hooks else None


def refusal(path: str, reason: str) -> web.Response | None:
    """A refused request's answer on a hook route: 200 with the CLI's deny,
    as every failure there; None when ``path`` is no hook route."""
    adapter = hook_cli(path)
    return _reply(_blocked(adapter, reason)) if adapter is not None else None


def _local_url(request: web.Request) -> str:
    """This listener's URL from the connection's own socket address."""
    sock = request.transport.get_extra_info("sockname") if request.transport is not None else None
    host, port = (str(sock[0]), int(sock[1])) if isinstance(sock, tuple) and len(sock) >= 2 else ("127.0.0.1", 0)
    if host in ("0.0.0.0", "::"):
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"{request.scheme}://{host}:{port}"


def _reply(body: bytes) -> web.Response:
    return web.Response(body=body, status=200, content_type="application/json")


def _timeout(raw: str | None, default: float) -> float:
    """The hook entry's timeout (the query's), else the CLI's default for a hook."""
    try:
        value = float(raw) if raw else default
    except ValueError:
        return default
    if not math.isfinite(value) or value <= 0:
        return default
    return min(value, MAX_TIMEOUT_S)


def _ident(raw: str | None) -> str | None:
    if not raw or len(raw) > _MAX_ID or any(ord(c) < 32 for c in raw):
        return None
    return raw


def _quietly(fn: Callable[[], None]) -> None:
    try:
        fn()
    except Exception:  # a note that fails is the spool's to deliver later
        pass


__all__ = [
    "MAX_PARKED",
    "MAX_TIMEOUT_S",
    "OWNER_HEADER",
    "PREFIX",
    "TASK_HEADER",
    "WORKERS",
    "Parked",
    "add_routes",
    "decide",
    "hook_cli",
    "refusal",
]
