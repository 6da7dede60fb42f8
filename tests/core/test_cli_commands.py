"""A command imports what it runs, and parses as it would among all commands.

``spanvisor.cli.main.COMMANDS`` names the commands each core module
registers, so a command imports only its own module; each sink's settings
are read through ``spanvisor.sink_settings`` without importing the sink.
These hold the table to the modules, the one-command parser to the full
one, and a short command to the modules it may import.
"""

from __future__ import annotations

import argparse
import importlib
import json
import subprocess
import sys
from typing import Any

import pytest

from spanvisor.cli.main import COMMANDS, build_parser, command_word
from spanvisor.entrypoints import entry_points


def _commands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def test_each_module_registers_the_commands_the_table_names() -> None:
    for module, names in COMMANDS.items():
        parser = argparse.ArgumentParser()
        sub = parser.add_subparsers()
        importlib.import_module(module).register(sub)
        assert tuple(sub.choices) == names, module


FULL = _commands(build_parser())


@pytest.mark.parametrize("word", sorted(FULL))
def test_a_command_alone_parses_as_among_all(word: str) -> None:
    alone = _commands(build_parser([word, "--help"]))
    assert alone[word].format_help() == FULL[word].format_help()


@pytest.mark.parametrize("argv", [["zzz"], ["taks"], [], ["--version"], ["-h"]])
def test_no_known_command_gets_every_command(argv: list[str]) -> None:
    # argparse's help and "did you mean" see every command there is.
    assert set(_commands(build_parser(argv))) == set(FULL)


@pytest.mark.parametrize(
    ("argv", "word"),
    [
        (["approve", "T-1"], "approve"),
        (["--config", "x.toml", "tasks"], "tasks"),
        (["--config=x.toml", "tasks", "--json"], "tasks"),
        (["-h"], None),
        (["--version"], None),
        ([], None),
        (["--config", "approve"], None),
    ],
)
def test_the_command_word(argv: list[str], word: str | None) -> None:
    assert command_word(argv) == word


def test_each_sink_settings_entry_point_is_its_sinks_own_table() -> None:
    sinks = {ep.name: ep for ep in entry_points(group="spanvisor.sinks")}
    tables = list(entry_points(group="spanvisor.sink_settings"))
    assert {ep.name for ep in tables} == set(sinks), "a built-in sink without its table: its class is imported"
    for ep in tables:
        assert ep.load() is sinks[ep.name].load().settings, ep.name


def test_a_short_command_imports_no_sink_hub_or_other_command() -> None:
    code = (
        "import json, sys\n"
        "from spanvisor.cli.main import main\n"
        "code = main(['version'])\n"
        "print(json.dumps([code, sorted(sys.modules)]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=_env())
    code_, modules = json.loads(out.stdout.splitlines()[-1])
    assert code_ == 0
    heavy = {
        "spanvisor.control.hub",
        "spanvisor.control.log",
        "spanvisor.cli.check",
        "spanvisor.cli.decide",
        "spanvisor.hook.command",
        "spanvisor.launcher.session",
        "spanvisor.receiver.serve",
        "spanvisor.stream.sink",
    }
    loaded = set(modules)
    assert not heavy & loaded
    assert not [m for m in loaded if m.startswith("spanvisor_") and m.endswith(".sink")]
    # Yet the configuration holds every sink's settings.
    assert "spanvisor_postgres.settings" in loaded and "spanvisor_slack.settings" in loaded


def _env() -> dict[str, Any]:
    import os

    return {k: v for k, v in os.environ.items() if not k.startswith(("SPANVISOR_", "OTEL_"))}
