"""What makes an installed gate fail open, whatever the CLI: the looks
``spanvisor check`` takes at a gate command, shared by the adapters' own
looks (:meth:`~spanvisor.clis.adapter.Adapter.check`).

Two things make an installed hook weaker than the gate: a command that is
not an absolute path (a bare ``spanvisor`` outside the CLI's ``PATH``
exits 127, and some CLIs then run the call), and a hook that takes what it
decides from its environment, which a repository's settings can set (it
is not ``--locked``). A file its user may change guards against mistakes,
not against a hostile agent of that user.
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path


def is_gate(command: object) -> bool:
    """Whether ``command`` runs ``spanvisor hook``."""
    try:
        words = shlex.split(command) if isinstance(command, str) else []
    except ValueError:
        return False
    return len(words) >= 2 and os.path.basename(words[0]) == "spanvisor" and words[1] == "hook"


def command_weaknesses(command: str) -> list[str]:
    """What makes a gate command fail open or decide by what a repository
    can set, whatever the CLI; empty when nothing does."""
    try:
        words = shlex.split(command)
    except ValueError:
        return ["its command cannot be read as a command line"]
    out = []
    if words and not os.path.isabs(words[0]):
        out.append(
            f"its command {words[0]!r} is not an absolute path (not found on the CLI's PATH, it exits 127 "
            "and some CLIs then run the call)"
        )
    elif words and not os.access(words[0], os.X_OK):
        out.append(f"its command {words[0]} is not there or not executable (the hook cannot start)")
    if "--locked" not in words and "--gate" not in words:
        out.append("it is not --locked (a repository's settings or the session's environment can change its policy)")
    if any(_token_option(w) for w in words):
        out.append("its command line holds a token, which every local user can read (/proc/<pid>/cmdline)")
    return out


def _token_option(word: str) -> bool:
    """``--token``/``--otlp-token``, or an abbreviation argparse takes for one."""
    name = word.split("=", 1)[0]
    return len(name) >= 5 and any(full.startswith(name) for full in ("--token", "--otlp-token"))


def whose(path: Path) -> str:
    """'' for a file only root may change; else who may, and what that means."""
    try:
        st = path.stat()
    except OSError:
        return ""
    if st.st_uid == 0 and not st.st_mode & 0o022:
        return ""
    return (
        f"; its file is not root's alone (uid {st.st_uid}, mode {st.st_mode & 0o777:04o}): it guards against "
        "mistakes, not against a hostile agent of a user who may change it (spanvisor gate install)"
    )


__all__ = ["command_weaknesses", "is_gate", "whose"]
