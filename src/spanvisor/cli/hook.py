"""``spanvisor hook``: the command; the hook itself is :mod:`spanvisor.hook`
(the console script sends ``spanvisor hook …`` to it before building the
full parser)."""

from __future__ import annotations

from typing import Any

from spanvisor.hook.command import build_parser, run


def register(subparsers: Any) -> None:
    """``spanvisor hook`` in the full CLI's help."""
    p = subparsers.add_parser(
        "hook", help="the permission hook a coding-agent CLI runs before a tool call (the call's JSON on stdin)"
    )
    build_parser(p)
    p.set_defaults(func=lambda args, config: run(args))


__all__ = ["register"]
