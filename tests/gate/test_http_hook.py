"""Claude Code's ``http`` hook answered by the gate, in ``serve``
(``POST /v1/hooks/claude-code``) and in the launcher's loopback listener:
the same policy answers as the command hook, and every answer is HTTP 200
with a decision (Claude Code would run the call on any other status), a
wrong token, an unreadable body and a failure included."""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from spanvisor.clis import registry
from spanvisor.launcher.gate import LocalGate
from spanvisor.launcher.gate_http import HttpGate
from spanvisor.receiver.hook_http import PREFIX
from tests.cli.coding_harness import TOKEN, Serve, clean_env

pytestmark = [pytest.mark.slow, pytest.mark.timeout_s(600)]
POLICY = 'default = "deny"\n[[rule]]\nname = "ls"\ncommand = ["ls", "ls *"]\ndecision = "allow"\n'


def post(url: str, body: bytes, token: str | None = TOKEN) -> tuple[int, dict[str, Any]]:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(url, data=body, headers=headers, method="POST")
    with urllib.request.urlopen(req, timeout=60) as resp:
        return resp.status, json.loads(resp.read())


def call(command: str) -> bytes:
    doc = {
        "session_id": "s-http",
        "hook_event_name": "PreToolUse",
        "tool_name": "Bash",
        "tool_input": {"command": command},
    }
    return json.dumps(doc).encode()


def said(doc: dict[str, Any]) -> str:
    return str(doc["hookSpecificOutput"]["permissionDecision"])


@pytest.fixture
def serve(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Serve]:
    clean_env(monkeypatch, tmp_path)
    (tmp_path / "policy.toml").write_text(POLICY)
    monkeypatch.setenv("SPANVISOR_HOOK_POLICY", str(tmp_path / "policy.toml"))
    monkeypatch.setenv("SPANVISOR_HOOK_DELIVERY", "off")
    s = Serve(tmp_path / "serve")
    yield s
    s.close()


def test_serve_answers_the_http_hook_with_the_policy(serve: Serve) -> None:
    url = serve.base + PREFIX + "claude-code"
    assert [said(post(url, call(c))[1]) for c in ("ls -la", "ls && rm -rf x", "make")] == ["allow", "deny", "deny"]


@pytest.mark.parametrize(
    ("body", "token"),
    [(call("ls"), "wrong"), (call("ls"), None), (b"not json", TOKEN), (b"[" * 5000, TOKEN), (b"", TOKEN)],
)
def test_every_failure_is_a_200_deny_never_an_error_status(serve: Serve, body: bytes, token: str | None) -> None:
    status, doc = post(serve.base + PREFIX + "claude-code", body, token)
    assert (status, said(doc)) == (200, "deny"), doc


def test_an_unreadable_policy_is_a_200_deny(serve: Serve, tmp_path: Path) -> None:
    (tmp_path / "policy.toml").write_bytes(b'default = "allow"\n\xe9')
    status, doc = post(serve.base + PREFIX + "claude-code", call("ls"))
    assert (status, said(doc)) == (200, "deny") and "not UTF-8" in json.dumps(doc)


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[HttpGate]:
    (tmp_path / "policy.toml").write_text(POLICY)
    gate = LocalGate()
    env = {"SPANVISOR_HOOK_POLICY": str(tmp_path / "policy.toml"), "SPANVISOR_DATA_DIR": str(tmp_path / "data")}
    env["SPANVISOR_HOOK_DELIVERY"] = "off"
    http = HttpGate(registry.need("claude-code"), gate.decide, env, str(tmp_path))
    yield http
    http.close()
    gate.close()


def test_the_launchers_listener_answers_with_the_policy_and_only_on_its_secret_path(listener: HttpGate) -> None:
    assert [said(post(listener.url, call(c), None)[1]) for c in ("ls -la", "ls; rm x")] == ["allow", "deny"]
    wrong = listener.url.rsplit("/", 1)[0] + "/guessed"
    with pytest.raises(urllib.error.HTTPError) as err:
        post(wrong, call("ls"), None)
    assert err.value.code == 404
    status, doc = post(listener.url, b"{broken", None)
    assert (status, said(doc)) == (200, "deny")


def test_the_launcher_merges_its_hook_into_the_settings_given(listener: HttpGate, tmp_path: Path) -> None:
    own = {"permissions": {"allow": ["Read"]}, "hooks": {"PreToolUse": [{"matcher": "Edit", "hooks": []}]}}
    (tmp_path / "s.json").write_text(json.dumps(own))
    (tmp_path / "private").mkdir()
    argv = listener.settings(["claude", "-p", "hi", "--settings", str(tmp_path / "s.json")], str(tmp_path / "private"))
    assert argv is not None and argv[:2] == ["claude", "--settings"] and argv[3:] == ["-p", "hi"]
    doc = json.loads(Path(argv[2]).read_text())  # a file: its URL's secret never on the command line
    assert doc["permissions"] == own["permissions"]
    [mine] = [g for g in doc["hooks"]["PreToolUse"] if g["matcher"] == "*"]
    assert mine["hooks"] == [{"type": "http", "url": listener.url, "timeout": 600, "onFailure": "block"}]
    assert listener.settings(["claude", "--settings", "{not json"], str(tmp_path / "private")) is None


