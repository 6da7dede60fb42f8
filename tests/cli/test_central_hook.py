"""The coding agents' hook obeys the server's central policy: it reads it
from ``serve`` (``GET /v1/control/policy``), keeps a copy a short while,
and combines it with the local policy (the strictest wins). With the
server unreachable and no fresh copy, the gate's fail-closed rules answer
(``on_unreachable``), never an allow of an older version; a request the
hook opens needs what the central policy requires (people, groups), and
records the version and the rule.

Against a real receiver and pipeline (the hook through ``main()``)."""

from __future__ import annotations

import asyncio
import json
import os
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
from spanvisor.gate import centralcache
from spanvisor.pipeline.pipeline import Pipeline
from spanvisor.receiver.server import Receiver, ReceiverSettings
from spanvisor.testing import InMemorySink
from tests.cli.coding_harness import CLAUDE_PRE, TOKEN, clean_env, hook
from tests.waiting import wait_until

LOCAL = """default = "ask"
timeout = 6
[[rule]]
name = "everyday"
tool = "Bash"
command = ["ls*", "git push*", "terraform *"]
decision = "allow"
"""
CENTRAL_V1 = """name = "acme"
[[rule]]
name = "no-force-push"
tool = "Bash"
command = ["git push *--force*"]
decision = "deny"
reason = "force pushes are never allowed"

[[rule]]
name = "prod-two-sre"
command_regex = "\\\\bprod\\\\b"
decision = "ask"
approvers = 2
from = ["group:sre"]
"""
CENTRAL_V2 = (
    CENTRAL_V1
    + """
[[rule]]
name = "no-ls"
tool = "Bash"
command = "ls*"
decision = "deny"
reason = "not today"
"""
)


class CentralServe:
    """A receiver on its own loop thread, with a central policy."""

    def __init__(self, data_dir: Path, policy: Path, port: int = 0) -> None:
        config = Config.load(
            env={
                "SPANVISOR_DATA_DIR": str(data_dir),
                "SPANVISOR_OTLP_BIND": "127.0.0.1",
                "SPANVISOR_OTLP_HTTP_PORT": str(port),
                "SPANVISOR_OTLP_GRPC_PORT": "off",
                "SPANVISOR_ADMIN_PORT": "off",
                "SPANVISOR_OTLP_TOKEN": TOKEN,
                "SPANVISOR_JOURNAL": "off",
                "SPANVISOR_POLICY": str(policy),
            },
            extra=None,
        )
        self.sink = InMemorySink()
        self.pipeline = Pipeline(config=config, sinks=[self.sink], path="receiver").start()
        assert self.pipeline.wait_ready(300)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.receiver = Receiver(self.pipeline, ReceiverSettings.from_config(config))
        asyncio.run_coroutine_threadsafe(self.receiver.start(), self.loop).result(300)
        self.port = self.receiver.http_port
        self.base = f"http://127.0.0.1:{self.port}"

    def get(self, path: str) -> Any:
        req = urllib.request.Request(f"{self.base}{path}", headers={"Authorization": f"Bearer {TOKEN}"})
        with urllib.request.urlopen(req, timeout=20) as resp:
            return json.loads(resp.read())

    def close(self) -> None:
        if not self.thread.is_alive():
            return
        asyncio.run_coroutine_threadsafe(self.receiver.stop(self.pipeline.shutdown), self.loop).result(300)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@pytest.fixture
def central(tmp_path: Path) -> Path:
    path = tmp_path / "central.toml"
    path.write_text(CENTRAL_V1)
    return path


@pytest.fixture
def serve(tmp_path: Path, central: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[CentralServe]:
    clean_env(monkeypatch, tmp_path)
    local = tmp_path / "local.toml"
    local.write_text(LOCAL)
    monkeypatch.setenv("SPANVISOR_HOOK_POLICY", str(local))
    monkeypatch.setenv("SPANVISOR_HOOK_DELIVERY", "off")
    s = CentralServe(tmp_path / "serve", central)
    monkeypatch.setenv("SPANVISOR_OTLP_ENDPOINT", s.base)
    monkeypatch.setenv("SPANVISOR_OTLP_TOKEN", TOKEN)
    monkeypatch.setenv("SPANVISOR_CONTROL_URL", s.base)
    centralcache.forget()
    yield s
    s.close()
    centralcache.forget()


def bash(command: str) -> dict[str, Any]:
    return {**CLAUDE_PRE, "session_id": f"s-{uuid.uuid4().hex[:8]}", "tool_input": {"command": command}}


def answer(command: str) -> tuple[str, str]:
    code, doc, _ = hook("claude-code", bash(command))
    out = doc["hookSpecificOutput"]
    assert code in (0, 2)
    return out["permissionDecision"], out["permissionDecisionReason"]


def reload_with(serve: CentralServe, path: Path, text: str) -> str:
    """Change the policy file: the server's version once it reloaded it."""
    before = serve.get("/v1/control/policy")["version"]
    path.write_text(text)
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 10_000_000))

    def changed() -> str | None:
        now = str(serve.get("/v1/control/policy")["version"])
        return now if now != before else None

    return str(wait_until(changed, 30, "the reload"))


