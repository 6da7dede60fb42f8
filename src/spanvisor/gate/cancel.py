"""Whether a session's task was cancelled: the hook's look at the control
API, beside the policy's answer, for a session run without the launcher
(under the launcher, the launcher itself stops the CLI on a cancel).

The look is ``GET /v1/control/tasks/{task}`` (its ``cancel``: who, why,
when), sent from a thread as soon as the hook has read the call, so it runs
while the policy decides; only an allow waits for it, and never past
:data:`BUDGET_S` after the deciding process got the call (``SPANVISOR_HOOK_CANCEL_WAIT``
sets another, up to 5 s: a busy ``serve`` answers later, and a look that
comes too late lets the policy's allow stand). What the look cannot tell in time
(``serve`` down, slow, blackholed, a refused token) is no cancel, unless
an earlier look of the same session saw one: a cancel seen is remembered
(:mod:`spanvisor.gate.turns`), so every later call of the session is
denied even while ``serve`` cannot be reached, and forgotten when the
control API says the task's current run has none (a resumed session is a
new run). A look still running when its call was answered is finished by
a process of its own after the hook exits (:func:`finish_late`), so a
cancel that a slow ``serve`` tells late still reaches the session's next
call: at most the call in flight runs, never a later one. A plain-HTTP control API is spoken to over a socket by hand
(``http.client`` alone costs about 20 ms to import); an ``https`` one
through ``urllib.request``.

Standard library only: this runs on the policy's path.
"""

from __future__ import annotations

import json
import math
import os
import threading
import time
from collections.abc import Mapping
from typing import Any

from spanvisor.gate import servetoken, turns
from spanvisor.gate.otlp import connect

# How long after the call reached the deciding process an allow may wait for the look (a loopback
# serve answers in 1 to 5 ms, within the policy's own time), and at least
# how long the look has once sent (a hook slow to start, on a loaded machine).
BUDGET_S = 0.1
MIN_LOOK_S = 0.03
# SPANVISOR_HOOK_CANCEL_WAIT: another budget, in seconds (a busy serve).
ENV_BUDGET = "SPANVISOR_HOOK_CANCEL_WAIT"
MAX_BUDGET_S = 5.0
MAX_BODY = 1024 * 1024
ENV_URL = "SPANVISOR_CONTROL_URL"
ENV_TOKEN = "SPANVISOR_CONTROL_TOKEN"
ENV_OTLP_TOKEN = "SPANVISOR_OTLP_TOKEN"
_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
# A position past any task's decisions: the answer lists none of them.
_PAST = 1 << 40
# How long a look that came too late for its call has to finish, in a
# process of its own after the answer (finish_late), and the task it reads.
LATE_LOOK_S = 20.0
ENV_LATE_TASK = "SPANVISOR_LATE_CANCEL_LOOK"


def _quote(text: str) -> str:
    return "".join(chr(b) if b in _UNRESERVED else f"%{b:02X}" for b in text.encode("utf-8", "surrogatepass"))


