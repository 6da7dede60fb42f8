"""The real Claude Code under a central policy: the security team's rule on
``serve`` needs two people from SRE for a command the developer's own hook
policy allows. The call waits; one approval (or one from outside SRE) is
not enough; the second SRE approval lets the very command run.

Its own ``spanvisor serve`` (PostgreSQL, the matrix's fake Slack), with
``SPANVISOR_POLICY`` and a deciders file of three people with tokens of
their own: alice and bob in sre, carol in dev."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.codingagents import claude_code as cc
from tests.codingagents.fake_anthropic import result_text, tool_results
from tests.codingagents.fake_http import FakeModelAPI
from tests.codingagents.script import Script, text, tool
from tests.codingagents.served import APPROVER, SIGNING_SECRET, Matrix
from tests.receiver.serve_proc import ServeProcess, slack_env
from tests.waiting import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout_s(900)]

WAIT_S = 120.0
CENTRAL = """name = "acme-security"
[[rule]]
name = "prod-two-sre"
tool = "Bash"
command_regex = "\\\\bprod\\\\b"
decision = "ask"
approvers = 2
from = ["group:sre"]
"""
LOCAL = """default = "ask"
timeout = 300
[[rule]]
name = "echo"
tool = "Bash"
command = ["echo *"]
decision = "allow"
"""
PEOPLE = {"alice": "sre", "bob": "sre", "carol": "dev"}


def _token(name: str) -> str:
    return f"tok-{name}-" + hashlib.sha256(name.encode()).hexdigest()[:16]


@pytest.fixture(scope="module")
def central(pg_server: Any, matrix: Matrix, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Matrix]:
    data = tmp_path_factory.mktemp("central-serve")
    policy = data / "central.toml"
    policy.write_text(CENTRAL)
    deciders = data / "deciders.toml"
    deciders.write_text(
        "".join(
            f'[people.{n}]\ntoken_sha256 = "{hashlib.sha256(_token(n).encode()).hexdigest()}"\ngroups = ["{g}"]\n'
            for n, g in PEOPLE.items()
        )
    )
    env = slack_env(
        data,
        matrix.slack.base_url,
        SLACK_SIGNING_SECRET=SIGNING_SECRET,
        SPANVISOR_SLACK_APPROVERS=APPROVER,
        SPANVISOR_DATABASE_URL=pg_server.database(),
        SPANVISOR_STATE_STORE="postgres",
        SPANVISOR_SINKS="postgres,slack",
        SPANVISOR_POLICY=str(policy),
        SPANVISOR_DECIDERS=str(deciders),
    )
    for leaked in ("SPANVISOR_OTLP_TOKEN", "SPANVISOR_CONTROL_TOKEN", "SLACK_APP_TOKEN", "SPANVISOR_HOOK_POLICY"):
        env.pop(leaked, None)
    serve = ServeProcess(data, env, start=False)
    serve.start(timeout=300)
    try:
        yield Matrix(serve, matrix.slack, str(serve.env["SPANVISOR_DATABASE_URL"]))
    finally:
        serve.stop()


def approve(m: Matrix, task_id: str, approval: str, who: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SPANVISOR_", "OTEL_", "SLACK_"))}
    env["SPANVISOR_DATA_DIR"] = str(m.serve.data_dir / f"cli-{who}")
    argv = [sys.executable, "-m", "spanvisor.cli", "approve", task_id, approval, "--url", m.endpoint]
    return subprocess.run(
        [*argv, "--token", _token(who)], capture_output=True, text=True, timeout=120, env=env, check=False
    )


def test_a_central_rule_needs_two_sre_people_for_a_command_the_local_policy_allows(
    cli_bin: Path, central: Matrix, anthropic: FakeModelAPI, tmp_path: Path
) -> None:
    run_id = anthropic.script(uuid.uuid4().hex[:12], Script([tool("Bash", command="echo deploy prod"), text("Done.")]))
    task_id = f"cc-central-{run_id}"
    local = tmp_path / "local.toml"
    local.write_text(LOCAL)
    env = cc.env(
        tmp_path / "home",
        central,
        anthropic,
        run_id,
        SPANVISOR_HOOK_POLICY=str(local),
        SPANVISOR_OTLP_ENDPOINT=central.endpoint,
    )
    settings = cc.hook_settings(tmp_path / "settings.json")
    running = cc.claude_started(
        cli_bin,
        tmp_path / "work",
        env,
        f"deploy once approved ({run_id})",
        settings,
        {"endpoint": central.endpoint, "task-id": task_id},
    )
    try:

        def asked() -> list[dict[str, Any]]:
            if running.proc.poll() is not None:
                raise AssertionError(f"the CLI ended before asking:\n{running.wait().said()}")
            return central.pending(task_id)

        [req] = wait_until(asked, WAIT_S, "the hook's approval request", every=0.2)
        assert req["question"] == "Allow Bash: echo deploy prod?"
        assert (req["approvers"], req["approvers_from"]) == (2, ["group:sre"]), req
        assert req["required_by"] == "central:prod-two-sre" and req["policy_version"].startswith("acme-security@")
        listed = central.spanvisor("approvals", "--url", central.endpoint)
        assert "required by rule prod-two-sre of policy acme-security@" in listed, listed
        aid = req["approval_id"]
        # carol is in dev: her approval does not count.
        no = approve(central, task_id, aid, "carol")
        assert no.returncode == 1 and "only approvals from sre count" in no.stdout + no.stderr, no
        # alice's is one of two: the call still waits.
        one = approve(central, task_id, aid, "alice")
        assert one.returncode == 0, one
        [still] = wait_until(lambda: central.pending(task_id), WAIT_S, "the request, still open")
        assert still["approved_by"] and running.proc.poll() is None, "one approval is not enough"
        two = approve(central, task_id, aid, "bob")
        assert two.returncode == 0, two
        ran = running.wait()
    finally:
        running.stop()
    assert ran.code == 0 and ran.stdout.strip() == "Done.", ran.said()
    asked = [s for s in anthropic.requests(run_id) if s.path.startswith("/v1/messages")]
    assert [result_text(r) for r in tool_results(asked[-1].body)] == ["deploy prod"], "the command ran"
    rows = wait_until(lambda: [r for r in central.interventions(task_id) if r["outcome"] == "applied"], WAIT_S, "rows")
    people = sorted(r["actor"] for r in rows)
    assert people == ["alice", "bob"], rows
    attrs = [json.loads(r["attributes"]) for r in rows if r["attributes"]]
    assert any(a.get("required_by") == "central:prod-two-sre" for a in attrs), attrs
