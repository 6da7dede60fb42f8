"""What a cancel does to a coding agent's session, said in Slack for every
CLI spanvisor knows (the three first supported said it; the four added later
said nothing): without the launcher (its task id the session id in its CLI's
namespace) its next tool call is blocked by ``spanvisor hook``; under
``spanvisor run`` (any other task id) the launcher stops the CLI."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from spanvisor.clis import registry
from spanvisor.display.task import cancel_effect
from spanvisor.events import TaskView
from spanvisor.gate.taskids import session_task_id
from spanvisor_slack.blocks import Look, parent_payload

services = st.sampled_from(sorted({s for a in registry.builtin() for s in a.services}))
session_ids = st.text("abcdef0123456789-", min_size=1, max_size=36)


def _view(task_id: str, agent: str) -> TaskView:
    return TaskView(task_id, "ab" * 16, "cd" * 8, agent, status="working", started_ns=1, cancel_requested=True)  # type: ignore[arg-type]


@given(service=services, session=session_ids)
def test_a_cancelled_session_alone_says_its_next_tool_call_will_be_blocked(service: str, session: str) -> None:
    v = _view(session_task_id(service, session), service)
    assert cancel_effect(v) == "its next tool call will be blocked by spanvisor hook"
    shown = json.dumps(parent_payload(v, Look(), 2_000_000_000), ensure_ascii=False)
    assert "next tool call will be blocked by spanvisor hook" in shown


@given(service=services, task=st.text("abc:/-_0123", min_size=1, max_size=30))
def test_a_cancelled_session_under_the_launcher_says_the_launcher_stops_its_cli(service: str, task: str) -> None:
    task_id = f"team/{task}"  # never in a CLI's namespace
    effect = cancel_effect(_view(task_id, service))
    assert effect is not None and effect.startswith("spanvisor run stops "), (service, effect)
    assert effect != "spanvisor run stops " and "None" not in effect
