"""``spanvisor check``'s look at the gate of a CLI of OpenCode's shape
(OpenCode, Kilo): it runs every tool ungated when a plugin fails to load,
and says so only in its own log. So wherever the CLI would read
spanvisor's plugin from (``<PREFIX>_CONFIG_CONTENT``, the user's and the
project's config files, its managed config folder, the ``plugin`` folders
it loads every file of), each entry naming ``spanvisor-gate`` must be a
file that is there and is this spanvisor's plugin (or a copy ``spanvisor
gate install`` locked to a spanvisor and options of its own), and the
``spanvisor`` it runs must be there too (else it blocks every call:
closed, but useless). Nothing is said when no entry names the plugin (no
such CLI here, or no gate wanted); ``spanvisor run --gate`` gives the CLI
the plugin itself.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from spanvisor.clis.checks import command_weaknesses
from spanvisor.clis.opencode_shape import LOCKED, PLUGIN_FILE, OpenCodeShape, locked_plugin, shipped_plugin

MARK = "spanvisor-gate"
# The spanvisor the shipped plugin runs, when set (else the PATH's).
ENV_BIN = "SPANVISOR_BIN"


def _plugins_in(doc: Any) -> list[str]:
    plugins = doc.get("plugin") if isinstance(doc, dict) else None
    return [p for p in plugins if isinstance(p, str)] if isinstance(plugins, list) else []


def _config_dirs(cli: OpenCodeShape, env: Mapping[str, str], cwd: Path) -> list[Path]:
    home = Path(env.get("HOME") or Path.home())
    dirs = [Path(env.get("XDG_CONFIG_HOME") or home / ".config") / cli.config_folder]
    dirs += [cwd / d for d in cli.project_folders]
    if env.get(f"{cli.env_prefix}_CONFIG_DIR"):
        dirs.append(Path(env[f"{cli.env_prefix}_CONFIG_DIR"]))
    managed = env.get(f"{cli.env_prefix}_TEST_MANAGED_CONFIG_DIR") or cli.managed_folder
    dirs.append(Path(managed))  # its managed config
    return dirs


_LOCKED_CLI = re.compile(r'^const CLI = ("(?:[^"\\]|\\.)*") ' + re.escape(LOCKED) + "$", re.M)
_LOCKED_BIN = re.compile(r'^const BIN = ("(?:[^"\\]|\\.)*") ' + re.escape(LOCKED) + "$", re.M)
# A copy an earlier spanvisor locked (before the plugin knew Kilo): its CLI
# is OpenCode, written in its arguments.
_EARLIER_ARGS = re.compile(r'\["hook", "opencode", "--cli-timeout", String\(LIMIT_S\)')
_LOCKED_ARGS = re.compile(r'\["hook", CLI, "--cli-timeout", String\(LIMIT_S\)((?:, "(?:[^"\\]|\\.)*")*)\]')


def locked_command(body: bytes) -> str | None:
    """The command a copy ``spanvisor gate install`` locked runs (its
    spanvisor and options, written in it), when ``body`` is exactly such a
    copy of this spanvisor's plugin; else None."""
    text = body.decode("utf-8", "replace")
    c, b, a = _LOCKED_CLI.search(text), _LOCKED_BIN.search(text), _LOCKED_ARGS.search(text)
    if c is None or b is None or a is None:
        return None
    try:
        words = [
            json.loads(b.group(1)),
            "hook",
            json.loads(c.group(1)),
            *json.loads("[" + a.group(1).lstrip(", ") + "]"),
        ]
        command = shlex.join(words)
        return command if locked_plugin(command).encode() == body else None
    except ValueError:
        return None


def entries(cli: OpenCodeShape, env: Mapping[str, str], cwd: Path) -> Iterator[tuple[str, str]]:
    """(where, the plugin entry or file) for each place naming spanvisor's plugin."""
    content = f"{cli.env_prefix}_CONFIG_CONTENT"
    given = env.get(content, "")
    if given.strip():
        try:
            doc = json.loads(given)
        except ValueError:
            yield content, f"(not JSON: {cli.title} may not read it)"
            doc = None
        for spec in _plugins_in(doc):
            if MARK in spec:
                yield content, spec
    folders = _config_dirs(cli, env, cwd)
    files = [d / name for d in folders for name in cli.config_files] + [cwd / n for n in cli.config_files]
    if env.get(f"{cli.env_prefix}_CONFIG"):
        files.append(Path(env[f"{cli.env_prefix}_CONFIG"]))
    for path in files:
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError, UnicodeDecodeError):
            continue  # absent, or JSON with comments: not read here
        for spec in _plugins_in(doc):
            if MARK in spec:
                yield str(path), spec
    for folder in (d / sub for d in folders for sub in ("plugin", "plugins")):
        if (folder / PLUGIN_FILE).exists():
            yield str(folder), str(folder / PLUGIN_FILE)


