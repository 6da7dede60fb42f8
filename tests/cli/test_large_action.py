"""An action far over the old 8 KiB (a large Write) still opens a request
that a person sees and decides, through a real receiver and pipeline:
``spanvisor approvals`` shows it masked and cut in the middle, ``approvals
--full`` prints it whole, ``approve`` approves it, and the agent's check
where it runs permits exactly that action, once. Over the cap (1 MiB) it is
refused with the reason, before anything is sent."""

from __future__ import annotations

import json
import threading
from typing import Any

from spanvisor.canonical import MAX_ACTION_BYTES, canonical_json
from spanvisor.cli.emit_approval import approval_id_for
from spanvisor.cli.main import main
from spanvisor.spans import conventions as cv
from spanvisor.tracking.approvals import request_from
from tests.waiting import wait_until

from .conftest import Run
from .test_action_permit import _permit
from .test_decide import TOKEN, _Serve, serve  # noqa: F401 - fixtures

SECRET = "ghp_" + "Zq7Xw2Lm9V" * 4
# About 70 kB of file: over the decoder's 64 KiB cut of other strings too.
CONTENT = f"GITHUB_TOKEN={SECRET}\n" + "".join(f"line {i:05d} = compute({i})\n" for i in range(2_600)) + "EOF_MARK\n"
WRITE = {"tool": "Write", "arguments": {"file_path": "/srv/app/generated.py", "content": CONTENT}}
QUESTION = "Allow Write: /srv/app/generated.py?"


def test_a_large_write_opens_a_request_shown_clipped_and_permitted_once(cli: Run, serve: _Serve) -> None:  # noqa: F811
    assert len(canonical_json(WRITE)) > 64 * 1024
    endpoint = ("--endpoint", serve.base, "--token", TOKEN)
    common = ("--url", serve.base, "--token", TOKEN)
    task = "big-write-1"
    assert cli("emit", "start", "--task", task, "--agent", "claude-code", "--name", "write", *endpoint)[0] == 0
    argv = ["emit", "approval", "--task", task, "--question", QUESTION, "--wait", "60"]
    argv += ["--action", json.dumps(WRITE), *endpoint]
    result: list[int] = []
    agent = threading.Thread(target=lambda: result.append(main(argv)), daemon=True)
    agent.start()
    aid = approval_id_for(QUESTION, canonical_json(WRITE), None)
    wait_until(lambda: serve.task(task)["approvals"], what="the large request")

    # The control API: the whole action, its secret masked.
    [shown] = serve.task(task)["approvals"]
    assert shown["approval_id"] == aid and shown["action"]["tool"] == "Write"
    content = shown["action"]["arguments"]["content"]
    assert SECRET not in json.dumps(shown) and content.startswith("GITHUB_TOKEN=****\n")
    assert content.endswith("EOF_MARK\n") and content.count("= compute(") == 2_600

    # The list: masked, cut in the middle (its end is there), the whole one command away.
    code, out, _ = cli("approvals", *common)
    assert code == 0 and SECRET not in out
    line = next(x for x in out.splitlines() if "runs Write" in x)
    assert " characters … " in line and "EOF_MARK" in line and len(line) < 500
    assert f"(whole: spanvisor approvals --full {aid})" in out
    code, out, _ = cli("approvals", "--full", f"{task}/{aid}", *common)
    assert code == 0 and SECRET not in out and out.count("= compute(") == 2_600 and "EOF_MARK" in out
    assert cli("approvals", "--full", "no-such-approval", *common)[0] == 1

    # Approved by a person: the CLI prints what it approves first.
    code, out, _ = cli("approve", task, aid, "--as", "alice", *common)
    assert code == 0 and "Action: runs Write" in out and SECRET not in out, out
    agent.join(60)
    assert result == [0]  # the agent's check permitted exactly this action
    again = _permit(serve, task, aid, WRITE)
    assert again["permitted"] is False and again["code"] == "consumed"
    other: dict[str, Any] = {"tool": "Write", "arguments": {**WRITE["arguments"], "content": CONTENT + "rm -rf /\n"}}
    assert _permit(serve, task, aid, other)["code"] == "digest_mismatch"


def test_an_action_over_the_cap_is_refused_with_the_reason(cli: Run) -> None:
    huge = {"tool": "Write", "arguments": {"content": "a" * (MAX_ACTION_BYTES + 1)}}
    code, _, err = cli("emit", "approval", "--task", "t", "--question", "Write?", "--action", json.dumps(huge))
    assert code != 0 and "over the 1,048,576 a request may carry" in err, err
    # And where requests are read: refused for its size, said in the task's notes.
    notes: list[str] = []
    attrs = {cv.APPROVAL_ID: "a1", cv.APPROVAL_QUESTION: "Write?", cv.APPROVAL_ACTION: json.dumps(huge)}
    assert request_from(attrs, 0, notes, "t", "r") is None
    assert any("over the 1,048,576 bytes a request may carry" in n for n in notes), notes


def test_a_large_action_can_be_approved_with_other_arguments(cli: Run, serve: _Serve) -> None:  # noqa: F811
    """The person removes the secret from the file before approving: the
    agent runs the edited 70 kB file, and only that (a decision's body holds
    an action as large as a request's)."""
    endpoint = ("--endpoint", serve.base, "--token", TOKEN)
    common = ("--url", serve.base, "--token", TOKEN)
    task = "big-write-2"
    assert cli("emit", "start", "--task", task, "--agent", "claude-code", "--name", "write", *endpoint)[0] == 0
    argv = ["emit", "approval", "--task", task, "--question", QUESTION, "--wait", "60"]
    argv += ["--action", json.dumps(WRITE), *endpoint]
    result: list[int] = []
    agent = threading.Thread(target=lambda: result.append(main(argv)), daemon=True)
    agent.start()
    aid = approval_id_for(QUESTION, canonical_json(WRITE), None)
    wait_until(lambda: serve.task(task)["approvals"], what="the large request")
    fixed = {**WRITE["arguments"], "content": CONTENT.replace(f"GITHUB_TOKEN={SECRET}\n", "")}
    code, _, err = cli("approve", task, aid, "--as", "alice", "--edit-arguments", json.dumps(fixed), *common)
    assert code == 0, err
    agent.join(60)
    assert result == [0]  # permitted: the edited action, once
    edited = {"tool": "Write", "arguments": fixed}
    assert _permit(serve, task, aid, edited)["code"] == "consumed"
    assert _permit(serve, task, aid, WRITE)["code"] == "digest_mismatch"  # not what was approved
