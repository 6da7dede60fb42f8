"""A browser-shaped client against a real ``spanvisor serve`` (issues 63, 64, 66).

One serve with no OTLP token, bound by default (loopback): the developer's
machine a web page attacks through the person's browser. Each hostile
request is refused with its status and changes nothing; the honest clients
(the CLI's control client, the permit client, the hooks' OTLP and policy
clients) keep working. Requests are written with ``http.client`` so every
header is the test's (urllib adds a form content type to any body).
"""

from __future__ import annotations

import http.client
import json
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from serve_proc import ServeProcess, console_env
from tests.waiting import wait_until

from spanvisor.control.client import HttpSource
from spanvisor.control.deciders import token_hash
from spanvisor.control.permits import permit_http
from spanvisor.gate import centralcache, otlp

ALICE = "alice-own-t0ken"
TASK = "browser-task"
FORMS = ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", None)


class Served:
    def __init__(self, proc: ServeProcess) -> None:
        self.proc = proc
        self.base = f"http://127.0.0.1:{proc.http}"

    def ask(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        port: int | None = None,
    ) -> tuple[int, dict[str, Any] | str]:
        """One request with exactly these headers (``Host`` included, when given)."""
        conn = http.client.HTTPConnection("127.0.0.1", port or self.proc.http, timeout=30)
        try:
            given = dict(headers or {})
            conn.putrequest(method, path, skip_host="Host" in given, skip_accept_encoding=True)
            for k, v in given.items():
                conn.putheader(k, v)
            if body is not None:
                conn.putheader("Content-Length", str(len(body)))
            conn.endheaders(body)
            resp = conn.getresponse()
            text = resp.read()
            ctype = resp.getheader("Content-Type") or ""
            return resp.status, json.loads(text) if ctype.startswith("application/json") else text.decode()
        finally:
            conn.close()

    def task(self) -> dict[str, Any]:
        status, doc = self.ask("GET", f"/v1/control/tasks/{TASK}")
        assert status == 200 and isinstance(doc, dict), doc
        return doc


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    root = tmp_path_factory.mktemp("browser")
    deciders = root / "deciders.toml"
    deciders.write_text(f'[people.alice]\ntoken_sha256 = "{token_hash(ALICE)}"\n')
    env = console_env(root / "data", SPANVISOR_DECIDERS=str(deciders))
    del env["SPANVISOR_OTLP_BIND"]  # serve's own default
    proc = ServeProcess(root / "data", env)
    s = Served(proc)
    try:
        from spanvisor.cli.main import main

        assert main(["emit", "start", "--task", TASK, "--agent", "sh", "--name", "n", "--endpoint", s.base]) == 0
        wait_until(lambda: s.task().get("state") == "running", 30, "the task's run")
        yield s
    finally:
        proc.stop()


def test_serve_binds_loopback_by_default_and_says_how_to_open_it(served: Served) -> None:
    log = served.proc.log_text()
    assert "listening on 127.0.0.1 only" in log and "SPANVISOR_OTLP_BIND=0.0.0.0" in log, log[-2000:]
    assert "SPANVISOR_ALLOWED_HOSTS" in log


@pytest.mark.parametrize("ctype", FORMS)
@pytest.mark.parametrize(
    "doc",
    [
        {"action": "cancel", "actor": "mallory"},
        {"action": "approve", "approval_id": "a1", "actor": "mallory"},
        {"action": "reject", "approval_id": "a1", "actor": "mallory"},
    ],
    ids=["cancel", "approve", "reject"],
)
def test_a_form_post_decides_nothing(served: Served, ctype: str | None, doc: dict[str, Any]) -> None:
    # A page's simple request: no preflight, so the content type stops it (a
    # Blob body has none at all).
    headers = {"Content-Type": ctype} if ctype is not None else {}
    status, answer = served.ask("POST", f"/v1/control/tasks/{TASK}/decisions", json.dumps(doc).encode(), headers)
    assert status == 415 and isinstance(answer, dict) and answer["cause"] == "json_required", answer
    assert served.task()["decisions"] == [] and served.task()["cancel_requested"] is False


