"""People proven by the company's identity provider, deciding through the
real receiver, pipeline and CLI, audited in PostgreSQL.

A provider the test owns (tests/fakes/oidc_provider.py, on loopback) signs
the tokens; ``spanvisor serve``'s control API verifies them
(``SPANVISOR_OIDC_*``). A bad token is refused with the reason (HTTP 401 or
403, and one line from the CLI); a good one's person and groups are in the
decision and in its audit row. A request that counts only some people
(``--from group:sre``) refuses everyone else (``not_in_group``); a member
of the break-glass group approves alone, with a reason, recorded as such.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from spanvisor.config import Config
from spanvisor.pipeline.pipeline import Pipeline
from spanvisor.receiver.server import Receiver, ReceiverSettings
from spanvisor.testing import InMemorySink
from spanvisor_postgres import PostgresSink
from tests.fakes.oidc_provider import CLIENT_ID, FakeIdP, new_key
from tests.waiting import wait_until

from .conftest import Run

TOKEN = "otlp-s3cret"
SHARED = "shared-decide-s3cret"
MIGRATE = {"tool": "migrate", "arguments": {"target": "prod"}}


class _Serve:
    """serve's receiver on its own loop, a real pipeline writing PostgreSQL."""

    def __init__(self, data_dir: Path, db_url: str, issuer: str) -> None:
        env = {
            "SPANVISOR_DATA_DIR": str(data_dir),
            "SPANVISOR_OTLP_BIND": "127.0.0.1",
            "SPANVISOR_OTLP_HTTP_PORT": "0",
            "SPANVISOR_OTLP_GRPC_PORT": "off",
            "SPANVISOR_ADMIN_PORT": "off",
            "SPANVISOR_OTLP_TOKEN": TOKEN,
            "SPANVISOR_DECIDE_TOKEN": SHARED,
            "SPANVISOR_JOURNAL": "off",
            "SPANVISOR_DATABASE_URL": db_url,
            "SPANVISOR_OIDC_ISSUER": issuer,
            "SPANVISOR_OIDC_AUDIENCE": CLIENT_ID,
            "SPANVISOR_OIDC_JWKS_MIN_INTERVAL": "0s",
            "SPANVISOR_BREAK_GLASS_GROUP": "breakglass",
        }
        config = Config.load(env=env, extra=None)
        self.pipeline = Pipeline(config=config, sinks=[InMemorySink(), PostgresSink()], path="receiver").start()
        assert self.pipeline.wait_ready(60)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.receiver = Receiver(self.pipeline, ReceiverSettings.from_config(config))
        asyncio.run_coroutine_threadsafe(self.receiver.start(), self.loop).result(30)
        self.base = f"http://127.0.0.1:{self.receiver.http_port}"

    def call(self, method: str, path: str, token: str, body: Any = None) -> tuple[int, dict[str, Any], Any]:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(
            self.base + path,
            data=data,
            method=method,
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return resp.status, json.loads(resp.read()), resp.headers
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"{}"), exc.headers

    def task(self, task_id: str) -> dict[str, Any]:
        return self.call("GET", f"/v1/control/tasks/{task_id}", TOKEN)[1]

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.receiver.stop(self.pipeline.shutdown), self.loop).result(60)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@pytest.fixture(scope="module")
def idp() -> Iterator[FakeIdP]:
    p = FakeIdP()
    p.start()
    yield p
    p.stop()


@pytest.fixture
def serve(tmp_path: Path, pg_server: Any, idp: FakeIdP) -> Iterator[_Serve]:
    s = _Serve(tmp_path / "serve", pg_server.database(), idp.issuer)
    yield s
    s.close()


def token(idp: FakeIdP, person: str, groups: list[str] | None, **more: Any) -> str:
    return idp.sign(idp.claims(person, groups, **more))


