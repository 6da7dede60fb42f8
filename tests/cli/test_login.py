"""``spanvisor login`` against a provider the test owns, end to end.

The real CLI, in its own process, starts the device authorization grant
(RFC 8628) from the provider's discovery document and prints a URL and a
code; the test plays the person approving that code at the provider; the
CLI keeps the tokens (0600) and ``spanvisor approve`` then sends them with
no ``--token``: the server records the person the provider proved. Denied
and expired sign-ins stop with the reason; ``slow_down`` is obeyed; a login
about to expire is refreshed with its refresh token; ``logout`` revokes it.
"""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakes.oidc_provider import CLIENT_ID, FakeIdP
from tests.waiting import wait_until

from .conftest import Run
from .test_decide import TOKEN, _Serve


@pytest.fixture
def idp() -> Iterator[FakeIdP]:
    p = FakeIdP(interval=0.2)
    p.start()
    yield p
    p.stop()


def _env(tmp_path: Path, idp: FakeIdP, **more: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SPANVISOR_", "OTEL_", "XDG_"))}
    env.update(
        SPANVISOR_DATA_DIR=str(tmp_path / "data"),
        XDG_STATE_HOME=str(tmp_path / "state"),
        SPANVISOR_OIDC_ISSUER=idp.issuer,
        SPANVISOR_OIDC_CLIENT_ID=CLIENT_ID,
    )
    return {**env, **more}


def _login(tmp_path: Path, idp: FakeIdP, **more: str) -> tuple[subprocess.Popen[str], str]:
    """``spanvisor login`` running; the user code it printed."""
    argv = [sys.executable, "-m", "spanvisor.cli", "login"]
    proc = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(tmp_path, idp, **more)
    )
    assert proc.stdout is not None
    first = proc.stdout.readline()
    m = re.match(r"To sign in, open (\S+) and enter the code: (\S+)", first)
    assert m is not None and m.group(1) == f"{idp.issuer}/activate", first
    return proc, m.group(2)


def _login_file(tmp_path: Path) -> Path:
    return tmp_path / "state" / "spanvisor" / "login.json"


def test_login_by_device_code_then_approve_as_that_person(
    cli: Run, tmp_path: Path, idp: FakeIdP, monkeypatch: pytest.MonkeyPatch
) -> None:
    proc, code = _login(tmp_path, idp)
    time.sleep(0.5)  # the CLI polls while the person has not approved yet (authorization_pending)
    assert proc.poll() is None
    idp.approve(code, "alice@example.com", ["sre"])
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, (out, err)
    assert "Signed in as alice@example.com (groups: sre)" in out, out
    path = _login_file(tmp_path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    kept = json.loads(path.read_text())
    assert kept["issuer"] == idp.issuer and kept["refresh_token"] and kept["id_token"].count(".") == 2

    # approve with no --token: the login's token, verified by the server.
    s = _Serve(
        tmp_path / "serve",
        SPANVISOR_DECIDE_TOKEN="shared",
        SPANVISOR_OIDC_ISSUER=idp.issuer,
        SPANVISOR_OIDC_AUDIENCE=CLIENT_ID,
    )
    try:
        monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
        task = f"T-{uuid.uuid4().hex[:8]}"
        assert cli("emit", "start", "--task", task, "--agent", "sh", "--endpoint", s.base, "--token", TOKEN)[0] == 0
        wait_until(lambda: s.task(task)["state"] == "running", what="the run")
        code_, out, err = cli("cancel", task, "--url", s.base)
        assert code_ == 0 and "as alice@example.com (verified by your identity provider's token)" in out, (out, err)
        [d] = s.task(task)["decisions"]
        assert (d["person"], d["groups"], d["proof"]) == ("alice@example.com", ["sre"], "oidc")
    finally:
        s.close()

    # logout: the refresh token revoked, the file gone.
    code_, out, _ = cli("logout")
    assert code_ == 0 and "Signed out" in out and not path.exists()
    assert kept["refresh_token"] in idp.revoked


def test_a_denied_and_an_expired_sign_in_stop_with_the_reason(tmp_path: Path, idp: FakeIdP) -> None:
    proc, code = _login(tmp_path, idp)
    idp.deny(code)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 1 and "the sign-in was denied" in err, (out, err)
    idp.device_ttl_s = 1.0
    proc, _ = _login(tmp_path, idp)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 1 and "the code expired" in err, (out, err)
    assert not _login_file(tmp_path).exists()


def test_slow_down_is_obeyed(tmp_path: Path, idp: FakeIdP) -> None:
    idp.slow_down_once = True
    proc, code = _login(tmp_path, idp)
    idp.approve(code)
    started = time.monotonic()
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, (out, err)
    # The interval grew by 5 s after slow_down, and the provider saw no poll too early.
    assert time.monotonic() - started >= 4.5
    assert not any(d.polls > 3 for d in idp.devices.values())


def test_a_login_about_to_expire_is_refreshed_and_one_that_cannot_be_is_an_error(
    cli: Run, tmp_path: Path, idp: FakeIdP, monkeypatch: pytest.MonkeyPatch
) -> None:
    idp.token_ttl_s = 30  # under the minute a command wants left: refreshed before use
    proc, code = _login(tmp_path, idp)
    idp.approve(code, "bob@example.com", ["dba"])
    assert proc.wait(30) == 0
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    path = _login_file(tmp_path)
    before = json.loads(path.read_text())
    # Any command that sends the token: nothing answers at this URL, which is fine here.
    cli("approvals", "--url", "http://127.0.0.1:9", "--timeout", "1")
    after = json.loads(path.read_text())
    assert after["refresh_token"] != before["refresh_token"] and after["id_token"] != before["id_token"]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    # The refresh token no longer works (revoked): the command says so and sends nothing.
    idp.refresh_tokens.clear()
    code_, _, err = cli("approve", "T", "a1", "--url", "http://127.0.0.1:9", "--timeout", "1")
    assert code_ == 2 and "your spanvisor login has expired" in err and "spanvisor login" in err, err


def test_a_provider_without_the_device_grant_is_told_plainly(tmp_path: Path, idp: FakeIdP) -> None:
    env = _env(tmp_path, idp, SPANVISOR_OIDC_ISSUER="http://127.0.0.1:9")
    out = subprocess.run(
        [sys.executable, "-m", "spanvisor.cli", "login"],
        check=False,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2 and "the provider could not be read" in out.stderr, out
    env = _env(tmp_path, idp)
    del env["SPANVISOR_OIDC_CLIENT_ID"]
    out = subprocess.run(
        [sys.executable, "-m", "spanvisor.cli", "login"],
        check=False,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2 and "SPANVISOR_OIDC_CLIENT_ID" in out.stderr, out
