"""The dashboard and trace buttons' URL templates: ``spanvisor check`` (and
every start) refuses a placeholder the buttons do not fill, naming the
nearest one, where the button used to disappear silently; every placeholder
it accepts is filled, URL-encoded."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from spanvisor.config import Unaccepted
from spanvisor.events import TaskView
from spanvisor_slack.blocks import link
from spanvisor_slack.settings import LINK_FIELDS, p_link_template

BASE = "https://grafana.example.com/d/agents?"


@pytest.mark.parametrize(
    ("template", "said"),
    [
        (BASE + "var-task={taskid}", "unknown placeholder {taskid} (did you mean {task_id}?)"),
        (BASE + "from={start}&to={end_ms}", "unknown placeholder {start} (did you mean {start_ms}?)"),
        (BASE + "x={0}", "unknown placeholder {0}"),
        (BASE + "x={task_id.upper}", "unknown placeholder {task_id.upper}"),
        (BASE + "x={task_id!r}", "{task_id} takes no format or conversion"),
        (BASE + "x={task_id:>9}", "{task_id} takes no format or conversion"),
        (BASE + "x={task_id", "a literal brace is written twice"),
        (BASE + "x=}", "a literal brace is written twice"),
    ],
)
def test_a_template_the_buttons_cannot_fill_is_refused_with_the_reason(template: str, said: str) -> None:
    with pytest.raises(Unaccepted) as refused:
        p_link_template(template)
    assert said in str(refused.value), str(refused.value)


def test_every_placeholder_accepted_is_filled_url_encoded() -> None:
    template = BASE + "&".join(f"{f}={{{f}}}" for f in LINK_FIELDS) + "&literal={{x}}"
    assert p_link_template(template) == template
    view = TaskView(
        task_id="deploy/42 &x", trace_id="ab" * 16, root_span_id="cd" * 8, agent_id="rivet", repo="acme/api"
    )
    url = link(template, view, now_ns=2_000_000_000_000)
    assert url is not None and "{" not in url.replace("{x}", ""), url
    assert "task_id=deploy%2F42%20%26x" in url and "repo=acme%2Fapi" in url and "literal={x}" in url


def test_spanvisor_check_names_the_placeholder_and_the_nearest_one() -> None:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("SPANVISOR_", "SLACK_", "OTEL_"))},
        "SLACK_BOT_TOKEN": "xoxb-check",
        "SPANVISOR_SLACK_CHANNEL": "C0123456789",
        "SPANVISOR_SLACK_DASHBOARD_URL": BASE + "var-task={taskid}",
    }
    done = subprocess.run(
        [sys.executable, "-P", "-m", "spanvisor.cli", "check"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    out = done.stdout + done.stderr
    assert done.returncode != 0, out
    assert "slack_dashboard_url (env SPANVISOR_SLACK_DASHBOARD_URL)" in out, out
    assert "unknown placeholder {taskid} (did you mean {task_id}?)" in out, out
