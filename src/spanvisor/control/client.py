"""Where an agent reads people's decisions from, and how a tool sends one.

Two sources, one interface (:class:`DecisionSource`), both synchronous so an
agent's plain thread can use them:

* :class:`InProcessSource`: the pipeline running in this process
  (:func:`spanvisor.control.hub.current`); its coroutines run on the
  pipeline's own loop, this thread only waits for their result.
* :class:`HttpSource`: the control API of ``spanvisor serve``
  (``SPANVISOR_CONTROL_URL``), long-polled with the standard library only.

:func:`source_from_env` picks one: the URL when set, else the in-process
pipeline, else none. Reading never raises into the agent: a source that
cannot be reached answers ``None``, and the caller tries again.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Protocol

from spanvisor.control import hub
from spanvisor.control.log import decision_from_dict, decision_to_dict
from spanvisor.events import Decision
from spanvisor.gate import servetoken
from spanvisor.statestores.api import outage_of

log = logging.getLogger("spanvisor.control")

ENV_URL = "SPANVISOR_CONTROL_URL"
ENV_TOKEN = "SPANVISOR_CONTROL_TOKEN"
# Set (True) in the document of an answer that did not come: the request
# timed out or the connection was reset (status 0, as for a refused one).
TRANSIENT = "transient"
ENV_OTLP_TOKEN = "SPANVISOR_OTLP_TOKEN"
DEFAULT_URL = "http://127.0.0.1:4318"
# The longest wait the control API grants one request.
MAX_WAIT_S = 60.0
ACTIONS = ("approve", "reject", "cancel", "retry", "acknowledge")
# The cause the control API names when its state store is away (503).
STORE_DOWN = "state_store_unavailable"


@dataclass(frozen=True, slots=True)
class Poll:
    """One read of a task's decisions: those past ``after``, and the cursor ``next``."""

    decisions: tuple[Decision, ...]
    next: int


@dataclass(frozen=True, slots=True)
class Sent:
    """What became of a decision sent with :meth:`HttpSource.decide`.
    ``outcome``: the control API's verdict (applied, duplicate, already_decided,
    denied, full), or ``unauthorized``, ``bad_request``, ``unreachable``, or
    ``unavailable``: the server could not record it now (``code`` names the
    cause); send it again after ``retry_after_s`` with the same intervention id
    (recorded once). ``http_status`` is 0 when nothing answered."""

    outcome: str
    reason: str | None = None
    http_status: int = 0
    # Why it was refused (unknown_request, expired, digest_mismatch …), and
    # the question it answered or was refused on, as the server has it.
    code: str | None = None
    question: str | None = None
    # When to try again (``unavailable``), from the answer's Retry-After.
    retry_after_s: float | None = None
    # Who the server recorded as deciding, and whether it verified them; for a
    # request several people must approve, this approve's count (1 of 2).
    decided_by: str | None = None
    verified: bool = False
    votes: int = 0
    votes_needed: int = 0
    # How the decider was proven (token, oidc), and an approve that broke glass.
    proof: str | None = None
    break_glass: bool = False

    @property
    def ok(self) -> bool:
        return self.outcome in ("applied", "duplicate")

    @property
    def retryable(self) -> bool:
        """Not recorded now, to be sent again (the same intervention id)."""
        return self.outcome == "unavailable"


class DecisionSource(Protocol):
    def poll(self, task_id: str, after: int, wait_s: float, run_id: str | None = None) -> Poll | None:
        """Decisions of the run past ``after`` (the task id's latest run when
        none is named), waiting up to ``wait_s`` for one; None when the
        source could not be read this time."""
        ...


def _run_on_pipeline(control: hub.Control, make: Callable[[], Any], timeout_s: float) -> Any:
    call_sync = getattr(control, "call_sync", None)
    if call_sync is not None:
        return call_sync(make, timeout_s)
    # Any other Control: its coroutines may be awaited on any loop.
    return asyncio.run(asyncio.wait_for(make(), timeout_s))


