"""The central policy's cache is not the agent's to write.

The hook keeps its copy of serve's central policy in a file under the
user's state directory, which the agent (the same user) can edit. An
edited copy (the rules changed, the server's real ETag kept, a
``fetched`` time in the future so it would stay fresh forever) is fetched
again, and the central deny holds; a copy rewritten whole with a policy
of the agent's that hashes to its own ETag is not used by a locked hook
without asking; a file that is not a copy counts as a server known to
publish a policy (its fail-closed rules answer when it is away). The real
``spanvisor hook claude-code`` process.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from spanvisor.gate.central import document, from_files
from tests.gate.test_trust_config import FakeServe, home_env, run_hook

LOCAL = """default = "allow"
"""
FORCE = "git push --force origin main"


@pytest.fixture
def serve() -> Iterator[FakeServe]:
    s = FakeServe()
    yield s
    s.close()


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "local.toml").write_text(LOCAL)
    return home_env(tmp_path)


def the_cache(tmp: Path) -> Path:
    (got,) = (tmp / "state" / "spanvisor" / "policy-cache").glob("*.json")
    return got


def edit(path: Path, **changes: Any) -> None:
    doc = json.loads(path.read_text())
    doc.update(changes)
    path.write_text(json.dumps(doc))


def agents_copy(text: str) -> dict[str, Any]:
    return document(from_files((("acme.toml", text),), "acme"))


def hook_args(tmp: Path, serve: FakeServe, *more: str) -> tuple[str, ...]:
    return ("--policy", str(tmp / "local.toml"), "--url", serve.url, *more)


def test_an_edited_copy_with_the_real_etag_and_a_future_time_is_fetched_again(
    tmp_path: Path, env: dict[str, str], serve: FakeServe
) -> None:
    args = hook_args(tmp_path, serve)
    assert run_hook(env, FORCE, *args)[0] == "deny"
    cache = the_cache(tmp_path)
    kept = json.loads(cache.read_text())
    assert kept["etag"] == f'"{serve.doc["sha256"]}"'
    # The agent's rules in the copy (its files and its sha256 made to agree,
    # as from_document checks), the server's ETag kept, fresh for ever.
    forged = {**agents_copy('name = "acme"\n'), "sha256": kept["doc"]["sha256"]}
    forged_consistent = agents_copy('name = "acme"\n')
    for doc in (forged, forged_consistent):
        edit(cache, doc=doc, fetched=time.time() + 10**6, failed=0)
        asked = len(serve.asked)
        got, err = run_hook(env, FORCE, *args)
        assert got == "deny", err
        assert serve.asked[asked:] == [None], "asked again for the whole policy, never 'unchanged'"


def test_a_failed_time_in_the_future_does_not_hold_back_the_next_request(
    tmp_path: Path, env: dict[str, str], serve: FakeServe
) -> None:
    args = hook_args(tmp_path, serve)
    assert run_hook(env, FORCE, *args)[0] == "deny"
    cache = the_cache(tmp_path)
    # "The server never had a policy, and failed just now (in a year's time)."
    cache.write_text(json.dumps({"url": serve.url, "etag": None, "doc": None, "known": False, "failed": 2e9 * 2}))
    assert run_hook(env, FORCE, *args)[0] == "deny"


def test_a_locked_hook_asks_before_using_a_self_consistent_copy_of_the_agents(
    tmp_path: Path, env: dict[str, str], serve: FakeServe
) -> None:
    args = hook_args(tmp_path, serve, "--locked")
    assert run_hook(env, FORCE, *args)[0] == "deny"
    cache = the_cache(tmp_path)
    mine = agents_copy('name = "acme"\n')
    edit(cache, doc=mine, etag=f'"{mine["sha256"]}"', fetched=time.time(), failed=0)
    asked = len(serve.asked)
    assert run_hook(env, FORCE, *args)[0] == "deny"
    assert serve.asked[asked:] == [f'"{mine["sha256"]}"'], "asked, with the copy's own version"
    # And the real copy, once fetched, is revalidated (a 304) and holds.
    asked = len(serve.asked)
    assert run_hook(env, FORCE, *args)[0] == "deny"
    assert serve.asked[asked:] == [f'"{serve.doc["sha256"]}"']


def test_a_file_that_is_not_a_copy_counts_as_a_server_that_publishes_one(
    tmp_path: Path, env: dict[str, str], serve: FakeServe
) -> None:
    args = hook_args(tmp_path, serve)
    assert run_hook(env, FORCE, *args)[0] == "deny"
    cache = the_cache(tmp_path)
    serve.close()  # the server away: only what the file says is left
    for text in (
        "{not json",
        json.dumps({"url": serve.url, "doc": None, "etag": None, "known": False, "fetched": "x"}),
    ):
        cache.write_text(text)
        got, err = run_hook(env, "ls", *args)
        assert got == "deny", err  # on_unreachable, not the local allow alone


def test_a_recent_failure_in_the_file_does_not_keep_a_locked_hook_from_asking(
    tmp_path: Path, env: dict[str, str], serve: FakeServe
) -> None:
    """ "The server failed a second ago and never had a policy": the agent's
    word, in a file it can write. A locked hook asks all the same, and the
    central deny holds."""
    args = hook_args(tmp_path, serve, "--locked")
    assert run_hook(env, FORCE, *args)[0] == "deny"
    cache = the_cache(tmp_path)
    cache.write_text(
        json.dumps({"url": serve.url, "etag": None, "doc": None, "known": False, "fetched": 0, "failed": time.time()})
    )
    asked = len(serve.asked)
    got, err = run_hook(env, FORCE, *args)
    assert got == "deny", err
    assert len(serve.asked) == asked + 1


@contextlib.contextmanager
def answering(status: int, body: bytes) -> Iterator[str]:
    """A serve that answers ``status`` with ``body`` on every route: its URL."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def refusing() -> Iterator[str]:
    """A serve that refuses the hook's token (401) on every route: as when
    the agent, the same user, rewrote the token file the hook reads."""
    with answering(401, b'{"error": "missing or wrong bearer token"}') as url:
        yield url