ASK_DEPLOY = POLICY + '[[rule]]\nname = "deploy"\ncommand = ["deploy *"]\ndecision = "ask"\n'


@pytest.fixture
def small_serve(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Serve]:
    """serve with 2 policy workers and room for 4 calls waiting for a person
    (the module's bounds, made small so a test reaches them)."""
    from spanvisor.receiver import hook_http

    clean_env(monkeypatch, tmp_path)
    (tmp_path / "policy.toml").write_text(ASK_DEPLOY)
    monkeypatch.setenv("SPANVISOR_HOOK_POLICY", str(tmp_path / "policy.toml"))
    monkeypatch.setenv("SPANVISOR_HOOK_DELIVERY", "off")
    monkeypatch.setattr(hook_http, "WORKERS", 2)
    monkeypatch.setattr(hook_http, "MAX_PARKED", 4)
    s = Serve(tmp_path / "serve")
    yield s
    s.close()


def test_calls_waiting_for_a_person_never_starve_the_ones_the_policy_decides(small_serve: Serve) -> None:
    """More calls wait for a person than there are workers: an allowed call
    is still answered at once (before any waiting one ends), and one more
    waiting call past the bound is denied at once, saying why."""
    import threading

    url = f"{small_serve.base}{PREFIX}claude-code?timeout=40"
    waiting: list[tuple[int, dict[str, Any]]] = []
    threads = [
        threading.Thread(target=lambda n=n: waiting.append(post(url, call(f"deploy api-{n}"))), daemon=True)
        for n in range(4)
    ]
    for t in threads:
        t.start()

    def approvals() -> list[dict[str, Any]]:
        doc = urllib.request.urlopen(
            urllib.request.Request(
                f"{small_serve.base}/v1/control/approvals", headers={"Authorization": f"Bearer {TOKEN}"}
            ),
            timeout=20,
        )
        return list(json.loads(doc.read()).get("approvals", []))

    def parked() -> bool:
        return len(approvals()) >= 4

    from tests.waiting import wait_until

    wait_until(parked, 120, "four calls waiting for a person")
    status, doc = post(url, call("ls -la"))
    assert (status, said(doc)) == (200, "allow") and not waiting, waiting  # answered while all four wait
    status, doc = post(url, call("deploy one-too-many"))
    assert (status, said(doc)) == (200, "deny")
    assert "4 calls already wait for a person" in doc["hookSpecificOutput"]["permissionDecisionReason"]
    assert not waiting
    # A person rejects the four (not their 40 s deadline: the test's time).
    for a in approvals():
        body = {"action": "reject", "approval_id": a["approval_id"], "actor": "alice"}
        req = urllib.request.Request(
            f"{small_serve.base}/v1/control/tasks/{a['task_id']}/decisions",
            data=json.dumps(body).encode(),
            headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
            method="POST",
        )
        urllib.request.urlopen(req, timeout=30).close()
    for t in threads:
        t.join(120)
    assert [said(d) for _, d in waiting] == ["deny"] * 4


def test_the_listener_answers_once_and_a_decision_that_hangs_ends_its_connection_not_the_next_call(
    tmp_path: Path,
) -> None:
    """The answer goes out the moment the decision sends it, written by the
    connection's own worker while the decision goes on; a decision that
    never comes is blocked at the hook's timeout, and that block ends its
    connection: the CLI's next call comes on a new one and is answered while
    the hung decision still holds its worker (its late answer is written
    nowhere)."""
    import http.client
    import threading

    go_on, late = threading.Event(), threading.Event()
    allow = '{"hookSpecificOutput": {"permissionDecision": "allow"}}'
    calls: list[str] = []

    def decide(send: Any, _argv: list[str], raw: bytes, *_: object) -> None:
        command = json.loads(raw)["tool_input"]["command"]
        calls.append(command)
        if command == "hang":
            late.wait(30)
        send(0, allow, "")
        send(0, allow.replace("allow", "deny"), "")  # a second answer is never written
        if command == "note":
            go_on.wait(30)  # the note after the answer: the reply is already out

    http_gate = HttpGate(registry.need("claude-code"), decide, {}, str(tmp_path))
    http_gate.timeout_s = 5.0  # the bound a hanging decision meets; the others answer long before it
    port = http_gate.server.server_address[1]
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    try:

        def ask(command: str) -> str:
            conn.request("POST", f"/hook/{http_gate.secret}", call(command), {"Content-Type": "application/json"})
            resp = conn.getresponse()
            assert resp.status == 200
            return said(json.loads(resp.read()))

        assert ask("note") == "allow"  # answered while its worker still waits
        go_on.set()
        assert ask("hang") == "deny"  # the bound: the hook's timeout
        assert ask("ls") == "allow"  # the decision still hangs: a new connection, answered
        late.set()  # its answer now comes, too late for anyone
        assert [ask("ls"), ask("ls")] == ["allow", "allow"]  # one connection, each call its own answer
        assert calls == ["note", "hang", "ls", "ls", "ls"]
    finally:
        go_on.set()
        late.set()
        conn.close()
        http_gate.close()


