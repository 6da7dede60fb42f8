"""End to end: a real pipeline, the real OTel SDK, decisions through the
pipeline's Control, and a real receiver on loopback that verifies every
request with ``spanvisor_webhook.verify``."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import pytest

from spanvisor.events import HumanIntervention
from tests.waiting import wait_until
from tests.webhook.conftest import SECRET, Receiver, Running, free_port

Start = Callable[..., Running]
pytestmark = pytest.mark.timeout_s(120)


def test_a_retry_is_delivered_once_signed_with_ids_and_the_task(receiver: Receiver, start_pipeline: Start) -> None:
    run = start_pipeline(receiver.url)
    run.failed_task("T1")
    verdict = run.decide(
        "T1", "retry", "iv-retry-1", actor_name="Alice", comment='again, "carefully" <b>', source="cli"
    )
    assert verdict.outcome == "applied"
    wait_until(lambda: len(receiver.delivered()) == 1, what="the delivery")
    assert run.pipeline.force_flush(30)

    assert len(receiver.requests) == 1  # nothing else is sent: no task events, no second copy
    seen = receiver.requests[0]
    assert seen.verified and seen.status == 200
    h = seen.headers
    assert h["X-Spanvisor-Intervention-Id"] == "iv-retry-1"
    assert h["Content-Type"] == "application/json"
    assert h["User-Agent"].startswith("spanvisor-webhook/")
    assert abs(int(h["X-Spanvisor-Timestamp"]) - time.time()) < 60
    assert h["X-Spanvisor-Signature"].startswith("v1=")
    body = seen.json
    assert body["type"] == "spanvisor.intervention"
    assert body["intervention_id"] == "iv-retry-1" and body["task_id"] == "T1" and body["action"] == "retry"
    assert body["actor"] == {"id": "U1", "name": "Alice"}
    assert body["comment"] == 'again, "carefully" <b>'
    assert body["source"] == "cli" and body["approval_id"] is None
    assert body["outcome"] == "applied" and body["code"] is None
    assert body["time"].endswith("Z")
    event = run.memory.of_type(HumanIntervention)[0]
    assert body["task"] == {
        "agent_id": "deployer",
        "task_name": 'Deploy <prod> & "friends"',  # agent text as a plain JSON string
        "status": "error",
        "trace_id": event.task.trace_id,
        "former_id": None,
    }
    assert run.sink.health() == (True, "ok")


def test_only_applied_interventions_of_the_chosen_actions_are_sent(receiver: Receiver, start_pipeline: Start) -> None:
    run = start_pipeline(receiver.url, SPANVISOR_WEBHOOK_ACTIONS="cancel")
    run.failed_task("T-failed")
    with run.running_task("T-run"):
        assert run.decide("T-run", "acknowledge", "iv-denied").outcome == "denied"  # still running
        assert run.decide("T-failed", "retry", "iv-not-chosen").outcome == "applied"
        assert run.decide("T-run", "cancel", "iv-cancel").outcome == "applied"
        wait_until(lambda: len(receiver.delivered()) == 1, what="the cancel")
    assert run.pipeline.force_flush(30)
    assert [r.intervention_id for r in receiver.requests] == ["iv-cancel"]
    task = receiver.requests[0].json["task"]
    assert task["agent_id"] == "crawler" and task["task_name"] == "Crawl" and task["status"] != "error"


def test_a_replayed_decision_is_delivered_once(receiver: Receiver, start_pipeline: Start) -> None:
    run = start_pipeline(receiver.url)
    run.failed_task("T1")
    outcomes = [run.decide("T1", "retry", "iv-same").outcome for _ in range(3)]
    assert outcomes == ["applied", "duplicate", "duplicate"]
    wait_until(lambda: len(receiver.delivered()) == 1, what="the delivery")
    assert run.decide("T1", "retry", "iv-same").outcome == "duplicate"  # replayed after delivery too
    # Another click on the same task is another intervention, but the first retry won.
    assert run.decide("T1", "retry", "iv-other", actor_id="U2").outcome == "already_decided"
    assert run.pipeline.force_flush(30)
    assert [r.intervention_id for r in receiver.requests] == ["iv-same"]


def test_a_receiver_answering_503_gets_it_once_it_is_back(receiver: Receiver, start_pipeline: Start) -> None:
    receiver.answers.extend([(503, {})] * 3)  # down for 0.5 + 1 + 2 s of backoff
    run = start_pipeline(receiver.url)
    run.failed_task("T1")
    assert (v := run.decide("T1", "retry", "iv-1")).outcome == "applied", v
    wait_until(lambda: len(receiver.delivered()) == 1, what="the delivery after the outage")
    assert run.pipeline.force_flush(30)
    assert [r.status for r in receiver.requests] == [503, 503, 503, 200]
    # Every attempt carries the same id and a valid signature of its own.
    assert {r.intervention_id for r in receiver.requests} == {"iv-1"}
    assert all(r.verified for r in receiver.requests)
    assert len({r.body for r in receiver.requests}) == 1
    assert run.pipeline.stats.value("webhook_requests_total", sink="webhook", outcome="retry") == 3


def test_a_receiver_whose_port_is_closed_gets_it_once_it_listens(start_pipeline: Start) -> None:
    receiver = Receiver(port=free_port())  # not listening yet
    try:
        run = start_pipeline(receiver.url)
        run.failed_task("T1")
        assert (v := run.decide("T1", "retry", "iv-1")).outcome == "applied", v
        stats = run.pipeline.stats
        # Down for a few attempts (0.5 + 1 + 2 s of backoff).
        wait_until(
            lambda: stats.value("webhook_requests_total", sink="webhook", outcome="retry") >= 3, what="3 refusals"
        )
        assert not run.sink.health()[0] and "127.0.0.1" in run.sink.health()[1]
        assert not run.pipeline.force_flush(0.5)  # it says it has not delivered
        # Meanwhile the sink's pipeline queue does not fill with the tasks' other events.
        with run.running_task("T2") as root:
            root.add_event("agent.checkpoint", {"message": "halfway"})
        wait_until(lambda: stats.value("queue_depth", sink="webhook") == 0, what="an empty queue")
        receiver.open()
        wait_until(lambda: len(receiver.delivered()) == 1, timeout=40, what="the delivery once the port is open")
        assert run.pipeline.force_flush(30)
        assert [r.intervention_id for r in receiver.requests] == ["iv-1"]
        assert run.sink.health() == (True, "ok")
    finally:
        receiver.stop()


def test_retry_after_is_honoured(receiver: Receiver, start_pipeline: Start) -> None:
    receiver.answers.append((429, {"Retry-After": "2"}))
    run = start_pipeline(receiver.url)
    run.failed_task("T1")
    assert (v := run.decide("T1", "retry", "iv-1")).outcome == "applied", v
    wait_until(lambda: len(receiver.delivered()) == 1, what="the delivery after the rate limit")
    first, second = receiver.requests
    assert first.status == 429
    assert second.at - first.at >= 1.9  # not the 0.5 s backoff: the receiver asked for 2 s


def test_a_400_is_not_retried_and_is_counted(
    receiver: Receiver, start_pipeline: Start, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    receiver.answers.append((400, {}))
    run = start_pipeline(receiver.url + "?token=url-token-123")
    run.failed_task("T1")
    run.failed_task("T2")
    assert (v := run.decide("T1", "retry", "iv-refused")).outcome == "applied", v
    assert (v := run.decide("T2", "retry", "iv-fine")).outcome == "applied", v
    wait_until(lambda: len(receiver.delivered()) == 1, what="the next intervention")
    assert run.pipeline.force_flush(30)
    assert [(r.intervention_id, r.status) for r in receiver.requests] == [("iv-refused", 400), ("iv-fine", 200)]
    assert run.dropped("webhook_rejected") == 1
    # (the receiver's own access log, aiohttp.access, is the test's, not ours)
    logged = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("spanvisor"))
    assert "iv-refused" in logged and "HTTP 400" in logged
    # Neither the secret nor the URL's path and query reach the logs.
    assert SECRET not in logged
    assert "url-token-123" not in logged
    assert "/hook" not in logged


def test_a_wrong_secret_fails_the_receivers_check_and_is_not_retried(receiver: Receiver, start_pipeline: Start) -> None:
    run = start_pipeline(receiver.url, secret="whsec-someone-elses")
    run.failed_task("T1")
    assert (v := run.decide("T1", "retry", "iv-1")).outcome == "applied", v
    wait_until(lambda: len(receiver.requests) == 1, what="the attempt")
    assert run.pipeline.force_flush(30)
    assert not receiver.requests[0].verified and receiver.requests[0].status == 401
    assert len(receiver.requests) == 1 and run.dropped("webhook_rejected") == 1


def test_what_is_left_at_shutdown_is_sent_by_the_next_start(start_pipeline: Start) -> None:
    receiver = Receiver(port=free_port())  # down while the first process runs
    try:
        first = start_pipeline(receiver.url)
        first.failed_task("T1")
        first.decide("T1", "retry", "iv-1")
        wait_until(lambda: not first.sink.health()[0], what="a failed attempt")
        first.pipeline.shutdown(3)
        receiver.open()
        second = start_pipeline(receiver.url)  # same data directory: the same outbox
        wait_until(lambda: len(receiver.delivered()) == 1, what="the delivery by the next start")
        assert second.pipeline.force_flush(30)
        assert [r.intervention_id for r in receiver.requests] == ["iv-1"]
        assert receiver.requests[0].json["task_id"] == "T1"
    finally:
        receiver.stop()


def test_a_close_during_an_attempt_ends_the_sender_when_the_attempt_does(
    receiver: Receiver, start_pipeline: Start
) -> None:
    """The close kicked the sender while its POST was under way; the answer
    asked for 30 s, and the sender once cleared that kick and waited them out,
    so the close waited its whole share and cancelled it."""
    receiver.answers.append((503, {"Retry-After": "30"}))
    receiver.holding = True
    run = start_pipeline(receiver.url)
    run.failed_task("T1")
    assert (v := run.decide("T1", "retry", "iv-1")).outcome == "applied", v
    wait_until(receiver.arrived.is_set, what="the attempt")
    loop = run.pipeline._loop
    assert loop is not None
    closing = asyncio.run_coroutine_threadsafe(run.sink.shutdown(6.0), loop)  # the sender's share: 4.2 s
    wait_until(lambda: run.sink._closing, what="the close")
    receiver.released.set()
    closing.result(30)  # a hang guard, not a timing assert
    sender = run.sink._sender
    assert sender is not None and sender.done()
    assert not sender.cancelled(), "the close waited out the Retry-After and cancelled the sender"
    assert [r.status for r in receiver.requests] == [503]


def test_an_intervention_too_old_to_act_on_is_given_up(receiver: Receiver, start_pipeline: Start) -> None:
    run = start_pipeline(receiver.url, SPANVISOR_WEBHOOK_MAX_AGE="0")
    run.failed_task("T1")
    assert (v := run.decide("T1", "retry", "iv-1")).outcome == "applied", v
    wait_until(lambda: run.dropped("webhook_expired") == 1, what="the expiry")
    assert run.pipeline.force_flush(30)
    assert receiver.requests == []


def test_two_agents_on_one_data_directory_both_flush(receiver: Receiver, start_pipeline: Start) -> None:
    """Agents on one host share the default data directory, so one outbox file:
    each sender may send the other's entries (the receiver dedupes on the id),
    and neither flush waits on an entry the other already sent."""
    receiver.answers.extend([(503, {})] * 2)  # let entries pile up in the file
    first, second = start_pipeline(receiver.url), start_pipeline(receiver.url)
    first.failed_task("T1")
    second.failed_task("T2")
    first.decide("T1", "retry", "iv-first")
    second.decide("T2", "retry", "iv-second")
    wait_until(lambda: {r.intervention_id for r in receiver.delivered()} == {"iv-first", "iv-second"}, what="both")
    assert first.pipeline.force_flush(30)
    assert second.pipeline.force_flush(30)
