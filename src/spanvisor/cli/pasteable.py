"""Commands printed for a person to paste, as they work in the same shell.

After ``make demo``, ``spanvisor`` is in ``.venv/bin``, which is not on
PATH: a hint reading ``spanvisor approve …`` then fails when pasted. A
hint names the program as this process was started when ``spanvisor`` on
PATH is not that program, and carries the ``--url`` a command was given
(the environment and the config file apply to the pasted command as they
did to this one; a flag does not).
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys


def command_name() -> str:
    """How to run this spanvisor from the shell it was started in."""
    started = sys.argv[0] if sys.argv and sys.argv[0] else ""
    found = shutil.which("spanvisor")
    if os.path.basename(started) == "spanvisor":  # the console script
        if found and os.path.realpath(found) == os.path.realpath(started):
            return "spanvisor"
        return shlex.quote(started)
    if started.endswith(os.path.join("spanvisor", "cli", "__main__.py")):  # python -m spanvisor.cli
        ours = os.path.dirname(os.path.abspath(sys.executable))  # this environment's scripts
        if found and os.path.dirname(os.path.abspath(found)) == ours:
            return "spanvisor"
        return f"{shlex.quote(sys.executable)} -P -m spanvisor.cli"
    return "spanvisor"  # main() called by other code, which knows the name


def with_name(command: str, url: str | None = None) -> str:
    """``command`` (``spanvisor SUB ARGS…``, as a server words it) with this
    program's name and, when given, ``--url`` after the subcommand."""
    program, _, rest = command.partition(" ")
    if program != "spanvisor" or not rest:
        return command
    sub, _, args = rest.partition(" ")
    flag = f" --url {url}" if url else ""
    return f"{command_name()} {sub}{flag}{' ' + args if args else ''}"


__all__ = ["command_name", "with_name"]