def test_a_central_deny_stands_against_a_local_allow(serve: CentralServe) -> None:
    assert answer("git push origin main")[0] == "allow"
    verdict, reason = answer("git push origin main --force")
    assert verdict == "deny" and reason == "spanvisor: force pushes are never allowed"


def test_a_newer_version_the_server_holds_replaces_the_copy_once_it_is_old(
    serve: CentralServe, central: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SPANVISOR_CENTRAL_POLICY_TTL", "3600")
    assert answer("ls -la")[0] == "allow"
    v2 = reload_with(serve, central, CENTRAL_V2)
    # Within its time the copy stands (the documented bound) ...
    assert answer("ls -la")[0] == "allow"
    # ... and once it is older than its time, the server's version decides.
    monkeypatch.setenv("SPANVISOR_CENTRAL_POLICY_TTL", "0")
    assert answer("ls -la") == ("deny", "spanvisor: not today")
    cached = json.loads(next(Path(centralcache.cache_dir(os.environ)).glob("*.json")).read_text())
    assert cached["doc"]["version"] == v2 and cached["known"] is True


def test_with_the_server_unreachable_the_fail_closed_rules_answer_never_an_old_allow(
    serve: CentralServe, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    assert answer("ls -la")[0] == "allow"  # a copy of v1 is kept
    serve.close()
    monkeypatch.setenv("SPANVISOR_CENTRAL_POLICY_TTL", "0")
    centralcache.forget()  # a new hook process: only the file
    verdict, reason = answer("ls -la")
    assert verdict == "deny" and "the central policy cannot be read from" in reason and "on_unreachable" in reason
    # The copy's deny still denies; the local policy saying allow when unreachable changes neither.
    local = tmp_path / "local.toml"
    local.write_text('on_unreachable = "allow"\n' + LOCAL)
    assert answer("ls -la")[0] == "deny", "the central policy's on_unreachable (deny) is the stricter"
    assert answer("git push origin --force")[1] == "spanvisor: force pushes are never allowed"


def test_a_server_never_known_to_publish_one_leaves_the_local_policy_in_charge_unless_required(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clean_env(monkeypatch, tmp_path)
    local = tmp_path / "local.toml"
    local.write_text(LOCAL)
    monkeypatch.setenv("SPANVISOR_HOOK_POLICY", str(local))
    monkeypatch.setenv("SPANVISOR_CONTROL_URL", "http://127.0.0.1:9")  # nothing listens
    monkeypatch.setenv("SPANVISOR_OTLP_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setenv("SPANVISOR_HOOK_DELIVERY", "off")
    centralcache.forget()
    assert answer("ls -la")[0] == "allow"
    monkeypatch.setenv("SPANVISOR_CENTRAL_POLICY", "required")
    monkeypatch.setenv("SPANVISOR_CENTRAL_POLICY_TTL", "0")
    verdict, reason = answer("ls -la")
    assert verdict == "deny" and "cannot be read" in reason
    monkeypatch.setenv("SPANVISOR_CENTRAL_POLICY", "off")
    assert answer("ls -la")[0] == "allow"


def test_a_request_the_hook_opens_needs_what_the_central_policy_requires(
    serve: CentralServe, monkeypatch: pytest.MonkeyPatch
) -> None:
    from spanvisor.hook.task import SessionTask, otlp_args

    task = f"claude-code-{uuid.uuid4().hex[:12]}"
    monkeypatch.setenv("SPANVISOR_TASK_ID", task)
    SessionTask(task, "claude-code", True, otlp_args(serve.base, TOKEN, 10)).record(
        "agent.task.start", {"agent.task.name": "apply to prod", "agent.id": "claude-code"}
    )
    result: list[Any] = []
    t = threading.Thread(target=lambda: result.append(answer("terraform apply -var env=prod")), daemon=True)
    t.start()
    req = wait_until(lambda: serve.get(f"/v1/control/tasks/{task}")["approvals"], 120, "the open request")[0]
    assert req["approvers"] == 2 and req["approvers_from"] == ["group:sre"], req
    assert req["required_by"] == "central:prod-two-sre" and req["policy_version"].startswith("acme@")
    t.join(60)
    assert result and result[0][0] == "deny"  # nobody decided within the local policy's 6 s


def test_policy_show_prints_the_servers_version_and_rules(
    serve: CentralServe, capsys: pytest.CaptureFixture[str]
) -> None:
    from spanvisor.cli.main import main

    assert main(["policy", "show", "--url", serve.base, "--token", TOKEN]) == 0
    out = capsys.readouterr().out
    assert "Central policy acme@" in out and "prod-two-sre: ask 2 people from sre" in out
    assert "no-force-push: deny: force pushes are never allowed" in out
    doc = serve.get("/v1/control/policy")
    etag = f'"{doc["sha256"]}"'
    req = urllib.request.Request(
        f"{serve.base}/v1/control/policy", headers={"Authorization": f"Bearer {TOKEN}", "If-None-Match": etag}
    )
    try:
        urllib.request.urlopen(req, timeout=10)
        raise AssertionError("an unchanged policy is a 304")
    except urllib.error.HTTPError as exc:
        assert exc.code == 304