def test_a_kept_alive_connections_next_call_never_waits_for_the_audit_notes_delivery(tmp_path: Path) -> None:
    """The real gate, its receiver accepting and never answering: the calls
    after the first on one kept-alive connection are answered while the
    first call's note is still being sent (its send has not given up and
    backed its destination off): the delivery runs on another worker."""
    import http.client

    from spanvisor.gate import notes
    from tests.gate.blackhole import Blackhole

    (tmp_path / "policy.toml").write_text(POLICY)
    hole = Blackhole()
    env = {
        "SPANVISOR_HOOK_POLICY": str(tmp_path / "policy.toml"),
        "SPANVISOR_DATA_DIR": str(tmp_path / "data"),
        "SPANVISOR_OTLP_ENDPOINT": hole.url,
    }
    gate = LocalGate()
    http_gate = HttpGate(registry.need("claude-code"), gate.decide, env, str(tmp_path))
    conn = http.client.HTTPConnection("127.0.0.1", http_gate.server.server_address[1], timeout=60)
    try:

        def ask(command: str) -> str:
            conn.request("POST", f"/hook/{http_gate.secret}", call(command), {"Content-Type": "application/json"})
            resp = conn.getresponse()
            assert resp.status == 200 and not resp.will_close
            return said(json.loads(resp.read()))

        assert ask("ls") == "allow"
        assert hole.accepted.wait(60), "the first call's note is on its way"
        assert [ask("ls -la"), ask("ls; rm x")] == ["allow", "deny"]
        backoff = notes.backoff_file(hole.url, tmp_path / "data" / "hook-spool")
        assert not backoff.exists(), "a call waited until the note's send gave up"
    finally:
        conn.close()
        http_gate.close()
        gate.close()
        hole.close()


def test_the_listeners_deadline_is_its_own_entrys_timeout_not_the_command_hooks(tmp_path: Path) -> None:
    """A call through the listener counts its deadline from the ``http``
    entry the launcher wrote (600 s, ``onFailure: block``), not from a
    command hook entry of the project's settings, which times other calls;
    a command hook's call through the same gate still counts from the
    shortest entry its settings give (it cannot tell which entry ran it)."""
    (tmp_path / "policy.toml").write_text(ASK_DEPLOY)
    (tmp_path / ".claude").mkdir()
    entry = {"type": "command", "command": "spanvisor hook claude-code", "timeout": 2}
    settings = {"hooks": {"PreToolUse": [{"matcher": "*", "hooks": [entry]}]}}
    (tmp_path / ".claude" / "settings.json").write_text(json.dumps(settings))
    env = {
        "HOME": str(tmp_path),
        "SPANVISOR_HOOK_POLICY": str(tmp_path / "policy.toml"),
        "SPANVISOR_DATA_DIR": str(tmp_path / "data"),
        "SPANVISOR_HOOK_DELIVERY": "off",
        "SPANVISOR_OTLP_ENDPOINT": "http://127.0.0.1:9",  # nobody to ask: the reason says why
    }
    gate = LocalGate()
    http = HttpGate(registry.need("claude-code"), gate.decide, env, str(tmp_path))
    try:
        _, doc = post(http.url, call("deploy prod"), None)
        answers: list[str] = []
        started = time.monotonic()
        gate.decide(
            lambda _c, out, _e: answers.append(out), ["claude-code"], call("deploy prod"), started, env, str(tmp_path)
        )
    finally:
        http.close()
        gate.close()
    through_http = doc["hookSpecificOutput"]["permissionDecisionReason"]
    assert said(doc) == "deny" and "(2 s)" not in through_http and "cannot be reached" in through_http, through_http
    [line] = [ln for ln in answers[0].splitlines() if ln.startswith("{")]
    through_command = json.loads(line)["hookSpecificOutput"]["permissionDecisionReason"]
    assert "hook timeout (2 s) leaves no time to ask a person" in through_command, through_command