def _split(url: str) -> tuple[str, str, int, str]:
    """(scheme, host, port, base path) of ``url``."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "http", url
    netloc, _, path = rest.partition("/")
    host, port = netloc, 443 if scheme == "https" else 80
    if netloc.startswith("["):  # [::1]:4318
        host, _, tail = netloc[1:].partition("]")
        port = int(tail[1:]) if tail.startswith(":") else port
    elif netloc.count(":") == 1:
        host, _, p = netloc.partition(":")
        port = int(p)
    return scheme, host or "127.0.0.1", port, ("/" + path).rstrip("/")


def fetch(url: str, token: str | None, task_id: str, timeout_s: float) -> tuple[int, dict[str, Any] | None]:
    """The control API's view of ``task_id``: (status, the JSON document);
    status 0 when it could not be asked or read in time."""
    try:
        scheme, host, port, base = _split(url)
        path = f"{base}/v1/control/tasks/{_quote(task_id)}?after={_PAST}&wait=0"
        headers = {"Accept": "application/json"}
        sending = servetoken.bearer(url, token)
        if sending.refused:  # not this user's serve: what it would say of a cancel does not count
            return 0, None
        if sending.token:
            headers["Authorization"] = f"Bearer {sending.token}"
        if scheme == "https":
            return _fetch_tls(f"https://{host}:{port}{path}", headers, timeout_s)
        return _fetch_plain(host, port, path, headers, timeout_s)
    except (OSError, ValueError, UnicodeError):
        return 0, None


def _fetch_plain(
    host: str, port: int, path: str, headers: Mapping[str, str], timeout_s: float
) -> tuple[int, dict[str, Any] | None]:
    deadline = time.monotonic() + timeout_s
    netloc = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    head = [f"GET {path} HTTP/1.1", f"Host: {netloc}", "Connection: close", *(f"{k}: {v}" for k, v in headers.items())]
    got = bytearray()
    with connect(host, port, max(0.001, timeout_s)) as sock:
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode("latin-1"))
        while len(got) <= MAX_BODY:
            sock.settimeout(max(0.001, deadline - time.monotonic()))
            chunk = sock.recv(65536)
            if not chunk:
                break
            got += chunk
    top, _, body = bytes(got).partition(b"\r\n\r\n")
    lines = top.split(b"\r\n")
    status = lines[0].split()
    code = int(status[1]) if len(status) >= 2 and status[1].isdigit() else 0
    if any(ln.lower().replace(b" ", b"") == b"transfer-encoding:chunked" for ln in lines[1:]):
        body = _dechunk(body)
    return code, _json(body)


def _dechunk(body: bytes) -> bytes:
    out, i = bytearray(), 0
    while i < len(body):
        end = body.find(b"\r\n", i)
        if end < 0:
            break
        size = int(body[i:end].split(b";")[0] or b"0", 16)
        if size == 0:
            break
        out += body[end + 2 : end + 2 + size]
        i = end + 2 + size + 2
    return bytes(out)


def _fetch_tls(url: str, headers: Mapping[str, str], timeout_s: float) -> tuple[int, dict[str, Any] | None]:
    import urllib.error
    import urllib.request

    req = urllib.request.Request(url, headers=dict(headers), method="GET")
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as resp:
            return int(resp.status), _json(resp.read(MAX_BODY + 1))
    except urllib.error.HTTPError as exc:
        return int(exc.code), None


def _json(body: bytes) -> dict[str, Any] | None:
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    return doc if isinstance(doc, dict) else None


def cancel_in(doc: Mapping[str, Any] | None) -> turns.Cancel | None:
    """The ``cancel`` of the control API's view of a task (None: none)."""
    c = doc.get("cancel") if doc is not None else None
    if not isinstance(c, dict):
        return None
    by, comment, at = c.get("by"), c.get("comment"), c.get("time_ns")
    run = doc.get("run_id") if doc is not None else None
    return turns.Cancel(
        by if isinstance(by, str) and by else "someone",
        comment if isinstance(comment, str) and comment else None,
        at if isinstance(at, int) else 0,
        run if isinstance(run, str) else None,
    )


def seen(task_id: str, status: int, doc: Mapping[str, Any] | None, env: Mapping[str, str]) -> turns.Cancel | None:
    """What a look's answer says of the task's cancel, remembered or
    forgotten for the session's later calls; a look that could not tell
    is the remembered cancel, if any."""
    try:
        if status == 200 and doc is not None and "cancel" in doc:
            found = cancel_in(doc)
            if found is None:
                turns.forget_cancel(task_id, env)
            elif turns.cancel_of(task_id, env) != found:
                turns.cancelled(task_id, found, env)
            return found
        return turns.cancel_of(task_id, env)
    except OSError:
        return None


