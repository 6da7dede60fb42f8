"""The CLI's argument parser: a mistyped command gets a "did you mean".

argparse answers ``spanvisor taks`` with every command there is; this
parser names the closest ones instead (``task``, ``tasks``), at every level
(``spanvisor emit strat`` too), and the help that lists them all; an
option's unknown value is answered with the values it takes; an unknown
option (``spanvisor tasks --agnet``) with the closest options of the command
it was given to, not the whole program's usage.
"""

from __future__ import annotations

import argparse
import difflib
import re
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

_INVALID = re.compile(r"argument (?P<what>[^:]+): invalid choice: '(?P<word>.*?)' \(choose from (?P<choices>.*)\)$")


def suggestion(word: str, choices: list[str]) -> str:
    """ "; did you mean 'a' or 'b'?" for the choices closest to ``word``, or ""."""
    close = difflib.get_close_matches(word, choices, n=2, cutoff=0.6)
    if not close:
        close = [c for c in choices if c.startswith(word) or word.startswith(c)][:2]
    return f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""


def _options(parser: argparse.ArgumentParser) -> list[str]:
    return [o for action in parser._actions for o in action.option_strings if o.startswith("--")]


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


class Parser(argparse.ArgumentParser):
    def parse_args(self, args: Sequence[str] | None = None, namespace: Any = None) -> Any:  # type: ignore[override]
        words = list(sys.argv[1:] if args is None else args)
        parsed, extras = self.parse_known_args(words, namespace)
        if extras:
            self._unrecognized(words, extras)
        return parsed

    def _unrecognized(self, words: list[str], extras: list[str]) -> NoReturn:
        # argparse says "unrecognized arguments" from the top, with the
        # program's usage; the command they were given to knows its options.
        used: argparse.ArgumentParser = self
        for word in words:
            if word == "--":
                break
            if word in (subs := _subcommands(used)):
                used = subs[word]
        unknown = next((e.split("=", 1)[0] for e in extras if e.startswith("--")), None)
        if unknown is None:
            used.error(f"unrecognized arguments: {' '.join(extras)}")
        used.print_usage(sys.stderr)
        hint = suggestion(unknown, _options(used))
        used.exit(2, f"{used.prog}: unknown option {unknown!r}{hint} (`{used.prog} --help` lists them)\n")

    def error(self, message: str) -> NoReturn:
        m = _INVALID.match(message)
        if m is None:
            super().error(message)
        choices = re.findall(r"'([^']*)'", m.group("choices"))
        word = m.group("word")
        what = m.group("what").lower()
        self.print_usage(sys.stderr)
        # An option's values are few and are what the user needs next; a
        # command's list is long, so its help lists them.
        rest = (
            f"; choose from {', '.join(repr(c) for c in choices)}"
            if what.startswith("-")
            else f" (`{self.prog} --help` lists them)"
        )
        self.exit(2, f"{self.prog}: unknown {what} {word!r}{suggestion(word, choices)}{rest}\n")


__all__ = ["Parser", "suggestion"]
