"""People who are who they say: a decision takes its person from their own token.

With ``SPANVISOR_DECIDERS`` on the server, a decision posted with a person's
token is that person's and verified, whatever ``--as`` claims; one posted
with the shared decide token is an anonymous operator's; the agents' OTLP
token decides nothing. A real pipeline behind the real receiver, the real
CLI.
"""

from __future__ import annotations

import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from spanvisor.control.deciders import ANONYMOUS_NAME, DecidersError, load, token_hash
from tests.waiting import wait_until

from .conftest import Run
from .test_decide import TOKEN, _Serve

AAD = "8a0d7a4f-0c4e-4a5e-9a3c-2b1f0e6d5c4b"  # an Entra object id, as Teams sends it
OTHER_AAD = "f2b6c1d0-5e3a-4c7b-8d9e-0a1b2c3d4e5f"

SHARED = "shared-decide-s3cret"
ALICE = "alice-own-t0ken"
BOB = "bob-own-t0ken"


def _deciders_file(path: Path) -> Path:
    path.write_text(
        f'[people.alice]\ntoken_sha256 = "{token_hash(ALICE)}"\ngroups = ["sre"]\n\n'
        f'[people.bob]\ntoken_sha256 = "{token_hash(BOB)}"\n'
    )
    return path


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[_Serve]:
    s = _Serve(
        tmp_path / "serve",
        SPANVISOR_DECIDERS=str(_deciders_file(tmp_path / "deciders.toml")),
        SPANVISOR_DECIDE_TOKEN=SHARED,
    )
    yield s
    s.close()


def _decisions(serve: _Serve, task: str) -> list[dict[str, Any]]:
    return list(serve.task(task)["decisions"])


def _running_task(cli: Run, serve: _Serve) -> str:
    """A shell agent's task, running in the shared record."""
    task = f"T-{uuid.uuid4().hex[:8]}"
    endpoint = ("--endpoint", serve.base, "--token", TOKEN)
    assert cli("emit", "start", "--task", task, "--agent", "sh", "--name", "deploy", *endpoint)[0] == 0
    wait_until(lambda: serve.task(task)["state"] == "running", what="the run in the shared record")
    return task


def test_a_persons_token_decides_as_that_person_whatever_it_claims(cli: Run, serve: _Serve) -> None:
    task = _running_task(cli, serve)
    code, out, _ = cli("cancel", task, "--url", serve.base, "--token", ALICE, "--as", "mallory")
    assert code == 0 and "as alice (verified by your token)" in out, out
    [d] = wait_until(lambda: _decisions(serve, task), 30, "the decision")
    assert (d["actor_id"], d["actor_name"], d["verified"]) == ("alice", "alice", True)


def test_the_shared_token_decides_as_an_anonymous_operator(cli: Run, serve: _Serve) -> None:
    task = _running_task(cli, serve)
    code, out, _ = cli("cancel", task, "--url", serve.base, "--token", SHARED, "--as", "alice")
    assert code == 0 and f"as {ANONYMOUS_NAME} (no token of your own" in out, out
    [d] = wait_until(lambda: _decisions(serve, task), 30, "the decision")
    assert (d["actor_id"], d["actor_name"], d["verified"]) == ("anonymous", ANONYMOUS_NAME, False)


def test_the_agents_token_and_a_made_up_one_decide_nothing(cli: Run, serve: _Serve) -> None:
    task = f"T-{uuid.uuid4().hex[:8]}"
    for token in (TOKEN, "not-anyones"):
        code, _, err = cli("cancel", task, "--url", serve.base, "--token", token, "--as", "alice")
        assert code == 1 and "token" in err, err


