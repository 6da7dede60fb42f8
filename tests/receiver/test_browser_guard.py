"""What serve refuses from a browser, in process: the host names a
configuration allows, the URL the http hook route hands its hooks (serve's
own, never the request's ``Host``), the bounds on query numbers, and the
nesting count of JSON bodies."""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.receiver.conftest import RunningReceiver, local_settings, make_pipeline

from spanvisor.config import Config
from spanvisor.events import Decision
from spanvisor.receiver import hook_http
from spanvisor.receiver.browser_guard import HostPolicy, origin_refusal, split_host
from spanvisor.receiver.json_body import MAX_DEPTH, BadJson, GoodJson, parse, too_deep
from spanvisor.receiver.server import own_url
from spanvisor.testing import InMemorySink


def ask(port: int, method: str, path: str, headers: dict[str, str], body: bytes | None = None) -> tuple[int, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.putrequest(method, path, skip_host="Host" in headers, skip_accept_encoding=True)
        for k, v in headers.items():
            conn.putheader(k, v)
        if body is not None:
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        resp = conn.getresponse()
        text = resp.read()
        json_reply = (resp.getheader("Content-Type") or "").startswith("application/json")
        return resp.status, json.loads(text) if json_reply else text.decode()
    finally:
        conn.close()


def test_serve_binds_loopback_unless_told() -> None:
    assert Config.load(env={})["otlp_bind"] == "127.0.0.1"
    assert Config.load(env={"SPANVISOR_OTLP_BIND": "0.0.0.0"})["otlp_bind"] == "0.0.0.0"
    assert Config.load(env={"SPANVISOR_ALLOWED_HOSTS": "a.example, .corp.example"})["allowed_hosts"] == (
        "a.example",
        ".corp.example",
    )


@pytest.mark.parametrize(
    ("value", "want"),
    [
        ("127.0.0.1:4318", ("127.0.0.1", 4318)),
        ("LocalHost.", ("localhost", None)),
        ("[::1]:9464", ("::1", 9464)),
        ("::1", ("::1", None)),
        ("a.example:99999", None),
        ("a.example:x", None),
        ("a b", None),
        ("user@a.example", None),
        ("", None),
        ("[::1", None),
    ],
)
def test_split_host(value: str, want: tuple[str, int | None] | None) -> None:
    assert split_host(value) == want


def test_the_allowed_hosts() -> None:
    policy = HostPolicy.of(("0.0.0.0", "spanvisor-1"), ("api.example.com:443", ".corp.example"))
    allowed = ["localhost", "x.localhost", "127.0.0.1", "::1", "10.0.0.7", "spanvisor-1", "api.example.com"]
    allowed += ["corp.example", "deep.in.corp.example"]
    refused = ["evil.example", "api.example.com.evil", "corp.example.evil", "0.0.0.0.evil", "xcorp.example"]
    assert [h for h in allowed if not policy.allows(h)] == []
    assert [h for h in refused if policy.allows(h)] == []
    assert HostPolicy.of(("0.0.0.0",), ("*",)).allows("anything.example")


@pytest.mark.parametrize(
    ("host", "origin", "ok"),
    [
        ("127.0.0.1:4318", "http://127.0.0.1:4318", True),
        ("spanvisor.example", "https://spanvisor.example", True),  # behind a TLS proxy
        ("spanvisor.example", "https://spanvisor.example:443", True),
        ("spanvisor.example:8443", "https://spanvisor.example:8443", True),
        ("127.0.0.1:4318", "http://127.0.0.1:8080", False),
        ("127.0.0.1:4318", "http://localhost:4318", False),
        ("spanvisor.example", "http://spanvisor.example:8080", False),
        ("127.0.0.1:4318", "null", False),
        ("127.0.0.1:4318", "chrome-extension://abc", False),
    ],
)
def test_origin(host: str, origin: str, ok: bool) -> None:
    assert (origin_refusal("POST", {"Host": host, "Origin": origin}) is None) is ok


def test_own_url_comes_from_the_configuration() -> None:
    assert own_url("127.0.0.1", 4318, False) == "http://127.0.0.1:4318"
    assert own_url("0.0.0.0", 4318, False, ("spanvisor.example",)) == "http://127.0.0.1:4318"
    assert own_url("::", 4318, False) == "http://127.0.0.1:4318"
    assert own_url("::1", 4318, False) == "http://[::1]:4318"
    # The certificate names the host, not an address.
    assert own_url("0.0.0.0", 4318, True, (".corp.example", "spanvisor.example")) == "https://spanvisor.example:4318"


def test_json_nesting_is_counted_outside_strings() -> None:
    assert not too_deep(b'{"a": "' + b"[" * 5000 + b'"}')
    assert not too_deep(b'["\\"[[[[", ' + b"[" * MAX_DEPTH + b"]" * MAX_DEPTH + b"]", MAX_DEPTH + 1)
    assert too_deep(b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1))
    assert parse(b"[" * 200_000) == BadJson(f"the body nests deeper than {MAX_DEPTH} levels")
    assert parse(b'{"a": [1, {"b": null}]}') == GoodJson({"a": [1, {"b": None}]})
    got = parse(b"\xff")
    assert isinstance(got, BadJson) and got.message.startswith("the body is not JSON")