class CancelLook:
    """One look at a task's cancel, in a thread of its own."""

    def __init__(self, task_id: str, url: str, token: str | None, env: Mapping[str, str], until: float) -> None:
        # No token: the local serve's, for a loopback URL only (and only to
        # this user's listener: fetch asks).
        token = token or servetoken.unvetted(url, env)
        self.task_id, self.url, self.token, self.env, self.until = task_id, url, token, env, until
        self._done = threading.Event()
        self._result: turns.Cancel | None = None
        self._thread = threading.Thread(target=self._run, name="spanvisor-hook-cancel", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            status, doc = fetch(self.url, self.token, self.task_id, max(0.001, self.until - time.monotonic()))
            self._result = seen(self.task_id, status, doc, self.env)
        except Exception:  # a look that fails sees no cancel, never an error
            self._result = None
        finally:
            self._done.set()

    @property
    def late(self) -> bool:
        """Whether the look had not finished when its call was answered."""
        return not self._done.is_set()

    def result(self) -> turns.Cancel | None:
        """The cancel, waiting for the look at most until its budget's end;
        a look still running then is the remembered cancel, if any."""
        if self._done.wait(max(0.0, self.until - time.monotonic())):
            return self._result
        try:
            return turns.cancel_of(self.task_id, self.env)
        except OSError:
            return None


def finish_late(looked: CancelLook) -> None:
    """A look still running once its call was answered, finished by a
    process of its own (its own session, none of the CLI's pipes, so the CLI
    goes on once the hook exits): what it finds is remembered for the
    session's next call. The control API's token goes in its environment,
    never its command line."""
    if not looked.late:
        return
    if servetoken.distrusts():
        # A process that never takes some sockets for serve (the system
        # gate, long-lived) looks on a thread of its own: a child would not
        # know whose sockets those are, and would send them its token.
        threading.Thread(target=_look_late, args=(looked,), name="spanvisor-late-cancel", daemon=True).start()
        return
    import subprocess
    import sys

    env = {**looked.env, ENV_LATE_TASK: looked.task_id, ENV_URL: looked.url}
    if looked.token:
        env[ENV_TOKEN] = looked.token
    # -I: neither the working directory nor PYTHONPATH (the agent's to set)
    # decides which spanvisor runs. Popen forks and execs in C: safe beside
    # the look's own thread.
    try:
        subprocess.Popen(
            [sys.executable, "-I", "-m", "spanvisor.gate.cancel"],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            close_fds=True,
        )
    except (OSError, ValueError):
        pass  # the look is lost as before: the next call looks again


def _look_late(looked: CancelLook) -> None:
    try:
        status, doc = fetch(looked.url, looked.token, looked.task_id, LATE_LOOK_S)
        seen(looked.task_id, status, doc, looked.env)
    except Exception:  # a look that fails is lost as before: the next call looks again
        pass


def _late(env: Mapping[str, str]) -> int:
    """The late look's process: look once more, with time to spare, and
    remember (or forget) what the control API says of the task's cancel."""
    task, url = env.get(ENV_LATE_TASK), env.get(ENV_URL)
    if task and url:
        status, doc = fetch(url, control_token(None, env) or servetoken.unvetted(url, env), task, LATE_LOOK_S)
        seen(task, status, doc, env)
    return 0


def control_url(explicit: str | None, endpoint: str, env: Mapping[str, str]) -> str:
    """Where the control API is: ``--url``, ``SPANVISOR_CONTROL_URL``, else
    the OTLP endpoint (``serve`` answers both on one port)."""
    return (explicit or env.get(ENV_URL) or endpoint).rstrip("/")


def control_token(explicit: str | None, env: Mapping[str, str]) -> str | None:
    return explicit or env.get(ENV_TOKEN) or env.get(ENV_OTLP_TOKEN) or None


def look(
    task_id: str, url: str, token: str | None, env: Mapping[str, str] | None = None, started: float | None = None
) -> CancelLook:
    """Start a look at ``task_id``'s cancel, answered within :data:`BUDGET_S`
    of ``started`` (when the deciding process got the call: never a start
    the caller claimed earlier, hook/command.py's ``received``)."""
    e = os.environ if env is None else env
    t0 = time.monotonic() if started is None else started
    return CancelLook(task_id, url, token, e, max(t0 + budget(e), time.monotonic() + MIN_LOOK_S))


def budget(env: Mapping[str, str]) -> float:
    """:data:`BUDGET_S`, or the setting's seconds (``250ms``, ``0.5s``,
    ``2``), within 0 to :data:`MAX_BUDGET_S`; what cannot be read is the
    default (``spanvisor check`` names it)."""
    raw = (env.get(ENV_BUDGET) or "").strip()
    got = seconds(raw) if raw else None
    return BUDGET_S if got is None else got


def seconds(raw: str) -> float | None:
    """A wait written ``250ms``, ``0.5s`` or ``2``, within 0 to
    :data:`MAX_BUDGET_S`; None when it cannot be read."""
    raw = raw.strip().lower()
    scale = 0.001 if raw.endswith("ms") else 1.0
    try:
        got = float(raw.removesuffix("ms").removesuffix("s")) * scale
    except ValueError:
        return None
    return None if math.isnan(got) else min(max(got, 0.0), MAX_BUDGET_S)


__all__ = [
    "BUDGET_S",
    "ENV_BUDGET",
    "ENV_LATE_TASK",
    "LATE_LOOK_S",
    "MAX_BUDGET_S",
    "MIN_LOOK_S",
    "CancelLook",
    "budget",
    "cancel_in",
    "control_token",
    "control_url",
    "fetch",
    "finish_late",
    "look",
    "seconds",
    "seen",
]


if __name__ == "__main__":
    raise SystemExit(_late(os.environ))
