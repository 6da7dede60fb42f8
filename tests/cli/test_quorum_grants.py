"""Two people, never the requester; edited arguments; standing grants: a
shell agent (``spanvisor emit approval``, its own process) asks through the
real receiver and pipeline, and people answer with the real CLI, each with
their own token (``SPANVISOR_DECIDERS``) or the shared one.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from spanvisor.control.deciders import token_hash
from tests.waiting import wait_until

from .conftest import Run
from .test_decide import TOKEN, _Serve

SHARED = "shared-decide-s3cret"
PEOPLE = {"alice": "alice-own-t0ken", "bob": "bob-own-t0ken", "carol": "carol-own-t0ken"}
MIGRATE = {"tool": "migrate", "arguments": {"target": "prod", "version": 7}}


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[_Serve]:
    deciders = tmp_path / "deciders.toml"
    deciders.write_text("".join(f'[people.{n}]\ntoken_sha256 = "{token_hash(t)}"\n\n' for n, t in PEOPLE.items()))
    s = _Serve(tmp_path / "serve", SPANVISOR_DECIDERS=str(deciders), SPANVISOR_DECIDE_TOKEN=SHARED)
    yield s
    s.close()


def _task(cli: Run, serve: _Serve) -> str:
    task = f"T-{uuid.uuid4().hex[:8]}"
    endpoint = ("--endpoint", serve.base, "--token", TOKEN)
    assert cli("emit", "start", "--task", task, "--agent", "sh", "--name", "deploy", *endpoint)[0] == 0
    wait_until(lambda: serve.task(task)["state"] == "running", what="the run in the shared record")
    return task


def _ask(serve: _Serve, task: str, aid: str, action: dict[str, Any], *extra: str) -> subprocess.Popen[str]:
    """The agent, in its own process: asks and waits for the answer."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SPANVISOR_", "OTEL_"))}
    argv = [sys.executable, "-m", "spanvisor.cli", "emit", "approval", "--task", task, "--id", aid]
    argv += ["--question", "Run the migration?", "--action", json.dumps(action), "--wait", "60"]
    argv += ["--endpoint", serve.base, "--token", TOKEN, "--url", serve.base, *extra]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)

    showed = False

    def shown_or_ended() -> bool:
        # The task's approvals list the open requests: one a grant decides
        # at once may show and be gone again by the next look.
        nonlocal showed
        showed = showed or any(a["approval_id"] == aid for a in serve.task(task)["approvals"])
        return showed or proc.poll() is not None

    # A loaded machine starts the agent's process slowly; one that failed
    # before its request showed says why. One answered at once (a standing
    # grant) may end, 0, before the pipeline has recorded its request: its
    # output is the caller's to read.
    wait_until(shown_or_ended, 90, "the request open")
    if not showed and proc.poll() is not None and proc.returncode != 0:
        out, err = proc.communicate()
        raise AssertionError(f"the agent ended before its request opened ({proc.returncode}):\n{out}\n{err}")
    return proc


def _as(name: str) -> tuple[str, ...]:
    return ("--token", PEOPLE.get(name, SHARED))


def test_two_people_never_the_requester_and_the_agent_runs_only_then(cli: Run, serve: _Serve) -> None:
    task = _task(cli, serve)
    agent = _ask(serve, task, "a1", MIGRATE, "--approvers", "2", "--requester", "alice")
    try:
        url = ("--url", serve.base)
        code, _, err = cli("approve", task, "a1", *url, *_as("alice"))
        assert code == 1 and "own_request" in err and "alice asked for this" in err, err
        code, _, err = cli("approve", task, "a1", *url, *_as("anonymous"))
        assert code == 1 and "unverified" in err, err
        assert "`spanvisor decider-token NAME` makes one" in err, "the refusal says where a token comes from"
        code, out, _ = cli("approve", task, "a1", *url, *_as("bob"))
        assert code == 0 and "Approval 1 of 2 counted" in out and "1 more needed" in out, out
        code, _, err = cli("approve", task, "a1", *url, *_as("bob"))
        assert code == 1 and "already_voted" in err, err
        edit = ("--edit-arguments", '{"target": "staging", "version": 7}')
        code, _, err = cli("approve", task, "a1", *edit, *url, *_as("carol"))
        assert code == 1 and "bad_edit" in err, err
        assert agent.poll() is None, "the agent went on after one approval of two"
        [req] = serve.task(task)["approvals"]
        assert (req["approvers"], req["requester"], req["approved_by"]) == (2, "alice", ["bob"])
        code, out, _ = cli("approve", task, "a1", *url, *_as("carol"))
        assert code == 0 and "Approved" in out, out
        out, err = agent.communicate(timeout=60)
        assert agent.returncode == 0 and "permitted: migrate" in out, (out, err)
    finally:
        agent.kill()


def test_an_edit_is_what_runs_and_the_tool_cannot_change(cli: Run, serve: _Serve) -> None:
    task = _task(cli, serve)
    agent = _ask(serve, task, "a1", MIGRATE)
    try:
        url = ("--url", serve.base)
        edit = ("--edit-arguments", '{"target": "staging", "version": 7}')
        code, out, _ = cli("approve", task, "a1", *edit, *url, *_as("bob"))
        assert code == 0 and "Approving with arguments" in out, out
        out, err = agent.communicate(timeout=60)
        assert agent.returncode == 0, (out, err)
        assert 'edited: {"arguments":{"target":"staging","version":7},"tool":"migrate"}' in out, out
    finally:
        agent.kill()
    # Over the API, an edit that names another tool is refused.
    task = _task(cli, serve)
    agent = _ask(serve, task, "a2", MIGRATE, "--wait", "5")
    try:
        from spanvisor.control.client import HttpSource

        sent = HttpSource(serve.base, PEOPLE["bob"]).decide(
            task, "approve", "bob", approval_id="a2", edited={"tool": "drop_table", "arguments": {}}
        )
        assert sent.outcome == "denied" and sent.code == "bad_edit", sent
    finally:
        agent.kill()