def _task(cli: Run, serve: _Serve) -> str:
    task = f"T-{uuid.uuid4().hex[:8]}"
    endpoint = ("--endpoint", serve.base, "--token", TOKEN)
    assert cli("emit", "start", "--task", task, "--agent", "sh", "--name", "deploy", *endpoint)[0] == 0
    wait_until(lambda: serve.task(task)["state"] == "running", what="the run in the shared record")
    return task


def _ask(serve: _Serve, task: str, aid: str, *extra: str) -> subprocess.Popen[str]:
    """The shell agent, in its own process: asks and waits for the answer."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SPANVISOR_", "OTEL_"))}
    argv = [sys.executable, "-m", "spanvisor.cli", "emit", "approval", "--task", task, "--id", aid]
    argv += ["--question", "Run the migration?", "--action", json.dumps(MIGRATE), "--wait", "60"]
    argv += ["--endpoint", serve.base, "--token", TOKEN, "--url", serve.base, *extra]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    wait_until(lambda: any(a["approval_id"] == aid for a in serve.task(task)["approvals"]), what="the request open")
    return proc


def _rows(serve: _Serve, task: str) -> list[dict[str, Any]]:
    import asyncpg

    async def go() -> list[dict[str, Any]]:
        conn = await asyncpg.connect(serve.pipeline.config.get("database_url"))
        try:
            got = await conn.fetch(
                "SELECT actor, actor_name, outcome, refusal, comment, attributes FROM human_interventions "
                "WHERE task_id = $1 ORDER BY time_ns",
                task,
            )
        finally:
            await conn.close()
        out = []
        for r in got:
            row = dict(r)
            row["attributes"] = (
                json.loads(row["attributes"]) if isinstance(row["attributes"], str) else row["attributes"]
            )
            out.append(row)
        return out

    return asyncio.run(go())


def test_a_bad_token_is_refused_with_its_reason_over_http_and_in_one_cli_line(
    cli: Run, serve: _Serve, idp: FakeIdP
) -> None:
    task = _task(cli, serve)
    agent = _ask(serve, task, "a1")
    now = int(time.time())
    try:
        c = idp.claims("alice@example.com", ["sre"])
        bad = {
            "has expired": (401, idp.sign({**c, "exp": now - 600, "iat": now - 4000})),
            "another audience": (401, idp.sign({**c, "aud": "another-app"})),
            "another issuer": (401, idp.sign({**c, "iss": "https://evil.example.com"})),
            "unsigned (alg none)": (401, idp.sign(c, alg="none")),
            "shared secret": (401, idp.sign(c, alg="HS256")),
            "not one of the provider's keys": (401, idp.sign(c, key=new_key("stranger"))),
            "not valid yet": (401, idp.sign({**c, "nbf": now + 600})),
            "no 'groups' claim": (403, idp.sign({k: v for k, v in c.items() if k != "groups"})),
        }
        body = {"action": "approve", "approval_id": "a1", "actor": "alice"}
        for words, (status, bad_token) in bad.items():
            got, doc, headers = serve.call("POST", f"/v1/control/tasks/{task}/decisions", bad_token, body)
            assert got == status and words in doc["error"], (words, got, doc)
            assert headers["WWW-Authenticate"].startswith("Bearer error="), headers
            code, out, err = cli("approve", task, "a1", "--url", serve.base, "--token", bad_token)
            assert code == 1 and words in err and len(err.strip().splitlines()) == 1, (words, out, err)
        assert serve.task(task)["decisions"] == [] and agent.poll() is None
    finally:
        agent.kill()


def test_approvals_from_a_group_count_and_the_person_and_groups_are_audited(
    cli: Run, serve: _Serve, idp: FakeIdP
) -> None:
    task = _task(cli, serve)
    agent = _ask(serve, task, "a1", "--from", "group:sre", "--requester", "carol@example.com")
    try:
        url = ("--url", serve.base)
        code, out, _ = cli("approvals", *url, "--token", token(idp, "bob@example.com", ["dev"]))
        assert code == 0 and "needs 1 person from sre" in out, out
        code, _, err = cli("approve", task, "a1", *url, "--token", token(idp, "bob@example.com", ["dev"]))
        assert code == 1 and "not_in_group" in err and "only approvals from sre count" in err, err
        code, _, err = cli("approve", task, "a1", *url, "--token", SHARED)
        assert code == 1 and "unverified" in err, err
        code, _, err = cli("approve", task, "a1", *url, "--token", token(idp, "carol@example.com", ["sre"]))
        assert code == 1 and "own_request" in err, err
        assert agent.poll() is None
        code, out, _ = cli("approve", task, "a1", *url, "--token", token(idp, "alice@example.com", ["sre", "dba"]))
        assert code == 0 and "as alice@example.com (verified by your identity provider's token)" in out, out
        out, err = agent.communicate(timeout=60)
        assert agent.returncode == 0 and "permitted: migrate" in out, (out, err)
    finally:
        agent.kill()
    [d] = serve.task(task)["decisions"]
    assert (d["person"], d["groups"], d["proof"], d["verified"]) == ("alice@example.com", ["sre", "dba"], "oidc", True)
    rows = wait_until(lambda: (r := _rows(serve, task)) and len(r) >= 4 and r, what="the audit rows", timeout=60)
    applied = [r for r in rows if r["outcome"] == "applied"]
    assert len(applied) == 1 and applied[0]["actor"] == "alice@example.com"
    assert applied[0]["attributes"]["groups"] == ["sre", "dba"] and applied[0]["attributes"]["proof"] == "oidc"
    refused = {r["refusal"]: r for r in rows if r["outcome"] == "denied"}
    assert set(refused) == {"not_in_group", "unverified", "own_request"}, refused
    assert refused["not_in_group"]["attributes"]["groups"] == ["dev"]


def test_break_glass_needs_the_group_and_a_reason_and_is_recorded_as_such(
    cli: Run, serve: _Serve, idp: FakeIdP
) -> None:
    task = _task(cli, serve)
    agent = _ask(serve, task, "a1", "--from", "group:sre", "--approvers", "2")
    try:
        url = ("--url", serve.base)
        carol = token(idp, "carol@example.com", ["breakglass"])
        code, _, err = cli("approve", task, "a1", "--break-glass", *url, "--token", carol)
        assert code == 1 and "--break-glass needs --reason" in err, err
        body = {"action": "approve", "approval_id": "a1", "actor": "x", "break_glass": True}
        status, doc, _ = serve.call("POST", f"/v1/control/tasks/{task}/decisions", carol, body)
        assert status == 409 and doc["code"] == "reason_required", doc
        dave = token(idp, "dave@example.com", ["sre"])
        code, _, err = cli("approve", task, "a1", "--break-glass", "--reason", "prod down", *url, "--token", dave)
        assert code == 1 and "not_in_group" in err and "members of breakglass" in err, err
        code, _, err = cli("approve", task, "a1", "--break-glass", "--reason", "prod down", *url, "--token", SHARED)
        assert code == 1 and "unverified" in err, err
        assert agent.poll() is None
        code, out, _ = cli("approve", task, "a1", "--break-glass", "--reason", "prod is down", *url, "--token", carol)
        assert code == 0 and "Approved by breaking glass" in out, out
        out, err = agent.communicate(timeout=60)
        assert agent.returncode == 0 and "permitted: migrate" in out, (out, err)
    finally:
        agent.kill()
    [d] = serve.task(task)["decisions"]
    assert d["break_glass"] is True and d["comment"] == "prod is down" and d["person"] == "carol@example.com"
    rows = wait_until(lambda: (r := _rows(serve, task)) and len(r) >= 4 and r, what="the audit rows", timeout=60)
    [applied] = [r for r in rows if r["outcome"] == "applied"]
    assert applied["attributes"]["break_glass"] is True and applied["comment"] == "prod is down"
    assert {r["refusal"] for r in rows if r["outcome"] == "denied"} == {"reason_required", "not_in_group", "unverified"}
