"""``spanvisor run``'s answer to Claude Code's ``http`` hook: no process per
tool call at all.

With ``SPANVISOR_LOCAL_GATE=http`` the launcher listens on loopback (a
random port, a random secret in the path: other local users may reach
the port, never guess the path) and gives the Claude Code it starts one
``PreToolUse`` hook of type ``http`` pointing there, merged into the
``--settings`` it was given (a file or JSON) or a ``--settings`` of its
own, with ``"onFailure": "block"``: a listener that is gone, slow past the
hook's timeout or answering anything but a decision blocks the call
(checked with the pinned Claude Code; without ``onFailure`` it would run
it). Each request is decided as the command hook through the launcher is
(:meth:`spanvisor.launcher.gate.LocalGate.decide`: the session's
variables, the launcher's directory, one deadline from the request's
arrival, the backstop), and answered HTTP 200 with the decision.

The settings with the listener's URL (its secret) go to Claude Code in a
file of the launcher's private folder (mode 0600), never on its command
line, which every local user can read (``/proc/<pid>/cmdline``). A
connection waits at most :data:`IDLE_S` for a request and :data:`READ_S`
for each part of it, and at most :data:`MAX_CONNECTIONS` are served at
once (more are closed at once): a local process that opens connections
and sends half a request holds neither a thread nor the port for long.
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from spanvisor.gate import verdict
from spanvisor.launcher.gate_threads import WORKERS

# What answers a call: (send, argv, stdin, started, env, cwd), as
# LocalGate.decide; send gets (exit status, stdout, stderr).
Decide = Callable[[Callable[[int, str, str], None], list[str], bytes, float, dict[str, str], str], None]

ENV_MODE = "SPANVISOR_LOCAL_GATE"
# The hook entry's timeout (Claude Code's default for a hook), in seconds.
TIMEOUT_S = 600
# How long a kept-alive connection may wait for its next request, and a
# request for each read of its line, headers or body.
IDLE_S = 30.0
READ_S = 10.0
# Connections served at once (Claude Code runs a few calls in parallel).
MAX_CONNECTIONS = 32
SETTINGS_FILE = "claude-http-gate.json"


class HttpGate:
    """The loopback listener of one session's launcher."""

    def __init__(self, decide: Decide, env: Mapping[str, str], cwd: str) -> None:
        self.decide, self.env, self.cwd = decide, dict(env), cwd
        self.secret = secrets.token_urlsafe(24)
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def handle_one_request(self) -> None:
                # Idle until a request's first byte, then each read bounded
                # (the base class closes a connection whose read times out).
                try:
                    self.connection.settimeout(IDLE_S)
                    if not self.rfile.peek(1):  # type: ignore[attr-defined]  # makefile("rb"): a BufferedReader
                        self.close_connection = True
                        return
                    self.connection.settimeout(READ_S)
                except OSError:
                    self.close_connection = True
                    return
                super().handle_one_request()

            def do_POST(self) -> None:
                owner.answer(self)

            def log_message(self, *args: object) -> None:
                pass

        self.server = _Bounded(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook/{self.secret}"
        self._thread = threading.Thread(target=self.server.serve_forever, name="spanvisor-run-gate-http", daemon=True)
        self._thread.start()

    def answer(self, request: http.server.BaseHTTPRequestHandler) -> None:
        started = time.monotonic()
        if request.path.split("?", 1)[0] != f"/hook/{self.secret}":
            _send(request, 404, b"{}")
            return
        try:
            size = int(request.headers.get("Content-Length") or 0)
        except ValueError:
            size = -1
        if not 0 <= size <= verdict.MAX_INPUT:
            _send(request, 200, _blocked("spanvisor: the hook's request is not one the gate reads; denied"))
            return
        raw = request.rfile.read(size)
        said = threading.Event()
        body: list[bytes] = []

        def send(code: int, out: str, _err: str) -> None:
            lines = [ln for ln in out.splitlines() if ln.startswith("{")]
            body.append(lines[-1].encode() if lines else _blocked(f"spanvisor: no answer (status {code}); denied"))
            said.set()

        argv = ["claude-code", "--cli-timeout", str(TIMEOUT_S)]
        # On another worker: this connection's answers as soon as the call's
        # is known, while the decision's audit note goes on there (a kept-alive
        # connection's next call does not wait for it).
        WORKERS.run(functools.partial(self.decide, send, argv, raw, started, self.env, self.cwd))
        # The call's backstop answers before the hook's timeout; this wait is only its bound.
        said.wait(TIMEOUT_S)
        _send(request, 200, body[0] if body else _blocked("spanvisor: no answer before the hook's timeout; denied"))

    def settings(self, argv: list[str], folder: str) -> list[str] | None:
        """Claude Code's arguments with this listener's hook merged into
        the ``--settings`` they give (or one of its own), written to a file
        in ``folder`` (the launcher's, private); None when the given
        settings cannot be read (they are left to Claude Code)."""
        entry = {"type": "http", "url": self.url, "timeout": TIMEOUT_S, "onFailure": "block"}
        group = {"matcher": "*", "hooks": [entry]}
        rest, given = _without_settings(argv[1:])
        doc: dict[str, Any] | None = {}
        if given is not None:
            doc = _load(given)
        if doc is None:
            return None
        hooks = doc.setdefault("hooks", {}) if isinstance(doc.get("hooks", {}), dict) else {}
        doc["hooks"] = hooks
        pre = hooks.get("PreToolUse")
        hooks["PreToolUse"] = [*(pre if isinstance(pre, list) else []), group]
        path = os.path.join(folder, SETTINGS_FILE)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(doc, f)
        return [argv[0], "--settings", path, *rest]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(5)


class _Bounded(http.server.ThreadingHTTPServer):
    """A connection per worker (gate_threads.py), at most
    :data:`MAX_CONNECTIONS` of them at once."""

    daemon_threads = True
    # The kernel's queue of connections not yet accepted (socketserver's 5
    # drops a burst's connections, which then retry a second or more later).
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], handler: type[http.server.BaseHTTPRequestHandler]) -> None:
        self.slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        super().__init__(address, handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self.slots.acquire(blocking=False):
            self.shutdown_request(request)  # over the bound: closed, no thread
            return
        try:
            WORKERS.run(functools.partial(self.process_request_thread, request, client_address))
        except BaseException:
            self.slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.slots.release()


def _without_settings(argv: list[str]) -> tuple[list[str], str | None]:
    """``argv`` without its ``--settings`` option, and that option's value."""
    out: list[str] = []
    given: str | None = None
    i = 0
    while i < len(argv):
        a = argv[i]
        if a == "--settings" and i + 1 < len(argv):
            given = argv[i + 1]
            i += 2
            continue
        if a.startswith("--settings="):
            given = a.split("=", 1)[1]
            i += 1
            continue
        out.append(a)
        i += 1
    return out, given


def _load(given: str) -> dict[str, Any] | None:
    """A ``--settings`` value (JSON, or a file of it); None when it cannot
    be read as a JSON object."""
    text = given
    if not given.lstrip().startswith("{"):
        try:
            with open(os.path.expanduser(given), encoding="utf-8") as f:
                text = f.read()
        except (OSError, UnicodeDecodeError):
            return None
    try:
        doc = json.loads(text)
    except ValueError:
        return None
    return doc if isinstance(doc, dict) else None


def _blocked(reason: str) -> bytes:
    inner = {"hookEventName": "PreToolUse", "permissionDecision": "deny", "permissionDecisionReason": reason}
    return json.dumps({"hookSpecificOutput": inner}).encode()


def _send(request: http.server.BaseHTTPRequestHandler, status: int, body: bytes) -> None:
    try:
        request.send_response(status)
        request.send_header("Content-Type", "application/json")
        request.send_header("Content-Length", str(len(body)))
        request.end_headers()
        request.wfile.write(body)
    except OSError:
        pass


__all__ = ["ENV_MODE", "HttpGate"]
