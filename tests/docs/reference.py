"""The reference pages generated from the code's own tables:
docs/reference/settings.md from every part's settings table, and
docs/reference/cli.md from the ``spanvisor`` command's parser.

``make reference`` (``python -m tests.docs.reference --write``) writes them;
``tests/docs/test_reference.py`` fails when a page and the code disagree.
Both are built with no ``SPANVISOR_``, ``OTEL_`` or ``SLACK_`` variable set,
so what the machine's environment says never reaches a page.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterator
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any
from unittest import mock

ROOT = Path(__file__).resolve().parents[2]
SETTINGS_MD = ROOT / "docs" / "reference" / "settings.md"
CLI_MD = ROOT / "docs" / "reference" / "cli.md"
REGENERATE = "make reference"

# SPANVISOR_* variables read outside the settings tables, and why.
ELSEWHERE = {
    "SPANVISOR_CONFIG": "The TOML file the settings are also read from: each setting's name as a key, in a "
    "`[spanvisor]` table or at the top level. The environment wins over the file.",
    "SPANVISOR_LIVE": "`1` under `opentelemetry-instrument`: install spanvisor's span processor (the sinks run "
    "in the agent's process) and its log processor on the SDK's providers. Unset: spanvisor runs as the "
    "`spanvisor` exporter only where `OTEL_TRACES_EXPORTER` names it.",
    "SPANVISOR_COMPILE": "`1` when building from source: compile the tracker with mypyc where a C compiler "
    "works (setup.py). Unset or `0`: pure Python.",
    "SPANVISOR_CLI_SETTINGS": "Set by `spanvisor run` for the CLI's hooks: the `--settings` file a Claude Code "
    "session was started with, read for the hook's timeout.",
    "SPANVISOR_HOOK_STARTED": "Set by the launcher's small client for the hook it hands a call to: when the "
    "hook's process started, so its deadline counts from there.",
    "SPANVISOR_BIN": "Read by spanvisor's OpenCode plugin, Cline hook and pi extension: the `spanvisor` command they run "
    "(default: `spanvisor` on `PATH`; `spanvisor run --gate` sets it when the CLI's `PATH` has none).",
    "SPANVISOR_OPENCODE_LOADED": "Set by `spanvisor run --gate` for OpenCode: the file spanvisor's plugin "
    "writes when it loads; a tool call with no such file is said on stderr and on the task (not gated).",
    "SPANVISOR_PI_LOADED": "Set by `spanvisor run --gate` for pi: the file spanvisor's extension writes when "
    "it loads; a tool call with no such file is said on stderr and on the task (not gated).",
    "SPANVISOR_PROMETHEUS_URL": "Grafana's environment, not spanvisor's: the URL of the Prometheus datasource "
    "`grafana/provisioning/datasources/spanvisor.yml` provisions.",
    "SPANVISOR_PG_HOST": "Grafana's environment: the PostgreSQL datasource's `host:port`, with "
    "`SPANVISOR_PG_DATABASE`, `SPANVISOR_PG_USER`, `SPANVISOR_PG_PASSWORD` and `SPANVISOR_PG_SSLMODE`.",
}

_PARTS = {
    "core": "Every process",
    "receiver": "`spanvisor serve`",
    "control": "People's decisions, the control API and the coding-agent gate",
}


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("SPANVISOR_", "OTEL_", "SLACK_"))}


NOTHING = "\u2013"  # an en dash: an empty cell


def _cell(text: str) -> str:
    """One table cell of prose: one line, its pipes escaped, and ``<`` and
    ``>`` as entities (GitHub would take ``<data_dir>`` for a tag)."""
    one = " ".join(str(text).split()).replace("|", "\\|")
    return one.replace("<", "&lt;").replace(">", "&gt;")


def _code(text: str) -> str:
    """One table cell of code: a dash for nothing."""
    one = " ".join(str(text).split()).replace("|", "\\|")
    return f"`{one}`" if one not in ("", "-") else NOTHING


def _parts() -> list[tuple[str, list[Any]]]:
    """(owner, settings) for the core and every part this distribution
    declares, in a fixed order: core, serve, control, then the sinks by name."""
    from spanvisor.config.costs import COST_SETTINGS
    from spanvisor.config.table import CORE_SETTINGS

    ours: list[tuple[str, list[Any]]] = []
    for ep in entry_points(group="spanvisor.settings"):
        if ep.dist is not None and ep.dist.name == "spanvisor":
            ours.append((ep.name, list(ep.load())))
    for ep in entry_points(group="spanvisor.sinks"):
        if ep.dist is not None and ep.dist.name == "spanvisor":
            ours.append((f"sink:{ep.name}", list(getattr(ep.load(), "settings", ()) or ())))
    rank = {"receiver": 0, "control": 1}
    ours.sort(key=lambda part: (rank.get(part[0], 2), part[0]))
    return [("core", [*CORE_SETTINGS, *COST_SETTINGS]), *ours]


def settings_md() -> str:
    from spanvisor.config import Config

    with mock.patch.dict(os.environ, clean_env(), clear=True):
        parts = [(owner, table) for owner, table in _parts() if table]
        shown = dict((r[0], r[2]) for r in Config.load(env={}, lenient=True).rows())
    total = sum(len(t) for _, t in parts)
    out = [
        "# Settings",
        "",
        f"<!-- Generated by `{REGENERATE}` from the settings tables in the code; do not edit. -->",
        "",
        f"Every setting spanvisor reads, {total} of them, from the tables each part of the code declares",
        "(`spanvisor.config.table`, `spanvisor.receiver.serve`, `spanvisor.control.settings` and each sink's",
        f"`settings`). `{REGENERATE}` writes this page, and `tests/docs/test_reference.py` fails when it and",
        "the code disagree.",
        "",
        "Each setting is read from its environment variable, else from the TOML file `SPANVISOR_CONFIG`",
        "names (the setting's name as the key, in a `[spanvisor]` table), else its default. A duration",
        "takes `ms`, `s`, `m`, `h` or `d` (`30s`, `10m`); a size `KiB`, `MiB`, `GiB`. `spanvisor check`",
        "validates them all and says what is wrong; `spanvisor check --all` shows each value and where it",
        "came from. Secrets are marked; they never reach a log.",
        "",
    ]
    for owner, table in parts:
        title = _PARTS.get(owner) or f"The `{owner.removeprefix('sink:')}` sink"
        out += [f"## {title}", "", "| setting | variable | default | accepts | meaning |", "|---|---|---|---|---|"]
        for s in table:
            default = shown.get(s.name, "-")
            secret = " Secret." if s.secret else ""
            row = (f"`{s.name}`", f"`{s.env}`", _code(default), _cell(s.accepts) or NOTHING, _cell(s.help) + secret)
            out.append("| " + " | ".join(row) + " |")
        out.append("")
    out += [
        "## Read elsewhere",
        "",
        "Variables some part reads outside the tables above.",
        "",
        "| variable | meaning |",
        "|---|---|",
    ]
    out += [f"| `{name}` | {_cell(text)} |" for name, text in sorted(ELSEWHERE.items())]
    return "\n".join(out) + "\n"


# --- the command line -------------------------------------------------------


def _commands(parser: argparse.ArgumentParser, path: tuple[str, ...], summary: str) -> Iterator[Any]:
    yield path, parser, summary
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help or "" for a in action._choices_actions}
            seen: set[int] = set()
            for name, sub in action.choices.items():
                if id(sub) in seen:
                    continue
                seen.add(id(sub))
                yield from _commands(sub, (*path, name), helps.get(name, ""))


def _shown(action: argparse.Action) -> bool:
    return action.help != argparse.SUPPRESS and not isinstance(
        action, argparse._HelpAction | argparse._SubParsersAction
    )


def _metavar(action: argparse.Action) -> str:
    if action.metavar is not None:
        return str(action.metavar if isinstance(action.metavar, str) else " ".join(action.metavar))
    if action.choices is not None:
        return "{" + ",".join(str(c) for c in action.choices) + "}"
    return action.dest.upper() if action.option_strings else action.dest


def _synopsis(path: tuple[str, ...], parser: argparse.ArgumentParser) -> str:
    words = list(path)
    for a in parser._actions:
        if not _shown(a):
            if isinstance(a, argparse._SubParsersAction):
                words.append("COMMAND")
            continue
        if not a.option_strings:
            word = {"?": "[{}]", "*": "[{} ...]", "+": "{} [{} ...]", argparse.REMAINDER: "..."}.get(str(a.nargs), "{}")
            words.append(word.format(_metavar(a), _metavar(a)))
            continue
        flag = a.option_strings[-1] if a.option_strings[-1].startswith("--") else a.option_strings[0]
        word = flag if a.nargs == 0 else f"{flag} {_metavar(a)}"
        words.append(word if a.required else f"[{word}]")
    return " ".join(words)


def _anchor(path: tuple[str, ...]) -> str:
    return "-".join(path)


def cli_md() -> str:
    from spanvisor.cli.main import build_parser

    with mock.patch.dict(os.environ, clean_env(), clear=True):
        parser = build_parser()
        found = list(_commands(parser, ("spanvisor",), parser.description or ""))
        formatter = parser._get_formatter()
        helps = {id(a): formatter._expand_help(a) for _, p, _ in found for a in p._actions if a.help}
    leaves = [(path, p, summary) for path, p, summary in found[1:]]
    out = [
        "# Commands",
        "",
        f"<!-- Generated by `{REGENERATE}` from the spanvisor command's parser; do not edit. -->",
        "",
        "Every `spanvisor` command and option, from the command's own parser (`spanvisor.cli.main`",
        f"and the modules and plugins that add commands). `{REGENERATE}` writes this page, and",
        "`tests/docs/test_reference.py` fails when it and the code disagree. `spanvisor COMMAND --help`",
        "says the same in a terminal.",
        "",
        f"    {_synopsis(('spanvisor',), parser)}",
        "",
        "`--config FILE` names the TOML settings file (default: `$SPANVISOR_CONFIG`); a mistyped",
        "command gets the closest ones.",
        "",
        "| command | what it does |",
        "|---|---|",
    ]
    out += [f"| [`{' '.join(path)}`](#{_anchor(path)}) | {_cell(summary) or NOTHING} |" for path, _, summary in leaves]
    out.append("")
    for path, p, summary in leaves:
        out += [f"## `{' '.join(path)}`", ""]
        if summary:
            out += [_cell(summary)[0].upper() + _cell(summary)[1:] + ".", ""]
        if p.description and p.description != summary:
            out += [" ".join(p.description.split()), ""]
        out += [f"    {_synopsis(path, p)}", ""]
        rows = [a for a in p._actions if _shown(a)]
        if rows:
            out += ["| argument | meaning |", "|---|---|"]
            for a in rows:
                name = ", ".join(a.option_strings) if a.option_strings else _metavar(a)
                if a.option_strings and a.nargs != 0:
                    name += f" {_metavar(a)}"
                out.append(f"| {_code(name)} | {_cell(helps.get(id(a), '')) or NOTHING} |")
            out.append("")
        if p.epilog:
            out += [" ".join(p.epilog.split()), ""]
    return "\n".join(out).rstrip("\n") + "\n"


PAGES = {SETTINGS_MD: settings_md, CLI_MD: cli_md}


def main(argv: list[str]) -> int:
    write = "--write" in argv
    stale = []
    for path, make in PAGES.items():
        text = make()
        if path.exists() and path.read_text(encoding="utf-8") == text:
            continue
        if write:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path.relative_to(ROOT)}")
        else:
            stale.append(str(path.relative_to(ROOT)))
    if stale:
        print(f"out of date: {', '.join(stale)}; run `{REGENERATE}`", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
