"""The local serve token (issue 63): ``<data dir>/serve-token``, mode 0600,
the token ``spanvisor serve`` keeps for itself, found by this machine's
clients for a loopback URL only; a remote URL never gets it.

``spanvisor serve`` with no token configured makes the file at its first
start and requires its token; ``SPANVISOR_OPEN`` is the way to run with none;
a file that cannot be trusted stops serve with the reason. Real processes:
serve, ``spanvisor approvals``/``cancel``, raw OTLP/HTTP posts.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import stat
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from argparse import Namespace
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.receiver.serve_proc import ServeProcess, console_env

from spanvisor.control.client import HttpSource
from spanvisor.gate import servetoken
from spanvisor.hook import config as hook_config

pytestmark = pytest.mark.slow


@pytest.fixture
def served(tmp_path: Path) -> Iterator[ServeProcess]:
    data = tmp_path / "serve"
    serve = ServeProcess(data, {**console_env(data, SPANVISOR_OPEN="0"), "SPANVISOR_SINKS": "console,stream"})
    try:
        yield serve
    finally:
        serve.stop()


def _post(port: int, token: str | None) -> int:
    """An empty OTLP/JSON trace export to serve; its HTTP status."""
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/v1/traces", data=b'{"resourceSpans": []}', headers=headers, method="POST"
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def test_serve_makes_its_token_at_first_start_requires_it_and_keeps_it(served: ServeProcess) -> None:
    path = served.data_dir / "serve-token"
    st = path.stat()
    assert stat.S_IMODE(st.st_mode) == 0o600 and st.st_uid == os.getuid()
    token = path.read_text().strip()
    assert len(token) >= 40
    said = served.log_text()
    assert f"made serve's token in {path}" in said and token not in said  # where, never what
    assert _post(served.http, None) == 401
    assert _post(served.http, "wrong") == 401
    assert _post(served.http, token) == 200
    # This user's commands on this machine find it: spanvisor token prints it
    # (for an agent's OTEL_EXPORTER_OTLP_HEADERS), spanvisor emit sends it.
    mine = _client_env(served.data_dir)
    printed = _spanvisor(mine, "token")
    assert printed.returncode == 0 and printed.stdout.strip() == token, printed
    emitted = _spanvisor(mine, "emit", "start", "--task", "t-1", "--endpoint", f"http://127.0.0.1:{served.http}")
    assert emitted.returncode == 0, emitted
    none = _spanvisor(_client_env(served.data_dir.parent / "elsewhere"), "token")
    assert none.returncode == 1 and "makes it at its first start" in none.stderr
    # A restart reads the same token back.
    assert served.terminate() == 0
    served.start()
    assert path.read_text().strip() == token and f"using serve's token in {path}" in served.log_text()
    assert _post(served.http, token) == 200


def test_open_or_a_configured_token_makes_no_file(tmp_path: Path) -> None:
    data = tmp_path / "open"
    serve = ServeProcess(data, console_env(data, SPANVISOR_OPEN="1"))
    try:
        assert _post(serve.http, None) == 200
        assert not (data / "serve-token").exists()
        assert "SPANVISOR_OPEN: serve runs with no token" in serve.log_text()
    finally:
        serve.stop()
    data = tmp_path / "configured"
    serve = ServeProcess(data, console_env(data, SPANVISOR_OPEN="0", SPANVISOR_OTLP_TOKEN="mine-configured"))
    try:
        assert _post(serve.http, None) == 401 and _post(serve.http, "mine-configured") == 200
        assert not (data / "serve-token").exists()
    finally:
        serve.stop()


@pytest.mark.parametrize("problem", ["others may read it", "a symlink"])
def test_a_token_file_that_cannot_be_trusted_stops_serve_with_the_reason(tmp_path: Path, problem: str) -> None:
    data = tmp_path / "serve"
    data.mkdir()
    path = data / "serve-token"
    if problem == "a symlink":
        (tmp_path / "elsewhere").write_text("planted-token\n")
        path.symlink_to(tmp_path / "elsewhere")
    else:
        path.write_text("planted-token\n")
        path.chmod(0o644)
    env = {**console_env(data, SPANVISOR_OPEN="0"), "SPANVISOR_DATA_DIR": str(data)}
    got = _spanvisor(env, "serve")
    assert got.returncode != 0
    said = got.stdout + got.stderr
    assert "token file" in said and "planted-token" not in said, said


def _spanvisor(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "spanvisor.cli", *args],
        check=False,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _client_env(data: Path | None, **extra: str) -> dict[str, str]:
    """A user's shell: no token set, the data dir serve uses (or another)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SPANVISOR_", "OTEL_"))}
    if data is not None:
        env["SPANVISOR_DATA_DIR"] = str(data)
    env.update(extra)
    return env