def test_a_standing_grant_approves_until_revoked_and_needs_a_proven_person(cli: Run, serve: _Serve) -> None:
    url = ("--url", serve.base)
    code, _, err = cli("grants", "add", "--tool", "migrate", "--for", "1h", *url, *_as("anonymous"))
    assert code == 1 and "own token" in err, err
    code, out, _ = cli("grants", "add", "--tool", "migr*", "--agent", "sh", "--for", "1h", *url, *_as("alice"))
    assert code == 0 and "Granted g-" in out, out
    # What --agent matches is said to be the agent's own claim.
    assert "the agent's claim, not verified" in out, out
    gid = out.split("Granted ")[1].split(":")[0]
    task = _task(cli, serve)
    agent = _ask(serve, task, "a1", MIGRATE)
    out, err = agent.communicate(timeout=60)
    assert agent.returncode == 0 and "approved by alice" in out and "permitted" in out, (out, err)
    [d] = [d for d in serve.task(task)["decisions"] if d["approval_id"] == "a1"]
    assert (d["source"], d["grant_id"], d["actor_id"], d["verified"]) == ("grant", gid, "alice", True)
    # Not for a request alice asked for herself, nor one two people must approve.
    for extra in (("--requester", "alice"), ("--approvers", "2")):
        task = _task(cli, serve)
        agent = _ask(serve, task, "a1", MIGRATE, "--wait", "2", *extra)
        agent.communicate(timeout=60)
        assert agent.returncode == 2, extra  # timed out: nobody approved
    code, out, _ = cli("grants", *url, *_as("bob"))
    assert code == 0 and gid in out and "live" in out, out
    code, out, _ = cli("grants", "revoke", gid, *url, *_as("bob"))
    assert code == 0 and "Revoked" in out and "by bob" in out, out
    task = _task(cli, serve)
    agent = _ask(serve, task, "a1", MIGRATE, "--wait", "2")
    agent.communicate(timeout=60)
    assert agent.returncode == 2, "a revoked grant still approved"


def test_approve_for_run_grants_the_tool_for_the_rest_of_that_run_only(cli: Run, serve: _Serve) -> None:
    task = _task(cli, serve)
    url = ("--url", serve.base)
    agent = _ask(serve, task, "a1", MIGRATE)
    try:
        code, out, err = cli("approve", task, "a1", "--for-run", *url, *_as("bob"))
        assert code == 0 and "Approved" in out and "for the rest of run" in out, (out, err)
        assert agent.communicate(timeout=60)[0].count("permitted") == 1
    finally:
        agent.kill()
    # The run's next request of that tool is approved by the grant, not a person.
    agent = _ask(serve, task, "a2", {"tool": "migrate", "arguments": {"target": "prod", "version": 8}})
    out, err = agent.communicate(timeout=60)
    assert agent.returncode == 0 and "approved by bob" in out, (out, err)
    wait_until(lambda: any(d["approval_id"] == "a2" for d in serve.task(task)["decisions"]), what="the decision")
    [d] = [d for d in serve.task(task)["decisions"] if d["approval_id"] == "a2"]
    assert d["source"] == "grant" and d["actor_id"] == "bob"
    # Another task's run is not covered.
    other = _task(cli, serve)
    agent = _ask(serve, other, "a1", MIGRATE, "--wait", "2")
    agent.communicate(timeout=60)
    assert agent.returncode == 2, "a grant for one run approved another's request"


def test_approve_for_run_on_a_vote_grants_nothing(cli: Run, serve: _Serve) -> None:
    task = _task(cli, serve)
    agent = _ask(serve, task, "a1", MIGRATE, "--approvers", "2", "--wait", "5")
    try:
        code, out, err = cli("approve", task, "a1", "--for-run", "--url", serve.base, *_as("bob"))
        assert code == 1 and "one vote" in err, (out, err)
        code, out, _ = cli("grants", "--url", serve.base, *_as("bob"))
        assert code == 0 and "No standing grants" in out, out
    finally:
        agent.kill()


def test_the_second_approver_is_shown_the_arguments_the_first_approved(cli: Run, serve: _Serve) -> None:
    task = _task(cli, serve)
    agent = _ask(serve, task, "a1", MIGRATE, "--approvers", "2")
    try:
        url = ("--url", serve.base)
        edit = '{"target": "staging", "version": 7}'
        assert cli("approve", task, "a1", "--edit-arguments", edit, *url, *_as("bob"))[0] == 0
        code, out, err = cli("approve", task, "a1", *url, *_as("carol"))
        assert code == 1 and "bad_edit" in err, (out, err)
        shown = '{"target": "staging", "version": 7}'
        assert f"Approved so far with other arguments: {shown} (approve those: --edit-arguments '{shown}')" in out
        code, out, _ = cli("approve", task, "a1", "--edit-arguments", shown, *url, *_as("carol"))
        assert code == 0 and "Approved" in out, out
        out, err = agent.communicate(timeout=60)
        assert agent.returncode == 0 and '"target":"staging"' in out, (out, err)
    finally:
        agent.kill()