def _path_of(spec: str, where: str) -> Path | None:
    if spec.startswith("file:"):
        return Path(urllib.request.url2pathname(urllib.parse.urlparse(spec).path))
    if spec.startswith(("/", ".", "~")):
        base = Path(where).parent if not where.endswith("_CONFIG_CONTENT") else Path.cwd()
        return (base / os.path.expanduser(spec)).resolve()
    return None  # an npm package name: the CLI installs it, not checked here


def problems(cli: OpenCodeShape, env: Mapping[str, str], cwd: Path) -> tuple[list[str], list[str], list[str]]:
    """(problems, warnings, checked) of the CLI's gate plugin."""
    bad: list[str] = []
    warned: list[str] = []
    ok: list[str] = []
    shipped = shipped_plugin().encode()
    by_env = False  # a plugin that runs the SPANVISOR_BIN or PATH spanvisor was found
    managed = Path(env.get(f"{cli.env_prefix}_TEST_MANAGED_CONFIG_DIR") or cli.managed_folder)
    for where, spec in entries(cli, env, cwd):
        path = _path_of(spec, where)
        if path is None:
            if spec.startswith("(not JSON"):
                warned.append(f"{cli.title}'s gate: {where} {spec}")
            continue
        try:
            body = path.read_bytes()
        except OSError as exc:
            bad.append(
                f"{cli.title}'s gate plugin {path} (named in {where}) cannot be read ({exc.strerror or exc}): "
                f"{cli.title} then runs every tool UNGATED; `spanvisor assets export DIR` writes it, or use "
                f"`spanvisor run --gate -- {cli.binaries[0]} run …`"
            )
            continue
        locked = locked_command(body) if body != shipped else None
        if locked is not None and shlex.split(locked)[2] != cli.name:
            bad.append(f"{cli.title}'s gate plugin {path} ({where}) is locked to another CLI: {locked}")
            continue
        if locked is not None:
            weak = command_weaknesses(locked)
            warned += [f"{cli.title}'s gate plugin {path} ({where}): {w}" for w in weak]
            if not weak:
                ok.append(f"{cli.title}'s gate plugin {path} ({where}), locked: {locked}")
            continue
        text = body.decode("utf-8", "replace")
        if body != shipped and _LOCKED_BIN.search(text) and _EARLIER_ARGS.search(text):
            # It still runs its own spanvisor and options, as OpenCode's gate.
            said = f"{cli.title}'s gate plugin {path} ({where}) was locked by an earlier spanvisor"
            if cli.name != "opencode":
                bad.append(f"{said}, for OpenCode: here it would ask for OpenCode's rules (spanvisor gate install)")
            else:
                warned.append(f"{said}: it still decides; `spanvisor gate install` writes the current one")
            continue
        by_env = True
        if body == shipped and path.parent == managed:
            warned.append(
                f"{cli.title}'s gate plugin {path} in its managed folder is not locked: it runs the spanvisor "
                f"{ENV_BIN} or PATH names, which the agent's environment chooses (`spanvisor gate install` "
                "writes a locked copy)"
            )
        if body != shipped:
            warned.append(
                f"{cli.title}'s gate plugin {path} differs from this spanvisor's (`spanvisor assets export DIR` writes "
                f"the current one); if {cli.title} cannot load it, every tool runs ungated"
            )
        else:
            ok.append(f"{cli.title}'s gate plugin {path} ({where})")
    if by_env:
        named = env.get(ENV_BIN)
        found = (named if named and os.access(named, os.X_OK) else None) if named else shutil.which("spanvisor")
        if found is None:
            bad.append(
                f"{cli.title}'s gate plugin runs {named or 'spanvisor'}, which "
                f"{'is not an executable' if named else 'is not on PATH'}: it blocks every tool call "
                f"(set {ENV_BIN} to the spanvisor command)"
            )
    return bad, warned, ok


__all__ = ["entries", "problems"]
