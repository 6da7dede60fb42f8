"""An option typo gets a "did you mean" from the command it was given to (issue 66).

argparse answered ``spanvisor tasks --agnet`` from the top, with the whole
program's usage and no hint.
"""

from __future__ import annotations

import pytest

from spanvisor.cli.main import build_parser


def _error(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(list(argv))
    assert exc.value.code == 2
    return capsys.readouterr().err


def test_a_misspelt_option_names_the_closest_of_its_command(capsys: pytest.CaptureFixture[str]) -> None:
    err = _error(capsys, "tasks", "--agnet", "rivet")
    assert err.startswith("usage: spanvisor tasks ")
    assert err.splitlines()[-1] == (
        "spanvisor tasks: unknown option '--agnet'; did you mean '--agent'? (`spanvisor tasks --help` lists them)"
    )


def test_an_option_serve_does_not_have_names_the_ports_it_does(capsys: pytest.CaptureFixture[str]) -> None:
    last = _error(capsys, "serve", "--port", "4318").splitlines()[-1]
    assert last.startswith("spanvisor serve: unknown option '--port'; did you mean '--")
    assert "-port'" in last.split("did you mean")[1]


def test_with_a_value_after_an_equals_sign_and_options_before_the_command(capsys: pytest.CaptureFixture[str]) -> None:
    last = _error(capsys, "--config", "x.toml", "tasks", "--limt=5").splitlines()[-1]
    assert last.startswith("spanvisor tasks: unknown option '--limt'; did you mean '--limit'")


def test_nothing_close_still_says_which_command_and_where_its_options_are(capsys: pytest.CaptureFixture[str]) -> None:
    last = _error(capsys, "tasks", "--zzzzzz").splitlines()[-1]
    assert last == "spanvisor tasks: unknown option '--zzzzzz' (`spanvisor tasks --help` lists them)"


def test_an_extra_word_is_said_by_its_command(capsys: pytest.CaptureFixture[str]) -> None:
    last = _error(capsys, "tasks", "extra").splitlines()[-1]
    assert last == "spanvisor tasks: error: unrecognized arguments: extra"


def test_a_right_command_line_parses() -> None:
    args = build_parser().parse_args(["tasks", "--agent", "rivet"])
    assert args.agent == "rivet"
