"""``spanvisor run``'s answer to a CLI's ``http`` hook (Claude Code's
today: its adapter's :meth:`~spanvisor.clis.adapter.Adapter.with_http_hook`):
no process per tool call at all.

With ``SPANVISOR_LOCAL_GATE=http`` the launcher listens on loopback (a
random port, a random secret in the path: other local users may reach
the port, never guess the path) and the adapter gives the CLI it starts
one hook of type ``http`` pointing there, which blocks the call when the
listener is gone, slow past the hook's timeout or answering anything but
a decision. Each request is decided as the command hook through the
launcher is (:meth:`spanvisor.launcher.gate.LocalGate.decide`: the
session's variables, the launcher's directory, one deadline from the
request's arrival, the backstop), and answered HTTP 200 with the decision
in the CLI's own reply. A call is decided on its connection's worker, which
writes the answer the moment it is known; the audit note's delivery goes on
another worker, so a kept-alive connection's next call never waits for it.
A decision that hangs is blocked at the backstop and its connection ends
with that block (``Connection: close``): the CLI's next call comes on a new
connection. The hung one keeps its slot until it ends, so at most
:data:`MAX_CONNECTIONS` hang at once; past them a connection is closed at
once, which the CLI blocks.

A connection waits at most :data:`IDLE_S` for a request and :data:`READ_S`
for each part of it, and at most :data:`MAX_CONNECTIONS` are served at
once (more are closed at once): a local process that opens connections
and sends half a request holds neither a thread nor the port for long.
"""

from __future__ import annotations

import functools
import http.server
import json
import secrets
import socket
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from spanvisor.clis.adapter import Adapter
from spanvisor.gate import verdict
from spanvisor.launcher.gate_threads import BACKSTOPS, WORKERS


class Decide(Protocol):
    """What answers a call, as :meth:`spanvisor.launcher.gate.LocalGate.decide`:
    ``send`` gets (exit status, stdout, stderr)."""

    def __call__(
        self,
        send: Callable[[int, str, str], None],
        argv: list[str],
        raw: bytes,
        started: float,
        env: dict[str, str],
        cwd: str,
        entry_timeout_s: float | None = None,
    ) -> None: ...


ENV_MODE = "SPANVISOR_LOCAL_GATE"
# How long a kept-alive connection may wait for its next request, and a
# request for each read of its line, headers or body.
IDLE_S = 30.0
READ_S = 10.0
# Connections served at once (a CLI runs a few calls in parallel).
MAX_CONNECTIONS = 32


class HttpGate:
    """The loopback listener of one session's launcher."""

    def __init__(self, adapter: Adapter, decide: Decide, env: Mapping[str, str], cwd: str) -> None:
        self.adapter, self.decide, self.env, self.cwd = adapter, decide, dict(env), cwd
        # The hook entry's timeout: the CLI's default for a hook.
        self.timeout_s = adapter.hook_timeout_s
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
            _send(request, 200, self._blocked("spanvisor: the hook's request is not one the gate reads; denied"))
            return
        raw = request.rfile.read(size)
        mine = threading.current_thread()
        once = threading.Lock()

        def answer(body: bytes) -> None:
            # Once: the decision's, or the bound's below, whichever comes first.
            if not once.acquire(blocking=False):
                return
            if threading.current_thread() is mine:
                _send(request, 200, body)
                return
            # The bound's, while the decision still holds this connection's
            # worker: the connection ends with it, so that the CLI's next
            # call comes on a new one and never waits behind a hung decision.
            _send(request, 200, body, close=True)

        def send(code: int, out: str, _err: str) -> None:
            lines = [ln for ln in out.splitlines() if ln.startswith("{")]
            answer(lines[-1].encode() if lines else self._blocked(f"spanvisor: no answer (status {code}); denied"))

        argv = [self.adapter.name, "--cli-timeout", f"{self.timeout_s:g}"]
        # Decided on this connection's worker, which writes the answer the
        # moment it is known: no hand-over to another thread on a call's way
        # (the audit note's delivery, after the answer, goes to another
        # worker: Answer.later). Its deadline counts from this hook entry's
        # own timeout, which the launcher wrote (with "onFailure": "block":
        # past it the CLI blocks the call): no settings file is read for it,
        # the command hooks' entries there timing other calls. The call's
        # backstop answers before the hook's timeout; the bound here is the
        # last word, should the decision never answer.
        stand_down = BACKSTOPS.at(
            started + self.timeout_s,
            lambda: answer(self._blocked("spanvisor: no answer before the hook's timeout; denied")),
        )
        try:
            self.decide(send, argv, raw, started, self.env, self.cwd, self.timeout_s)
        finally:
            stand_down()
            answer(self._blocked("spanvisor: the gate gave no answer; denied"))  # nothing when it answered

    def settings(self, argv: list[str], folder: str) -> list[str] | None:
        """The CLI's arguments with this listener as its ``http`` hook, its
        settings written under ``folder`` (the launcher's, private); None
        when the settings they give cannot be read."""
        return self.adapter.with_http_hook(argv, self.url, self.timeout_s, folder)

    def _blocked(self, reason: str) -> bytes:
        return json.dumps(self.adapter.reply(self.adapter.default_event, "deny", reason)).encode()

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


def _send(request: http.server.BaseHTTPRequestHandler, status: int, body: bytes, close: bool = False) -> None:
    """The reply; with ``close``, the connection's last (no more requests
    are read from it: a client sends its next call on a new one)."""
    try:
        request.send_response(status)
        request.send_header("Content-Type", "application/json")
        request.send_header("Content-Length", str(len(body)))
        if close:
            request.send_header("Connection", "close")
        request.end_headers()
        request.wfile.write(body)
        if close:
            request.connection.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


__all__ = ["ENV_MODE", "HttpGate"]
