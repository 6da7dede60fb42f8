"""The launcher's small client: ``spanvisor hook …`` in a session that
``spanvisor run`` started, with nothing but what asking the launcher needs.

The launcher writes this file, with ``REAL`` (the full ``spanvisor``
command), ``LIMIT`` (the shortest hook timeout the CLI's settings give
the gate), ``DEFAULTS`` (each CLI's default hook timeout) and ``BLOCKS``
(each CLI's block, its answer with ``@REASON@`` for the reason and its
exit status), all from the CLIs' adapters, set at its top, as ``spanvisor`` in a private directory it puts
first on the CLI's ``PATH``, run by its own Python with ``-I -S`` (no
site-packages, no user environment for Python itself): a Python start
without the import machinery of an installed package, and only ``_socket``
and ``time`` imported. It sends the call to the launcher's socket and
writes the launcher's answer. Anything else (another command, no
launcher, a launcher that refuses, closes or says nothing until just past
the deadline, a signal) goes to the full ``spanvisor``, which it becomes
(exec) with the call's bytes as its stdin and its start handed on
(``SPANVISOR_HOOK_STARTED``), so the deadline still counts from the CLI's
spawn of this process. The full hook answers every failure with the CLI's
block, as without a launcher.

Frames as :mod:`spanvisor.gate.local` reads them (:data:`local.SMALL`).
"""

import _socket
import os
import sys
import time

STARTED = time.monotonic()
REAL: str = globals().get("REAL", "spanvisor")
LIMIT: float = globals().get("LIMIT", 0.0)
DEFAULTS: dict[str, float] = globals().get("DEFAULTS", {})
BLOCKS: dict[str, tuple[str, int]] = globals().get("BLOCKS", {})
# Claude Code's block: what a CLI the launcher did not name is answered.
BLOCK = (
    '{"hookSpecificOutput": {"hookEventName": "PreToolUse", "permissionDecision": "deny", '
    '"permissionDecisionReason": "@REASON@"}}',
    2,
)
CONTEXT = ("SPANVISOR_", "OTEL_RESOURCE_ATTRIBUTES", "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_PROTOCOL")
ALSO = ("HOME", "XDG_STATE_HOME")
MAX = 16 * 1024 * 1024


def become_real(args: list[str], stdin: bytes | None = None) -> None:
    """Exec the full spanvisor: the same arguments, the call as its stdin."""
    env = {k: v for k, v in os.environ.items() if k != "SPANVISOR_GATE_SOCKET"}
    env["SPANVISOR_HOOK_STARTED"] = repr(STARTED)
    if stdin is not None:
        try:
            fd = os.memfd_create("spanvisor-hook-stdin")
        except (AttributeError, OSError):
            import tempfile

            with tempfile.TemporaryFile() as f:
                fd = os.dup(f.fileno())
        os.write(fd, stdin)
        os.lseek(fd, 0, 0)
        os.dup2(fd, 0)
        os.close(fd)
    try:
        os.execve(REAL, [REAL, *args], env)
    except OSError:
        block(args, "spanvisor: the full spanvisor could not be started; denied")


def given_up(argv: list[str]) -> float:
    """When to stop waiting for a silent launcher: as gate.deadline says."""
    limit = DEFAULTS.get(argv[0] if argv else "", 600.0)
    for i, a in enumerate(argv):
        value = a[len("--cli-timeout=") :] if a.startswith("--cli-timeout=") else None
        if a == "--cli-timeout" and i + 1 < len(argv):
            value = argv[i + 1]
        if value is not None:
            try:
                limit = min(limit, float(value)) if float(value) > 0 else limit
            except ValueError:
                pass
    if LIMIT and LIMIT > 0:
        limit = min(limit, LIMIT)
    margin = min(10.0, max(2.0, 0.15 * limit))
    return STARTED + limit - margin + 3 * margin / 8


def field(data: bytes) -> bytes:
    return len(data).to_bytes(4, "big") + data


def read(sock: _socket.socket, n: int, until: float) -> bytes | None:
    got = b""
    while len(got) < n:
        left = until - time.monotonic()
        if left <= 0:
            return None
        sock.settimeout(left)
        chunk = sock.recv(min(n - len(got), 1 << 20))
        if not chunk:
            return None
        got += chunk
    return got


def ask(path: str, argv: list[str], stdin: bytes) -> tuple[int, bytes, bytes] | None:
    """The launcher's answer: (status, stdout, stderr), or None."""
    until = given_up(argv)
    enc = os.fsencode
    env = b"\0".join(enc(k) + b"=" + enc(v) for k, v in os.environ.items() if k.startswith(CONTEXT) or k in ALSO)
    body = b"\0SPV" + field(b"\0".join(enc(a) for a in argv)) + field(stdin) + field(repr(STARTED).encode())
    body += field(enc(os.getcwd())) + field(env)
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        sock.settimeout(max(0.001, until - time.monotonic()))
        sock.connect(path)
        sock.sendall(len(body).to_bytes(4, "big") + body)
        head = read(sock, 4, until)
        if head is None:
            return None
        reply = read(sock, int.from_bytes(head, "big"), until)
    except OSError:
        return None
    finally:
        sock.close()
    if reply is None or not reply.startswith(b"\0SPV") or len(reply) < 13:
        return None
    code = reply[4]
    n = int.from_bytes(reply[5:9], "big")
    out = reply[9 : 9 + n]
    m = int.from_bytes(reply[9 + n : 13 + n], "big")
    err = reply[13 + n : 13 + n + m]
    return code, out, err


def block(args: list[str], reason: str) -> None:
    """The CLI's block: its deny answer and its block status (for a CLI
    that runs a call on any non-zero status, an answer that stops it and
    0). ``reason`` is this module's own text: no quote or backslash."""
    doc, status = BLOCKS.get(args[1] if len(args) > 1 else "", BLOCK)
    doc = doc.replace("@REASON@", reason)
    for fd, text in ((1, doc), (2, reason)):
        try:
            os.write(fd, text.encode() + b"\n")
        except OSError:
            if fd == 1:
                status = 2  # no answer written: a hook wrapper that runs calls on any other status blocks on 2
    os._exit(status)


def stopped(args: list[str]) -> None:
    """A signal while asking is a block, as for the full hook (a process
    killed by one would let Claude Code and Gemini CLI run the call)."""
    import _signal  # type: ignore[import-not-found]  # signal's own module: no enum to import

    def stop(signum: int, _frame: object) -> None:
        block(args, f"spanvisor hook was stopped (signal {signum}); denied")

    for sig in (_signal.SIGTERM, _signal.SIGHUP, _signal.SIGINT, _signal.SIGQUIT):
        _signal.signal(sig, stop)


def main() -> None:
    args = sys.argv[1:]
    path = os.environ.get("SPANVISOR_GATE_SOCKET")
    if args[:1] != ["hook"] or not path or "-h" in args or "--help" in args:
        become_real(args)
        return
    stopped(args)
    stdin = None
    try:
        stdin = sys.stdin.buffer.read(MAX)
        got = ask(path, args[1:], stdin)
    except Exception:  # the full hook answers it
        got = None
    if got is None or got[0] not in (0, 2):
        become_real(args, stdin)
        return
    code, out, err = got
    try:
        os.write(1, out)
        if err:
            os.write(2, err)
    except OSError:
        block(args, "spanvisor: the answer could not be written; denied")
    os._exit(code)


if __name__ == "__main__":
    try:
        main()
    except SystemExit:
        raise
    except BaseException:  # never a traceback's exit 1, which the CLIs read as "run it"
        block(sys.argv[1:], "spanvisor: the gate's client failed; denied")
