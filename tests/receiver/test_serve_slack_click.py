"""The whole click flow through a real ``spanvisor serve``.

An agent (the real OpenTelemetry SDK exporting OTLP/HTTP to serve, reading
decisions from serve's control API) blocks in ``request_approval``. The
Approve button is read from the parent message the fake Slack holds, and a
click is signed and POSTed to serve's admin port ``/slack/interactions``, as
Slack would. Then everything the click should have done is checked together:
the agent released with the decision, the ``human_interventions`` row in
PostgreSQL, the parent re-rendered without the buttons and with who approved,
the thread line, the Prometheus counter on the admin port's ``/metrics`` and
the ephemeral answer. Unsigned, tampered and stale posts get 401 and change
nothing; ``/spanvisor status`` is answered.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from click_harness import APPROVER, SIGNING_SECRET, Served, buttons
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from serve_proc import FakeSlackThread, ServeProcess, message_text, slack_env
from tests.fakes.slack_store import Message
from tests.waiting import wait_until

from spanvisor.canonical import approval_digest
from spanvisor.spans import conventions as cv
from spanvisor_slack import actions as A

pytestmark = [pytest.mark.slow, pytest.mark.timeout_s(180)]


@pytest.fixture(scope="module")
def served(pg_server: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    db_url = pg_server.database()
    slack = FakeSlackThread()
    data = tmp_path_factory.mktemp("serve-click")
    env = slack_env(
        data,
        slack.base_url,
        SLACK_SIGNING_SECRET=SIGNING_SECRET,
        SPANVISOR_SLACK_APPROVERS=APPROVER,
        SPANVISOR_DATABASE_URL=db_url,
        SPANVISOR_STATE_STORE="postgres",
        SPANVISOR_SINKS="postgres,slack,prometheus",
    )
    for leaked in ("SPANVISOR_OTLP_TOKEN", "SPANVISOR_CONTROL_TOKEN", "SLACK_APP_TOKEN"):
        env.pop(leaked, None)
    serve = ServeProcess(data, env)
    mp = pytest.MonkeyPatch()
    provider = TracerProvider()
    try:
        # The agent reads its decisions from serve's control API (the helper's
        # choice when SPANVISOR_CONTROL_URL is set).
        mp.setenv("SPANVISOR_CONTROL_URL", f"http://127.0.0.1:{serve.http}")
        mp.delenv("SPANVISOR_CONTROL_TOKEN", raising=False)
        mp.delenv("SPANVISOR_OTLP_TOKEN", raising=False)
        provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=serve.url, timeout=20)))
        env_ = Served(serve, slack, db_url, provider.get_tracer("agent"))
        yield env_
    finally:
        provider.shutdown()
        mp.undo()
        serve.stop()
        slack.close()
    assert "e2e-signing" not in "".join(p.read_text(errors="replace") for p in serve.logs), "the secret was logged"


@pytest.fixture(autouse=True)
def _agents_end_with_their_test(served: Served) -> Iterator[None]:
    yield
    served.end_waiters()


def test_a_signed_click_on_the_parents_approve_button_releases_the_agent_and_every_sink_shows_it(
    served: Served,
) -> None:
    agent = served.agent("deploy")
    tid = agent.task_id
    found = wait_until(lambda: served.button(tid, A.APPROVE), 60, "the parent to offer Approve")
    parent, approve = found
    value = json.loads(approve["value"])  # ids and the digest of the question shown; no agent text
    asked = approval_digest(
        agent="rivet",
        task=tid,
        run=value["r"],
        approval_id="a1",
        question="Apply the fix to prod?",
        options=("approve", "reject"),
    )
    assert (value["t"], value["a"], value["d"]) == (tid, "a1", asked)
    assert served.status(tid) == "awaiting_approval"
    assert served.counter("approve", "applied") == 0.0

    sent = served.post(served.click(parent, approve, APPROVER, "alice"))
    assert sent.status == 200 and sent.text == ""

    # The agent: released with the decision, by the person who clicked.
    wait_until(lambda: agent.result, 30, "the agent to be released")
    [decision] = agent.result
    assert decision.approved and decision.outcome == "approve" and decision.by == "alice"
    assert decision.approval_id == "a1"

    # PostgreSQL: one row, keyed by the click's intervention id.
    rows = wait_until(lambda: served.rows(tid), 30, "the human_interventions row")
    [row] = rows
    assert (row["action"], row["outcome"], row["actor"], row["actor_name"]) == ("approve", "applied", APPROVER, "alice")
    assert (row["approval_id"], row["source"], row["known"], row["agent_id"]) == ("a1", "slack", True, "rivet")
    assert row["intervention_id"] == decision.intervention_id

    # The parent: who approved, and no Approve/Reject any more.
    def approved() -> Message | None:
        p = served.parent(tid)
        return p if p is not None and f"✅ Approved by <@{APPROVER}>" in message_text(p) else None

    shown = wait_until(approved, 30, "the parent to say who approved")
    assert {b["action_id"] for b in buttons(shown)}.isdisjoint({A.APPROVE, A.REJECT, A.COMMENT})
    # The thread: a line for it.
    wait_until(
        lambda: any(x.startswith(f"✅ Approved by <@{APPROVER}>") for x in served.thread(tid)), 30, "the thread line"
    )
    # Prometheus, on serve's admin port.
    wait_until(lambda: served.counter("approve", "applied") == 1.0, 30, "the interventions counter")
    # The person's ephemeral answer, once.
    [answer] = wait_until(served.answers, 30, "the ephemeral answer")
    assert answer["response_type"] == "ephemeral" and answer["replace_original"] is False
    assert answer["text"].startswith("✅ Approved `a1`") and tid in answer["text"]
    assert [d["intervention_id"] for d in served.decisions(tid)] == [decision.intervention_id]


def test_unsigned_tampered_and_stale_posts_are_refused_and_change_nothing_and_status_answers(
    served: Served,
) -> None:
    agent = served.agent("hostile")
    tid = agent.task_id
    parent, reject = wait_until(lambda: served.button(tid, A.REJECT), 60, "the parent to offer Reject")
    before_answers = len(served.answers())
    payload = served.click(parent, reject, APPROVER, "alice")
    for how in ({"signed": False}, {"tamper": True}, {"age_s": 301.0}, {"secret": SIGNING_SECRET[::-1]}):
        assert served.post(payload, **how).status == 401, how
        command = asyncio.run(
            served.sender.command(
                served.slack.on_loop(lambda: served.slack.fake.interactions.slash_command("status")), **how
            )
        )
        assert command.status == 401, how
    # A 401 is given before anything is parsed, so nothing can be under way:
    # nothing recorded anywhere.
    assert served.decisions(tid) == [] and served.rows(tid) == []
    assert len(served.answers()) == before_answers and agent.result == []
    assert served.status(tid) == "awaiting_approval"

    # The same payload signed right goes through, once.
    assert served.post(payload).status == 200
    wait_until(lambda: agent.result, 30, "the agent to be released")
    assert agent.result[0].outcome == "reject" and agent.result[0].by == "alice"
    [row] = wait_until(lambda: served.rows(tid), 30, "the row")
    assert (row["action"], row["outcome"]) == ("reject", "applied")
    wait_until(lambda: len(served.answers()) == before_answers + 1, 30, "the answer")
    assert served.answers()[-1]["text"].startswith("❌ Rejected `a1`")

    # /spanvisor status: an ephemeral list of what this serve tracks, the
    # task (still running after the rejection) among it.
    wait_until(lambda: served.status(tid) == "working", 30, "the task to be working again")
    fields = served.slack.on_loop(lambda: served.slack.fake.interactions.slash_command("status"))
    sent = asyncio.run(served.sender.command(fields))
    assert sent.status == 200
    wait_until(lambda: len(served.answers()) == before_answers + 2, 30, "the status answer")
    status = served.answers()[-1]
    assert status["response_type"] == "ephemeral"
    shown = json.dumps(status, ensure_ascii=False)
    assert f"`{tid}`" in shown and "working" in shown


# -- requests bound to what was asked -----------------------------------------------


def _cli(served: Served, *argv: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SPANVISOR_", "SLACK_", "OTEL_"))}
    base = f"http://127.0.0.1:{served.serve.http}"
    return subprocess.run(
        [sys.executable, "-m", "spanvisor.cli", *argv, "--url", base],
        check=False,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_decision_on_a_task_nobody_asked_is_refused_and_never_approves_a_later_question(served: Served) -> None:
    tid = f"typo-{uuid.uuid4().hex[:6]}"
    early = _cli(served, "approve", tid, "a1", "--as", "alice")
    assert early.returncode == 1 and "unknown_task" in early.stderr, early
    result = served.asking(tid, "Delete prod database?", 4.0, timed=True).result
    wait_until(lambda: result, 30, "the agent's own timeout")
    decision, waited = result
    assert decision.outcome == "timed_out" and waited >= 3.5, result
    rows = served.rows(tid)
    assert [(r["action"], r["outcome"], r["refusal"]) for r in rows] == [("approve", "denied", "unknown_task")]
    parent = served.parent(tid)
    assert parent is None or "Approved by" not in message_text(parent)


def test_approvals_lists_the_request_and_its_command_answers_it(served: Served) -> None:
    tid = f"list-{uuid.uuid4().hex[:6]}"
    result = served.asking(tid, "Rotate the <prod> keys?", 120.0).result

    def listed() -> list[dict[str, Any]]:
        out = _cli(served, "approvals", "--json")
        return [x for x in json.loads(out.stdout)["approvals"] if x["task_id"] == tid] if out.returncode == 0 else []

    [item] = wait_until(listed, 30, "the request in spanvisor approvals")
    assert item["question"] == "Rotate the <prod> keys?" and item["agent_id"] == "rivet"
    asked = approval_digest(
        agent="rivet",
        task=tid,
        run=item["run_id"],
        approval_id="a1",
        question="Rotate the <prod> keys?",
        options=("approve", "reject"),
    )
    assert item["timeout_s"] == 120.0 and item["digest"] == asked
    table = _cli(served, "approvals", "--agent", "rivet")
    assert table.returncode == 0 and tid in table.stdout and "Rotate the <prod> keys?" in table.stdout
    # The exact command printed answers it, pasted into a shell as printed
    # (this is `python -m spanvisor.cli`: the program is named so where PATH
    # has no spanvisor of this environment, and the --url is in it).
    printed = next(line for line in table.stdout.splitlines() if " approve " in line).split("(or:")[0].strip()
    assert printed.endswith(item["answer"].removeprefix("spanvisor approve")), table.stdout
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SPANVISOR_", "SLACK_", "OTEL_"))}
    ok = subprocess.run(
        f"{printed} --as alice", shell=True, check=False, env=env, capture_output=True, text=True, timeout=60
    )
    assert ok.returncode == 0 and "Approved" in ok.stdout, ok
    wait_until(lambda: result, 30, "the agent to be released")
    assert result[0].approved and result[0].by == "alice"
    wait_until(lambda: not listed(), 30, "the request to leave the list")
    [row] = wait_until(lambda: served.rows(tid), 30, "the row")
    assert (row["question"], row["question_digest"], row["agent_id"], row["source"]) == (
        "Rotate the <prod> keys?",
        item["digest"],
        "rivet",
        "cli",
    )


def test_a_request_expires_on_the_server_and_its_buttons_go(served: Served) -> None:
    """The agent asks with a timeout and dies (its spans stop): the request
    closes as expired at its timeout, its buttons go, and a click after is
    refused as expired and audited."""
    tid = f"dies-{uuid.uuid4().hex[:6]}"
    root = served.tracer.start_span("job", attributes={cv.TASK_ID: tid, cv.TASK_NAME: "job", cv.AGENT_ID: "rivet"})
    rid = f"{root.get_span_context().span_id:016x}"
    child = served.tracer.start_span("ask", context=trace.set_span_in_context(root))
    child.set_attributes({cv.TASK_ROOT: rid, cv.TASK_ID: tid})
    child.add_event(
        cv.EVENT_APPROVAL_REQUEST, {cv.APPROVAL_ID: "a1", cv.APPROVAL_QUESTION: "Drop it?", cv.APPROVAL_TIMEOUT_S: 4.0}
    )
    child.end()  # and nothing more: the agent is gone
    parent, approve = wait_until(lambda: served.button(tid, A.APPROVE), 60, "the Approve button")
    wait_until(lambda: served.button(tid, A.APPROVE) is None, 30, "the buttons to go at expiry")
    sent = served.post(served.click(parent, approve, APPROVER, "alice"))
    assert sent.status == 200
    rows = wait_until(lambda: served.rows(tid), 30, "the refusal's row")
    assert [(r["outcome"], r["refusal"]) for r in rows] == [("denied", "expired")]
    listed = json.loads(_cli(served, "approvals", "--json").stdout)["approvals"]
    assert all(x["task_id"] != tid for x in listed)
    root.end()


def test_a_stale_button_is_refused(served: Served) -> None:
    """Run 1 asks a1 and ends; run 2 of the same task id asks a1 another
    question. Run 1's button (its run, its question's digest) is refused, and
    so is a button that names run 2 with run 1's question."""
    tid = f"stale-{uuid.uuid4().hex[:6]}"
    # Long enough for the button to reach Slack before the request expires
    # (under load a parent's post took longer than 2 s).
    run1 = served.asking(tid, "Deploy to staging?", 10.0)
    parent, old = wait_until(lambda: served.button(tid, A.APPROVE), 60, "run 1's Approve button")
    wait_until(lambda: run1.result, 30, "run 1 to time out")
    run1.hold.set()
    second = served.asking(tid, "Deploy to PROD?", 120.0).result
    run2 = wait_until(lambda: _run2(served, tid, json.loads(old["value"])["r"]), 30, "run 2's request")
    stale = served.post(served.click(parent, old, APPROVER, "alice"))
    assert stale.status == 200
    forged = {**old, "value": json.dumps({**json.loads(old["value"]), "r": run2}, separators=(",", ":"))}
    assert served.post(served.click(parent, forged, APPROVER, "alice")).status == 200
    rows = wait_until(lambda: len(served.rows(tid)) >= 2 and served.rows(tid), 30, "both refusals audited")
    assert sorted(r["refusal"] for r in rows) == ["digest_mismatch", "expired"], rows
    assert all(r["outcome"] == "denied" for r in rows)
    assert second == [], "run 2 was approved by a button of another question"


def _run2(served: Served, tid: str, run1: str) -> str | None:
    url = f"http://127.0.0.1:{served.serve.http}/v1/control/tasks/{tid}"
    with urllib.request.urlopen(url, timeout=20) as resp:
        doc = json.loads(resp.read())
    return doc["run_id"] if doc["run_id"] != run1 and doc["approvals"] else None


def test_while_an_agent_waits_a_made_up_approval_and_a_retry_are_refused(served: Served) -> None:
    tid = f"wait-{uuid.uuid4().hex[:6]}"
    result = served.asking(tid, "Migrate?", 120.0).result
    wait_until(lambda: served.button(tid, A.APPROVE), 60, "the request")
    assert served.decide(tid, {"action": "approve", "approval_id": "zz", "actor": "alice"})[0] == 404
    status, doc = served.decide(tid, {"action": "retry", "actor": "alice"})
    assert (status, doc["code"]) == (409, "still_running"), doc
    assert result == [] and served.decisions(tid) == []
    rows = wait_until(lambda: len(served.rows(tid)) == 2 and served.rows(tid), 30, "both refusals audited")
    assert sorted(r["refusal"] for r in rows) == ["still_running", "unknown_request"]
