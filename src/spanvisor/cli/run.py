"""``spanvisor run``: the command; the launcher (:mod:`spanvisor.launcher`)
parses its own arguments and does the rest, since the console script sends
``spanvisor run …`` to it before building the full parser."""

from __future__ import annotations

from typing import Any

from spanvisor.launcher.session import HELP, handler
from spanvisor.launcher.start import add_arguments


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("run", help=HELP)
    add_arguments(p)
    p.set_defaults(func=handler)


__all__ = ["register"]