def test_a_refused_token_leaves_a_locked_hook_the_central_policy_unknown(
    tmp_path: Path, env: dict[str, str], refusing: str
) -> None:
    """A serve that refuses the token may well publish a central policy
    the hook cannot read: a locked hook takes its fail-closed rules
    (``on_unreachable``), not the local policy alone, so breaking the
    token does not lift the central floor. An unlocked hook, whose
    environment decides anyway, keeps the local policy."""
    locked = ("--policy", str(tmp_path / "local.toml"), "--url", refusing, "--locked")
    for command in (FORCE, "ls"):
        got, err = run_hook(env, command, *locked)
        assert got == "deny", err
    assert run_hook(env, "ls", *locked[:-1])[0] == "allow"


# What the agent, the same user as a locked hook, can still write or
# arrange while serve is up and its central policy denies the call. Each
# of these once left the local policy deciding alone (allow).
ALLOW_ALL_AWAY = 'default = "allow"\non_unreachable = "allow"\n'


def test_a_deadline_the_agents_settings_shorten_leaves_the_central_policy_unknown(
    tmp_path: Path, env: dict[str, str], serve: FakeServe
) -> None:
    """A hook entry of the agent's with a 1 s timeout in the CLI's user
    settings: no time is left to ask serve, which is not "no central
    policy"."""
    claude = tmp_path / "home" / ".claude"
    claude.mkdir(parents=True)
    entry = {"type": "command", "command": "true spanvisor hook", "timeout": 1}
    (claude / "settings.json").write_text(json.dumps({"hooks": {"PreToolUse": [{"matcher": "*", "hooks": [entry]}]}}))
    got, err = run_hook(env, FORCE, *hook_args(tmp_path, serve, "--locked"))
    assert got == "deny", err


