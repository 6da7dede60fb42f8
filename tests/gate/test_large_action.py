"""An action too large for a request (a Write of more than 1 MiB) still
opens a request a person sees and decides: it carries a stand-in (the
arguments masked and clipped for display, the SHA-256 of the whole), the
digest of the decision binds that stand-in, and only the hook that holds
the whole call, which built it, presents it where it runs."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from spanvisor.cli.main import main
from spanvisor.hook.ask import STAND_IN
from tests.cli.coding_harness import TOKEN, Serve, clean_env, task_of
from tests.gate.test_attack import SPANVISOR, decision
from tests.waiting import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout_s(600)]


@pytest.fixture
def serve(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Serve]:
    clean_env(monkeypatch, tmp_path)
    s = Serve(tmp_path / "serve")
    yield s
    s.close()


@pytest.mark.parametrize("verb", ["approve", "reject"])
def test_a_write_over_a_megabyte_asks_a_person_with_its_whole_digest(serve: Serve, tmp_path: Path, verb: str) -> None:
    session = f"big-{uuid.uuid4().hex[:8]}"
    content = "line of the file\n" * 70_000 + "GITHUB_TOKEN=ghp_" + "a" * 36 + "\nthe end\n"
    call = {"session_id": session, "tool_name": "Write", "tool_input": {"file_path": "big.txt", "content": content}}
    (tmp_path / "policy.toml").write_text('default = "ask"\ntimeout = 120\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SPANVISOR_", "OTEL_"))}
    env |= {
        "SPANVISOR_DATA_DIR": str(tmp_path / "data"),
        "SPANVISOR_HOOK_DELIVERY": "off",
        "SPANVISOR_OTLP_ENDPOINT": serve.base,
        "SPANVISOR_OTLP_TOKEN": TOKEN,
    }
    argv = [SPANVISOR, "hook", "claude-code", "--policy", str(tmp_path / "policy.toml"), "--cli-timeout", "300"]
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        assert proc.stdin is not None
        proc.stdin.write(json.dumps(call).encode())
        proc.stdin.close()
        [req] = wait_until(
            lambda: serve.task(task_of("claude-code", session))["approvals"], 240, "the request for the large Write"
        )
        whole = json.dumps(
            {"tool": "Write", "arguments": call["tool_input"]}, sort_keys=True, separators=(",", ":")
        ).encode()
        shown = json.dumps(req["action"])
        assert hashlib.sha256(whole).hexdigest() in shown and STAND_IN in shown
        assert "the end" in shown and "characters" in shown, "the start and the end are shown"
        assert "ghp_" + "a" * 36 not in shown, "masked for display"
        code = main(
            [
                verb,
                task_of("claude-code", session),
                req["approval_id"],
                "--url",
                serve.base,
                "--token",
                TOKEN,
                "--as",
                "alice",
            ]
        )
        assert code == 0
        proc.stdin = None  # written and closed above
        out, err = proc.communicate(timeout=240)
    finally:
        proc.kill()
    expected = "allow" if verb == "approve" else "deny"
    assert (proc.returncode, decision("claude-code", out.decode())) == (0, expected), err.decode()