class InProcessSource:
    """The pipeline of this process (``hub.current()`` at each call, so a
    pipeline started after the agent is still found)."""

    def __init__(self, control: hub.Control | None = None) -> None:
        self._control = control

    @property
    def control(self) -> hub.Control | None:
        return self._control or hub.current()

    def poll(self, task_id: str, after: int, wait_s: float, run_id: str | None = None) -> Poll | None:
        control = self.control
        if control is None:
            return None
        wait = max(0.0, min(wait_s, MAX_WAIT_S))
        try:
            items = _run_on_pipeline(control, lambda: control.decisions(task_id, after, wait, run_id), wait + 10.0)
        except Exception as exc:  # a stopped pipeline, a timeout: read again later
            log.debug("reading decisions of %s in-process failed: %s", task_id, exc)
            return None
        return Poll(tuple(items), after + len(items))

    def decide(self, decision: Decision, timeout_s: float = 30.0) -> Sent:
        control = self.control
        if control is None:
            return Sent("unreachable", "no spanvisor pipeline runs in this process")
        try:
            verdict = _run_on_pipeline(control, lambda: control.decide(decision), timeout_s)
        except Exception as exc:
            if outage_of(exc) is not None:  # as the control API's 503: send it again later
                return Sent("unavailable", f"the state store is unavailable ({type(exc).__name__})", 0, STORE_DOWN)
            return Sent("unreachable", f"{type(exc).__name__}: {exc}")
        question = verdict.request.question if verdict.request is not None else None
        return Sent(verdict.outcome, verdict.reason, 200, verdict.code, question)


def base_url(url: str) -> str:
    """``http://host:port`` from what a person may paste: a trailing ``/``,
    ``/v1/traces`` or ``/v1/control`` is dropped."""
    u = url.strip().rstrip("/")
    for tail in ("/v1/traces", "/v1/control"):
        if u.endswith(tail):
            u = u[: -len(tail)]
    return u


def token_from_env(env: Mapping[str, str] | None = None) -> str | None:
    e = os.environ if env is None else env
    return e.get(ENV_TOKEN) or e.get(ENV_OTLP_TOKEN) or None