def test_the_local_cli_finds_the_token_through_the_data_dir(served: ServeProcess) -> None:
    url = f"http://127.0.0.1:{served.http}"
    token = (served.data_dir / "serve-token").read_text().strip()
    mine = _client_env(served.data_dir)

    listed = _spanvisor(mine, "approvals", "--url", url)
    assert listed.returncode == 0, listed
    # Past the token check: the control API knows no such task.
    cancelled = _spanvisor(mine, "cancel", "rivet-1", "--url", url)
    assert "unknown_task" in cancelled.stdout + cancelled.stderr, cancelled
    assert token not in cancelled.stdout + cancelled.stderr

    # Another data dir (another user's serve, or none): nothing to send.
    other = _client_env(served.data_dir.parent / "elsewhere")
    refused = _spanvisor(other, "cancel", "rivet-1", "--url", url)
    assert "unauthorized" in refused.stdout + refused.stderr, refused
    # localhost is loopback too.
    assert HttpSource(f"http://localhost:{served.http}", env=mine).token == token
    # serve listens on 127.0.0.1 only: ::1 is nobody's socket, and gets nothing.
    assert HttpSource(f"http://[::1]:{served.http}", env=mine).token is None


def test_spanvisor_follow_finds_the_token_through_the_data_dir(served: ServeProcess) -> None:
    """``spanvisor follow`` beside a local serve, given no token: it reads
    the file as the other commands do (it was refused with 401)."""
    url = f"http://127.0.0.1:{served.http}"
    mine = _client_env(served.data_dir)
    with subprocess.Popen(
        [sys.executable, "-m", "spanvisor.cli", "follow", "--url", url, "--events", "1", "--wait", "60"],
        env=mine,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as followed:
        try:
            deadline = time.monotonic() + 60
            n = 0
            # A task started anew until follow, still starting, sees one (it
            # reads the stream from when it connects).
            while followed.poll() is None and time.monotonic() < deadline:
                n += 1
                got = _spanvisor(mine, "emit", "start", "--task", f"t-followed-{n}", "--endpoint", url)
                assert got.returncode == 0, got
                time.sleep(0.5)
            out, err = followed.communicate(timeout=30)
        finally:
            followed.kill()
    assert followed.returncode == 0, (out, err)
    assert "task_started t-followed" in out, (out, err)


def test_the_hook_takes_the_token_for_a_loopback_endpoint_only(tmp_path: Path, listening: int) -> None:
    data = tmp_path / "data"
    token, made = servetoken.make_or_read(servetoken.token_path(data))
    assert made
    env = {"SPANVISOR_DATA_DIR": str(data)}
    here = f"http://127.0.0.1:{listening}"

    def settled(**opts: str | None) -> Namespace:
        args = Namespace(**{o: None for o, _ in hook_config.OPTIONS}, locked=False)
        for k, v in opts.items():
            setattr(args, k, v)
        return hook_config.settle(args, env).args

    assert settled(endpoint=here).otlp_token == token
    assert settled(endpoint="https://serve.example.com:4318").otlp_token is None
    # Records on loopback but the control API elsewhere: not sent either.
    assert settled(endpoint=here, url="https://serve.example.com").otlp_token is None
    # A token given wins, and is the one sent.
    assert settled(endpoint=here, otlp_token="given").otlp_token == "given"


def test_a_remote_url_never_gets_the_local_token(tmp_path: Path) -> None:
    """The real CLI through a recording HTTP proxy standing in for the
    network: a remote URL's request carries no local token."""
    data = tmp_path / "data"
    token, _ = servetoken.make_or_read(servetoken.token_path(data))
    env = {"SPANVISOR_DATA_DIR": str(data)}
    seen: list[dict[str, str]] = []

    class Proxy(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append({k.lower(): v for k, v in self.headers.items()})
            body = json.dumps({"approvals": []}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    proxy = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Proxy)
    thread = threading.Thread(target=proxy.serve_forever, daemon=True)
    thread.start()
    try:
        shell = _client_env(data, http_proxy=f"http://127.0.0.1:{proxy.server_port}", no_proxy="")
        got = _spanvisor(shell, "approvals", "--url", "http://serve.example.com:4318")
        assert got.returncode == 0, got
        assert seen and seen[0].get("authorization") is None, seen
        # Passed along explicitly (a variable set from the file), still not sent.
        got = _spanvisor(
            {**shell, "SPANVISOR_OTLP_TOKEN": token}, "approvals", "--url", "http://serve.example.com:4318"
        )
        assert got.returncode == 0, got
        assert len(seen) == 2 and seen[1].get("authorization") is None, seen
    finally:
        proxy.shutdown()
        proxy.server_close()
        thread.join(5)

    # The clients' one rule, for every sender (control client, gate notes, cancel look, launcher).
    for remote in ("http://serve.example.com:4318", "http://10.0.0.5:4318", "http://127.0.0.1.example.com/"):
        assert servetoken.bearer(remote, None, env).token is None
        assert servetoken.bearer(remote, token, env).token is None
        assert servetoken.bearer(remote, "a-remote-token", env).token == "a-remote-token"
        assert HttpSource(remote, env=env).token is None
    assert servetoken.bearer("http://127.0.0.1:4318", "given", env).token == "given"


@pytest.fixture
def listening() -> Iterator[int]:
    """A port this user listens on (as serve would), on 127.0.0.1."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield int(s.getsockname()[1])


def test_the_local_token_goes_only_to_this_users_listener(tmp_path: Path, listening: int) -> None:
    """Loopback port squatting: a port is anyone's to take. The file's
    token goes to a loopback port only when the socket listening there is
    this user's; nothing listening, or another user's socket, and it stays
    home. A token passed explicitly is sent as told."""
    import socket

    data = tmp_path / "data"
    token, _ = servetoken.make_or_read(servetoken.token_path(data))
    env = {"SPANVISOR_DATA_DIR": str(data)}
    # Every spelling of loopback a connection reads as one (and 0.0.0.0, which lands here).
    for host in ("127.0.0.1", "localhost", "127.1", "2130706433", "0.0.0.0", "[::ffff:127.0.0.1]"):
        url = f"http://{host}:{listening}"
        assert servetoken.listener_owners(url) == {os.getuid()}
        assert servetoken.bearer(url, None, env).token == token
        assert servetoken.for_url(url, env) == token
        assert HttpSource(url, env=env).token == token
    # Over IPv6 (and a socket on every address takes loopback connections too).
    with socket.socket(socket.AF_INET6) as six:
        six.bind(("::", 0))
        six.listen()
        port6 = int(six.getsockname()[1])
        assert servetoken.bearer(f"http://[::1]:{port6}", None, env).token == token
        assert servetoken.bearer(f"http://127.0.0.1:{port6}", None, env).token == token
    # Nothing listens (serve not started yet): not sent.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = int(s.getsockname()[1])
    assert servetoken.listener_owners(f"http://127.0.0.1:{closed}") == set()
    assert servetoken.bearer(f"http://127.0.0.1:{closed}", None, env).token is None
    # The file's token passed along in a variable is still the file's: the same rule.
    assert servetoken.bearer(f"http://127.0.0.1:{closed}", token, env).token is None
    assert servetoken.bearer(f"http://127.0.0.1:{closed}", "given", env).token == "given"
    # Where the file's token is in play, nothing listening is not this
    # user's serve: the request is refused, not sent without the token.
    for given in (None, token):
        sending = servetoken.bearer(f"http://127.0.0.1:{closed}", given, env)
        assert sending.refused is not None and "nothing listens" in sending.refused and token not in sending.refused
    assert servetoken.bearer(f"http://127.0.0.1:{closed}", "given", env).refused is None
    assert servetoken.bearer(f"http://127.0.0.1:{closed}", None, {"SPANVISOR_DATA_DIR": str(tmp_path / "no")}) == (
        servetoken.Bearer(None)
    )
    assert servetoken.bearer(f"http://127.0.0.1:{listening}", None, env) == servetoken.Bearer(token)


def test_an_ipv6_only_socket_on_every_address_is_not_where_ipv4_lands(tmp_path: Path, listening: int) -> None:
    """An IPv6-only socket on ``[::]`` takes no IPv4 connection: it is not
    counted among those listening where ``127.0.0.1`` lands (another
    user's there would have had every request refused)."""
    import socket

    with socket.socket(socket.AF_INET6) as six:
        six.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        six.bind(("::", 0))
        six.listen()
        port = int(six.getsockname()[1])
        assert servetoken.listener_owners(f"http://127.0.0.1:{port}") == set()
        assert servetoken.listener_owners(f"http://[::1]:{port}") == {os.getuid()}
    if os.getuid() != 0:
        return
    # This user's socket on 127.0.0.1, another user's IPv6-only one on [::], one port.
    code = (
        "import socket, sys, time\n"
        "s = socket.socket(socket.AF_INET6)\n"
        "s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)\n"
        f"s.bind(('::', {listening}))\n"
        "s.listen()\n"
        "print('up', flush=True)\n"
        "time.sleep(60)\n"
    )
    other = subprocess.Popen([sys.executable, "-c", code], user=65534, group=65534, stdout=subprocess.PIPE, text=True)
    try:
        assert other.stdout is not None and other.stdout.readline().strip() == "up"
        data = tmp_path / "data"
        token, _ = servetoken.make_or_read(servetoken.token_path(data))
        assert servetoken.listener_owners(f"http://127.0.0.1:{listening}") == {os.getuid()}
        assert servetoken.bearer(f"http://127.0.0.1:{listening}", None, {"SPANVISOR_DATA_DIR": str(data)}) == (
            servetoken.Bearer(token)
        )
    finally:
        other.kill()
        other.wait(10)


def test_the_hooks_token_is_read_before_its_answer_and_vetted_where_it_is_sent(tmp_path: Path, listening: int) -> None:
    """The hook reads the file's token on its way to the answer without
    asking who listens (the kernel's tables are asked where it is sent):
    every sender gives it only to this user's listener on loopback, even
    when it came from another data dir than the sender's own."""
    import socket

    data = tmp_path / "data"
    token, _ = servetoken.make_or_read(servetoken.token_path(data))
    env = {"SPANVISOR_DATA_DIR": str(data)}
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{int(s.getsockname()[1])}"
    here = f"http://127.0.0.1:{listening}"
    assert servetoken.unvetted("https://serve.example.com", env) is None
    assert servetoken.unvetted(closed, env) == token  # read, not yet given to anyone
    assert servetoken.bearer(here, token).token == token
    for nobody in (closed, "http://serve.example.com:4318", "http://10.0.0.5:4318"):
        assert servetoken.bearer(nobody, token).token is None
        assert servetoken.bearer(nobody, "given").token == "given"
    # A sender finding its own data dir elsewhere (the launcher's) still
    # knows the hook's token for what it is.
    elsewhere = {"SPANVISOR_DATA_DIR": str(tmp_path / "other")}
    assert servetoken.bearer(closed, token, elsewhere).token is None
    assert servetoken.bearer(here, token, elsewhere).token == token


# Another user's HTTP server: its port first, then each request's method,
# path and Authorization header, a line each.
SQUATTER = """
import http.server
class H(http.server.BaseHTTPRequestHandler):
    def _answer(self, body):
        print(self.command, self.path, repr(self.headers.get("Authorization")), flush=True)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def do_GET(self):
        self._answer(b'{"approvals": [], "task_id": "t", "decisions": []}')
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self._answer(b"{}")
    def log_message(self, *a):
        pass
s = http.server.HTTPServer(("127.0.0.1", 0), H)
print(s.server_port, flush=True)
s.serve_forever()
"""


class Squatter:
    """:data:`SQUATTER` run as uid 65534 on a loopback port (``url``)."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        self.proc, self.out = proc, proc.stdout
        self.url = f"http://127.0.0.1:{int(self.out.readline())}"

    def heard(self) -> list[str]:
        """Every request it was sent, a line each: it is stopped first."""
        self.proc.kill()
        self.proc.wait(10)
        return self.out.read().splitlines()


@contextlib.contextmanager
def _squatter() -> Iterator[Squatter]:
    proc = subprocess.Popen(
        [sys.executable, "-c", SQUATTER],
        user=65534,
        group=65534,
        stdout=subprocess.PIPE,
        text=True,
        env={"PATH": os.environ.get("PATH", "")},
        cwd="/",
    )
    try:
        squatter = Squatter(proc)
        assert servetoken.listener_owners(squatter.url) == {65534}
        yield squatter
    finally:
        proc.kill()
        proc.wait(10)


@pytest.mark.skipif(os.getuid() != 0, reason="starting another user's process needs root")
def test_another_users_squatter_on_the_port_is_asked_nothing(tmp_path: Path) -> None:
    """Another user of the machine listens on the port first (serve down,
    or restarting). This user's token file says this user's serve is the
    one meant: the real CLI (``spanvisor approvals``) sends the squatter
    nothing, says the control API cannot be reached and whose socket it
    found, never the token. A token passed explicitly is sent as told."""
    data = tmp_path / "data"
    token, _ = servetoken.make_or_read(servetoken.token_path(data))
    with _squatter() as squatter:
        port = squatter.url.rpartition(":")[2]
        for spelt in ("127.1", "2130706433", "0.0.0.0", "[::ffff:127.0.0.1]"):
            assert servetoken.bearer(f"http://{spelt}:{port}", None, {"SPANVISOR_DATA_DIR": str(data)}).refused
        got = _spanvisor(_client_env(data), "approvals", "--url", squatter.url)
        assert got.returncode == 2, got
        assert "uid 65534" in got.stderr and "not this user's spanvisor serve" in got.stderr, got.stderr
        assert token not in got.stdout + got.stderr
        assert squatter.heard() == []
    with _squatter() as squatter:
        got = _spanvisor(_client_env(data, SPANVISOR_OTLP_TOKEN="theirs"), "approvals", "--url", squatter.url)
        assert got.returncode == 0, got
        assert [ln.split(" ", 2)[::2] for ln in squatter.heard()] == [["GET", "'Bearer theirs'"]]
    # No token file: nothing says which serve is meant (one of another account, open): asked, without a token.
    with _squatter() as squatter:
        got = _spanvisor(_client_env(tmp_path / "none"), "approvals", "--url", squatter.url)
        assert got.returncode == 0, got
        assert [ln.split(" ", 2)[::2] for ln in squatter.heard()] == [["GET", "None"]]


# A squatter that answers as the control API would for the call to go
# through: the task open and not cancelled, a central policy allowing
# everything, any approval given, any permit good.
@pytest.mark.skipif(os.getuid() != 0, reason="starting another user's process needs root")
@pytest.mark.parametrize(
    ("policy", "command", "answer", "reason"),
    [
        # Decided by a local rule: the cancel look and the call's note never go there.
        ('default = "deny"\n[[rule]]\nname = "ls"\ncommand = "ls *"\ndecision = "allow"\n', "ls -la", "allow", ""),
        # Asked: no approval request goes there, and none comes back from it.
        ('default = "ask"\ntimeout = 2\n', "rm -rf build", "deny", "not this user's spanvisor serve"),
    ],
    ids=["decided", "asked"],
)
def test_another_users_squatter_has_no_say_in_the_launchers_gate(
    tmp_path: Path, policy: str, command: str, answer: str, reason: str
) -> None:
    """Another user listens on the receiver's port and answers as the
    control API would: the launcher's gate answers the call by its policy
    alone (a call it asks about is denied: ``on_unreachable``), and sends
    the squatter nothing: no token, no call's details, no question whose
    answer it could fake."""
    from spanvisor.launcher.gate import LocalGate

    data = tmp_path / "data"
    token, _ = servetoken.make_or_read(servetoken.token_path(data))
    (tmp_path / "policy.toml").write_text(policy)
    gate = LocalGate()
    try:
        with _squatter() as squatter:
            env = {
                "HOME": str(tmp_path),
                "SPANVISOR_DATA_DIR": str(data),
                "SPANVISOR_HOOK_POLICY": str(tmp_path / "policy.toml"),
                "SPANVISOR_OTLP_ENDPOINT": squatter.url,
            }
            call = {"session_id": "s-squat", "hook_event_name": "PreToolUse", "tool_name": "Bash"}
            call["tool_input"] = {"command": command}
            said: list[str] = []
            raw = json.dumps(call).encode()
            gate.decide(lambda _c, out, _e: said.append(out), ["claude-code"], raw, time.monotonic(), env, "/")
            assert f'"{answer}"' in said[0] and reason in said[0], said
            assert token not in said[0]
            time.sleep(0.5)  # the call's note, sent after the answer, would be on its way by now
            assert squatter.heard() == []
    finally:
        gate.close()


@pytest.mark.skipif(os.getuid() != 0, reason="starting another user's process needs root")
def test_the_launchers_relay_keeps_what_the_cli_exports_from_another_users_squatter(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The relay forwards the CLI's telemetry with the local serve's token
    (read when it forwards: serve may start after the launcher). Another
    user listening on the receiver's port gets neither the token nor the
    export: it is kept, as for a receiver that is down, until this user's
    serve is there."""
    from spanvisor.launcher.relay import Relay

    data = tmp_path / "data"
    token, _ = servetoken.make_or_read(servetoken.token_path(data))
    monkeypatch.setenv("SPANVISOR_DATA_DIR", str(data))
    with _squatter() as squatter:
        relay = Relay(squatter.url, None, tmp_path / "spool").start()
        try:
            headers = {"Authorization": f"Bearer {relay.secret}", "Content-Type": "application/json"}
            status, _ctype, _body = relay.take("/v1/logs", headers, b'{"resourceLogs": []}')
            assert status == 200 and relay.kept == 1 and relay.forwarded == 0
            assert not relay.send_once()
        finally:
            relay.close(0.5)
        assert squatter.heard() == []
    assert token not in "".join(p.read_text(errors="replace") for p in (tmp_path / "spool").rglob("*") if p.is_file())


def test_spanvisor_emit_approval_sends_the_local_token_where_it_sends_its_request(served: ServeProcess) -> None:
    """``spanvisor emit approval`` with no ``--endpoint``: the request goes
    where the SDK's variables say, with the local serve's token (it went
    without one, and serve refused it)."""
    env = _client_env(served.data_dir, OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{served.http}")
    got = _spanvisor(env, "emit", "approval", "--task", "t-asks", "--question", "deploy?", "--wait", "0.5")
    assert "asked: task=t-asks" in got.stdout, got


@pytest.mark.skipif(os.getuid() != 0, reason="starting another user's process needs root")
def test_spanvisor_emit_asks_about_the_endpoint_the_sdk_sends_to(tmp_path: Path, listening: int) -> None:
    """This user's listener at ``OTEL_EXPORTER_OTLP_ENDPOINT``, another
    user's at the signals' own endpoint variables, which the SDK prefers:
    ``spanvisor emit`` and ``emit approval`` ask about the one they send
    to, and send that squatter nothing, token or record."""
    data = tmp_path / "data"
    token, _ = servetoken.make_or_read(servetoken.token_path(data))
    with _squatter() as squatter:
        env = _client_env(
            data,
            OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{listening}",
            OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=f"{squatter.url}/v1/traces",
            OTEL_EXPORTER_OTLP_LOGS_ENDPOINT=f"{squatter.url}/v1/logs",
        )
        for argv in (("emit", "start", "--task", "t-squat"), ("emit", "approval", "--task", "t", "--question", "q")):
            got = _spanvisor(env, *argv)
            assert got.returncode != 0 and "not this user's spanvisor serve" in got.stderr, got
            assert token not in got.stdout + got.stderr
        assert squatter.heard() == []


@pytest.mark.skipif(os.getuid() != 0, reason="starting another user's process needs root")
def test_an_exporter_made_while_serve_listened_asks_again_before_it_sends(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The hook's and ``emit``'s OpenTelemetry exporter is made while this
    user's serve listens; serve goes away and another user takes its port
    before the export (the exporter retries for seconds): it asks again
    before each attempt, and sends the squatter nothing."""
    import socket

    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    from spanvisor.hook.live import otlp_exporter

    data = tmp_path / "data"
    servetoken.make_or_read(servetoken.token_path(data))
    monkeypatch.setenv("SPANVISOR_DATA_DIR", str(data))  # the exporter's look reads the process's data dir
    with socket.socket() as mine:
        mine.bind(("127.0.0.1", 0))
        mine.listen()
        port = int(mine.getsockname()[1])
        args = Namespace(endpoint=f"http://127.0.0.1:{port}", protocol="http/protobuf", token=None, timeout=2)
        exporter = otlp_exporter(args)
    code = SQUATTER.replace('("127.0.0.1", 0)', f'("127.0.0.1", {port})')
    proc = subprocess.Popen([sys.executable, "-c", code], user=65534, group=65534, stdout=subprocess.PIPE, text=True)
    try:
        squatter = Squatter(proc)
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        provider.get_tracer("t").start_span("one").end()
        provider.shutdown()
        assert squatter.heard() == []
    finally:
        proc.kill()
        proc.wait(10)


def test_two_first_starts_agree_on_one_token(tmp_path: Path) -> None:
    path = servetoken.token_path(tmp_path)
    first, made = servetoken.make_or_read(path)
    second, again = servetoken.make_or_read(path)
    assert made and not again and first == second
    assert [p.name for p in tmp_path.iterdir()] == ["serve-token"]  # no temporary file left


@pytest.mark.skipif(os.getuid() != 0, reason="starting another user's process needs root")
def test_a_process_that_distrusts_a_socket_finishes_a_late_cancel_look_itself() -> None:
    """The system gate names sockets it never takes for serve; a cancel look
    still running after its call's answer is finished on its own thread,
    not by a child process that would not know whose they are (and would
    send their owner the gate's token)."""
    from types import SimpleNamespace

    from spanvisor.gate import cancel

    with _squatter() as squatter:
        servetoken.distrust(lambda uid: uid == 65534)
        try:
            looked = SimpleNamespace(late=True, env={}, task_id="t-late", url=squatter.url, token="the-gates-token")
            cancel.finish_late(looked)  # type: ignore[arg-type]
            time.sleep(1.5)  # a child would have asked by now
        finally:
            servetoken.distrust(None)
        assert squatter.heard() == []