@pytest.mark.parametrize(
    "path",
    [
        f"/v1/control/tasks/{TASK}/approvals/a1/permit",
        "/v1/control/grants",
    ],
)
def test_every_other_state_changing_route_needs_json_too(served: Served, path: str) -> None:
    body = json.dumps({"action": None, "tool": "*", "for_s": 60}).encode()
    headers = {"Content-Type": "text/plain", "Authorization": f"Bearer {ALICE}"}
    status, answer = served.ask("POST", path, body, headers)
    assert status == 415 and isinstance(answer, dict) and answer["cause"] == "json_required", answer
    status, answer = served.ask("GET", "/v1/control/grants", headers={"Authorization": f"Bearer {ALICE}"})
    assert status == 200 and answer == {"grants": []}, answer
    # A DELETE with a body says JSON too; one without a body is always preflighted by a browser.
    status, answer = served.ask("DELETE", "/v1/control/grants/g-1", b"x", {"Content-Type": "text/plain"})
    assert status == 415, answer
    status, answer = served.ask("DELETE", "/v1/control/grants/g-1", headers={"Authorization": f"Bearer {ALICE}"})
    assert status == 404, answer


def test_a_form_post_to_the_hook_route_is_a_200_deny(served: Served) -> None:
    call = {"session_id": "s", "hook_event_name": "PreToolUse", "tool_name": "Bash", "tool_input": {"command": "ls"}}
    status, answer = served.ask(
        "POST", "/v1/hooks/claude-code", json.dumps(call).encode(), {"Content-Type": "text/plain"}
    )
    # Claude Code runs the call on any other status: the refusal is the deny JSON.
    assert status == 200 and isinstance(answer, dict), answer
    out = answer["hookSpecificOutput"]
    assert out["permissionDecision"] == "deny" and "application/json" in out["permissionDecisionReason"]


@pytest.mark.parametrize("host", ["evil.example", "evil.example:4318", "127.0.0.1.evil.example", "localhost.evil"])
def test_a_rebound_host_is_refused_on_every_port(served: Served, host: str) -> None:
    p = served.proc
    for port, method, path in (
        (p.http, "GET", f"/v1/control/tasks/{TASK}"),
        (p.http, "GET", "/v1/control/approvals"),
        (p.http, "GET", "/v1/events"),
        (p.admin, "GET", "/metrics"),
        (p.admin, "GET", "/readyz"),
    ):
        status, answer = served.ask(method, path, headers={"Host": host}, port=port)
        assert status == 403 and isinstance(answer, dict) and answer["cause"] == "host_not_allowed", (path, answer)
    status, answer = served.ask(
        "POST", "/v1/traces", b"{}", {"Host": host, "Content-Type": "application/json"}, port=p.http
    )
    assert status == 403, answer


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "[::1]", "app.localhost", "10.1.2.3"])
def test_loopback_names_and_addresses_pass(served: Served, host: str) -> None:
    p = served.proc
    for port, path in ((p.http, "/v1/control/approvals"), (p.admin, "/healthz")):
        status, _ = served.ask("GET", path, headers={"Host": f"{host}:{port}"}, port=port)
        assert status == 200, (host, path)


@pytest.mark.parametrize(
    "origin", ["http://evil.example", "null", "http://127.0.0.1:1", "https://127.0.0.1", "http://localhost"]
)
def test_a_cross_origin_page_is_refused(served: Served, origin: str) -> None:
    p = served.proc
    headers = {"Host": f"127.0.0.1:{p.http}", "Origin": origin}
    status, answer = served.ask("GET", "/v1/control/approvals", headers=headers)
    assert status == 403 and isinstance(answer, dict) and answer["cause"] == "cross_origin", answer
    body = json.dumps({"action": "cancel", "actor": "mallory"}).encode()
    status, answer = served.ask(
        "POST", f"/v1/control/tasks/{TASK}/decisions", body, {**headers, "Content-Type": "application/json"}
    )
    assert status == 403, answer
    status, answer = served.ask("GET", "/metrics", headers={"Origin": origin}, port=p.admin)
    assert status == 403, answer
    assert served.task()["cancel_requested"] is False


