"""``spanvisor approve|reject|cancel|retry|ack`` and ``spanvisor emit approval``
through ``main()``, against a real receiver (OTLP/HTTP with the control API)
on a real pipeline. Exit codes and output are asserted."""

from __future__ import annotations

import asyncio
import json
import threading
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from spanvisor.cli.emit_approval import approval_id_for
from spanvisor.cli.main import main
from spanvisor.config import Config
from spanvisor.pipeline.pipeline import Pipeline
from spanvisor.receiver.server import Receiver, ReceiverSettings
from spanvisor.testing import InMemorySink
from tests.waiting import wait_until

TOKEN = "decide-s3cret"
Run = Any


class _Serve:
    """A receiver on its own loop thread in front of a real pipeline."""

    def __init__(self, data_dir: Path, **env: str) -> None:
        config = Config.load(
            env={
                **env,
                "SPANVISOR_DATA_DIR": str(data_dir),
                "SPANVISOR_OTLP_BIND": "127.0.0.1",
                "SPANVISOR_OTLP_HTTP_PORT": "0",
                "SPANVISOR_OTLP_GRPC_PORT": "off",
                "SPANVISOR_ADMIN_PORT": "off",
                "SPANVISOR_OTLP_TOKEN": TOKEN,
                "SPANVISOR_JOURNAL": "off",
            },
            extra=None,
        )
        self.pipeline = Pipeline(config=config, sinks=[InMemorySink()], path="receiver").start()
        assert self.pipeline.wait_ready(30)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.receiver = Receiver(self.pipeline, ReceiverSettings.from_config(config))
        asyncio.run_coroutine_threadsafe(self.receiver.start(), self.loop).result(30)
        self.base = f"http://127.0.0.1:{self.receiver.http_port}"

    def task(self, task_id: str) -> dict[str, Any]:
        req = urllib.request.Request(
            f"{self.base}/v1/control/tasks/{task_id}", headers={"Authorization": f"Bearer {TOKEN}"}
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            doc: dict[str, Any] = json.loads(resp.read())
            return doc

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.receiver.stop(self.pipeline.shutdown), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[_Serve]:
    s = _Serve(tmp_path / "serve")
    yield s
    s.close()


def test_cancel_ack_and_retry_exit_codes(cli: Run, serve: _Serve) -> None:
    task = f"T-{uuid.uuid4().hex[:8]}"
    common = ("--url", serve.base, "--token", TOKEN)
    endpoint = ("--endpoint", serve.base, "--token", TOKEN)
    # No task of that id anywhere: refused, never "recorded" for a later task.
    code, _, err = cli("cancel", task, *common, "--as", "alice")
    assert code == 1 and "unknown_task" in err and f"no task {task}" in err, err
    assert cli("emit", "start", "--task", task, "--agent", "sh", "--name", "deploy", *endpoint)[0] == 0
    wait_until(lambda: serve.task(task)["state"] == "running", what="the run in the shared record")
    code, out, _ = cli("cancel", task, *common, "--as", "alice", "--intervention-id", "click-1")
    assert code == 0 and "Cancel requested: task" in out
    code, out, _ = cli("cancel", task, *common, "--as", "alice", "--intervention-id", "click-1")
    assert code == 0 and "Already recorded" in out, "the same click again is fine"
    code, _, err = cli("cancel", task, *common, "--as", "bob")
    assert code == 1 and "already cancelled by alice" in err
    # A running task is not acknowledged or retried.
    code, _, err = cli("ack", task, *common, "--comment", "on it")
    assert code == 1 and "still running" in err, err
    assert cli("emit", "finish", "--task", task, "--status", "error", *endpoint)[0] == 0
    wait_until(lambda: serve.task(task)["state"] == "failed", what="the run to fail")
    code, out, _ = cli("ack", task, *common, "--comment", "on it")
    assert code == 0 and "Acknowledged" in out
    code, _, err = cli("retry", task, "--url", serve.base, "--token", "wrong")
    assert code == 1 and "token" in err
    code, _, err = cli("retry", task, "--url", "http://127.0.0.1:9", "--timeout", "2")
    assert code == 2 and "no answer" in err
    assert serve.task(task)["cancel_requested"] is True


@pytest.mark.parametrize(("answer", "expected"), [("approve", 0), ("reject", 1)])
def test_emit_approval_waits_for_the_answer(cli: Run, serve: _Serve, answer: str, expected: int) -> None:
    task = f"shell-{uuid.uuid4().hex[:8]}"
    question = "Apply the fix to prod?"
    aid = approval_id_for(question)
    endpoint = ("--endpoint", serve.base, "--token", TOKEN)
    code, _, _ = cli("emit", "start", "--task", task, "--agent", "sh", "--name", "deploy", *endpoint)
    assert code == 0
    result: list[int] = []
    asker = threading.Thread(
        target=lambda: result.append(
            main(["emit", "approval", "--task", task, "--question", question, "--wait", "60", *endpoint])
        ),
        daemon=True,
    )
    asker.start()
    wait_until(lambda: serve.task(task)["approvals"], what="the open request")
    assert serve.task(task)["approvals"][0]["approval_id"] == aid
    code, _, _ = cli(answer, task, aid, "--url", serve.base, "--token", TOKEN, "--as", "alice", "--comment", "ok")
    assert code == 0
    asker.join(30)
    assert result == [expected]
    # The shell agent's note of the answer and the decision both closed it.
    wait_until(lambda: serve.task(task)["status"] == "working", what="working again")


def test_emit_approval_ends_at_once_with_exit_5_when_the_task_is_cancelled(cli: Run, serve: _Serve) -> None:
    task = f"shell-{uuid.uuid4().hex[:8]}"
    endpoint = ("--endpoint", serve.base, "--token", TOKEN)
    assert cli("emit", "start", "--task", task, "--agent", "sh", "--name", "deploy", *endpoint)[0] == 0
    result: list[int] = []
    asker = threading.Thread(
        target=lambda: result.append(
            main(["emit", "approval", "--task", task, "--question", "Go?", "--wait", "900", *endpoint])
        ),
        daemon=True,
    )
    asker.start()
    wait_until(lambda: serve.task(task)["approvals"], what="the open request")
    assert cli("cancel", task, "--url", serve.base, "--token", TOKEN, "--as", "alice")[0] == 0
    asker.join(30)
    assert result == [5], "cancelled, at once (not after --wait 900)"


def test_emit_approval_help_lists_every_exit_status(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["emit", "approval", "--help"])
    out = capsys.readouterr().out
    listed = out[out.index("exit status:") :]
    for code, word in [(0, "approved"), (1, "rejected"), (2, "timed out"), (3, "not sent"), (4, "not permitted")]:
        assert f"  {code}  " in listed and word in listed, listed
    assert "  5  cancelled" in listed


def test_emit_approval_times_out_with_exit_2(cli: Run, serve: _Serve) -> None:
    task = f"shell-{uuid.uuid4().hex[:8]}"
    args = ("--endpoint", serve.base, "--token", TOKEN)
    code, out, _ = cli("emit", "approval", "--task", task, "--question", "Now?", "--id", "x1", "--wait", "0.5", *args)
    assert code == 2 and "timed out" in out
    wait_until(lambda: serve.task(task)["status"] not in ("unknown", "awaiting_approval"), what="the request closed")
    code, _, err = cli("approve", task, "x1", "--url", serve.base, "--token", TOKEN)
    assert code == 1 and "expired" in err, "the agent's timeout closed the request"


def test_emit_approval_that_never_reaches_the_control_api_exits_3(cli: Run, serve: _Serve) -> None:
    """A wrong --url is not a timeout: exit 3, and no decision is sent back,
    so the request stays open for whoever can answer it."""
    task = f"shell-{uuid.uuid4().hex[:8]}"
    args = ("--endpoint", serve.base, "--token", TOKEN, "--url", "http://127.0.0.1:9")
    code, _, err = cli("emit", "approval", "--task", task, "--question", "Now?", "--id", "x2", "--wait", "0.5", *args)
    assert code == 3 and "never answered" in err, err
    # The request reached serve; nothing was sent back for it (its expiry is
    # the server's: it closes when its timeout passes).
    wait_until(lambda: serve.task(task)["state"] == "running", what="the run")
    assert serve.task(task)["decisions"] == []


def test_approvals_lists_the_request_and_approve_prints_its_question(cli: Run, serve: _Serve) -> None:
    task = f"shell-{uuid.uuid4().hex[:8]}"
    question = "Rotate <the> keys?"
    endpoint = ("--endpoint", serve.base, "--token", TOKEN)
    common = ("--url", serve.base, "--token", TOKEN)
    assert cli("emit", "start", "--task", task, "--agent", "sh", "--name", "rotate", *endpoint)[0] == 0
    code, out, _ = cli("approvals", *common)
    assert code == 0 and task not in out
    result: list[int] = []
    asker = threading.Thread(
        target=lambda: result.append(
            main(["emit", "approval", "--task", task, "--question", question, "--wait", "60", *endpoint])
        ),
        daemon=True,
    )
    asker.start()
    wait_until(lambda: serve.task(task)["approvals"], what="the open request")
    code, out, err = cli("approvals", *common, "--json")
    assert code == 0, (out, err)
    out = out[out.index("{") :]  # after the asker's own line (same process, same stdout)
    [item] = [x for x in json.loads(out)["approvals"] if x["task_id"] == task]
    assert item["question"] == question and item["agent_id"] == "sh"
    code, out, _ = cli("approvals", *common, "--agent", "sh")
    # The command to paste carries the --url this was given.
    pasted = item["answer"].replace("spanvisor approve ", f"spanvisor approve --url {serve.base} ", 1)
    assert code == 0 and task in out and question in out and pasted in out, out
    assert cli("approvals", *common, "--agent", "nobody")[1].startswith("No open approval requests")
    # A digest of another question: refused, and the request stays open.
    aid = item["approval_id"]
    code, _, err = cli("approve", task, aid, *common, "--digest", "0" * 16)
    assert code == 1 and "digest_mismatch" in err, err
    code, out, _ = cli("approve", task, aid, *common, "--as", "alice")
    assert code == 0 and f"Question: {question}" in out and "Approved" in out, out
    asker.join(30)
    assert result == [0]
    code, _, err = cli("approve", task, "nope", *common)
    assert code == 1 and "unknown_request" in err
    assert cli("approvals", *common, "--url", "http://127.0.0.1:9", "--timeout", "2")[0] == 2


def test_a_decision_made_in_slack_reads_as_plain_text_in_the_terminal(cli: Run, serve: _Serve) -> None:
    """The server names a Slack user the way Slack renders one (``<@U…>``);
    the terminal is shown ``@U0ALICE``, never the markup."""
    from spanvisor.cli.approvals import plain
    from spanvisor.events import Decision

    task = f"T-{uuid.uuid4().hex[:8]}"
    common = ("--url", serve.base, "--token", TOKEN)
    endpoint = ("--endpoint", serve.base, "--token", TOKEN)
    assert cli("emit", "start", "--task", task, "--agent", "sh", "--name", "deploy", *endpoint)[0] == 0
    wait_until(lambda: serve.task(task)["state"] == "running", what="the run in the shared record")
    clicked = Decision(
        intervention_id="slack-click-1", task_id=task, action="cancel", actor_id="U0ALICE", time_ns=1, source="slack"
    )
    control = serve.pipeline.control
    verdict = control.call_sync(lambda: control.decide(clicked), 30)
    assert verdict.ok, verdict
    code, out, err = cli("cancel", task, *common, "--as", "bob")
    assert code == 1 and "already cancelled by @U0ALICE" in err and "<@" not in out + err, err
    assert plain("by <@U0ALICE|alice>, <!channel> in <#C1|ops>") == "by @alice, @channel in #ops"