class HttpSource:
    """The control API of ``spanvisor serve``, over HTTP (stdlib urllib).

    Connection errors back off (0.2 s doubling to 5 s) inside :meth:`poll`,
    never past the wait asked for; a refused token is logged once.
    """

    def __init__(
        self,
        url: str,
        token: str | None = None,
        *,
        request_timeout_s: float = 10.0,
        env: Mapping[str, str] | None = None,
        say: bool = True,
    ) -> None:
        self.url = base_url(url)
        # No token given: the local serve's own (its data dir's serve-token),
        # for a loopback URL only; that one is never sent to another host,
        # and goes only to this user's listener, asked at each request (a
        # serve restarting may find its port taken).
        self._given, self._env = token, env
        # Whether a refused destination is logged here (servetoken.bearer's
        # say): a command that prints the failure itself says it once.
        self._say = say
        self.request_timeout_s = request_timeout_s
        self._backoff = 0.0
        self._warned = False
        # Whether any poll got a 200, and the last failure when not: a caller
        # that heard nothing tells "timed out" from "never reached".
        self.answered = False
        self.last_failure: str | None = None
        self._lock = threading.Lock()
        # Loopback never goes through an HTTP proxy the environment names.
        # (Every spelling of loopback: one the token rule counts as loopback
        # must not go through a proxy in the clear.)
        loopback = servetoken.is_loopback(self.url)
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({})) if loopback else None

    @property
    def token(self) -> str | None:
        """The bearer token a request sends now (:func:`servetoken.bearer`)."""
        return servetoken.bearer(self.url, self._given, self._env, self._say).token

    def task_url(self, task_id: str) -> str:
        return f"{self.url}/v1/control/tasks/{urllib.parse.quote(task_id, safe='')}"

    def _request(
        self, method: str, url: str, body: Mapping[str, Any] | None, timeout_s: float
    ) -> tuple[int, dict[str, Any]]:
        """(HTTP status, JSON body); status 0 and the error when nothing answered."""
        status, doc, _ = self._exchange(method, url, body, timeout_s)
        return status, doc

    def _exchange(
        self, method: str, url: str, body: Mapping[str, Any] | None, timeout_s: float
    ) -> tuple[int, dict[str, Any], float | None]:
        """:meth:`_request` and the answer's ``Retry-After`` in seconds, if any."""
        data = json.dumps(body).encode() if body is not None else None
        sending = servetoken.bearer(self.url, self._given, self._env, self._say)
        if sending.refused:  # another user's port, or nothing there: not this user's serve, asked nothing
            return 0, {"error": sending.refused}, None
        headers = {"Accept": "application/json"}
        if sending.token:
            headers["Authorization"] = f"Bearer {sending.token}"
        if data is not None:
            headers["Content-Type"] = "application/json"
        req = urllib.request.Request(url, data=data, method=method, headers=headers)
        try:
            opened = (
                self._opener.open(req, timeout=timeout_s)
                if self._opener
                else urllib.request.urlopen(req, timeout=timeout_s)
            )
            with opened as resp:
                return int(resp.status), _json(resp.read()), None
        except urllib.error.HTTPError as exc:
            try:
                payload = _json(exc.read())
            except OSError:
                payload = {}
            return int(exc.code), payload, _retry_after(exc.headers.get("Retry-After") if exc.headers else None)
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            doc: dict[str, Any] = {"error": str(reason)}
            if isinstance(reason, TimeoutError | ConnectionResetError):
                # Reached but not answered in time (or dropped): a busy
                # server, worth asking again; a refused connection is not.
                doc[TRANSIENT] = True
            return 0, doc, None

    def get_task(
        self, task_id: str, after: int = 0, wait_s: float = 0.0, run_id: str | None = None
    ) -> tuple[int, dict[str, Any]]:
        status, doc, _ = self._get_task(task_id, after, wait_s, run_id)
        return status, doc

    def _get_task(
        self, task_id: str, after: int, wait_s: float, run_id: str | None
    ) -> tuple[int, dict[str, Any], float | None]:
        wait = max(0.0, min(wait_s, MAX_WAIT_S))
        q: dict[str, Any] = {"after": after, "wait": f"{wait:g}"}
        if run_id:
            q["run"] = run_id
        query = urllib.parse.urlencode(q)
        return self._exchange("GET", f"{self.task_url(task_id)}?{query}", None, wait + self.request_timeout_s)

    def approvals(self, agent: str | None = None) -> tuple[int, dict[str, Any]]:
        """``GET /v1/control/approvals``: every open request (of one agent)."""
        query = "?" + urllib.parse.urlencode({"agent": agent}) if agent else ""
        return self._request("GET", f"{self.url}/v1/control/approvals{query}", None, self.request_timeout_s)

    def poll(self, task_id: str, after: int, wait_s: float, run_id: str | None = None) -> Poll | None:
        deadline = time.monotonic() + max(0.0, wait_s)
        while True:
            status, doc, retry_after = self._get_task(task_id, after, max(0.0, deadline - time.monotonic()), run_id)
            if status == 200:
                self.answered = True
                with self._lock:
                    self._backoff = 0.0
                raw = doc.get("decisions")
                items = [decision_from_dict(x) for x in raw if isinstance(x, Mapping)] if isinstance(raw, list) else []
                got = tuple(d for d in items if d is not None)
                nxt = doc.get("next")
                return Poll(got, nxt if isinstance(nxt, int) and nxt >= after else after + len(got))
            self.last_failure = f"HTTP {status}" if status else str(doc.get("error") or "unreachable")
            if status == 503 and doc.get("error"):
                self.last_failure += f": {doc['error']}"
            if status in (401, 403) and not self._warned:
                self._warned = True
                log.warning("the control API at %s refused the token (HTTP %d); set %s", self.url, status, ENV_TOKEN)
            with self._lock:
                self._backoff = min(5.0, max(0.2, self._backoff * 2))
                # The server's own hint (its state store is away) when it gives one.
                pause = max(self._backoff, retry_after or 0.0)
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            time.sleep(min(pause, left))

    def decide(
        self,
        task_id: str,
        action: str,
        actor: str,
        *,
        approval_id: str | None = None,
        comment: str | None = None,
        intervention_id: str | None = None,
        source: str = "cli",
        run_id: str | None = None,
        digest: str | None = None,
        edited: Mapping[str, Any] | None = None,
        break_glass: bool = False,
    ) -> Sent:
        body: dict[str, Any] = {"action": action, "actor": actor, "source": source, "edited": edited}
        if break_glass:
            body["break_glass"] = True
        body["intervention_id"] = intervention_id or uuid.uuid4().hex
        if approval_id is not None:
            body["approval_id"] = approval_id
        if run_id:
            body["run_id"] = run_id
        if digest:
            body["digest"] = digest
        if comment:
            body["comment"] = comment
        status, doc, retry_after = self._exchange(
            "POST", f"{self.task_url(task_id)}/decisions", body, self.request_timeout_s
        )
        reason = doc.get("reason") or doc.get("error")
        reason = str(reason) if reason is not None else None
        if status == 0:
            return Sent("unreachable", reason, 0)
        if status == 503 and (retry_after is not None or doc.get("cause")):
            cause = doc.get("cause")
            return Sent("unavailable", reason, status, str(cause) if cause else None, retry_after_s=retry_after)
        if status in (200, 404, 409) and isinstance(doc.get("outcome"), str):
            by, sure = doc.get("decided_by"), doc.get("verified") is True
            by = by if isinstance(by, str) else None
            n, of = doc.get("votes"), doc.get("votes_needed")
            tally = (n, of) if isinstance(n, int) and isinstance(of, int) else (0, 0)
            glass, proof = doc.get("break_glass") is True, doc.get("proof")
            proof = proof if isinstance(proof, str) else None
            sent = Sent(doc["outcome"], reason, status, doc.get("code"), doc.get("question"), None, by, sure, *tally)
            return replace(sent, proof=proof, break_glass=glass)
        if status in (401, 403):
            return Sent("unauthorized", reason or "missing or wrong bearer token", status)
        if status == 400:
            return Sent("bad_request", reason, status)
        if status == 404:
            return Sent("unreachable", reason or f"no control API at {self.url}", status)
        return Sent("unreachable", reason or f"HTTP {status}", status)