@pytest.fixture
def hooked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[RunningReceiver, list[Any]]]:
    """A receiver whose hook route records what it would hand the gate."""
    seen: list[Any] = []

    def decide(facts: hook_http.HookRequest) -> tuple[bytes, None]:
        seen.append(facts)
        return b'{"ok": true}', None

    monkeypatch.setattr(hook_http, "decide", decide)
    pipeline = make_pipeline(tmp_path / "data", [InMemorySink()])
    # "*": the Host check off (a proxy in front checks Host), the worst case for the URL.
    r = RunningReceiver(pipeline, local_settings(tmp_path, allowed_hosts=("*",)))
    yield r, seen
    r.close()


def test_the_hook_routes_url_is_serves_own_never_the_requests_host(hooked: tuple[RunningReceiver, list[Any]]) -> None:
    r, seen = hooked
    port = r.receiver.http_port
    assert port is not None
    headers = {"Host": "attacker.example:1", "Content-Type": "application/json"}
    status, doc = ask(port, "POST", hook_http.PREFIX + "claude-code?timeout=86400", headers, b"{}")
    assert (status, doc) == (200, {"ok": True})
    assert seen[-1].origin == f"http://127.0.0.1:{port}"
    assert seen[-1].timeout == hook_http.MAX_TIMEOUT_S  # a day's timeout is cut to the bound
    for raw, want in (("120", 120.0), ("inf", 600.0), ("-5", 600.0), ("x", 600.0)):
        ask(port, "POST", f"{hook_http.PREFIX}claude-code?timeout={raw}", headers, b"{}")
        assert seen[-1].timeout == want, raw


def test_a_long_poll_wait_is_cut_to_sixty_seconds(tmp_path: Path) -> None:
    pipeline = make_pipeline(tmp_path / "data", [InMemorySink()])
    r = RunningReceiver(pipeline, local_settings(tmp_path))
    waits: list[float] = []
    control = pipeline.control
    assert control is not None

    async def decisions(task_id: str, after: int = 0, wait_s: float = 0.0, run_id: str | None = None) -> list[Decision]:
        waits.append(wait_s)
        return []

    try:
        control.decisions = decisions  # type: ignore[method-assign]
        port = r.receiver.http_port
        assert port is not None
        status, _ = ask(port, "GET", "/v1/control/tasks/t?wait=86400", {})
        assert status == 200 and waits == [60.0]
    finally:
        r.close()


def test_the_allowed_hosts_setting_reaches_both_ports(tmp_path: Path) -> None:
    pipeline = make_pipeline(tmp_path / "data", [InMemorySink()])
    r = RunningReceiver(pipeline, local_settings(tmp_path, allowed_hosts=("spanvisor.internal",)))
    try:
        for port, path in ((r.receiver.http_port, "/v1/control/approvals"), (r.receiver.admin_port, "/healthz")):
            assert port is not None
            assert ask(port, "GET", path, {"Host": f"spanvisor.internal:{port}"})[0] == 200
            status, doc = ask(port, "GET", path, {"Host": "other.internal"})
            assert status == 403 and doc["cause"] == "host_not_allowed"
    finally:
        r.close()