def test_decider_token_makes_a_token_whose_hash_it_prints(cli: Run, tmp_path: Path) -> None:
    code, out, _ = cli("decider-token", "carol")
    assert code == 0
    lines = out.splitlines()
    secret = lines[1].strip()
    assert f'token_sha256 = "{token_hash(secret)}"' in out and "[people.carol]" in out
    kept = [line.strip() for line in lines if line.strip().startswith(("[people.", "token_sha256"))]
    (tmp_path / "d.toml").write_text("\n".join(kept))
    person = load(tmp_path / "d.toml").who(secret)
    assert person is not None and person.name == "carol"
    assert cli("decider-token", "anonymous")[0] == 2 and cli("decider-token", "a b")[0] == 2


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("not toml [", "is not valid TOML"),
        ("[other]\nx = 1\n", "has no [people.NAME] tables"),
        ('[people."a b"]\ntoken_sha256 = "' + "0" * 64 + '"\n', "a name is 1-64 letters"),
        ("[people.a]\ntoken_sha256 = 'abc'\n", "must be 64 hex digits"),
        ('[people.a]\ntoken_sha256 = "' + "0" * 64 + '"\ngroups = "sre"\n', "groups must be a list"),
        (
            '[people.a]\ntoken_sha256 = "' + "0" * 64 + '"\n[people.b]\ntoken_sha256 = "' + "0" * 64 + '"\n',
            "same token",
        ),
        ('[people.a]\ntoken_sha256 = "' + "0" * 64 + '"\nslack_user = "alice"\n', "slack_user must be a Slack user id"),
        (
            '[people.a]\ntoken_sha256 = "' + "0" * 64 + '"\nslack_user = "U1AB"\n'
            '[people.b]\ntoken_sha256 = "' + "1" * 64 + '"\nslack_user = "U1AB"\n',
            "same slack_user",
        ),
        ("[agents.sh]\ntoken_sha256 = 'abc'\n", "agents.sh.token_sha256 must be 64 hex digits"),
        (
            '[people.a]\ntoken_sha256 = "' + "0" * 64 + '"\n[agents.sh]\ntoken_sha256 = "' + "0" * 64 + '"\n',
            "a token another person or agent has",
        ),
        ("agents = 3\n", "agents must be tables"),
        (
            '[people.a]\ngroups = ["sre"]\n',
            "needs token_sha256 (the SHA-256 of the person's token), oidc, slack_user, telegram_user or teams_user",
        ),
        ('[people.a]\ntelegram_user = "42"\n', "telegram_user must be a Telegram user id"),
        ("[people.a]\ntelegram_user = true\n", "telegram_user must be a Telegram user id"),
        ("[people.a]\ntelegram_user = 42\n[people.b]\ntelegram_user = 42\n", "the same telegram_user as people.a"),
        ('[people.a]\nteams_user = "29:1abc"\n', "teams_user must be a Microsoft Entra object id"),
        (f'[people.a]\nteams_user = "{{{AAD}}}"\n', "teams_user must be a Microsoft Entra object id"),
        (f'[people.a]\nteams_user = "{AAD}\\n"\n', "teams_user must be a Microsoft Entra object id"),
        ("[people.a]\nteams_user = 42\n", "teams_user must be a Microsoft Entra object id"),
        (
            f'[people.a]\nteams_user = "{AAD}"\n[people.b]\nteams_user = "{AAD.upper()}"\n',
            "the same teams_user as people.a",
        ),
        ('[people.a]\noidc = "a@x"\n[people.b]\noidc = "A@X"\n', "the same oidc identity as people.a"),
    ],
)
def test_a_bad_deciders_file_is_one_line_naming_the_setting(tmp_path: Path, text: str, says: str) -> None:
    path = tmp_path / "d.toml"
    path.write_text(text)
    with pytest.raises(DecidersError, match=re.escape(says)) as raised:
        load(path)
    assert str(raised.value).startswith("SPANVISOR_DECIDERS: ") and "\n" not in str(raised.value)


def test_serve_with_an_unreadable_deciders_file_stops_with_one_line(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "spanvisor.cli", "serve"],
        env={
            "PATH": "/usr/bin:/bin",
            "SPANVISOR_DATA_DIR": str(tmp_path / "data"),
            "SPANVISOR_DECIDERS": str(tmp_path / "missing.toml"),
            "SPANVISOR_OTLP_HTTP_PORT": "0",
            "SPANVISOR_OTLP_GRPC_PORT": "off",
            "SPANVISOR_ADMIN_PORT": "off",
            "SPANVISOR_SINKS": "console",
        },
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 2, out
    assert "spanvisor: configuration error: SPANVISOR_DECIDERS: cannot read" in out.stderr, out.stderr
    assert "Traceback" not in out.stderr


def test_a_person_may_name_their_slack_user_id(tmp_path: Path) -> None:
    path = tmp_path / "d.toml"
    path.write_text(f'[people.alice]\ntoken_sha256 = "{token_hash("t-a")}"\nslack_user = "U024BE7LH"\n')
    people = load(path)
    assert people.on_slack("U024BE7LH") == people.who("t-a") and people.on_slack("U999") is None


def test_a_person_may_be_known_by_their_entra_object_id_alone(tmp_path: Path) -> None:
    """teams_user: the GUID Teams sends as from.aadObjectId, whatever its case."""
    path = tmp_path / "d.toml"
    path.write_text(
        f'[people.alice]\nteams_user = "{AAD.upper()}"\ngroups = ["sre"]\n'
        f'[people.bob]\ntoken_sha256 = "{token_hash("t-b")}"\nteams_user = "{OTHER_AAD}"\n'
    )
    people = load(path)
    alice = people.on_teams(AAD)
    assert alice is not None and alice.name == "alice" and alice.teams_user == AAD and alice.groups == ("sre",)
    assert people.on_teams(AAD.upper()) == alice and people.who("t-a") is None
    assert people.on_teams(OTHER_AAD) == people.who("t-b")
    assert people.on_teams("00000000-0000-0000-0000-000000000000") is None and people.on_teams("29:1abc") is None


def test_agents_are_known_by_their_own_tokens(tmp_path: Path) -> None:
    """[agents.ID]: the agent a permit with that token speaks for; a file of
    agents alone is a valid file (no people decide by token then)."""
    path = tmp_path / "d.toml"
    path.write_text(f'[agents.sprocket]\ntoken_sha256 = "{token_hash("t-s")}"\n')
    known = load(path)
    assert known.agent("t-s") == "sprocket" and known.agent("t-x") is None and known.who("t-s") is None
