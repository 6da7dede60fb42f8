"""With nothing listening where the CLI looks for the control API, each
decision command says so in one line: the URL, the error, what pointed
there (``--url``, ``SPANVISOR_CONTROL_URL`` or the default), and what to do."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from spanvisor.control.client import DEFAULT_URL

Run = object


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


COMMANDS = [
    ("approvals",),
    ("approve", "T-1", "a1", "--as", "alice"),
    ("cancel", "T-1", "--as", "alice"),
    ("grants", "list"),
]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c[0])
def test_a_url_from_the_environment_is_named_with_its_variable(
    cli: Run, monkeypatch: pytest.MonkeyPatch, command: tuple[str, ...]
) -> None:
    url = f"http://127.0.0.1:{_closed_port()}"
    monkeypatch.setenv("SPANVISOR_CONTROL_URL", url)
    code, out, err = cli(*command, "--timeout", "2")  # type: ignore[operator]
    assert code == 2 and out == "", (out, err)
    (line,) = err.strip().splitlines()
    assert line.startswith(f"spanvisor: no answer from the control API at {url} ("), line
    assert "from SPANVISOR_CONTROL_URL)" in line and "Is `spanvisor serve`" in line, line
    assert "pass --url or set SPANVISOR_CONTROL_URL" in line, line


def test_the_flag_and_the_default_are_named_too(cli: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"http://127.0.0.1:{_closed_port()}"
    _, _, err = cli("approvals", "--url", url, "--timeout", "2")  # type: ignore[operator]
    assert f"at {url} (" in err and "from --url)" in err, err
    if _listening(DEFAULT_URL):
        pytest.skip(f"something answers at {DEFAULT_URL} on this machine")
    _, _, err = cli("approvals", "--timeout", "2")  # type: ignore[operator]
    assert f"at {DEFAULT_URL} (" in err and "from the default: no --url, no SPANVISOR_CONTROL_URL)" in err, err


def _listening(url: str) -> bool:
    host, port = url.rsplit("//", 1)[1].rsplit(":", 1)
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex((host, int(port))) == 0


@pytest.mark.parametrize("command", [*COMMANDS, ("emit", "start", "--task", "T-1")], ids=lambda c: c[0])
def test_with_the_local_token_in_play_the_refusal_is_said_once(
    cli: Run, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, command: tuple[str, ...]
) -> None:
    """This user's token file is there and nothing listens: the request is
    refused before it is sent (servetoken.bearer), and the command says why
    in its own one line, not again as the token's log warning."""
    from spanvisor.gate import servetoken

    servetoken.make_or_read(servetoken.token_path(tmp_path / "data"))
    url = f"http://127.0.0.1:{_closed_port()}"
    monkeypatch.setenv("SPANVISOR_CONTROL_URL", url)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", url)
    code, out, err = cli(*command, *(() if command[0] == "emit" else ("--timeout", "2")))  # type: ignore[operator]
    assert code != 0 and out == "", (out, err)
    (line,) = err.strip().splitlines()
    assert "this user's spanvisor serve is not running there" in line, line
