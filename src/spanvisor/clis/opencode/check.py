"""``spanvisor check``'s look at OpenCode's gate: OpenCode runs every tool
ungated when a plugin fails to load, and says so only in its own log. So
wherever OpenCode would read spanvisor's plugin from (``OPENCODE_CONFIG_CONTENT``,
the user's and the project's ``opencode.json``, its managed config
folder, the ``plugin`` folders it loads every file of), each entry naming ``spanvisor-gate`` must be a file
that is there and is this spanvisor's plugin (or a copy ``spanvisor gate
install`` locked to a spanvisor and options of its own), and the
``spanvisor`` it runs must be there too (else it blocks every call: closed, but useless).
Nothing is said when no entry names the plugin (no OpenCode here, or no gate
wanted); ``spanvisor run --gate`` gives OpenCode the plugin itself.
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
from spanvisor.clis.opencode import PLUGIN_FILE, locked_plugin, shipped_plugin

MARK = "spanvisor-gate"
# The spanvisor the shipped plugin runs, when set (else the PATH's).
ENV_BIN = "SPANVISOR_BIN"
_CONFIGS = ("opencode.json", "opencode.jsonc")


def _plugins_in(doc: Any) -> list[str]:
    plugins = doc.get("plugin") if isinstance(doc, dict) else None
    return [p for p in plugins if isinstance(p, str)] if isinstance(plugins, list) else []


def _config_dirs(env: Mapping[str, str], cwd: Path) -> list[Path]:
    home = Path(env.get("HOME") or Path.home())
    dirs = [Path(env.get("XDG_CONFIG_HOME") or home / ".config") / "opencode", cwd / ".opencode"]
    if env.get("OPENCODE_CONFIG_DIR"):
        dirs.append(Path(env["OPENCODE_CONFIG_DIR"]))
    dirs.append(Path(env.get("OPENCODE_TEST_MANAGED_CONFIG_DIR") or "/etc/opencode"))  # its managed config
    return dirs


_LOCKED_BIN = re.compile(r'^const BIN = ("(?:[^"\\]|\\.)*") // locked by spanvisor gate install$', re.M)
_LOCKED_ARGS = re.compile(r'\["hook", "opencode", "--cli-timeout", String\(LIMIT_S\)((?:, "(?:[^"\\]|\\.)*")*)\]')


def locked_command(body: bytes) -> str | None:
    """The command a copy ``spanvisor gate install`` locked runs (its
    spanvisor and options, written in it), when ``body`` is exactly such a
    copy of this spanvisor's plugin; else None."""
    text = body.decode("utf-8", "replace")
    b, a = _LOCKED_BIN.search(text), _LOCKED_ARGS.search(text)
    if b is None or a is None:
        return None
    try:
        words = [json.loads(b.group(1)), "hook", "opencode", *json.loads("[" + a.group(1).lstrip(", ") + "]")]
        command = shlex.join(words)
        return command if locked_plugin(command).encode() == body else None
    except ValueError:
        return None


def entries(env: Mapping[str, str], cwd: Path) -> Iterator[tuple[str, str]]:
    """(where, the plugin entry or file) for each place naming spanvisor's plugin."""
    given = env.get("OPENCODE_CONFIG_CONTENT", "")
    if given.strip():
        try:
            doc = json.loads(given)
        except ValueError:
            yield "OPENCODE_CONFIG_CONTENT", "(not JSON: OpenCode may not read it)"
            doc = None
        for spec in _plugins_in(doc):
            if MARK in spec:
                yield "OPENCODE_CONFIG_CONTENT", spec
    files = [d / name for d in _config_dirs(env, cwd) for name in _CONFIGS] + [cwd / n for n in _CONFIGS]
    if env.get("OPENCODE_CONFIG"):
        files.append(Path(env["OPENCODE_CONFIG"]))
    for path in files:
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError, UnicodeDecodeError):
            continue  # absent, or JSON with comments: not read here
        for spec in _plugins_in(doc):
            if MARK in spec:
                yield str(path), spec
    for folder in (d / sub for d in _config_dirs(env, cwd) for sub in ("plugin", "plugins")):
        if (folder / PLUGIN_FILE).exists():
            yield str(folder), str(folder / PLUGIN_FILE)


def _path_of(spec: str, where: str) -> Path | None:
    if spec.startswith("file:"):
        return Path(urllib.request.url2pathname(urllib.parse.urlparse(spec).path))
    if spec.startswith(("/", ".", "~")):
        base = Path(where).parent if where != "OPENCODE_CONFIG_CONTENT" else Path.cwd()
        return (base / os.path.expanduser(spec)).resolve()
    return None  # an npm package name: OpenCode installs it, not checked here


def problems(env: Mapping[str, str], cwd: Path) -> tuple[list[str], list[str], list[str]]:
    """(problems, warnings, checked) of OpenCode's gate plugin."""
    bad: list[str] = []
    warned: list[str] = []
    ok: list[str] = []
    shipped = shipped_plugin().encode()
    by_env = False  # a plugin that runs the SPANVISOR_BIN or PATH spanvisor was found
    for where, spec in entries(env, cwd):
        path = _path_of(spec, where)
        if path is None:
            if spec.startswith("(not JSON"):
                warned.append(f"OpenCode's gate: {where} {spec}")
            continue
        try:
            body = path.read_bytes()
        except OSError as exc:
            bad.append(
                f"OpenCode's gate plugin {path} (named in {where}) cannot be read ({exc.strerror or exc}): "
                "OpenCode then runs every tool UNGATED; `spanvisor assets export DIR` writes it, or use "
                "`spanvisor run --gate -- opencode run …`"
            )
            continue
        locked = locked_command(body) if body != shipped else None
        if locked is not None:
            weak = command_weaknesses(locked)
            warned += [f"OpenCode's gate plugin {path} ({where}): {w}" for w in weak]
            if not weak:
                ok.append(f"OpenCode's gate plugin {path} ({where}), locked: {locked}")
            continue
        by_env = True
        if body != shipped:
            warned.append(
                f"OpenCode's gate plugin {path} differs from this spanvisor's (`spanvisor assets export DIR` writes "
                "the current one); if OpenCode cannot load it, every tool runs ungated"
            )
        else:
            ok.append(f"OpenCode's gate plugin {path} ({where})")
    if by_env:
        named = env.get(ENV_BIN)
        found = (named if named and os.access(named, os.X_OK) else None) if named else shutil.which("spanvisor")
        if found is None:
            bad.append(
                f"OpenCode's gate plugin runs {named or 'spanvisor'}, which "
                f"{'is not an executable' if named else 'is not on PATH'}: it blocks every tool call "
                f"(set {ENV_BIN} to the spanvisor command)"
            )
    return bad, warned, ok


__all__ = ["entries", "problems"]