@pytest.mark.parametrize("etag", ['"{sha}"', 'W/\u2028"{sha}"'], ids=["failed-now", "unsendable-etag"])
def test_a_copy_of_the_agents_is_never_the_last_word_of_a_locked_hook(
    tmp_path: Path, env: dict[str, str], serve: FakeServe, etag: str
) -> None:
    """A self-consistent copy of the agent's policy, with "failed a moment
    ago" or an ETag no request can carry (so the request fails here): a
    locked hook asks, or takes no copy but one it fetched itself; the
    local policy's ``on_unreachable = allow`` does not make the agent's
    copy the central word."""
    (tmp_path / "local.toml").write_text(ALLOW_ALL_AWAY)
    args = hook_args(tmp_path, serve, "--locked")
    assert run_hook(env, FORCE, *args)[0] == "deny"
    mine = agents_copy('name = "acme"\non_unreachable = "allow"\n')
    failed = time.time() if etag == '"{sha}"' else 0
    the_cache(tmp_path).write_text(
        json.dumps(
            {
                "url": serve.url,
                "doc": mine,
                "etag": etag.format(sha=mine["sha256"]),
                "known": True,
                "fetched": 0,
                "failed": failed,
            }
        )
    )
    got, err = run_hook(env, FORCE, *args)
    assert got == "deny", err


@pytest.fixture
def unavailable() -> Iterator[str]:
    """A serve that answers 503 on every route: its central policy cannot
    be read (serve itself then denies every request)."""
    with answering(503, b'{"error": "the central policy cannot be read"}') as url:
        yield url


def test_a_server_that_answers_without_a_policy_is_unknown_to_a_locked_hook(
    tmp_path: Path, env: dict[str, str], unavailable: str
) -> None:
    got, err = run_hook(env, FORCE, "--policy", str(tmp_path / "local.toml"), "--url", unavailable, "--locked")
    assert got == "deny", err


@pytest.mark.skipif(os.getuid() != 0, reason="starting another user's process needs root")
@pytest.mark.parametrize("explicit", [None, "the-operators-token"])
def test_a_token_file_of_the_agents_does_not_make_serve_of_another_account_absent(
    tmp_path: Path, env: dict[str, str], explicit: str | None
) -> None:
    """serve runs under another account (here uid 65534). The agent writes
    a token file where the hook reads one (holding the operator's token,
    seen in the hook's settings, or anything): the hook then sends that
    account's listener nothing (its token is "in play"), which a locked
    hook takes as a central policy it cannot read, not as none."""
    import subprocess
    import sys

    from tests.receiver.test_first_start_token import SQUATTER, Squatter

    proc = subprocess.Popen(
        [sys.executable, "-c", SQUATTER], user=65534, group=65534, stdout=subprocess.PIPE, text=True
    )
    try:
        other = Squatter(proc)
        args = ["--policy", str(tmp_path / "local.toml"), "--url", other.url, "--locked"]
        args += ["--token", explicit] if explicit else []
        data = tmp_path / "home" / ".local" / "share" / "spanvisor"
        data.mkdir(parents=True)
        fd = os.open(data / "serve-token", os.O_WRONLY | os.O_CREAT, 0o600)
        os.write(fd, f"{explicit or 'anything'}\n".encode())
        os.close(fd)
        got, err = run_hook({k: v for k, v in env.items() if k != "XDG_DATA_HOME"}, FORCE, *args)
        assert got == "deny", err
    finally:
        proc.kill()
        proc.wait(10)


@pytest.mark.parametrize("answer", [None, b"garbage\r\n\r\n"], ids=["silent", "not-http"])
def test_a_server_reached_that_gives_no_answer_is_unknown_to_a_locked_hook(
    tmp_path: Path, env: dict[str, str], answer: bytes | None
) -> None:
    """Something listens on serve's port and answers nothing, or nothing
    HTTP (serve flooded, say, by the agent that holds the OTLP token): that
    is not "nothing there", which alone lets the local policy decide."""
    import socket

    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen(8)
        url = f"http://127.0.0.1:{listening.getsockname()[1]}"
        if answer is not None:

            def reply() -> None:
                conn, _ = listening.accept()
                with conn:
                    conn.recv(65536)
                    conn.sendall(answer)

            threading.Thread(target=reply, daemon=True).start()
        got, err = run_hook(env, FORCE, "--policy", str(tmp_path / "local.toml"), "--url", url, "--locked")
        assert got == "deny", err
