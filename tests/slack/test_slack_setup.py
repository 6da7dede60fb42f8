"""``spanvisor slack setup``: the app created, or updated, from spanvisor's
manifest with an app configuration token, against the fake Slack's
``apps.manifest.*`` (the real command, as a person runs it).

* Created for HTTP request URLs: the install link and the person's steps
  on stdout; the signing secret only in the 0600 environment file, never
  on the terminal; the manifest Slack holds is the one
  ``--print-manifest`` prints.
* Updated in place with ``--app-id``, for Socket Mode with agent sessions:
  the stop event subscribed, the sessions setting written.
* Refused: an expired or wrong token, an http:// URL, an unknown app, each
  said with what to do, no traceback, nothing written.
* Every manifest the options can make is one Slack takes (hypothesis).
"""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from tests.fakes.slack_apps import manifest_errors
from tests.receiver.serve_proc import FakeSlackThread

from spanvisor_slack.manifest import BOT_SCOPES, BadManifest, manifest

SPANVISOR = str(Path(sys.executable).with_name("spanvisor"))
TOKEN = "xoxe.xoxp-1-CONFIGTOKENSECRET"
DOCS = Path(__file__).resolve().parents[2] / "docs" / "reference" / "slack-app.md"


@pytest.fixture(scope="module")
def slack() -> Iterator[FakeSlackThread]:
    fake = FakeSlackThread()
    try:
        yield fake
    finally:
        fake.close()


def setup(slack: FakeSlackThread, where: Path, *args: str, token: str = TOKEN) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SPANVISOR_", "SLACK_"))}
    env.update(SLACK_CONFIG_TOKEN=token, SPANVISOR_SLACK_BASE_URL=slack.base_url)
    return subprocess.run(
        [SPANVISOR, "slack", "setup", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=where,
        timeout=60,
        check=False,
    )


def test_an_app_for_request_urls_is_created_and_its_secret_goes_only_to_the_file(
    slack: FakeSlackThread, tmp_path: Path
) -> None:
    done = setup(slack, tmp_path, "--url", "https://spanvisor.example.com", "--write", "slack.env")
    assert done.returncode == 0, done.stderr
    assert "Install it in your workspace: https://slack.com/oauth/v2/authorize?client_id=" in done.stdout
    assert "SLACK_BOT_TOKEN" in done.stdout and "SLACK_APP_TOKEN" not in done.stdout
    written = tmp_path / "slack.env"
    assert stat.S_IMODE(written.stat().st_mode) == 0o600
    [secret] = re.findall(r"^SLACK_SIGNING_SECRET=(\w+)$", written.read_text(), re.M)
    assert secret not in done.stdout + done.stderr and TOKEN not in done.stdout + done.stderr
    [(app_id, held)] = slack.on_loop(lambda: list(slack.fake.apps.apps.items()))[-1:]
    assert app_id in done.stdout
    shown = setup(slack, tmp_path, "--url", "https://spanvisor.example.com", "--print-manifest")
    assert json.loads(shown.stdout) == held
    assert held["settings"]["interactivity"]["request_url"] == "https://spanvisor.example.com/slack/interactions"
    assert "event_subscriptions" not in held["settings"]  # no stop button asked for: no events route


def test_an_app_is_updated_in_place_for_socket_mode_and_agent_sessions(slack: FakeSlackThread, tmp_path: Path) -> None:
    created = setup(slack, tmp_path, "--write", "first.env")
    assert created.returncode == 0, created.stderr
    assert not (tmp_path / "first.env").exists()  # Socket Mode needs no signing secret: nothing to write
    [app_id] = re.findall(r"Created Slack app (A\d+)", created.stdout)
    done = setup(slack, tmp_path, "--app-id", app_id, "--agent-sessions", "--write", "slack.env")
    assert done.returncode == 0, done.stderr
    assert f"Updated Slack app {app_id}" in done.stdout and "declare the app as an agent" in done.stdout
    assert "SLACK_APP_TOKEN" in done.stdout  # Socket Mode: the app-level token is the person's step
    assert (tmp_path / "slack.env").read_text().endswith("SPANVISOR_SLACK_AGENT_SESSIONS=on\n")
    held = slack.on_loop(lambda: slack.fake.apps.apps[app_id])
    assert held["settings"]["event_subscriptions"] == {"bot_events": ["agent_session_stopped"]}
    assert held["settings"]["socket_mode_enabled"] is True


def test_code_channels_add_their_scope_and_feature_and_turn_the_setting_on(
    slack: FakeSlackThread, tmp_path: Path
) -> None:
    done = setup(slack, tmp_path, "--code-channels", "--write", "slack.env")
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "slack.env").read_text().endswith("SPANVISOR_SLACK_CODE_CHANNELS=on\n")
    [app_id] = re.findall(r"Created Slack app (A\d+)", done.stdout)
    held = slack.on_loop(lambda: slack.fake.apps.apps[app_id])
    assert "code_channels:manage" in held["oauth_config"]["scopes"]["bot"]
    assert held["features"]["code_channels"] == {"enabled": True}


@pytest.mark.parametrize(
    ("args", "token", "said"),
    [
        ((), "xoxe.xoxp-expired-1", "token_expired"),
        ((), "xoxb-a-bot-token", "not_allowed_token_type"),
        (("--url", "http://spanvisor.example.com"), TOKEN, "Slack posts only to https:// URLs"),
        (("--app-id", "A99999999"), TOKEN, "app_not_found"),
        (("--name", "x" * 40), TOKEN, "1 to 35 characters"),
    ],
)
def test_a_refusal_says_why_and_writes_nothing(
    slack: FakeSlackThread, tmp_path: Path, args: tuple[str, ...], token: str, said: str
) -> None:
    done = setup(slack, tmp_path, *args, "--agent-sessions", token=token)
    assert done.returncode == 1 and said in done.stderr, done.stderr
    assert "Traceback" not in done.stderr and token not in done.stderr
    assert not (tmp_path / "spanvisor-slack.env").exists()


def test_without_a_token_nothing_is_asked(slack: FakeSlackThread, tmp_path: Path) -> None:
    done = setup(slack, tmp_path, token="")
    assert done.returncode == 1 and "SLACK_CONFIG_TOKEN" in done.stderr


@given(
    name=st.text(st.characters(min_codepoint=32, max_codepoint=0x2FFF), max_size=40),
    url=st.one_of(
        st.none(), st.sampled_from(["https://a.example", "https://h.example:8443/x/", "http://a", "ftp://b"])
    ),
    sessions=st.booleans(),
    code=st.booleans(),
)
def test_every_manifest_the_options_make_is_one_slack_takes(
    name: str, url: str | None, sessions: bool, code: bool
) -> None:
    try:
        m = manifest(name=name, base_url=url, agent_sessions=sessions, code_channels=code)
    except BadManifest:
        assume_bad = not name.strip() or len(name.strip()) > 35 or (url is not None and not url.startswith("https://"))
        assert assume_bad, (name, url)
        return
    assert manifest_errors(json.loads(json.dumps(m))) == []


def test_the_docs_manifest_asks_for_the_scopes_and_the_event_the_code_does() -> None:
    block = DOCS.read_text().split("## The app manifest", 1)[1].split("```yaml", 1)[1].split("```", 1)[0]
    scopes = block.split("    bot:", 1)[1].split("settings:", 1)[0]
    assert re.findall(r"^\s+- ([a-z.:_]+)", scopes, re.M) == [scope for scope, _ in BOT_SCOPES]
    assert re.search(r"bot_events:\n\s+- agent_session_stopped\n", block)
    assert "spanvisor slack setup" in DOCS.read_text()
