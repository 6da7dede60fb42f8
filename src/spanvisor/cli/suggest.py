"""The CLI's argument parser: a mistyped command gets a "did you mean".

argparse answers ``spanvisor taks`` with every command there is; this
parser names the closest ones instead (``task``, ``tasks``), at every level
(``spanvisor emit strat`` too), and the help that lists them all; an
option's unknown value is answered with the values it takes.
"""

from __future__ import annotations

import argparse
import difflib
import re
import sys
from typing import NoReturn

_INVALID = re.compile(r"argument (?P<what>[^:]+): invalid choice: '(?P<word>.*?)' \(choose from (?P<choices>.*)\)$")


def suggestion(word: str, choices: list[str]) -> str:
    """ "; did you mean 'a' or 'b'?" for the choices closest to ``word``, or ""."""
    close = difflib.get_close_matches(word, choices, n=2, cutoff=0.6)
    if not close:
        close = [c for c in choices if c.startswith(word) or word.startswith(c)][:2]
    return f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""


class Parser(argparse.ArgumentParser):
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