def test_same_origin_and_fetch_metadata(served: Served) -> None:
    own = f"127.0.0.1:{served.proc.http}"
    status, _ = served.ask("GET", "/v1/control/approvals", headers={"Host": own, "Origin": f"http://{own}"})
    assert status == 200
    # A no-cors subresource (an <img>) from another site says so without an Origin.
    status, answer = served.ask("GET", "/v1/control/approvals", headers={"Sec-Fetch-Site": "cross-site"})
    assert status == 403, answer
    # A person following a link: the linking page never reads the answer.
    nav = {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate"}
    status, _ = served.ask("GET", "/v1/control/approvals", headers=nav)
    assert status == 200


@pytest.mark.parametrize("query", ["wait=inf", "wait=nan", "wait=-1", "after=inf", "after=1e999", "after=0.5"])
def test_query_numbers_are_bounded(served: Served, query: str) -> None:
    status, answer = served.ask("GET", f"/v1/control/tasks/{TASK}?{query}")
    assert status == 400 and isinstance(answer, dict) and answer["error"], answer


@pytest.mark.parametrize("port", ["http", "admin"])
# Sizes the socket buffers take whole: serve stops reading at its limit, and a
# client still sending megabytes then may see a reset after the 431 is written.
@pytest.mark.parametrize("size", [65 * 1024, 256 * 1024])
def test_a_header_over_the_limit_is_431(served: Served, port: str, size: int) -> None:
    number = served.proc.http if port == "http" else served.proc.admin
    status, text = served.ask("GET", "/v1/control/approvals", headers={"X-Big": "s3cret" + "a" * size}, port=number)
    assert status == 431 and isinstance(text, str) and "s3cret" not in text, str(text)[:200]


def test_too_many_headers_is_431(served: Served) -> None:
    status, _ = served.ask("GET", "/v1/control/approvals", headers={f"X-H{i}": "v" for i in range(300)})
    assert status == 431


# (name, body): each deeper than the 64 levels a body may nest; the first is 200 KB.
DEEP = [
    ("array-100k", b"[" * 100_000 + b"]" * 100_000),
    ("object-600", b'{"a":' * 600 + b"1" + b"}" * 600),
    ("unclosed-3000", b"[" * 3000),
    ("in-a-field", b'{"action": "cancel", "actor": "x", "edited": ' + b"[" * 2000 + b"]" * 2000 + b"}"),
]


def _parses(body: bytes) -> bool:
    try:
        json.loads(body)
    except (RecursionError, ValueError):
        return False
    return True


JSON_ROUTES: list[tuple[str, str, int | None]] = [
    ("POST", f"/v1/control/tasks/{TASK}/decisions", 400),
    ("POST", f"/v1/control/tasks/{TASK}/approvals/a1/permit", 400),
    ("POST", "/v1/control/grants", 400),
    # OTLP ignores unknown fields: a deep body that parses is an empty export (200).
    ("POST", "/v1/traces", None),
    ("POST", "/v1/logs", None),
    ("POST", "/v1/metrics", None),
    ("POST", "/v1/hooks/claude-code", 200),  # the deny JSON: see the hook test above
]


@pytest.mark.parametrize(("method", "path", "want"), JSON_ROUTES, ids=[p for _, p, _ in JSON_ROUTES])
@pytest.mark.parametrize(("name", "body"), DEEP, ids=[n for n, _ in DEEP])
def test_deep_json_is_a_4xx_on_every_json_route(
    served: Served, method: str, path: str, want: int | None, name: str, body: bytes
) -> None:
    want = want if want is not None else 200 if _parses(body) else 400
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {ALICE}"}
    status, answer = served.ask(method, path, body, headers)
    assert status == want, (name, answer)
    if path == "/v1/hooks/claude-code":
        assert isinstance(answer, dict) and answer["hookSpecificOutput"]["permissionDecision"] == "deny"
    assert "internal" not in json.dumps(answer), answer
    assert served.proc.alive and "RecursionError" not in served.proc.log_text()


def test_the_honest_clients_keep_working(served: Served, tmp_path: Path) -> None:
    client = HttpSource(served.base)
    status, doc = client.approvals()
    assert status == 200 and doc == {"approvals": []}
    got = permit_http(client, TASK, "a1", {"tool": "t", "arguments": {}})
    assert got.permitted is False and got.code == "unknown_request", got
    status, _, _ = centralcache.get(served.base, None, None, 10)
    assert status == 404  # this serve has no central policy: its answer, not a refusal
    assert otlp.post(served.base, None, json.dumps({"resourceLogs": []}).encode(), 10)
    # The CLI's client cancels a task of its own (the other tests keep theirs running).
    from spanvisor.cli.main import main

    task = "honest/task 1"
    assert main(["emit", "start", "--task", task, "--agent", "sh", "--name", "n", "--endpoint", served.base]) == 0
    path = f"/v1/control/tasks/{urllib.parse.quote(task, safe='')}"
    wait_until(lambda: served.ask("GET", path)[1].get("state") == "running", 30, "the run")  # type: ignore[union-attr]
    sent = client.decide(task, "cancel", "alice", comment="honest")
    assert sent.outcome == "applied", sent
    status, after = served.ask("GET", path)
    assert status == 200 and isinstance(after, dict) and after["cancel_requested"] is True