def _retry_after(raw: str | None) -> float | None:
    """Seconds from a ``Retry-After`` of delta-seconds (what the control API
    sends), at most a minute; None when absent or not a number."""
    try:
        n = float(raw) if raw else None
    except ValueError:
        return None
    return None if n is None or not n >= 0 else min(n, MAX_WAIT_S)


def _json(raw: bytes) -> dict[str, Any]:
    try:
        doc = json.loads(raw or b"{}")
    except ValueError:
        return {}
    return doc if isinstance(doc, dict) else {}


def source_from_env(env: Mapping[str, str] | None = None) -> DecisionSource | None:
    """The control API when ``SPANVISOR_CONTROL_URL`` is set, else this
    process's pipeline, else None (nothing can answer)."""
    e = os.environ if env is None else env
    url = e.get(ENV_URL)
    if url:
        return HttpSource(url, token_from_env(e), env=e)
    if hub.current() is not None:
        return InProcessSource()
    return None


__all__ = [
    "ACTIONS",
    "DEFAULT_URL",
    "ENV_TOKEN",
    "ENV_URL",
    "MAX_WAIT_S",
    "STORE_DOWN",
    "TRANSIENT",
    "DecisionSource",
    "HttpSource",
    "InProcessSource",
    "Poll",
    "Sent",
    "base_url",
    "decision_from_dict",
    "decision_to_dict",
    "source_from_env",
    "token_from_env",
]
